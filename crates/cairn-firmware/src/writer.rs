//! Writing a bundle (on the build machine): the signed header, then each payload copied from its source while
//! being hashed again, so a file that changed after it was described is caught instead of shipped.

use crate::error::{FirmwareError, Result};
use crate::header::{Magic, SignedManifest};
use crate::keys::SigningKey;
use crate::manifest::{Manifest, Sha256};
use ring::digest;
use std::io::{Read, Write};

/// Signs `manifest` and writes the bundle to `out`, the payloads read from `sources` in the manifest's order.
/// Returns the signed manifest (the slot trailer of the same build).
pub fn write_bundle<W: Write>(
    out: &mut W,
    key: &SigningKey,
    manifest: &Manifest,
    sources: Vec<Box<dyn Read + '_>>,
) -> Result<SignedManifest> {
    if sources.len() != manifest.payloads.len() {
        return Err(FirmwareError::MalformedManifest(format!(
            "{} payloads listed but {} given",
            manifest.payloads.len(),
            sources.len()
        )));
    }
    let signed = SignedManifest::sign(manifest, key)?;
    out.write_all(&signed.encode(Magic::Bundle))?;
    let mut buf = vec![0u8; 256 * 1024];
    for (entry, mut source) in manifest.payloads.iter().zip(sources) {
        let mut ctx = digest::Context::new(&digest::SHA256);
        let mut copied = 0u64;
        loop {
            let n = source.read(&mut buf)?;
            if n == 0 {
                break;
            }
            copied += n as u64;
            if copied > entry.size {
                break;
            }
            ctx.update(&buf[..n]);
            out.write_all(&buf[..n])?;
        }
        if copied != entry.size {
            return Err(FirmwareError::PayloadSize {
                payload: entry.name.to_string(),
                expected: entry.size,
                found: copied,
            });
        }
        let actual = Sha256::from_context(ctx);
        if actual != entry.sha256 {
            return Err(FirmwareError::DigestMismatch {
                payload: entry.name.to_string(),
                expected: entry.sha256.to_string(),
                actual: actual.to_string(),
            });
        }
    }
    out.flush()?;
    Ok(signed)
}
