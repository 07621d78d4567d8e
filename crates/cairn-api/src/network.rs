//! Network settings: DHCP or static IPv4, applied live and kept only once the owner confirms.
//!
//! A change is stored as pending next to the last confirmed settings, applied at once, and rolled back by
//! itself unless confirmed within the window (the page confirms automatically when it still reaches the box).
//! After a power cut with a change pending, the confirmed settings come back. The DHCP client keeps running
//! under init; in static mode its hook script leaves the interface alone (see udhcpc's default.script).

use crate::error::ApiError;
use crate::App;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::time::Duration;

const TABLE: &str = "network";
const CONFIRMED: &str = "confirmed";
const PENDING: &str = "pending";
/// Written for udhcpc's hook script: `static` makes it leave the interface alone.
const MODE_FILE: &str = "/run/cairn/network-mode";

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

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    settings: NetworkSettings,
    confirm_by_s: u64,
    id: u64,
}

fn invalid(message: String, hint: &'static str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "network.invalid", message, hint)
}

impl NetworkSettings {
    /// Every rule a static configuration must meet.
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.dns.len() > 3 {
            return Err(invalid(
                "At most three DNS servers can be set.".into(),
                "Remove some DNS servers.",
            ));
        }
        match self.mode {
            Mode::Dhcp => {
                if self.address.is_some() || self.prefix.is_some() || self.gateway.is_some() {
                    return Err(invalid(
                        "DHCP mode takes no address, prefix or gateway.".into(),
                        "Leave them out, or choose static mode.",
                    ));
                }
                Ok(())
            }
            Mode::Static => {
                let (Some(addr), Some(prefix)) = (self.address, self.prefix) else {
                    return Err(invalid(
                        "Static mode needs an address and a prefix length.".into(),
                        "Give both, for example 192.168.1.20 and 24.",
                    ));
                };
                if !(8..=30).contains(&prefix) {
                    return Err(invalid(
                        format!("Prefix length {prefix} is not usable for a LAN."),
                        "Use a prefix from 8 to 30; most home networks use 24.",
                    ));
                }
                if addr.is_unspecified()
                    || addr.is_loopback()
                    || addr.is_multicast()
                    || addr.is_broadcast()
                    || addr.is_link_local()
                {
                    return Err(invalid(
                        format!("{addr} cannot be the box's address."),
                        "Use an address from your network's range, such as 192.168.1.20.",
                    ));
                }
                let mask = u32::MAX << (32 - prefix);
                let host = u32::from(addr) & !mask;
                if host == 0 || host == !mask {
                    return Err(invalid(
                        format!("{addr}/{prefix} is the network or broadcast address."),
                        "Pick an address inside the range, not its first or last.",
                    ));
                }
                if let Some(gw) = self.gateway {
                    if u32::from(gw) & mask != u32::from(addr) & mask || gw == addr {
                        return Err(invalid(
                            format!("The gateway {gw} is not on the network {addr}/{prefix}."),
                            "The gateway (your router) must be in the same range as the box.",
                        ));
                    }
                }
                Ok(())
            }
        }
    }
}

fn table(app: &App) -> Result<cairn_store::Table, ApiError> {
    app.store.table(TABLE).map_err(ApiError::internal)
}

/// The confirmed settings (DHCP on a new box).
pub fn confirmed(app: &App) -> NetworkSettings {
    table(app)
        .ok()
        .and_then(|t| t.get(CONFIRMED).ok().flatten())
        .unwrap_or_default()
}

fn pending(app: &App) -> Option<Pending> {
    table(app).ok().and_then(|t| t.get(PENDING).ok().flatten())
}

/// GET: confirmed settings, and the pending change if any.
pub fn describe(app: &App) -> Result<serde_json::Value, ApiError> {
    let mut v = serde_json::to_value(confirmed(app)).map_err(ApiError::internal)?;
    if let Some(p) = pending(app) {
        v["pending"] = serde_json::to_value(&p.settings).map_err(ApiError::internal)?;
        v["confirm_by"] = p.confirm_by_s.into();
    }
    Ok(v)
}

