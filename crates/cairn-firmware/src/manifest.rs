//! The manifest: what a bundle or slot holds, as signed. Parsed strictly (unknown fields refused, one spelling
//! per value) and checked as a whole by [`Manifest::validate`] before anything acts on it.

use crate::error::{FirmwareError, Result};
use crate::hex;
use crate::version::Version;
use ring::digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::io::Read;

/// The manifest format this firmware writes and reads; a new field or meaning raises it.
pub const FORMAT: u32 = 1;
/// dm-verity's block size for data and hash tree (the page size of every board).
pub const VERITY_BLOCK_SIZE: u32 = 4096;
/// The only hash dm-verity is set up with.
pub const VERITY_ALGORITHM: &str = "sha256";
/// Longest verity salt accepted (veritysetup's own limit).
pub const MAX_SALT_BYTES: usize = 256;

/// A SHA-256 digest, lowercase hex in JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// The digest of everything `reader` yields, read in bounded chunks (never whole in memory); returns the
    /// digest and the length.
    pub fn of_reader(mut reader: impl Read) -> std::io::Result<(Sha256, u64)> {
        let mut ctx = digest::Context::new(&digest::SHA256);
        let mut buf = vec![0u8; 256 * 1024];
        let mut len = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            ctx.update(&buf[..n]);
            len += n as u64;
        }
        Ok((Sha256::from_context(ctx), len))
    }

    pub(crate) fn from_context(ctx: digest::Context) -> Sha256 {
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Sha256(out)
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

impl TryFrom<String> for Sha256 {
    type Error = FirmwareError;
    fn try_from(text: String) -> Result<Self> {
        hex::decode_array(&text).map(Sha256).ok_or_else(|| {
            FirmwareError::MalformedManifest(format!(
                "{text:?} is not a SHA-256 digest (64 lowercase hex characters)"
            ))
        })
    }
}

impl From<Sha256> for String {
    fn from(d: Sha256) -> String {
        d.to_string()
    }
}

/// A payload or board name: `[A-Za-z0-9._-]{1,64}`, not starting with a dot. A boot payload's name becomes a file
/// name in `boot/slot-<x>/`, so the grammar keeps out separators, `.`/`..`, hidden files and control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    /// The name, checked against the grammar.
    pub fn new(text: &str) -> Result<Self> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        if (1..=64).contains(&text.len()) && text.bytes().all(allowed) && !text.starts_with('.') {
            Ok(Name(text.to_string()))
        } else {
            Err(FirmwareError::InvalidName(text.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Name {
    type Error = FirmwareError;
    fn try_from(text: String) -> Result<Self> {
        Name::new(&text)
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

/// Where a payload goes on the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The root slot's bytes (squashfs + verity hash tree), at offset 0 of the inactive root partition.
    Slot,
    /// A file for `boot/slot-<x>/<name>` on the boot partition.
    Boot,
}

/// One payload: its name, destination, exact size and digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadEntry {
    pub name: Name,
    pub target: Target,
    pub size: u64,
    pub sha256: Sha256,
}

impl PayloadEntry {
    /// Describes a payload by reading it once (size and digest).
    pub fn from_reader(name: Name, target: Target, reader: impl Read) -> std::io::Result<Self> {
        let (sha256, size) = Sha256::of_reader(reader)?;
        Ok(PayloadEntry {
            name,
            target,
            size,
            sha256,
        })
    }
}

/// The root slot's dm-verity parameters (`veritysetup format --no-superblock`): the hash tree starts right after
/// the data, in the same slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verity {
    pub algorithm: String,
    pub block_size: u32,
    pub data_blocks: u64,
    pub hash_offset: u64,
    pub root_hash: Sha256,
    #[serde(with = "salt_hex")]
    pub salt: Vec<u8>,
}

mod salt_hex {
    use crate::hex;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(salt: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(salt))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(&text).ok_or_else(|| D::Error::custom("the salt is not lowercase hex"))
    }
}

/// A bundle's or slot's manifest (docs/updates.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// The board this firmware is for (`board/<name>`).
    pub board: Name,
    pub version: Version,
    /// The oldest version that may ever be installed over this one (anti-rollback).
    pub floor: Version,
    /// The settings schema this firmware's store opens at.
    pub schema_version: u32,
    pub payloads: Vec<PayloadEntry>,
    pub verity: Verity,
}

impl Manifest {
    /// Parses signed manifest bytes and checks them as a whole.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        // The format first, so a newer manifest is named as such rather than as "unknown field".
        #[derive(Deserialize)]
        struct FormatOnly {
            format: u32,
        }
        let format = serde_json::from_slice::<FormatOnly>(bytes)
            .map_err(|e| FirmwareError::MalformedManifest(e.to_string()))?;
        if format.format != FORMAT {
            return Err(FirmwareError::UnsupportedFormat {
                found: format.format,
                supported: FORMAT,
            });
        }
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| FirmwareError::MalformedManifest(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The manifest's bytes as signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serializes")
    }

    /// Checks what the types alone cannot: one root slot payload, unique names, a floor not above the version,
    /// and verity parameters that describe the slot payload.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(FirmwareError::MalformedManifest(why));
        if self.format != FORMAT {
            return Err(FirmwareError::UnsupportedFormat {
                found: self.format,
                supported: FORMAT,
            });
        }
        if self.floor > self.version {
            return bad(format!(
                "its floor {} is above its version {}",
                self.floor, self.version
            ));
        }
        let mut names = BTreeSet::new();
        for p in &self.payloads {
            if !names.insert(&p.name) {
                return bad(format!("payload {:?} is listed twice", p.name.as_str()));
            }
        }
        let slots: Vec<&PayloadEntry> = self
            .payloads
            .iter()
            .filter(|p| p.target == Target::Slot)
            .collect();
        let [slot] = slots.as_slice() else {
            return bad(format!(
                "it has {} root slot payloads, not one",
                slots.len()
            ));
        };
        let v = &self.verity;
        if v.algorithm != VERITY_ALGORITHM || v.block_size != VERITY_BLOCK_SIZE {
            return bad(format!("verity {} with {}-byte blocks is not supported ({VERITY_ALGORITHM}, {VERITY_BLOCK_SIZE})", v.algorithm, v.block_size));
        }
        if v.data_blocks == 0
            || v.data_blocks.checked_mul(u64::from(v.block_size)) != Some(v.hash_offset)
        {
            return bad(format!(
                "verity's {} data blocks do not end at its hash offset {}",
                v.data_blocks, v.hash_offset
            ));
        }
        if slot.size <= v.hash_offset {
            return bad(format!(
                "the slot payload ({} bytes) has no hash tree after its data ({} bytes)",
                slot.size, v.hash_offset
            ));
        }
        if v.salt.len() > MAX_SALT_BYTES {
            return bad(format!(
                "the verity salt has {} bytes, more than {MAX_SALT_BYTES}",
                v.salt.len()
            ));
        }
        Ok(())
    }

    /// The root slot payload (there is exactly one in a valid manifest).
    pub fn slot_payload(&self) -> &PayloadEntry {
        self.payloads
            .iter()
            .find(|p| p.target == Target::Slot)
            .expect("validate() requires one slot payload")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            format: FORMAT,
            board: Name::new("qemu-aarch64-virt").unwrap(),
            version: "0.2.0".parse().unwrap(),
            floor: "0.1.0".parse().unwrap(),
            schema_version: 2,
            payloads: vec![
                PayloadEntry {
                    name: Name::new("root").unwrap(),
                    target: Target::Slot,
                    size: 8192 + 4096,
                    sha256: Sha256([1; 32]),
                },
                PayloadEntry {
                    name: Name::new("Image").unwrap(),
                    target: Target::Boot,
                    size: 10,
                    sha256: Sha256([2; 32]),
                },
            ],
            verity: Verity {
                algorithm: "sha256".into(),
                block_size: 4096,
                data_blocks: 2,
                hash_offset: 8192,
                root_hash: Sha256([3; 32]),
                salt: vec![4; 32],
            },
        }
    }

    #[test]
    fn round_trips_through_its_bytes() {
        let m = sample();
        assert_eq!(Manifest::parse(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn names_follow_the_grammar() {
        for good in [
            "root",
            "Image",
            "initrd.img",
            "a",
            "zImage-6.1_x",
            &"x".repeat(64),
        ] {
            Name::new(good).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "../etc",
            "a b",
            "a\0",
            "é",
            "a\n",
            &"x".repeat(65),
        ] {
            assert!(
                matches!(Name::new(bad), Err(FirmwareError::InvalidName(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn refuses_unknown_fields_and_other_formats() {
        let mut json: serde_json::Value = serde_json::from_slice(&sample().to_bytes()).unwrap();
        json["extra"] = 1.into();
        assert!(matches!(
            Manifest::parse(&serde_json::to_vec(&json).unwrap()),
            Err(FirmwareError::MalformedManifest(_))
        ));
        json.as_object_mut().unwrap().remove("extra");
        json["format"] = 2.into();
        assert!(matches!(
            Manifest::parse(&serde_json::to_vec(&json).unwrap()),
            Err(FirmwareError::UnsupportedFormat { found: 2, .. })
        ));
        json["format"] = 1.into();
        json["payloads"][1]["name"] = "../boot.scr".into();
        assert!(Manifest::parse(&serde_json::to_vec(&json).unwrap()).is_err());
    }

    #[test]
    fn validate_refuses_inconsistent_manifests() {
        type Change = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "floor above version",
                Box::new(|m| m.floor = "0.3.0".parse().unwrap()),
            ),
            (
                "duplicate name",
                Box::new(|m| m.payloads[1].name = Name::new("root").unwrap()),
            ),
            (
                "no slot payload",
                Box::new(|m| m.payloads[0].target = Target::Boot),
            ),
            (
                "two slot payloads",
                Box::new(|m| m.payloads[1].target = Target::Slot),
            ),
            (
                "other hash",
                Box::new(|m| m.verity.algorithm = "sha1".into()),
            ),
            ("other block size", Box::new(|m| m.verity.block_size = 512)),
            (
                "offset not after the data",
                Box::new(|m| m.verity.hash_offset = 4096),
            ),
            (
                "no tree in the slot",
                Box::new(|m| m.payloads[0].size = 8192),
            ),
            (
                "zero data blocks",
                Box::new(|m| {
                    m.verity.data_blocks = 0;
                    m.verity.hash_offset = 0
                }),
            ),
            ("huge salt", Box::new(|m| m.verity.salt = vec![0; 257])),
        ];
        for (what, change) in cases {
            let mut m = sample();
            change(&mut m);
            assert!(
                matches!(m.validate(), Err(FirmwareError::MalformedManifest(_))),
                "{what} was accepted"
            );
        }
        sample().validate().unwrap();
    }

    #[test]
    fn digests_a_stream() {
        let (d, len) = Sha256::of_reader(&b"abc"[..]).unwrap();
        assert_eq!(len, 3);
        assert_eq!(
            d.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
