//! `cairn initramfs`: the first userspace of every boot, run as `/init` from the initramfs.
//!
//! Owns getting from the kernel to the root slot's init, trusting nothing it has not checked: it reads the
//! boot loader's choice (`cairn.slot=a|b`, `cairn.trial=1`) from the kernel command line, loads the board's
//! initramfs modules, finds `root-<slot>` on the boot medium, reads the slot's trailer and checks its signature
//! against the keys in `/etc/cairn/keys/` (`cairn-firmware`), maps the slot through dm-verity with the signed
//! root hash (device-mapper ioctls, no `dmsetup`, no shell), reads a slot on trial through once, mounts the
//! result read-only and hands over to `/sbin/init` with busybox's `switch_root`. Anything wrong is one
//! `initramfs: ...` line on the console and a reboot, so the boot loader's counter falls back to the other
//! slot; `cairn.rescue=1` gives the owner a shell instead.
//!
//! It never writes to a disk and never reads settings. Pure parts (command line, verity table line, ioctl
//! structure layout, partition lookup, trailer checks) are tested on the host (`cargo test -p
//! cairn-initramfs`); the whole runs under QEMU in the end-to-end tests (`tests/tests/verity.rs`, `boot.rs`).
#![deny(unsafe_code)]
#![deny(clippy::disallowed_methods)]

mod boot;
pub mod cmdline;
pub mod dm;
pub mod partition;
pub mod slot;
pub mod verity;

pub use boot::run;
