//! The box as a machine: its host name, its network settings, its power and its clock.
//!
//! Owns the rules for each (what a valid host name is, which static settings can work, a network change that
//! is applied on trial and rolled back unless confirmed, also across a daemon restart) and the records behind
//! them in the settings store. Everything that changes the running machine goes through one seam, [`Host`]:
//! the box's implementation ([`host::Machine`]: `nix` for the host name and signals to init, `ip` and the DHCP
//! client through `cairn-exec`), one for a development server that changes nothing ([`host::Workstation`]), and
//! a recording fake for tests ([`host::Recorder`]). Knows no HTTP: the API maps [`SystemError`] to codes.
//! What the reset pin clears of these records is [`factory`].
//!
//! Tested on the host with the recording fake (trial, rollback, restart during a trial, power cut during a
//! trial); the QEMU scenarios cover the real machine.
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

pub mod clock;
mod error;
pub mod factory;
pub mod host;
mod hostname;
pub mod network;

pub use error::{NetworkRule, SystemError};

/// This crate's settings schema steps for its host name and network records (none yet: they have not changed since schema 1).
/// A change to their shape adds its forward and backward step here; the binary hands them to the store.
pub static MIGRATIONS: &[cairn_store::Migration] = &[];
pub use host::{Host, PowerAction};
pub use hostname::validate_hostname;
pub use network::{Mode, NetworkSettings, NetworkView, Trial};

use cairn_store::{Store, Table};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Board facts the system rules need (from `board.toml`, or the board crate's defaults on a workstation).
#[derive(Debug, Clone)]
pub struct Facts {
    /// The LAN interface network settings apply to.
    pub interface: String,
    /// The host name until the owner picks one.
    pub default_hostname: String,
}

impl Default for Facts {
    /// The board crate's defaults: a workstation without a board file.
    fn default() -> Facts {
        Facts::from(&cairn_board::Network::default())
    }
}

impl From<&cairn_board::Network> for Facts {
    fn from(n: &cairn_board::Network) -> Facts {
        Facts {
            interface: n.interface.clone(),
            default_hostname: n.hostname.clone(),
        }
    }
}

/// The system domain: cheap to clone, shared by the API, the console and (later) the reset and update flows.
#[derive(Clone)]
pub struct System {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// Host name (table `system`).
    table: Table,
    /// Confirmed and pending network settings (table `network`).
    network: Table,
    host: Arc<dyn Host>,
    facts: Facts,
    /// How long a network change waits for confirmation before rolling back, in milliseconds.
    trial_window_ms: AtomicU64,
    /// Serialises network changes, confirmations and rollbacks, so a rollback never undoes a newer change.
    network_lock: Mutex<()>,
}

/// The settings table of the host name.
const TABLE: &str = "system";

impl System {
    /// Opens the system records in `store`; nothing is applied until [`System::restore_at_start`].
    pub fn new(store: Store, host: Arc<dyn Host>, facts: Facts) -> Result<System, SystemError> {
        Ok(System {
            inner: Arc::new(Inner {
                table: store.table(TABLE)?,
                network: store.table(network::TABLE)?,
                store,
                host,
                facts,
                trial_window_ms: AtomicU64::new(network::CONFIRM_WINDOW.as_millis() as u64),
                network_lock: Mutex::new(()),
            }),
        })
    }

    /// Shortens the trial window (tests); the box keeps [`network::CONFIRM_WINDOW`].
    pub fn set_trial_window(&self, window: Duration) {
        self.inner
            .trial_window_ms
            .store(window.as_millis() as u64, Ordering::Relaxed);
    }

    fn trial_window(&self) -> Duration {
        Duration::from_millis(self.inner.trial_window_ms.load(Ordering::Relaxed))
    }

    /// The board facts this system was opened with.
    pub fn facts(&self) -> &Facts {
        &self.inner.facts
    }

    /// At daemon start: the stored host name is applied and the network settings restored (see
    /// [`network`] for what happens to a change that was on trial).
    pub fn restore_at_start(&self) {
        self.inner.host.set_hostname(&self.hostname());
        self.restore_network();
    }

    /// Restarts or powers off the box cleanly (init stops services and unmounts first). The settings are
    /// committed first; the request returns before the machine goes down.
    pub fn power(&self, action: PowerAction) -> Result<(), SystemError> {
        if !self.inner.host.controls_power() {
            return Err(SystemError::PowerUnavailable);
        }
        self.inner.store.commit()?;
        self.inner.host.power(action);
        Ok(())
    }
}
