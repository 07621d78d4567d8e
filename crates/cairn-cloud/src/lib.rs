//! Remote access as the box keeps it: pairings with their codes, and what the relay must still be told.
//!
//! Everything here is local and answers at once, relay reachable or not: issuing a pairing code is one
//! transaction (a valid code with its real expiry is stored, or an error and nothing), a pending or paired
//! device is removed locally at once, and the relay learns of a removal from the outbox when it is next
//! reachable (an unpairing always wins over whatever the relay still holds). No code is issued while the
//! clock is not known good, so no pairing shows a 1970 expiry. The agent that dials the relay comes later
//! (issue 13). Knows no HTTP.
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

pub mod code;
pub mod pairings;

pub use code::{normalise, PairingCode, ALPHABET};
pub use pairings::{CloudError, Issued, Pairing, PairingState, Pairings};
