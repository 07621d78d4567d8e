//! The seam between the system rules and the running machine: one trait, one implementation per place the
//! daemon runs (the box, a workstation) and a recording fake for tests.

use crate::network::{Mode, NetworkSettings};
use std::sync::Mutex;
use std::time::Duration;

/// How the box should go down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    Reboot,
    PowerOff,
}

/// Everything the system rules change on the machine. Calls never fail the request that caused them: the
/// settings are already stored, so a failure is logged and the next start applies them again.
pub trait Host: Send + Sync {
    /// Sets the kernel's host name.
    fn set_hostname(&self, name: &str);
    /// Applies network settings to the LAN interface.
    fn apply_network(&self, interface: &str, settings: &NetworkSettings);
    /// Whether [`Host::power`] does anything here.
    fn controls_power(&self) -> bool;
    /// Asks for a clean restart or power-off; returns at once, the machine goes down shortly after.
    fn power(&self, action: PowerAction);
    /// Changes on every boot and stays the same across daemon restarts: tells a power cut from a restart.
    fn boot_id(&self) -> String;
    /// The addresses `interface` has now (for the names in the box's own TLS certificate); none where the
    /// machine is not the box's.
    fn addresses(&self, _interface: &str) -> Vec<std::net::IpAddr> {
        Vec::new()
    }
}

fn kernel_boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The box: `nix` for the host name and for signalling init, `ip` and the DHCP client through `cairn-exec`.
pub struct Machine;

/// Written for udhcpc's hook script: `static` makes it leave the interface alone.
const MODE_FILE: &str = "/run/cairn/network-mode";
/// How long the answer to a power request has to reach the client before init stops the daemon.
const POWER_DELAY: Duration = Duration::from_millis(300);

fn ip(args: &[&str]) {
    if let Err(e) = cairn_exec::run("/bin/ip", args, Duration::from_secs(10)) {
        log::error!("network: {e}");
    }
}

impl Host for Machine {
    fn addresses(&self, interface: &str) -> Vec<std::net::IpAddr> {
        let Ok(all) = nix::ifaddrs::getifaddrs() else {
            return Vec::new();
        };
        all.filter(|a| a.interface_name == interface)
            .filter_map(|a| {
                let addr = a.address?;
                addr.as_sockaddr_in()
                    .map(|v4| std::net::IpAddr::V4(v4.ip()))
                    .or_else(|| {
                        addr.as_sockaddr_in6()
                            .map(|v6| std::net::IpAddr::V6(v6.ip()))
                    })
            })
            .collect()
    }

    fn set_hostname(&self, name: &str) {
        if let Err(e) = nix::unistd::sethostname(name) {
            log::warn!("cannot set host name {name:?}: {e}");
        }
    }

    fn apply_network(&self, iface: &str, s: &NetworkSettings) {
        let mode = match s.mode {
            Mode::Static => "static\n",
            Mode::Dhcp => "dhcp\n",
        };
        if let Err(e) = std::fs::write(MODE_FILE, mode) {
            log::error!("network: cannot write {MODE_FILE}: {e}");
        }
        match s.mode {
            Mode::Static => {
                let (Some(addr), Some(prefix)) = (s.address, s.prefix) else {
                    return;
                };
                let cidr = format!("{addr}/{prefix}");
                ip(&["-4", "addr", "flush", "dev", iface]);
                ip(&["addr", "add", &cidr, "dev", iface]);
                if let Some(gw) = s.gateway {
                    ip(&[
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
                // The static address goes first: the lease's hook only adds its own, so a rollback from a
                // static trial would otherwise leave the box on both addresses.
                ip(&["-4", "addr", "flush", "dev", iface]);
                // A fresh lease; the client's hook applies it now that the mode file says dhcp.
                if let Err(e) = cairn_exec::run(
                    "/bin/killall",
                    &["-USR1", "udhcpc"],
                    Duration::from_secs(10),
                ) {
                    log::error!("network: {e}");
                }
            }
        }
    }

    fn controls_power(&self) -> bool {
        true
    }

    fn power(&self, action: PowerAction) {
        use nix::sys::signal::{kill, Signal};
        // The signals busybox's `reboot` and `poweroff` send to init.
        let signal = match action {
            PowerAction::Reboot => Signal::SIGTERM,
            PowerAction::PowerOff => Signal::SIGUSR2,
        };
        std::thread::spawn(move || {
            std::thread::sleep(POWER_DELAY);
            if let Err(e) = kill(nix::unistd::Pid::from_raw(1), signal) {
                log::error!("could not signal init: {e}");
            }
        });
    }

    fn boot_id(&self) -> String {
        kernel_boot_id()
    }
}

/// A development server on a workstation: settings are stored and shown, the workstation is left alone.
pub struct Workstation;

impl Host for Workstation {
    fn set_hostname(&self, _: &str) {}
    fn apply_network(&self, _: &str, _: &NetworkSettings) {}
    fn controls_power(&self) -> bool {
        false
    }
    fn power(&self, _: PowerAction) {}
    fn boot_id(&self) -> String {
        kernel_boot_id()
    }
}

/// What a [`Recorder`] was asked to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCall {
    Hostname(String),
    Network(NetworkSettings),
    Power(PowerAction),
}

/// A fake machine for tests: records every call; its boot id changes on [`Recorder::reboot`].
pub struct Recorder {
    calls: Mutex<Vec<HostCall>>,
    boot: Mutex<u32>,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder {
            calls: Mutex::new(vec![]),
            boot: Mutex::new(1),
        }
    }
}

impl Recorder {
    /// Every call so far.
    pub fn calls(&self) -> Vec<HostCall> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The network settings the interface carries now (the last applied), if any were applied.
    pub fn interface(&self) -> Option<NetworkSettings> {
        self.calls().into_iter().rev().find_map(|c| match c {
            HostCall::Network(s) => Some(s),
            _ => None,
        })
    }

    /// A power cut and a new boot: the calls are forgotten, the boot id changes.
    pub fn reboot(&self) {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clear();
        *self.boot.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    }

    fn record(&self, call: HostCall) {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(call);
    }
}

impl Host for Recorder {
    fn set_hostname(&self, name: &str) {
        self.record(HostCall::Hostname(name.to_string()));
    }
    fn apply_network(&self, _: &str, settings: &NetworkSettings) {
        self.record(HostCall::Network(settings.clone()));
    }
    fn controls_power(&self) -> bool {
        true
    }
    fn power(&self, action: PowerAction) {
        self.record(HostCall::Power(action));
    }
    fn boot_id(&self) -> String {
        format!(
            "boot-{}",
            self.boot.lock().unwrap_or_else(|p| p.into_inner())
        )
    }
}
