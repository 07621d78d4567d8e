//! What a reset does to the settings, and how it is undone.
//!
//! Order, for a power cut at any point: the settings as they are go to `reset/before.export` first (written
//! atomically and synced); then the reset replaces the settings in one transaction that also records the reset
//! (`reset/last` in the settings). A cut before that transaction leaves the settings as they were; after it,
//! the reset is done and can be undone. Undo puts the kept settings back in one transaction (without the
//! record, so nothing offers to undo twice) and only then deletes the file; dismissing removes both.

use crate::tier::Tier;
use cairn_store::snapshot::{write_atomically, Export, SnapshotError};
use cairn_store::{Schema, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The settings tree and key of the last reset's record.
const TREE: &str = "reset";
const LAST: &[u8] = b"last";
/// The settings from before the last reset, beside the database.
const BEFORE: &str = "reset/before.export";

/// Who asked for the reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The reset pin, held (read by init).
    Pin,
    /// An administrator in the dashboard, with typed confirmation.
    Dashboard,
}

/// The record of the last reset, shown to the owner with the offer to undo it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastReset {
    pub tier: Tier,
    pub trigger: Trigger,
    /// Seconds since the epoch by the box's clock (which may not be set on a board without a battery).
    pub at_s: u64,
    /// Administrators whose passwords the network tier cleared.
    #[serde(default)]
    pub cleared_admins: Vec<String>,
    /// True while the settings from before are kept and can be put back.
    #[serde(default)]
    pub undo_available: bool,
}

/// Why a reset, an undo or a dismissal did not happen (nothing was changed).
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("{0} is not a reset tier (network or settings)")]
    NotAReset(&'static str),
    #[error("there is no reset to undo: the settings from before were dismissed or never kept")]
    NothingToUndo,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("accounts: {0}")]
    Accounts(#[from] cairn_accounts::AccountError),
    #[error("cannot remove {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Resets of the settings in one store, with the folder that holds its database.
pub struct Resets {
    store: Store,
    before: PathBuf,
}

impl Resets {
    /// `settings_dir` is the folder of the settings database (`/config/cairn` on the box): the settings from
    /// before a reset are kept there, on the same partition, so they survive the reboot a reset ends with.
    pub fn new(store: Store, settings_dir: &Path) -> Resets {
        Resets {
            store,
            before: settings_dir.join(BEFORE),
        }
    }

    /// Applies `tier` to the settings, after keeping them for undo. The caller reboots the box afterwards (the
    /// network, the host name and every service start again from the new settings).
    pub fn apply(&self, tier: Tier, trigger: Trigger, at_s: u64) -> Result<LastReset, ResetError> {
        if !tier.resets() {
            return Err(ResetError::NotAReset(tier.name()));
        }
        let before = self.store.export()?;
        write_atomically(&self.before, &before.to_bytes())?;
        let mut after = before.clone();
        let mut cleared_admins = Vec::new();
        match tier {
            Tier::Network => {
                cairn_system::factory::forget_network(&mut after);
                cleared_admins = cairn_accounts::clear_admin_passwords(&mut after, at_s)?;
            }
            _ => after = Export::empty(before.schema),
        }
        let last = LastReset {
            tier,
            trigger,
            at_s,
            cleared_admins,
            undo_available: true,
        };
        after.put(TREE, LAST, cairn_store::encode(&last)?);
        self.store.import(&after)?;
        log::warn!(
            "reset: {} reset applied ({:?}); the settings from before are kept in {} for undo",
            tier.name(),
            trigger,
            self.before.display()
        );
        Ok(last)
    }

    /// The last reset, if it has not been undone or dismissed.
    pub fn last(&self) -> Option<LastReset> {
        let table = self.store.table(TREE).ok()?;
        let mut last: LastReset = table.get(std::str::from_utf8(LAST).ok()?).ok()??;
        last.undo_available = self.before.exists();
        Some(last)
    }

    /// Puts back the settings from before the last reset (brought to this firmware's schema with `schema`).
    pub fn undo(&self, schema: &Schema) -> Result<LastReset, ResetError> {
        let last = self.last().ok_or(ResetError::NothingToUndo)?;
        if !last.undo_available {
            return Err(ResetError::NothingToUndo);
        }
        let mut before = Export::load(&self.before)?.migrated(schema)?;
        before.retain(|tree, key, _| !(tree == TREE && key == LAST));
        self.store.import(&before)?;
        self.remove_before()?;
        log::warn!("reset: the {} reset was undone", last.tier.name());
        Ok(last)
    }

    /// Forgets the last reset and the settings kept from before it.
    pub fn dismiss(&self) -> Result<(), ResetError> {
        let table = self.store.table(TREE)?;
        table.remove(std::str::from_utf8(LAST).unwrap_or("last"))?;
        self.store.commit()?;
        self.remove_before()
    }

    fn remove_before(&self) -> Result<(), ResetError> {
        match std::fs::remove_file(&self.before) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ResetError::Io {
                path: self.before.clone(),
                source,
            }),
        }
    }
}
