//! The A/B boot state that U-Boot and Cairn share (docs/updates.md, "The boot state"): U-Boot's environment
//! format ([`Env`]), the state's variables and transitions ([`BootState`]: install, activate, commit, fallback,
//! and a model of the boot script for tests), and its two copies on the boot partition ([`BootFiles`]), written so a
//! power cut mid-write always leaves one valid copy.
//!
//! Owns: the bytes of `env-1/cairn.env` and `env-2/cairn.env`. Never touches: the slots themselves, the boot
//! script, processes (nothing here spawns one). Tested on the host, against U-Boot's own tools too
//! (`mkenvimage`, `fw_printenv`): `cargo test -p cairn-bootenv`.
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

mod copies;
mod env;
mod state;

pub use copies::{encode_next, select, BootFiles, CopyError, Current, LoadError, StoreError};
pub use env::{Env, EnvError};
pub use state::{
    BootState, Booted, Slot, StateError, VAR_A_LEFT, VAR_B_LEFT, VAR_ORDER, VAR_SEQ, VAR_TRIAL,
};
