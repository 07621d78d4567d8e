//! The signed update index an update check reads: the newest version for each board and where its bundle is.
//!
//! The file is JSON: `{"key_id": "<16 hex>", "signature": "<128 hex>", "index": "<the index as JSON text>"}`,
//! the signature (Ed25519, the same keys as bundles) over the bytes of the `index` string, so the signed bytes
//! are exactly the ones read. The index: `{"format": 1, "boards": {"<board>": {"version": "0.2.0", "url":
//! "https://..."}}}`. Only an index whose signature checks out is looked at.

use crate::keys::{KeyId, SigningKey, TrustedKeys};
use crate::version::Version;
use crate::FirmwareError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The index format this firmware reads.
pub const INDEX_FORMAT: u32 = 1;

/// One board's newest release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub version: Version,
    /// Where its bundle is (the bundle is checked on its own when installed).
    pub url: String,
}

/// The index, once its signature checked out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateIndex {
    pub format: u32,
    pub boards: BTreeMap<String, Release>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    key_id: String,
    signature: String,
    index: String,
}

/// Checks the envelope's signature against `keys`, then reads the index.
pub fn read_index(bytes: &[u8], keys: &TrustedKeys) -> Result<UpdateIndex, FirmwareError> {
    let envelope: Envelope = serde_json::from_slice(bytes).map_err(|e| {
        FirmwareError::MalformedSignature(format!("not a signed update index: {e}"))
    })?;
    let key_id = crate::hex::decode_array(&envelope.key_id)
        .map(KeyId)
        .ok_or_else(|| {
            FirmwareError::MalformedSignature("key_id is not 16 hex characters".into())
        })?;
    let signature = crate::hex::decode_array(&envelope.signature).ok_or_else(|| {
        FirmwareError::MalformedSignature("the signature is not 128 hex characters".into())
    })?;
    keys.verify(&key_id, envelope.index.as_bytes(), &signature)?;
    let index: UpdateIndex = serde_json::from_str(&envelope.index)
        .map_err(|e| FirmwareError::MalformedManifest(format!("update index: {e}")))?;
    if index.format != INDEX_FORMAT {
        return Err(FirmwareError::UnsupportedFormat {
            found: index.format,
            supported: INDEX_FORMAT,
        });
    }
    Ok(index)
}

/// Signs `index` (for the release tooling and tests).
pub fn sign_index(index: &UpdateIndex, key: &SigningKey) -> Vec<u8> {
    let text = serde_json::to_string(index).expect("an index always serializes");
    let envelope = Envelope {
        key_id: key.key_id().to_string(),
        signature: crate::hex::encode(&key.sign(text.as_bytes())),
        index: text,
    };
    serde_json::to_vec(&envelope).expect("an envelope always serializes")
}

/// What an update check found for this box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// The version running now.
    pub running: String,
    /// The index's newest version for this board, if it lists the board.
    pub newest: Option<Release>,
    /// Whether the newest is newer than the running one.
    pub update_available: bool,
}

/// Compares the index's entry for `board` with the running version.
pub fn compare(index: &UpdateIndex, board: &str, running: Version) -> CheckResult {
    let newest = index.boards.get(board).cloned();
    CheckResult {
        running: running.to_string(),
        update_available: newest.as_ref().is_some_and(|r| r.version > running),
        newest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::testing::keypair;

    fn index() -> UpdateIndex {
        let mut boards = BTreeMap::new();
        boards.insert(
            "qemu-aarch64-virt".to_string(),
            Release {
                version: "0.3.0".parse().unwrap(),
                url: "https://updates.example/cairn-qemu-aarch64-virt-0.3.0.cfw".into(),
            },
        );
        UpdateIndex {
            format: INDEX_FORMAT,
            boards,
        }
    }

    #[test]
    fn a_signed_index_is_read_and_compared_and_a_changed_one_refused() {
        let key = keypair();
        let mut keys = TrustedKeys::default();
        keys.insert("dev", key.public_key());
        let bytes = sign_index(&index(), &key);
        let read = read_index(&bytes, &keys).unwrap();
        assert_eq!(read, index());
        let found = compare(&read, "qemu-aarch64-virt", "0.2.0".parse().unwrap());
        assert!(found.update_available);
        assert_eq!(found.newest.unwrap().version.to_string(), "0.3.0");
        assert!(!compare(&read, "qemu-aarch64-virt", "0.3.0".parse().unwrap()).update_available);
        assert!(compare(&read, "qemu-armv7-virt", "0.1.0".parse().unwrap())
            .newest
            .is_none());

        let changed = String::from_utf8(bytes)
            .unwrap()
            .replace("0.3.0", "0.9.0")
            .into_bytes();
        assert!(matches!(
            read_index(&changed, &keys),
            Err(FirmwareError::BadSignature { .. })
        ));
        let other = sign_index(&index(), &keypair());
        assert!(matches!(
            read_index(&other, &keys),
            Err(FirmwareError::UnknownKey { .. })
        ));
    }
}
