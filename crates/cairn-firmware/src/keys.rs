//! Ed25519 keys (ring): the keys a box trusts, read from `/etc/cairn/keys/`, and the key a build signs with.

use crate::error::{FirmwareError, Result};
use crate::hex;
use ring::digest;
use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where an image keeps the public keys it trusts.
pub const IMAGE_KEYS_DIR: &str = "/etc/cairn/keys";
/// The extension of a trusted public key file.
pub const PUBLIC_KEY_EXTENSION: &str = "pub";

/// The first 8 bytes of SHA-256 of a 32-byte Ed25519 public key: names the key in a signature block, so the
/// verifier picks the key instead of trying each.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The id of a public key.
    pub fn of(public_key: &[u8; 32]) -> KeyId {
        let d = digest::digest(&digest::SHA256, public_key);
        let mut id = [0u8; 8];
        id.copy_from_slice(&d.as_ref()[..8]);
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A trusted public key and the file name it came from (shown to the owner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    pub name: String,
    pub public_key: [u8; 32],
}

/// The public keys a box accepts signatures from. Nothing else is trusted: an empty set verifies nothing.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<KeyId, TrustedKey>,
}

impl TrustedKeys {
    /// Every `<name>.pub` in `dir` (64 hex characters each). A malformed key file is an error, not skipped: an
    /// image with a broken key is a build mistake to report. Other files are ignored.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let mut keys = TrustedKeys::default();
        let entries = std::fs::read_dir(dir).map_err(FirmwareError::file(dir))?;
        let mut paths = Vec::new();
        for entry in entries {
            let path = entry.map_err(FirmwareError::file(dir))?.path();
            if path.extension().is_some_and(|e| e == PUBLIC_KEY_EXTENSION) {
                paths.push(path);
            }
        }
        paths.sort();
        for path in paths {
            let key = read_public_key(&path)?;
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            keys.insert(name, key);
        }
        if keys.is_empty() {
            return Err(FirmwareError::NoTrustedKeys {
                dir: dir.to_path_buf(),
            });
        }
        Ok(keys)
    }

    /// Adds a key (for tests and tools that hold keys in memory).
    pub fn insert(&mut self, name: impl Into<String>, public_key: [u8; 32]) {
        self.keys.insert(
            KeyId::of(&public_key),
            TrustedKey {
                name: name.into(),
                public_key,
            },
        );
    }

    pub fn get(&self, id: &KeyId) -> Option<&TrustedKey> {
        self.keys.get(id)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&KeyId, &TrustedKey)> {
        self.keys.iter()
    }

    /// Checks `signature` over `message` with the key named `id`: unknown keys are refused before any
    /// signature arithmetic.
    pub fn verify(&self, id: &KeyId, message: &[u8], signature: &[u8; 64]) -> Result<()> {
        let key = self.get(id).ok_or_else(|| FirmwareError::UnknownKey {
            key_id: id.to_string(),
        })?;
        signature::UnparsedPublicKey::new(&signature::ED25519, &key.public_key)
            .verify(message, signature)
            .map_err(|_| FirmwareError::BadSignature {
                key_id: id.to_string(),
            })
    }
}

/// Parses a public key file's text: 64 hex characters (either case), surrounding whitespace allowed.
pub fn parse_public_key(text: &str) -> Option<[u8; 32]> {
    hex::decode_array(&text.trim().to_ascii_lowercase())
}

/// Reads one `<name>.pub` file.
pub fn read_public_key(path: &Path) -> Result<[u8; 32]> {
    let invalid = |reason: &str| FirmwareError::InvalidPublicKey {
        path: path.to_path_buf(),
        reason: reason.into(),
    };
    let bytes = std::fs::read(path).map_err(FirmwareError::file(path))?;
    if bytes.len() > 1024 {
        return Err(invalid("the file is far too long"));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| invalid("not text"))?;
    parse_public_key(text).ok_or_else(|| invalid("not 64 hex characters"))
}

