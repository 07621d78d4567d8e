//! Opening the settings at daemon start, and the console's way back when they cannot be opened.
//!
//! The daemon never makes new settings in place of ones it cannot read: when init left the config partition
//! unmounted, when the settings database does not open, or when a repair lost it, the daemon runs with the
//! reason (`settings_unavailable`) and refuses setup and login. The console's repair and format go through
//! [`BoxRecovery`], which changes the config partition only, never a data volume.

use cairn_init::config_partition::{self, Device};
use cairn_store::unavailable::{settings_lost, ConfigState, RecoveryError, Unavailable};
use cairn_store::{Opening, Schema, Store, StoreError};
use std::path::{Path, PathBuf};

/// The settings as the daemon found them at start.
pub struct Opened {
    /// The settings store; an empty one in memory when the settings are unavailable.
    pub store: Store,
    /// Why the settings are unavailable, if they are.
    pub unavailable: Option<Unavailable>,
    /// What init reported about the config partition; absent on a development host.
    pub config: Option<ConfigState>,
    /// What opening took: migrations run, or the booted slot's snapshot restored.
    pub opening: Option<Opening>,
}

/// Every settings migration of this firmware, from the crates that own the records (the store knows none).
pub fn schema() -> Result<Schema, StoreError> {
    Schema::new(&[
        cairn_accounts::MIGRATIONS,
        cairn_storage::MIGRATIONS,
        cairn_system::MIGRATIONS,
    ])
}

/// The slot U-Boot booted (`cairn.slot=` on the kernel command line), whose settings snapshot is restored
/// when the settings are newer than this firmware; none on a development host.
pub fn booted_slot() -> Option<&'static str> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").ok()?;
    cairn_bootenv::Booted::from_cmdline(&cmdline).map(|b| b.slot.lower())
}

/// Opens the settings with this firmware's migrations; see [`Store::open_migrating`].
fn open_store(database: &Path, slot: Option<&str>) -> Result<(Store, Opening), StoreError> {
    Store::open_migrating(database, &schema()?, slot)
}

/// Opens the settings database in `state` (on the config partition at `config_root` on the box), or says why not.
/// Fails only when not even the in-memory stand-in opens.
pub fn open(
    state: &Path,
    config_root: &Path,
    state_file: &Path,
    slot: Option<&str>,
) -> Result<Opened, cairn_store::StoreError> {
    let config = ConfigState::load(state_file);
    let database = state.join("settings.db");
    let unavailable = match &config {
        Some(ConfigState::Unavailable { why, .. }) => Some(why.clone()),
        Some(ConfigState::Mounted { device } | ConfigState::Repaired { device })
            if settings_lost(config_root, &database) =>
        {
            Some(Unavailable::Missing {
                device: device.clone(),
            })
        }
        _ => None,
    };
    let opened = match unavailable {
        Some(why) => Err(why),
        None => std::fs::create_dir_all(state)
            .map_err(|e| Unavailable::CannotOpen {
                error: format!("cannot create {}: {e}", state.display()),
            })
            .and_then(|()| {
                open_store(&database, slot).map_err(|e| Unavailable::CannotOpen {
                    error: e.to_string(),
                })
            }),
    };
    Ok(match opened {
        Ok((store, opening)) => Opened {
            store,
            unavailable: None,
            config,
            opening: Some(opening),
        },
        Err(why) => {
            log::error!("settings unavailable: {why}; setup and login are refused until the owner repairs or formats the settings partition from the console (cairn ctl config repair)");
            Opened {
                store: Store::open_temporary()?,
                unavailable: Some(why),
                config,
                opening: None,
            }
        }
    })
}

/// Repair and format of the box's config partition, for the console.
pub struct BoxRecovery {
    pub device: Option<PathBuf>,
    pub config_root: PathBuf,
    pub state: PathBuf,
    pub state_file: PathBuf,
}

