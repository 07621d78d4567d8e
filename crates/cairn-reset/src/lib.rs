//! The reset pin: how long a press was held decides what it does, and what each tier does to the settings.
//!
//! [`tier`] is the rule from held time to action (a pure function) and the press tracker that turns the
//! kernel's timestamped edges into releases, debounced; init reads the pin and feeds it. [`held`] is the
//! little file init keeps while the pin is down, so the daemon can show which tier a release would fire.
//! [`apply`] is what a tier does to the settings, in one transaction, after keeping the settings from before
//! so the owner can undo it. Data volumes are never touched here: their records go with the settings tier,
//! and the storage manager finds the arrays again as importable. Knows no HTTP and reads no GPIO itself.
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

pub mod apply;
pub mod held;
pub mod tier;

pub use apply::{LastReset, ResetError, Resets, Trigger};
pub use tier::{Press, Release, Tier};