/// The public key file's text for `public_key`.
pub fn public_key_text(public_key: &[u8; 32]) -> String {
    format!("{}\n", hex::encode(public_key))
}

/// The private key a build signs with (PKCS#8, as ring generates it and `openssl genpkey -algorithm ed25519`
/// writes it).
pub struct SigningKey {
    pair: Ed25519KeyPair,
    path: Option<PathBuf>,
}

impl SigningKey {
    /// A key from PKCS#8 bytes (v2 with the public key, or v1 without).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8))
            .map_err(|e| FirmwareError::InvalidSigningKey(e.to_string()))?;
        Ok(SigningKey { pair, path: None })
    }

    /// Reads a PKCS#8 key file (DER).
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(FirmwareError::file(path))?;
        let mut key = SigningKey::from_pkcs8(&bytes).map_err(|e| match e {
            FirmwareError::InvalidSigningKey(why) => {
                FirmwareError::InvalidSigningKey(format!("{}: {why}", path.display()))
            }
            other => other,
        })?;
        key.path = Some(path.to_path_buf());
        Ok(key)
    }

    /// A new random key as PKCS#8 bytes (v2).
    pub fn generate_pkcs8() -> Result<Vec<u8>> {
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map(|doc| doc.as_ref().to_vec())
            .map_err(|e| FirmwareError::InvalidSigningKey(e.to_string()))
    }

    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.public_key())
    }

    /// Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id())
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap()
    }

    #[test]
    fn key_id_is_the_start_of_the_public_keys_sha256() {
        let id = KeyId::of(&[0u8; 32]);
        // sha256 of 32 zero bytes starts with 66687aadf862bd77.
        assert_eq!(id.to_string(), "66687aadf862bd77");
    }

    #[test]
    fn verifies_only_trusted_keys_and_true_signatures() {
        let k = key();
        let other = key();
        let mut trusted = TrustedKeys::default();
        trusted.insert("dev", k.public_key());
        let sig = k.sign(b"hello");
        trusted.verify(&k.key_id(), b"hello", &sig).unwrap();
        assert!(matches!(
            trusted.verify(&k.key_id(), b"hellO", &sig),
            Err(FirmwareError::BadSignature { .. })
        ));
        let mut bent = sig;
        bent[10] ^= 1;
        assert!(matches!(
            trusted.verify(&k.key_id(), b"hello", &bent),
            Err(FirmwareError::BadSignature { .. })
        ));
        let theirs = other.sign(b"hello");
        assert!(matches!(
            trusted.verify(&other.key_id(), b"hello", &theirs),
            Err(FirmwareError::UnknownKey { .. })
        ));
        // A trusted key's id with another key's signature: still refused.
        assert!(matches!(
            trusted.verify(&k.key_id(), b"hello", &theirs),
            Err(FirmwareError::BadSignature { .. })
        ));
    }

    #[test]
    fn loads_a_key_directory_and_refuses_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let k = key();
        assert!(matches!(
            TrustedKeys::load_dir(dir.path()),
            Err(FirmwareError::NoTrustedKeys { .. })
        ));
        std::fs::write(dir.path().join("README"), "not a key").unwrap();
        std::fs::write(
            dir.path().join("release.pub"),
            public_key_text(&k.public_key()).to_uppercase(),
        )
        .unwrap();
        let keys = TrustedKeys::load_dir(dir.path()).unwrap();
        assert_eq!(keys.get(&k.key_id()).unwrap().name, "release");
        std::fs::write(dir.path().join("broken.pub"), "abcd\n").unwrap();
        assert!(matches!(
            TrustedKeys::load_dir(dir.path()),
            Err(FirmwareError::InvalidPublicKey { .. })
        ));
        assert!(matches!(
            TrustedKeys::load_dir(&dir.path().join("missing")),
            Err(FirmwareError::File { .. })
        ));
    }

    #[test]
    fn refuses_a_signing_key_that_is_not_pkcs8() {
        assert!(matches!(
            SigningKey::from_pkcs8(b"not a key"),
            Err(FirmwareError::InvalidSigningKey(_))
        ));
    }
}
