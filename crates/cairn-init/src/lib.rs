//! `cairn init`: PID 1 of the image.
//!
//! Owns bringing the system up and down: virtual filesystems, the board's kernel modules, the config
//! partition (formatted on first boot only when blank; anything else it cannot mount is left untouched, with
//! nothing writable in its place and the reason in `/run/cairn/config-state` for the daemon), the boot partition
//! at `/boot` (boot state and slot files; the box carries on without it), loopback and the LAN interface, supervising the
//! services listed in `/etc/cairn/services.toml` (restart with backoff, orphans reaped, output logged to
//! the console and a bounded log), petting the hardware watchdog, and a clean shutdown that leaves the
//! config and boot filesystems clean. On a boot through U-Boot it commits the booted slot once it is healthy,
//! reboots a trial that is not, and records a fallback from a failed update ([`commit`]). It never touches data
//! disks and never reads settings records.
//! Pure parts (module dependency order, partition classification, backoff, service files) are unit
//! tested on the host; the whole runs under QEMU in the scenario tests.
#![deny(clippy::disallowed_methods)]

pub mod boot_partition;
pub mod commit;
pub mod config_partition;
pub mod logring;
pub mod modules;
pub mod procnet;
pub mod reset_pin;
pub mod services;
mod system;
pub mod system_volume;

pub use system::{run, CONFIG_MOUNT};