impl BoxRecovery {
    fn partition(&self) -> Result<Device, RecoveryError> {
        Ok(Device {
            device: self.device.clone().ok_or(RecoveryError::NoPartition)?,
            mount_point: self.config_root.clone(),
        })
    }

    /// The settings must open from the repaired partition, or the repair has not brought them back.
    fn settings_open(&self) -> Result<(), RecoveryError> {
        let database = self.state.join("settings.db");
        if settings_lost(&self.config_root, &database) {
            return Err(RecoveryError::SettingsLost);
        }
        std::fs::create_dir_all(&self.state)
            .map_err(|e| RecoveryError::StillCannotOpen(e.to_string()))?;
        open_store(&database, booted_slot())
            .map(drop)
            .map_err(|e| RecoveryError::StillCannotOpen(e.to_string()))
    }

    /// The system volume's image comes up with the settings, as init brings it up at boot.
    fn system_volume(&self) {
        let board =
            cairn_board::Board::load(std::path::Path::new(cairn_board::IMAGE_BOARD_FILE)).ok();
        let headroom = cairn_init::system_volume::headroom(board.as_ref());
        let (_, line) = cairn_init::system_volume::start(&self.config_root, headroom);
        log::info!("{line}");
    }

    fn record(&self, state: &ConfigState) {
        if let Err(e) = state.save(&self.state_file) {
            log::error!("cannot record the config state: {e}");
        }
    }
}

impl cairn_api::ConfigRecovery for BoxRecovery {
    fn repair(&self) -> Result<String, RecoveryError> {
        let part = self.partition()?;
        let state = config_partition::repair(&part.device.to_string_lossy(), &part)?;
        self.settings_open()?;
        self.record(&state);
        self.system_volume();
        Ok(format!(
            "The settings partition {} was checked and repaired, and the settings open again; Cairn starts on them now.",
            part.device.display()
        ))
    }

