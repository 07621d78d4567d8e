//! The dm-verity target line, built from a slot's signed manifest. Pure: every value is checked before it
//! reaches the kernel's whitespace-separated table parser, so nothing in a manifest can add an argument.

/// The only block size and digest the slot format uses (docs/updates.md, "A root slot").
pub const BLOCK_SIZE: u64 = 4096;
pub const ALGORITHM: &str = "sha256";
/// Sectors (what device-mapper tables count in) per verity block.
const SECTORS_PER_BLOCK: u64 = BLOCK_SIZE / 512;

/// The verity parameters of a root slot, as its manifest states them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityParams {
    pub algorithm: String,
    pub block_size: u64,
    /// 4096-byte blocks of squashfs the tree covers (the data device's length).
    pub data_blocks: u64,
    /// Byte offset of the hash tree in the partition.
    pub hash_offset: u64,
    /// Hex SHA-256 of the tree's top block: what the signature vouches for.
    pub root_hash: String,
    /// Hex salt; empty for none.
    pub salt: String,
}

/// What the kernel does when a block does not match the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCorruption {
    /// The read fails with EIO: the initramfs's trial read-through reports it and reboots itself.
    Eio,
    /// The kernel restarts the machine: how the running system meets a block changed after the boot checks, so
    /// the boot loader's counter (not a half-working system) decides what runs.
    Restart,
}

/// Why a manifest's verity parameters cannot be loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerityError {
    #[error("verity algorithm {0:?} is not supported (only sha256)")]
    Algorithm(String),
    #[error("verity block size {0} is not supported (only 4096)")]
    BlockSize(u64),
    #[error("verity covers no data blocks")]
    NoData,
    #[error("verity hash offset {0} is not a multiple of 4096")]
    HashOffsetAlignment(u64),
    #[error("verity hash tree at byte {hash_offset} overlaps the {data_bytes} bytes of data")]
    HashOverlapsData { hash_offset: u64, data_bytes: u64 },
    #[error("verity hash tree at bytes {hash_offset}..{hash_end} does not fit before the trailer at byte {limit}")]
    HashBeyondSlot {
        hash_offset: u64,
        hash_end: u64,
        limit: u64,
    },
    #[error("verity root hash {0:?} is not 64 hex digits")]
    RootHash(String),
    #[error("verity salt {0:?} is not hex of at most 256 bytes")]
    Salt(String),
}

impl VerityParams {
    /// Checks the parameters against the slot format and the room the partition has before its trailer.
    pub fn validate(&self, trailer_offset: u64) -> Result<(), VerityError> {
        if self.algorithm != ALGORITHM {
            return Err(VerityError::Algorithm(self.algorithm.clone()));
        }
        if self.block_size != BLOCK_SIZE {
            return Err(VerityError::BlockSize(self.block_size));
        }
        if self.data_blocks == 0 {
            return Err(VerityError::NoData);
        }
        if !self.hash_offset.is_multiple_of(BLOCK_SIZE) {
            return Err(VerityError::HashOffsetAlignment(self.hash_offset));
        }
        let data_bytes = self.data_blocks.saturating_mul(BLOCK_SIZE);
        if self.hash_offset < data_bytes {
            return Err(VerityError::HashOverlapsData {
                hash_offset: self.hash_offset,
                data_bytes,
            });
        }
        let hash_end = self
            .hash_offset
            .saturating_add(tree_blocks(self.data_blocks).saturating_mul(BLOCK_SIZE));
        if hash_end > trailer_offset {
            return Err(VerityError::HashBeyondSlot {
                hash_offset: self.hash_offset,
                hash_end,
                limit: trailer_offset,
            });
        }
        if self.root_hash.len() != 64 || !is_lower_hex(&self.root_hash) {
            return Err(VerityError::RootHash(self.root_hash.clone()));
        }
        if !self.salt.len().is_multiple_of(2) || self.salt.len() > 512 || !is_lower_hex(&self.salt)
        {
            return Err(VerityError::Salt(self.salt.clone()));
        }
        Ok(())
    }

    /// Length of the verity device in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.data_blocks * SECTORS_PER_BLOCK
    }

    /// Bytes of the verity device: what a trial boot reads through.
    pub fn data_bytes(&self) -> u64 {
        self.data_blocks * BLOCK_SIZE
    }

    /// The `verity` target's parameters (dm-verity's table format version 1, data and hash tree on the same
    /// partition). Call [`VerityParams::validate`] first.
    pub fn table(&self, device: &str, on_corruption: OnCorruption) -> String {
        let salt = if self.salt.is_empty() {
            "-"
        } else {
            &self.salt
        };
        let mut line = format!(
            "1 {device} {device} {BLOCK_SIZE} {BLOCK_SIZE} {} {} {ALGORITHM} {} {salt}",
            self.data_blocks,
            self.hash_offset / BLOCK_SIZE,
            self.root_hash,
        );
        if on_corruption == OnCorruption::Restart {
            line.push_str(" 1 restart_on_corruption");
        }
        line
    }
}

