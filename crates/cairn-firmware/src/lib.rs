//! Firmware bundles and slot trailers: the manifest, versions, Ed25519 keys and signatures, the streaming bundle
//! reader and the trailer at the end of each root slot (formats in `docs/updates.md`).
//!
//! This crate owns the formats and their checks: a bundle or slot is trusted only after its signature checks
//! out against a key the image holds (`/etc/cairn/keys/`), and a payload's bytes only after its digest matched.
//! It never spawns processes, knows no HTTP and touches no device by itself: callers hand it readers and
//! writers (the install engine, the initramfs, the host tool `cairn-bundle` that seals images and writes
//! bundles). Tested on the host (`cargo test -p cairn-firmware`): round trips and every refusal (tampered bytes,
//! unknown keys, truncation in each region, digest mismatches, hostile lengths).
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

mod error;
mod header;
mod hex;
pub mod install;
mod keys;
mod manifest;
mod reader;
mod trailer;
mod version;
mod writer;

pub use error::{FirmwareError, Region, Result};
pub use header::{Magic, SignedManifest, FIXED_HEADER_LEN, MAX_HEADER_LEN, MAX_SIGNATURE_LEN};
pub use keys::{
    parse_public_key, public_key_text, read_public_key, KeyId, SigningKey, TrustedKey, TrustedKeys,
    IMAGE_KEYS_DIR, PUBLIC_KEY_EXTENSION,
};
pub use manifest::{
    Manifest, Name, PayloadEntry, Sha256, Target, Verity, FORMAT, MAX_SALT_BYTES, VERITY_ALGORITHM,
    VERITY_BLOCK_SIZE,
};
pub use reader::{BundleReader, PayloadReader};
pub use trailer::{clear_trailer, read_trailer, trailer_offset, write_trailer, TRAILER_SIZE};
pub use version::Version;
pub use writer::write_bundle;
