//! The header shared by bundles and slot trailers: magic, two lengths, the manifest exactly as signed, and the
//! signature block. Lengths are capped before anything is allocated, and nothing in the manifest is looked at
//! before its signature checks out against a trusted key.

use crate::error::{FirmwareError, Region, Result};
use crate::hex;
use crate::keys::{KeyId, SigningKey, TrustedKeys};
use crate::manifest::Manifest;
use serde::{Deserialize, Serialize};
use std::io::{self, Read};

/// What a header starts with: a bundle's or a slot trailer's magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Magic {
    Bundle,
    Trailer,
}

impl Magic {
    pub const fn bytes(self) -> &'static [u8; 8] {
        match self {
            Magic::Bundle => b"CAIRNFW1",
            Magic::Trailer => b"CAIRNSLT",
        }
    }

    fn bad(self) -> FirmwareError {
        let (expected, expected_magic) = match self {
            Magic::Bundle => ("Cairn firmware bundle", "CAIRNFW1"),
            Magic::Trailer => ("Cairn slot trailer", "CAIRNSLT"),
        };
        FirmwareError::BadMagic {
            expected,
            expected_magic,
        }
    }
}

/// The most a header (magic, lengths, manifest, signature block) may take: the slot trailer's size, so every
/// bundle's header also fits a slot.
pub const MAX_HEADER_LEN: u32 = 64 * 1024;
/// Magic and the two lengths.
pub const FIXED_HEADER_LEN: u32 = 16;
/// The most a signature block may take; a real one is about 180 bytes.
pub const MAX_SIGNATURE_LEN: u32 = 1024;

/// The signature block: which key signed, and the Ed25519 signature of the manifest bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureBlock {
    key_id: String,
    signature: String,
}

/// A manifest as signed and its signature, not yet trusted: [`SignedManifest::verify`] is the only way to its
/// [`Manifest`]. Install copies it unchanged from a bundle into the slot trailer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedManifest {
    manifest: Vec<u8>,
    key_id: KeyId,
    signature: [u8; 64],
}

impl SignedManifest {
    /// Signs `manifest` (checked first, so a build never signs what a box would refuse).
    pub fn sign(manifest: &Manifest, key: &SigningKey) -> Result<Self> {
        manifest.validate()?;
        let bytes = manifest.to_bytes();
        let signature = key.sign(&bytes);
        let signed = SignedManifest {
            manifest: bytes,
            key_id: key.key_id(),
            signature,
        };
        let signature_len = signed.signature_block().len();
        if FIXED_HEADER_LEN as usize + signed.manifest.len() + signature_len
            > MAX_HEADER_LEN as usize
        {
            let manifest_len = u32::try_from(signed.manifest.len()).unwrap_or(u32::MAX);
            return Err(FirmwareError::HeaderTooLarge {
                manifest_len,
                signature_len: signature_len as u32,
                max: MAX_HEADER_LEN,
            });
        }
        Ok(signed)
    }

    /// Checks the signature against the trusted keys (unknown key, then bad signature), and only then parses and
    /// validates the manifest.
    pub fn verify(&self, keys: &TrustedKeys) -> Result<Manifest> {
        keys.verify(&self.key_id, &self.manifest, &self.signature)?;
        Manifest::parse(&self.manifest)
    }

    /// The key that signed (trusted or not).
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The manifest bytes exactly as signed.
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest
    }

    fn signature_block(&self) -> Vec<u8> {
        let block = SignatureBlock {
            key_id: self.key_id.to_string(),
            signature: hex::encode(&self.signature),
        };
        serde_json::to_vec(&block).expect("a signature block always serializes")
    }

    /// The header bytes: magic, lengths, manifest, signature block.
    pub fn encode(&self, magic: Magic) -> Vec<u8> {
        let block = self.signature_block();
        let mut out =
            Vec::with_capacity(FIXED_HEADER_LEN as usize + self.manifest.len() + block.len());
        out.extend_from_slice(magic.bytes());
        out.extend_from_slice(&(self.manifest.len() as u32).to_le_bytes());
        out.extend_from_slice(&(block.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.manifest);
        out.extend_from_slice(&block);
        out
    }

    /// Reads a header from `r`, checking the magic and capping the lengths before reading further. The
    /// signature is not checked here: call [`SignedManifest::verify`].
    pub fn read_from(r: &mut impl Read, magic: Magic) -> Result<Self> {
        let mut fixed = [0u8; FIXED_HEADER_LEN as usize];
        read_region(r, &mut fixed, Region::Header)?;
        if &fixed[..8] != magic.bytes() {
            return Err(magic.bad());
        }
        let manifest_len = u32::from_le_bytes(fixed[8..12].try_into().expect("4 bytes"));
        let signature_len = u32::from_le_bytes(fixed[12..16].try_into().expect("4 bytes"));
        let fits = signature_len <= MAX_SIGNATURE_LEN
            && manifest_len
                .checked_add(signature_len)
                .is_some_and(|body| body <= MAX_HEADER_LEN - FIXED_HEADER_LEN);
        if !fits || manifest_len == 0 || signature_len == 0 {
            return Err(FirmwareError::HeaderTooLarge {
                manifest_len,
                signature_len,
                max: MAX_HEADER_LEN,
            });
        }
        let mut manifest = vec![0u8; manifest_len as usize];
        read_region(r, &mut manifest, Region::Manifest)?;
        let mut block = vec![0u8; signature_len as usize];
        read_region(r, &mut block, Region::Signature)?;
        let block: SignatureBlock = serde_json::from_slice(&block)
            .map_err(|e| FirmwareError::MalformedSignature(e.to_string()))?;
        let key_id = hex::decode_array(&block.key_id).map(KeyId).ok_or_else(|| {
            FirmwareError::MalformedSignature(format!(
                "key_id {:?} is not 16 lowercase hex characters",
                block.key_id
            ))
        })?;
        let signature = hex::decode_array(&block.signature).ok_or_else(|| {
            FirmwareError::MalformedSignature(
                "the signature is not 128 lowercase hex characters".into(),
            )
        })?;
        Ok(SignedManifest {
            manifest,
            key_id,
            signature,
        })
    }
}

/// `read_exact` that names the region a short read ended in.
pub(crate) fn read_region(r: &mut impl Read, buf: &mut [u8], region: Region) -> Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            FirmwareError::Truncated(region)
        } else {
            e.into()
        }
    })
}
