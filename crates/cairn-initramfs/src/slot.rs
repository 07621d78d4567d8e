//! The booted slot's trailer: read from the partition's end, trusted only once its signature checks out
//! against a key the initramfs holds, and only for this board.

use crate::verity::{VerityError, VerityParams};
use cairn_firmware::{read_trailer, trailer_offset, FirmwareError, Manifest, TrustedKeys};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A slot whose trailer was signed by a trusted key: what may be mapped and booted.
#[derive(Debug, Clone)]
pub struct VerifiedSlot {
    pub version: String,
    /// The trusted key's name (its file name in `/etc/cairn/keys/`).
    pub key: String,
    pub verity: VerityParams,
}

/// Why a slot is not booted.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("cannot read {device}: {source}")]
    Read {
        device: PathBuf,
        source: std::io::Error,
    },
    #[error("{device} has no trailer: the slot is empty (never installed, or an install did not finish)")]
    Empty { device: PathBuf },
    #[error("the trailer of {device} is refused: {source}")]
    Trailer {
        device: PathBuf,
        source: FirmwareError,
    },
    #[error("the slot on {device} is firmware for board {found}, not {expected}")]
    Board {
        device: PathBuf,
        found: String,
        expected: String,
    },
    #[error("the verity parameters of {device} are refused: {source}")]
    Verity {
        device: PathBuf,
        source: VerityError,
    },
}

/// Reads and checks the trailer of the partition `device` for board `board`.
pub fn check(device: &Path, keys: &TrustedKeys, board: &str) -> Result<VerifiedSlot, SlotError> {
    let read = |source| SlotError::Read {
        device: device.to_path_buf(),
        source,
    };
    let trailer = |source| SlotError::Trailer {
        device: device.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(device).map_err(read)?;
    // A block device's size is where seeking to its end lands.
    let size = file.seek(SeekFrom::End(0)).map_err(read)?;
    let signed = read_trailer(&mut file, size)
        .map_err(trailer)?
        .ok_or_else(|| SlotError::Empty {
            device: device.to_path_buf(),
        })?;
    let manifest: Manifest = signed.verify(keys).map_err(trailer)?;
    if manifest.board.to_string() != board {
        return Err(SlotError::Board {
            device: device.to_path_buf(),
            found: manifest.board.to_string(),
            expected: board.to_string(),
        });
    }
    let key = keys
        .get(&signed.key_id())
        .map(|k| k.name.clone())
        .unwrap_or_default();
    let verity = VerityParams {
        algorithm: manifest.verity.algorithm.clone(),
        block_size: u64::from(manifest.verity.block_size),
        data_blocks: manifest.verity.data_blocks,
        hash_offset: manifest.verity.hash_offset,
        root_hash: manifest.verity.root_hash.to_string(),
        salt: manifest
            .verity
            .salt
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    };
    let limit = trailer_offset(size).map_err(trailer)?;
    verity.validate(limit).map_err(|source| SlotError::Verity {
        device: device.to_path_buf(),
        source,
    })?;
    Ok(VerifiedSlot {
        version: manifest.version.to_string(),
        key,
        verity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_firmware::{
        write_trailer, Name, PayloadEntry, Sha256, SignedManifest, SigningKey, Target, Verity,
        TRAILER_SIZE,
    };

    const SLOT_BYTES: u64 = 1024 * 1024;

    fn key() -> SigningKey {
        SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap()
    }

    fn manifest(board: &str) -> Manifest {
        Manifest {
            format: cairn_firmware::FORMAT,
            board: Name::new(board).unwrap(),
            version: "0.3.1".parse().unwrap(),
            floor: "0.1.0".parse().unwrap(),
            schema_version: 1,
            payloads: vec![PayloadEntry {
                name: Name::new("root").unwrap(),
                target: Target::Slot,
                size: 8192 + 4096,
                sha256: Sha256([1; 32]),
            }],
            verity: Verity {
                algorithm: "sha256".into(),
                block_size: 4096,
                data_blocks: 2,
                hash_offset: 8192,
                root_hash: Sha256([0xab; 32]),
                salt: vec![0x5a; 32],
            },
        }
    }

    /// A partition image whose trailer holds `manifest` signed with `key`.
    fn slot_image(dir: &Path, manifest: &Manifest, key: &SigningKey) -> PathBuf {
        let path = dir.join("root-a.img");
        let mut file = std::fs::File::create(&path).unwrap();
        file.set_len(SLOT_BYTES).unwrap();
        let signed = SignedManifest::sign(manifest, key).unwrap();
        write_trailer(&mut file, SLOT_BYTES, &signed).unwrap();
        path
    }

    fn trusting(key: &SigningKey) -> TrustedKeys {
        let mut keys = TrustedKeys::default();
        keys.insert("development", key.public_key());
        keys
    }

    #[test]
    fn a_signed_slot_gives_its_verity_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let k = key();
        let dev = slot_image(dir.path(), &manifest("qemu-aarch64-virt"), &k);
        let slot = check(&dev, &trusting(&k), "qemu-aarch64-virt").unwrap();
        assert_eq!(slot.version, "0.3.1");
        assert_eq!(slot.key, "development");
        assert_eq!(
            slot.verity,
            VerityParams {
                algorithm: "sha256".into(),
                block_size: 4096,
                data_blocks: 2,
                hash_offset: 8192,
                root_hash: "ab".repeat(32),
                salt: "5a".repeat(32),
            }
        );
    }

    #[test]
    fn an_empty_slot_is_not_booted() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("root-b.img");
        std::fs::File::create(&dev)
            .unwrap()
            .set_len(SLOT_BYTES)
            .unwrap();
        let k = key();
        assert!(matches!(
            check(&dev, &trusting(&k), "qemu-aarch64-virt"),
            Err(SlotError::Empty { .. })
        ));
    }

    #[test]
    fn a_slot_signed_by_an_unknown_key_is_not_booted() {
        let dir = tempfile::tempdir().unwrap();
        let dev = slot_image(dir.path(), &manifest("qemu-aarch64-virt"), &key());
        let err = check(&dev, &trusting(&key()), "qemu-aarch64-virt").unwrap_err();
        assert!(
            matches!(
                err,
                SlotError::Trailer {
                    source: FirmwareError::UnknownKey { .. },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_trailer_changed_after_signing_is_not_booted() {
        let dir = tempfile::tempdir().unwrap();
        let k = key();
        let dev = slot_image(dir.path(), &manifest("qemu-aarch64-virt"), &k);
        // Point the root hash elsewhere: "abab..." becomes "abac..." inside the signed manifest bytes.
        let mut bytes = std::fs::read(&dev).unwrap();
        let start = (SLOT_BYTES - TRAILER_SIZE) as usize;
        let text = String::from_utf8_lossy(&bytes[start..]).into_owned();
        let at = start + text.find(&"ab".repeat(32)).unwrap() + 3;
        bytes[at] = b'c';
        std::fs::write(&dev, &bytes).unwrap();
        let err = check(&dev, &trusting(&k), "qemu-aarch64-virt").unwrap_err();
        assert!(
            matches!(
                err,
                SlotError::Trailer {
                    source: FirmwareError::BadSignature { .. },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn another_boards_slot_is_not_booted() {
        let dir = tempfile::tempdir().unwrap();
        let k = key();
        let dev = slot_image(dir.path(), &manifest("qemu-armv7-virt"), &k);
        let err = check(&dev, &trusting(&k), "qemu-aarch64-virt").unwrap_err();
        assert!(matches!(err, SlotError::Board { .. }), "{err}");
        assert!(err.to_string().contains("qemu-armv7-virt"), "{err}");
    }
}