/// Blocks of a sha256 hash tree over `data_blocks` blocks: 128 digests per block, level by level up to one.
pub fn tree_blocks(data_blocks: u64) -> u64 {
    const DIGESTS_PER_BLOCK: u64 = BLOCK_SIZE / 32;
    let mut total = 0;
    let mut level = data_blocks;
    loop {
        level = level.div_ceil(DIGESTS_PER_BLOCK);
        total += level;
        if level <= 1 {
            return total;
        }
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "4f1b3c35c4a3e10d35bd0c9ab7a6e6ccb2b0b3b2f6d1e2a9c8f7e6d5c4b3a291";
    const SALT: &str = "aa55aa55aa55aa55aa55aa55aa55aa55aa55aa55aa55aa55aa55aa55aa55aa55";
    const SLOT: u64 = 64 * 1024 * 1024;
    const TRAILER: u64 = SLOT - 64 * 1024;

    fn params() -> VerityParams {
        VerityParams {
            algorithm: "sha256".into(),
            block_size: 4096,
            data_blocks: 5000,
            hash_offset: 5000 * 4096,
            root_hash: ROOT.into(),
            salt: SALT.into(),
        }
    }

    #[test]
    fn table_line_is_veritysetups_format_with_restart_on_corruption() {
        let p = params();
        p.validate(TRAILER).unwrap();
        assert_eq!(
            p.table("/dev/vda2", OnCorruption::Restart),
            format!("1 /dev/vda2 /dev/vda2 4096 4096 5000 5000 sha256 {ROOT} {SALT} 1 restart_on_corruption")
        );
        assert_eq!(p.sectors(), 40000);
        assert_eq!(p.data_bytes(), 5000 * 4096);
    }

    #[test]
    fn the_trial_table_reports_corruption_as_a_read_error() {
        let mut p = params();
        p.salt.clear();
        p.hash_offset = 6000 * 4096;
        assert_eq!(
            p.table("/dev/vda3", OnCorruption::Eio),
            format!("1 /dev/vda3 /dev/vda3 4096 4096 5000 6000 sha256 {ROOT} -")
        );
    }

    #[test]
    fn values_that_could_add_table_arguments_are_refused() {
        let mut p = params();
        p.root_hash = format!("{} 1 ignore_corruption", &ROOT[..44]);
        assert!(matches!(p.validate(TRAILER), Err(VerityError::RootHash(_))));
        let mut p = params();
        p.root_hash = ROOT.to_uppercase();
        assert!(matches!(p.validate(TRAILER), Err(VerityError::RootHash(_))));
        let mut p = params();
        p.salt = "aa bb".into();
        assert!(matches!(p.validate(TRAILER), Err(VerityError::Salt(_))));
        let mut p = params();
        p.salt = "abc".into();
        assert!(matches!(p.validate(TRAILER), Err(VerityError::Salt(_))));
        let mut p = params();
        p.algorithm = "md5".into();
        assert_eq!(
            p.validate(TRAILER),
            Err(VerityError::Algorithm("md5".into()))
        );
    }

    #[test]
    fn a_tree_overlapping_data_or_trailer_is_refused() {
        let mut p = params();
        p.hash_offset = 4999 * 4096;
        assert!(matches!(
            p.validate(TRAILER),
            Err(VerityError::HashOverlapsData { .. })
        ));
        // 5000 blocks need 40 + 1 tree blocks.
        assert_eq!(tree_blocks(5000), 41);
        p.hash_offset = TRAILER - 40 * 4096;
        assert!(matches!(
            p.validate(TRAILER),
            Err(VerityError::HashBeyondSlot { .. })
        ));
        p.hash_offset = TRAILER - 41 * 4096;
        p.validate(TRAILER).unwrap();
        p.hash_offset = TRAILER;
        assert!(matches!(
            p.validate(TRAILER),
            Err(VerityError::HashBeyondSlot { .. })
        ));
        p.hash_offset = 5000 * 4096 + 512;
        assert!(matches!(
            p.validate(TRAILER),
            Err(VerityError::HashOffsetAlignment(_))
        ));
        p.hash_offset = 5000 * 4096;
        p.data_blocks = 0;
        assert_eq!(p.validate(TRAILER), Err(VerityError::NoData));
        p.data_blocks = u64::MAX / 2;
        assert!(p.validate(TRAILER).is_err());
        let mut p = params();
        p.block_size = 512;
        assert_eq!(p.validate(TRAILER), Err(VerityError::BlockSize(512)));
    }
}
