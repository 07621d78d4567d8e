//! The application state every request reaches: identity, the domain crates, and the change hook.

use crate::{throttle, usage};
use cairn_accounts::Accounts;
use cairn_store::Store;
use cairn_system::System;
use std::time::Instant;

/// Fixed facts about this box, for health and the pages.
#[derive(Debug, Clone)]
pub struct Identity {
    pub version: String,
    pub board: String,
}

/// The console's way back when the settings are unavailable: repair or format the config partition. The
/// daemon supplies the real one (e2fsck, mke2fs and mount through `cairn-exec`); tests supply a fake.
pub trait ConfigRecovery: Send + Sync {
    /// Checks and repairs the partition, mounts it and checks that the settings open again. Never formats.
    fn repair(&self) -> Result<String, cairn_store::unavailable::RecoveryError>;
    /// Makes a new, empty settings filesystem on the config partition only, and mounts it.
    fn format(&self) -> Result<String, cairn_store::unavailable::RecoveryError>;
}

/// Called after every acknowledged change that servers' files depend on (SMB), off the async threads.
pub type ChangeHook = Box<dyn Fn(&App) + Send + Sync>;

/// Everything a request handler needs.
pub struct App {
    pub identity: Identity,
    pub accounts: Accounts,
    /// The whole settings store, for backups and restores (each domain keeps its own handle on it too).
    pub(crate) store: Store,
    /// Host name, network, power.
    pub system: System,
    pub started: Instant,
    /// The board description, for disk bays; absent on a development host without one.
    pub board: Option<cairn_board::Board>,
    /// Root of sysfs (`/sys`), where disks are discovered.
    pub sys_root: std::path::PathBuf,
    /// The disk and volume manager; absent on a development host.
    pub storage: Option<cairn_storage::Storage>,
    /// The TLS certificate served on port 443; absent on a development host started without TLS.
    pub certificates: Option<std::sync::Arc<cairn_tls::Certificates>>,
    /// The gate of every password check: counts, one check in flight per source and account, bounded hashing.
    pub(crate) throttle: std::sync::Arc<throttle::Throttle>,
    /// Space each share takes, measured in the background (see [`usage`]).
    pub(crate) share_usages: std::sync::Arc<usage::ShareUsages>,
    on_change: Option<ChangeHook>,
    /// Why the settings could not be opened. While set, the API answers health and the console's repair
    /// only: setup and login are refused with the reason, and nothing is written anywhere.
    pub settings_unavailable: Option<cairn_store::unavailable::Unavailable>,
    /// What opening the settings took at start (migrations run, a slot snapshot restored), for health.
    pub settings_opening: Option<cairn_store::Opening>,
    /// Repair and format for the console; absent on a development host.
    pub config_recovery: Option<Box<dyn ConfigRecovery>>,
    /// Woken after a successful repair or format: the daemon starts again on the recovered settings.
    pub restart: tokio::sync::Notify,
    /// The root slots and boot state for firmware installs; absent on a development host.
    pub firmware: Option<std::sync::Arc<crate::firmware::Firmware>>,
    /// Install jobs, one install at a time.
    pub(crate) firmware_jobs: crate::firmware::FirmwareJobs,
    /// Resets of the settings (the dashboard's, and undo or dismissal of the pin's); absent while the
    /// settings are unavailable.
    pub resets: Option<std::sync::Arc<cairn_reset::Resets>>,
    /// This firmware's settings migrations, for putting back settings kept by an older firmware.
    pub settings_schema: Option<std::sync::Arc<cairn_store::Schema>>,
    /// Pairing codes and paired devices for remote access; absent while the settings are unavailable.
    pub pairings: Option<cairn_cloud::Pairings>,
    /// The file init keeps while the reset pin is held ([`cairn_reset::held`]).
    pub reset_pin_file: std::path::PathBuf,
}

impl App {
    /// The API over `store` (accounts and sessions live there; the system and storage domains bring their own
    /// handles on the same store).
    pub fn new(
        identity: Identity,
        store: Store,
        system: System,
    ) -> Result<App, cairn_accounts::AccountError> {
        Ok(App {
            identity,
            accounts: Accounts::new(store.clone())?,
            store,
            system,
            started: Instant::now(),
            board: None,
            sys_root: std::path::PathBuf::from("/sys"),
            storage: None,
            certificates: None,
            throttle: std::sync::Arc::new(throttle::Throttle::new(
                throttle::ThrottlePolicy::LOGIN,
                throttle::HashQueue::LOGIN,
            )),
            share_usages: Default::default(),
            on_change: None,
            settings_unavailable: None,
            settings_opening: None,
            config_recovery: None,
            restart: tokio::sync::Notify::new(),
            firmware: None,
            firmware_jobs: Default::default(),
            resets: None,
            pairings: None,
            settings_schema: None,
            reset_pin_file: std::path::PathBuf::from(cairn_reset::held::FILE),
        })
    }

    /// Registers what runs after each change (the SMB renderer on the box).
    pub fn with_change_hook(mut self, hook: ChangeHook) -> App {
        self.on_change = Some(hook);
        self
    }

    /// Runs the change hook. Blocking: the API calls it off the async threads, the daemon periodically to
    /// repair drift.
    pub fn notify_change(&self) {
        if let Some(hook) = &self.on_change {
            hook(self);
        }
    }
}
