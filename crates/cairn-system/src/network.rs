//! Network settings: DHCP or static IPv4, applied at once and kept only once the owner confirms.
//!
//! A change is stored as pending beside the last confirmed settings (with the boot it was made in), applied,
//! and rolled back by itself unless confirmed within the window (the page confirms by itself when it still
//! reaches the box). At daemon start a pending change is judged by its boot: made in an earlier boot (the box
//! lost power during the trial), it is dropped and the confirmed settings come back; made in this boot (only
//! the daemon restarted, the interface still carries the trial), the trial goes on for the time it has left,
//! or rolls back now if that is over. The DHCP client keeps running under init; in static mode its hook
//! script leaves the interface alone (see udhcpc's default.script).

use crate::{NetworkRule, System, SystemError};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::time::Duration;

/// The settings table of the network records (named so since the first release: settings survive updates).
pub(crate) const TABLE: &str = "network";
const CONFIRMED: &str = "confirmed";
const PENDING: &str = "pending";

/// How long an unconfirmed change lives before the previous settings come back.
pub const CONFIRM_WINDOW: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Dhcp,
    Static,
}

/// The settings as the API takes and gives them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NetworkSettings {
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
}

impl Default for NetworkSettings {
    /// A new box, and a box reset to factory settings, asks the LAN's DHCP server.
    fn default() -> Self {
        NetworkSettings {
            mode: Mode::Dhcp,
            address: None,
            prefix: None,
            gateway: None,
            dns: vec![],
        }
    }
}

impl NetworkSettings {
    /// Every rule a configuration must meet before it is stored or applied.
    pub fn validate(&self) -> Result<(), NetworkRule> {
        if self.dns.len() > 3 {
            return Err(NetworkRule::TooManyDns);
        }
        match self.mode {
            Mode::Dhcp => {
                if self.address.is_some() || self.prefix.is_some() || self.gateway.is_some() {
                    return Err(NetworkRule::DhcpTakesNoAddress);
                }
                Ok(())
            }
            Mode::Static => {
                let (Some(address), Some(prefix)) = (self.address, self.prefix) else {
                    return Err(NetworkRule::StaticNeedsAddress);
                };
                if !(8..=30).contains(&prefix) {
                    return Err(NetworkRule::PrefixUnusable(prefix));
                }
                if address.is_unspecified()
                    || address.is_loopback()
                    || address.is_multicast()
                    || address.is_broadcast()
                    || address.is_link_local()
                {
                    return Err(NetworkRule::AddressUnusable(address));
                }
                let mask = u32::MAX << (32 - prefix);
                let host = u32::from(address) & !mask;
                if host == 0 || host == !mask {
                    return Err(NetworkRule::NetworkOrBroadcast { address, prefix });
                }
                if let Some(gateway) = self.gateway {
                    if u32::from(gateway) & mask != u32::from(address) & mask || gateway == address
                    {
                        return Err(NetworkRule::GatewayOffNetwork {
                            gateway,
                            address,
                            prefix,
                        });
                    }
                }
                Ok(())
            }
        }
    }
}

/// A change on trial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trial {
    pub settings: NetworkSettings,
    /// When it rolls back unless confirmed (seconds since the epoch).
    pub confirm_by_s: u64,
}

/// The confirmed settings and the change on trial, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkView {
    pub confirmed: NetworkSettings,
    pub pending: Option<Trial>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    settings: NetworkSettings,
    confirm_by_s: u64,
    id: u64,
    /// The boot the change was made in; records from before this field existed count as an earlier boot.
    #[serde(default)]
    boot_id: String,
}

impl System {
    /// The confirmed settings (DHCP on a new box). A damaged record reads as DHCP, which reaches the owner.
    pub fn confirmed_network(&self) -> NetworkSettings {
        match self.inner.network.get(CONFIRMED) {
            Ok(s) => s.unwrap_or_default(),
            Err(e) => {
                log::error!("confirmed network settings unreadable, using DHCP: {e}");
                NetworkSettings::default()
            }
        }
    }

    fn pending_network(&self) -> Option<Pending> {
        match self.inner.network.get(PENDING) {
            Ok(p) => p,
            Err(e) => {
                log::error!("pending network change unreadable, ignoring it: {e}");
                None
            }
        }
    }

    /// The settings as they stand, with the change on trial.
    pub fn network(&self) -> NetworkView {
        NetworkView {
            confirmed: self.confirmed_network(),
            pending: self.pending_network().map(|p| Trial {
                settings: p.settings,
                confirm_by_s: p.confirm_by_s,
            }),
        }
    }

