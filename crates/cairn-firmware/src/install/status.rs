//! The firmware status the API shows: both slots (version from their trailers, state from the boot state),
//! an update waiting for its reboot, and the outcome of the last one (written by init).

use super::{Layout, Slot};
use crate::keys::TrustedKeys;
use cairn_bootenv::BootState;
use serde::Serialize;

/// One slot as the owner sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SlotView {
    /// `a` or `b`.
    pub name: &'static str,
    /// From the slot's signed trailer; absent for an empty (or half-written) slot.
    pub version: Option<String>,
    /// `booted`, `good` (bootable, committed or on trial), `bad` (out of the boot order) or `empty`.
    pub state: &'static str,
}

/// An installed update that runs after the next reboot.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Pending {
    /// `a` or `b`.
    pub slot: &'static str,
    pub version: Option<String>,
    /// What the new firmware's settings migrations will do, dry-run before the slot was made bootable
    /// (`cairn migrate --dry-run`'s report).
    pub migration: Option<serde_json::Value>,
}

/// `GET /api/v1/firmware`.
#[derive(Debug, Clone, Serialize)]
pub struct FirmwareView {
    pub slots: Vec<SlotView>,
    pub pending: Option<Pending>,
    /// `last-update` as init wrote it (JSON), absent before the first update.
    pub last_update: Option<serde_json::Value>,
}

/// Reads the status from the slots' trailers and the boot state (when it cannot be read, no slot is called
/// good). A slot whose trailer does not check out is `empty`.
pub fn status(layout: &Layout) -> FirmwareView {
    let state: Option<BootState> = layout.boot.load().ok().map(|c| c.state);
    let keys = TrustedKeys::load_dir(&layout.keys_dir).unwrap_or_default();
    let booted = layout.booted().ok();
    let slots: Vec<SlotView> = [Slot::A, Slot::B]
        .into_iter()
        .map(|slot| {
            let version = super::slot::manifest_of(layout.partition(slot), &keys)
                .map(|m| m.version.to_string());
            let bootable = state
                .as_ref()
                .is_some_and(|s| s.order.contains(&slot) && s.left_of(slot) > 0);
            let state = if booted == Some(slot) {
                "booted"
            } else if version.is_none() {
                "empty"
            } else if bootable {
                "good"
            } else {
                "bad"
            };
            SlotView {
                name: slot.lower(),
                version,
                state,
            }
        })
        .collect();
    let pending = state.as_ref().and_then(|s| {
        let first = *s.order.first()?;
        (Some(first) != booted && s.trial == Some(first) && s.left_of(first) > 0).then(|| Pending {
            slot: first.lower(),
            version: slots
                .iter()
                .find(|v| v.name == first.lower())
                .and_then(|v| v.version.clone()),
            migration: std::fs::read(layout.pending_migration_file())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok()),
        })
    });
    let last_update = std::fs::read(layout.last_update_file())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    FirmwareView {
        slots,
        pending,
        last_update,
    }
}