/// PUT: stores the change as pending, applies it, and arms the rollback.
pub fn change(
    app: &std::sync::Arc<App>,
    settings: NetworkSettings,
) -> Result<serde_json::Value, ApiError> {
    settings.validate()?;
    let t = table(app)?;
    let id = app.store.db().generate_id().map_err(ApiError::internal)?;
    let confirm_by_s = cairn_accounts::now_s() + app.network_window.as_secs();
    t.put(
        PENDING,
        &Pending {
            settings: settings.clone(),
            confirm_by_s,
            id,
        },
    )
    .map_err(ApiError::internal)?;
    app.store.commit().map_err(ApiError::internal)?;
    apply(app, &settings);
    let app2 = app.clone();
    let window = app.network_window;
    tokio::spawn(async move {
        tokio::time::sleep(window).await;
        if pending(&app2).is_some_and(|p| p.id == id) {
            log::warn!(
                "network change {id} was not confirmed in time: restoring the previous settings"
            );
            let previous = confirmed(&app2);
            if let Ok(t) = table(&app2) {
                let _ = t.remove(PENDING);
                let _ = app2.store.commit();
            }
            apply(&app2, &previous);
        }
    });
    Ok(serde_json::json!({"confirm_by": confirm_by_s, "settings": settings}))
}

/// POST confirm: the pending change becomes the settings.
pub fn confirm(app: &App) -> Result<serde_json::Value, ApiError> {
    let Some(p) = pending(app) else {
        return Err(ApiError::new(StatusCode::CONFLICT, "network.nothing_to_confirm", "There is no network change waiting for confirmation.", "It may have been rolled back already; look at the network settings and change them again."));
    };
    let t = table(app)?;
    t.put(CONFIRMED, &p.settings).map_err(ApiError::internal)?;
    t.remove(PENDING).map_err(ApiError::internal)?;
    app.store.commit().map_err(ApiError::internal)?;
    serde_json::to_value(&p.settings).map_err(ApiError::internal)
}

/// At start-up: a change left pending by a power cut is dropped; the confirmed settings are applied.
pub fn restore_at_boot(app: &App) {
    if pending(app).is_some() {
        log::warn!(
            "an unconfirmed network change was pending at start-up: using the confirmed settings"
        );
        if let Ok(t) = table(app) {
            let _ = t.remove(PENDING);
            let _ = app.store.commit();
        }
    }
    let settings = confirmed(app);
    if settings.mode == Mode::Static {
        apply(app, &settings);
    }
}

fn run(args: &[&str]) {
    if let Err(e) = cairn_exec::run(args[0], &args[1..], Duration::from_secs(10)) {
        log::error!("network: {e}");
    }
}

/// Applies settings to the interface (on the box only).
fn apply(app: &App, s: &NetworkSettings) {
    if app.power != crate::PowerControl::Init {
        return;
    }
    let iface = app.identity.interface.as_str();
    let mode = if s.mode == Mode::Static {
        "static\n"
    } else {
        "dhcp\n"
    };
    let _ = std::fs::write(MODE_FILE, mode);
    match s.mode {
        Mode::Static => {
            let (Some(addr), Some(prefix)) = (s.address, s.prefix) else {
                return;
            };
            let cidr = format!("{addr}/{prefix}");
            run(&["/bin/ip", "-4", "addr", "flush", "dev", iface]);
            run(&["/bin/ip", "addr", "add", &cidr, "dev", iface]);
            if let Some(gw) = s.gateway {
                run(&[
                    "/bin/ip",
                    "route",
                    "replace",
                    "default",
                    "via",
                    &gw.to_string(),
                    "dev",
                    iface,
                ]);
            }
            let resolv: String = s.dns.iter().map(|d| format!("nameserver {d}\n")).collect();
            let _ = std::fs::write("/run/resolv.conf", resolv);
            let _ = std::fs::write("/run/cairn/lan-address", format!("{cidr}\n"));
        }
        Mode::Dhcp => {
            // Ask the DHCP client for a fresh lease; its hook applies it now that the mode file says dhcp.
            run(&["/bin/killall", "-USR1", "udhcpc"]);
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
        for bad in [
            s("192.168.1.20", 24, Some("192.168.2.1")),
            s("192.168.1.0", 24, None),
            s("192.168.1.255", 24, None),
            s("127.0.0.1", 8, None),
            s("192.168.1.20", 31, None),
            s("192.168.1.20", 24, Some("192.168.1.20")),
        ] {
            assert_eq!(
                bad.validate().unwrap_err().code,
                "network.invalid",
                "{bad:?}"
            );
        }
        let mut no_addr = s("192.168.1.20", 24, None);
        no_addr.address = None;
        assert!(no_addr.validate().is_err());
        let dhcp_with_addr = NetworkSettings {
            mode: Mode::Dhcp,
            ..s("192.168.1.20", 24, None)
        };
        assert!(dhcp_with_addr.validate().is_err());
    }
}