    fn lock_network(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner
            .network_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Stores the change as pending (durably, before anything is applied), applies it and arms the rollback.
    pub fn change_network(&self, settings: NetworkSettings) -> Result<Trial, SystemError> {
        settings.validate().map_err(SystemError::NetworkInvalid)?;
        let _lock = self.lock_network();
        let window = self.trial_window();
        let id = self
            .inner
            .store
            .db()
            .generate_id()
            .map_err(cairn_store::StoreError::from)?;
        let pending = Pending {
            settings: settings.clone(),
            confirm_by_s: crate::clock::now_s() + window.as_secs(),
            id,
            boot_id: self.inner.host.boot_id(),
        };
        self.inner.network.put(PENDING, &pending)?;
        self.inner.store.commit()?;
        self.inner
            .host
            .apply_network(&self.inner.facts.interface, &settings);
        self.arm_rollback(id, window);
        Ok(Trial {
            settings,
            confirm_by_s: pending.confirm_by_s,
        })
    }

    /// The change on trial becomes the settings.
    pub fn confirm_network(&self) -> Result<NetworkSettings, SystemError> {
        let _lock = self.lock_network();
        let Some(p) = self.pending_network() else {
            return Err(SystemError::NothingToConfirm);
        };
        self.inner.network.put(CONFIRMED, &p.settings)?;
        self.inner.network.remove(PENDING)?;
        self.inner.store.commit()?;
        Ok(p.settings)
    }

    fn drop_pending(&self) -> Result<(), cairn_store::StoreError> {
        self.inner.network.remove(PENDING)?;
        self.inner.store.commit()
    }

    /// Ends trial `id` if it is still the one pending: the confirmed settings come back.
    fn roll_back(&self, id: u64) {
        let _lock = self.lock_network();
        if self.pending_network().is_none_or(|p| p.id != id) {
            return;
        }
        log::warn!(
            "network change {id} was not confirmed in time: restoring the previous settings"
        );
        let previous = self.confirmed_network();
        if let Err(e) = self.drop_pending() {
            // The interface goes back all the same; the next start drops the stale trial.
            log::error!("network rollback not recorded: {e}");
        }
        self.inner
            .host
            .apply_network(&self.inner.facts.interface, &previous);
    }

    /// Rolls trial `id` back after `after`, unless this system is gone by then (the daemon ended: its next
    /// start judges the trial again).
    fn arm_rollback(&self, id: u64, after: Duration) {
        let system = std::sync::Arc::downgrade(&self.inner);
        let armed = std::thread::Builder::new()
            .name("network-trial".into())
            .spawn(move || {
                std::thread::sleep(after);
                if let Some(inner) = system.upgrade() {
                    System { inner }.roll_back(id);
                }
            });
        if let Err(e) = armed {
            // Without a timer the trial cannot end by itself: end it now rather than keep unconfirmed settings.
            log::error!("cannot arm the network rollback ({e}): rolling back at once");
            self.roll_back(id);
        }
    }

    /// At daemon start (see the module comment for what happens to a change on trial).
    pub(crate) fn restore_network(&self) {
        let confirmed = self.confirmed_network();
        match self.pending_network() {
            Some(p) if p.boot_id == self.inner.host.boot_id() && !p.boot_id.is_empty() => {
                let left = p.confirm_by_s.saturating_sub(crate::clock::now_s());
                if left == 0 {
                    self.roll_back(p.id);
                } else {
                    log::info!("a network change is on trial: {left} s left to confirm it");
                    self.arm_rollback(p.id, Duration::from_secs(left));
                }
            }
            Some(_) => {
                log::warn!(
                    "an unconfirmed network change was pending at start-up: using the confirmed settings"
                );
                if let Err(e) = self.drop_pending() {
                    log::error!("stale network change not removed: {e}");
                }
                if confirmed.mode == Mode::Static {
                    self.inner
                        .host
                        .apply_network(&self.inner.facts.interface, &confirmed);
                }
            }
            None if confirmed.mode == Mode::Static => self
                .inner
                .host
                .apply_network(&self.inner.facts.interface, &confirmed),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(addr: &str, prefix: u8, gw: Option<&str>) -> NetworkSettings {
        NetworkSettings {
            mode: Mode::Static,
            address: addr.parse().ok(),
            prefix: Some(prefix),
            gateway: gw.map(|g| g.parse().unwrap()),
            dns: vec![],
        }
    }

    #[test]
    fn static_settings_are_checked_as_a_whole() {
        assert!(s("192.168.1.20", 24, Some("192.168.1.1"))
            .validate()
            .is_ok());
        assert!(s("10.0.2.15", 24, Some("10.0.2.2")).validate().is_ok());
        let cases = [
            (s("192.168.1.20", 24, Some("192.168.2.1")), "gateway"),
            (s("192.168.1.0", 24, None), "network or broadcast"),
            (s("192.168.1.255", 24, None), "network or broadcast"),
            (s("127.0.0.1", 8, None), "cannot be the box's address"),
            (s("192.168.1.20", 31, None), "prefix length 31"),
            (s("192.168.1.20", 24, Some("192.168.1.20")), "gateway"),
        ];
        for (bad, why) in cases {
            let rule = bad.validate().unwrap_err();
            assert!(rule.to_string().contains(why), "{bad:?}: {rule}");
        }
        let mut no_addr = s("192.168.1.20", 24, None);
        no_addr.address = None;
        assert_eq!(no_addr.validate(), Err(NetworkRule::StaticNeedsAddress));
        let dhcp_with_addr = NetworkSettings {
            mode: Mode::Dhcp,
            ..s("192.168.1.20", 24, None)
        };
        assert_eq!(
            dhcp_with_addr.validate(),
            Err(NetworkRule::DhcpTakesNoAddress)
        );
        let mut many_dns = s("192.168.1.20", 24, None);
        many_dns.dns = vec!["192.168.1.1".parse().unwrap(); 4];
        assert_eq!(many_dns.validate(), Err(NetworkRule::TooManyDns));
    }
}