    fn format(&self) -> Result<String, RecoveryError> {
        let part = self.partition()?;
        let state = config_partition::format(&part.device.to_string_lossy(), &part)?;
        self.record(&state);
        self.system_volume();
        Ok(format!(
            "The settings partition {} was formatted; data volumes were not touched. The box starts as new: create its administrator now with `cairn ctl setup NAME`, then import the volumes on the storage page.",
            part.device.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Layout {
        _dir: tempfile::TempDir,
        root: PathBuf,
        state: PathBuf,
        state_file: PathBuf,
    }

    fn layout(init_found: Option<ConfigState>) -> Layout {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("config");
        std::fs::create_dir(&root).unwrap();
        let state_file = dir.path().join("config-state");
        if let Some(s) = init_found {
            s.save(&state_file).unwrap();
        }
        Layout {
            state: root.join("cairn"),
            root,
            state_file,
            _dir: dir,
        }
    }

    fn open_in(l: &Layout) -> Opened {
        open(&l.state, &l.root, &l.state_file, None).unwrap()
    }

    /// A settings database at `schema` (its records from the committed fixture) in the layout's state folder.
    fn settings_at(l: &Layout, schema: u32) {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../../tests/fixtures/settings-v{schema}.export"));
        let export = cairn_store::snapshot::Export::load(&fixture).unwrap();
        let store = Store::open_unmigrated(
            &l.state.join("settings.db"),
            cairn_store::Headroom::CONFIG,
            std::sync::Arc::new(cairn_store::statvfs_free),
        )
        .unwrap();
        store.import(&export).unwrap();
    }

    #[test]
    fn the_daemon_migrates_older_settings_with_every_domains_steps() {
        let l = layout(Some(mounted()));
        settings_at(&l, 1);
        let o = open_in(&l);
        assert_eq!(o.unavailable, None);
        let opening = o.opening.unwrap();
        assert_eq!(
            opening.migrated.len() as u32,
            cairn_store::SCHEMA_VERSION - 1
        );
        assert_eq!(
            o.store.schema_version().unwrap(),
            cairn_store::SCHEMA_VERSION
        );
        let accounts = cairn_accounts::Accounts::new(o.store.clone()).unwrap();
        assert_eq!(
            accounts.require_user("alice").unwrap().email,
            "Alice.Liddell@Example.org"
        );
    }

    #[test]
    fn after_a_fallback_newer_settings_give_way_to_the_booted_slots_snapshot() {
        let l = layout(Some(mounted()));
        settings_at(&l, 2);
        {
            let o = open_in(&l);
            o.store.snapshot_for_slot("a").unwrap();
            // The newer firmware's settings, as slot b left them.
            let meta = o.store.db().open_tree("meta").unwrap();
            meta.insert("schema_version", b"9").unwrap();
            o.store.commit().unwrap();
        }
        let refused = open(&l.state, &l.root, &l.state_file, Some("b")).unwrap();
        assert!(
            matches!(refused.unavailable, Some(Unavailable::CannotOpen { .. })),
            "no snapshot for b: refused as before"
        );
        drop(refused);
        let o = open(&l.state, &l.root, &l.state_file, Some("a")).unwrap();
        assert_eq!(o.unavailable, None);
        let restored = o.opening.unwrap().restored.unwrap();
        assert_eq!((restored.found, restored.snapshot.slot.as_str()), (9, "a"));
        assert_eq!(
            o.store.schema_version().unwrap(),
            cairn_store::SCHEMA_VERSION
        );
    }

    fn mounted() -> ConfigState {
        ConfigState::Mounted {
            device: "/dev/vda4".into(),
        }
    }

    #[test]
    fn settings_open_where_init_mounted_the_partition_and_on_a_workstation() {
        let l = layout(Some(mounted()));
        let o = open_in(&l);
        assert_eq!(o.unavailable, None);
        assert!(l.state.join("settings.db").exists());
        let l = layout(None);
        assert_eq!(open_in(&l).unavailable, None);
    }

    #[test]
    fn what_init_could_not_mount_is_reported_and_nothing_is_created_in_its_place() {
        let why = Unavailable::Unrecognised {
            device: "/dev/vda4".into(),
        };
        let l = layout(Some(ConfigState::Unavailable {
            device: Some("/dev/vda4".into()),
            why: why.clone(),
        }));
        let o = open_in(&l);
        assert_eq!(o.unavailable, Some(why));
        assert!(!l.state.exists(), "no settings folder was made");
    }

    #[test]
    fn a_database_that_does_not_open_is_reported_not_replaced() {
        let l = layout(Some(mounted()));
        std::fs::create_dir_all(&l.state).unwrap();
        // Not sled's folder: something torn or foreign where the database belongs.
        std::fs::write(l.state.join("settings.db"), b"\x00garbage").unwrap();
        let o = open_in(&l);
        assert!(
            matches!(o.unavailable, Some(Unavailable::CannotOpen { .. })),
            "{:?}",
            o.unavailable
        );
        assert_eq!(
            std::fs::read(l.state.join("settings.db")).unwrap(),
            b"\x00garbage",
            "left as it was"
        );
    }

    #[test]
    fn a_repair_that_lost_the_database_does_not_make_a_new_box() {
        let l = layout(Some(ConfigState::Repaired {
            device: "/dev/vda4".into(),
        }));
        std::fs::create_dir_all(l.root.join("lost+found")).unwrap();
        std::fs::write(l.root.join("lost+found/#131"), b"recovered").unwrap();
        let o = open_in(&l);
        assert!(
            matches!(o.unavailable, Some(Unavailable::Missing { .. })),
            "{:?}",
            o.unavailable
        );
        assert!(!l.state.join("settings.db").exists());
        // A first boot (formatted by init this time) starts new settings whatever lost+found holds.
        let l = layout(Some(ConfigState::Formatted {
            device: "/dev/vda4".into(),
        }));
        std::fs::create_dir_all(l.root.join("lost+found")).unwrap();
        std::fs::write(l.root.join("lost+found/x"), b"").unwrap();
        assert_eq!(open_in(&l).unavailable, None);
    }
}
