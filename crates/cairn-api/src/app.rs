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

/// Called after every acknowledged change that servers' files depend on (SMB), off the async threads.
pub type ChangeHook = Box<dyn Fn(&App) + Send + Sync>;

/// Everything a request handler needs.
pub struct App {
    pub identity: Identity,
    pub accounts: Accounts,
    /// Host name, network, power.
    pub system: System,
    pub started: Instant,
    /// The board description, for disk bays; absent on a development host without one.
    pub board: Option<cairn_board::Board>,
    /// Root of sysfs (`/sys`), where disks are discovered.
    pub sys_root: std::path::PathBuf,
    /// The disk and volume manager; absent on a development host.
    pub storage: Option<cairn_storage::Storage>,
    pub(crate) throttle: throttle::Throttle,
    /// Space each share takes, measured in the background (see [`usage`]).
    pub(crate) share_usages: std::sync::Arc<usage::ShareUsages>,
    on_change: Option<ChangeHook>,
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
            accounts: Accounts::new(store)?,
            system,
            started: Instant::now(),
            board: None,
            sys_root: std::path::PathBuf::from("/sys"),
            storage: None,
            throttle: throttle::Throttle::new(throttle::ThrottlePolicy::LOGIN),
            share_usages: Default::default(),
            on_change: None,
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
