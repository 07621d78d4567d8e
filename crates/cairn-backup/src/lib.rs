//! Settings backups: a file an owner downloads, keeps, and restores onto the same box or another board.
//!
//! [`file`] seals the settings export (the same format as the per-slot snapshots) with a passphrase the owner
//! chooses, because it holds password hashes: PBKDF2-HMAC-SHA256 derives an AES-256-GCM key (both from ring),
//! and the header (format, schema, board, key-derivation parameters) is authenticated with the contents, so a
//! changed header, a cut file or a wrong passphrase all fail before anything is read. [`restore`] compares a
//! backup with the box's settings part by part (network, users and groups, shares), answers the difference
//! for a dry run, and builds the settings a restore writes in one transaction: a backup from an older firmware
//! is migrated first, and a share is restored only onto a volume it can stay inside. Knows no HTTP.
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

pub mod file;
pub mod restore;

pub use file::{open, seal, BackupError, BackupInfo, MAX_FILE_BYTES};
pub use restore::{plan, Part, Plan};
