//! What a disk holds, read from its first and last blocks: an md RAID superblock (version 1.x), a known
//! filesystem or partition table, other data, or nothing. Pure parsers over the bytes, so the rules are tested
//! on the host against blocks captured from real disks (tests/fixtures/md/superblock-*.hex).

use serde::Serialize;

/// How many bytes from the start of a disk are read to tell what it holds.
pub const HEAD_BYTES: usize = 128 * 1024;
/// How many bytes from the end (md 1.0 superblocks and backup GPT headers live there).
pub const TAIL_BYTES: usize = 8 * 1024;

const MD_MAGIC: u32 = 0xa92b_4efc;

/// A member's place in its array, from the superblock's role table.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase", tag = "kind", content = "slot")]
pub enum MemberRole {
    Active(u16),
    Spare,
    Faulty,
    Journal,
}

/// An md superblock (metadata 1.0, 1.1 or 1.2), the fields Cairn needs to assemble and name an array.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MdSuperblock {
    /// The array's UUID as mdadm prints it (`92cef75c:3273207a:3e100ad7:3714c3ca`).
    pub uuid: String,
    /// `homehost:name` as written at creation (`cairn:photos`), or a bare name.
    pub name: String,
    /// md level number: -1 linear, 0, 1, 4, 5, 6, 10.
    pub level: i32,
    pub raid_disks: u32,
    pub role: MemberRole,
    /// Update counter: the member with the highest count has the newest view of the array.
    pub events: u64,
    pub metadata: &'static str,
    /// The array's size in bytes, as members contribute it.
    pub member_data_bytes: u64,
}

impl MdSuperblock {
    /// The level as Cairn names it (`raid5`), or `md level N` for ones it does not create.
    pub fn level_name(&self) -> String {
        match self.level {
            0 => "raid0".into(),
            1 if self.raid_disks == 1 => "single".into(),
            1 => "raid1".into(),
            5 => "raid5".into(),
            6 => "raid6".into(),
            10 => "raid10".into(),
            -1 => "linear".into(),
            n => format!("md level {n}"),
        }
    }

    /// The name part after `homehost:`.
    pub fn short_name(&self) -> &str {
        self.name.rsplit(':').next().unwrap_or(&self.name)
    }
}

/// What a disk holds.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Contents {
    /// Only zeros where anything would be recorded: safe to use.
    Blank,
    /// A member of an md array.
    Md(MdSuperblock),
    /// Something else: `what` names it for the owner ("an ext4 filesystem", "a partition table").
    Data { what: String },
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

/// Parses an md version-1 superblock that starts at `block[0]`; `None` when there is none.
pub fn parse_md_superblock(block: &[u8], metadata: &'static str) -> Option<MdSuperblock> {
    if block.len() < 256 || le32(block, 0) != MD_MAGIC || le32(block, 4) != 1 {
        return None;
    }
    let uuid_bytes = &block[16..32];
    let uuid = uuid_bytes
        .chunks(4)
        .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join(":");
    let name_raw = &block[32..64];
    let name_len = name_raw.iter().position(|&b| b == 0).unwrap_or(32);
    let name = String::from_utf8_lossy(&name_raw[..name_len]).into_owned();
    let dev_number = le32(block, 160) as usize;
    let max_dev = le32(block, 220) as usize;
    let role = if dev_number < max_dev && 256 + 2 * dev_number + 2 <= block.len() {
        match le16(block, 256 + 2 * dev_number) {
            0xffff => MemberRole::Spare,
            0xfffe => MemberRole::Faulty,
            0xfffd => MemberRole::Journal,
            n => MemberRole::Active(n),
        }
    } else {
        MemberRole::Spare
    };
    Some(MdSuperblock {
        uuid,
        name,
        level: le32(block, 72) as i32,
        raid_disks: le32(block, 92),
        role,
        events: le64(block, 200),
        metadata,
        member_data_bytes: le64(block, 136) * 512,
    })
}

/// Names what a disk holds from its first [`HEAD_BYTES`] and last [`TAIL_BYTES`] (either may be shorter).
pub fn identify(head: &[u8], tail: &[u8]) -> Contents {
    if head.len() >= 4096 + 256 {
        if let Some(sb) = parse_md_superblock(&head[4096..], "1.2") {
            return Contents::Md(sb);
        }
    }
    if let Some(sb) = parse_md_superblock(head, "1.1") {
        return Contents::Md(sb);
    }
    // Metadata 1.0 sits 8 KiB before the end (rounded to 4 KiB): the tail read is exactly that block.
    if let Some(sb) = parse_md_superblock(tail, "1.0") {
        return Contents::Md(sb);
    }
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    let what = if at(512, b"EFI PART") {
        Some("a GPT partition table")
    } else if at(1080, &[0x53, 0xef]) {
        Some("an ext2/3/4 filesystem")
    } else if at(0, b"XFSB") {
        Some("an XFS filesystem")
    } else if at(65600, b"_BHRfS_M") {
        Some("a Btrfs filesystem")
    } else if at(0, b"LUKS\xba\xbe") {
        Some("an encrypted (LUKS) volume")
    } else if at(4086, b"SWAPSPACE2") {
        Some("Linux swap space")
    } else if at(3, b"NTFS    ") {
        Some("an NTFS filesystem")
    } else if at(510, &[0x55, 0xaa]) {
        Some("a partition table or boot sector")
    } else {
        None
    };
    match what {
        Some(w) => Contents::Data { what: w.into() },
        None if head.iter().chain(tail.iter()).any(|&b| b != 0) => Contents::Data {
            what: "data Cairn does not recognise".into(),
        },
        None => Contents::Blank,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `od -An -tx1 -v` output back into bytes.
    fn from_od(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect()
    }

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/md")
                .join(name),
        )
        .unwrap()
    }

    fn disk_with_superblock_at_4k() -> Vec<u8> {
        let sb = from_od(&fixture("superblock-raid5-member.hex"));
        let mut head = vec![0u8; HEAD_BYTES];
        head[4096..4096 + sb.len()].copy_from_slice(&sb);
        head
    }

    #[test]
    fn a_real_raid5_member_superblock_names_its_array() {
        let head = disk_with_superblock_at_4k();
        let Contents::Md(sb) = identify(&head, &[0; TAIL_BYTES]) else {
            panic!("not recognised as an md member");
        };
        // Compared with `mdadm --examine --export` on the same disk.
        assert_eq!(sb.uuid, "92cef75c:3273207a:3e100ad7:3714c3ca");
        assert_eq!(sb.name, "cairn:vol1");
        assert_eq!(sb.short_name(), "vol1");
        assert_eq!(sb.level_name(), "raid5");
        assert_eq!(sb.raid_disks, 4);
        assert_eq!(sb.role, MemberRole::Active(1));
        assert_eq!(sb.events, 18);
        assert_eq!(sb.metadata, "1.2");
    }

    /// The real member's superblock with one little-endian u32 field (md_p.h's offset) changed.
    fn superblock_with(at: usize, value: u32) -> Vec<u8> {
        let mut sb = from_od(&fixture("superblock-raid5-member.hex"));
        sb[at..at + 4].copy_from_slice(&value.to_le_bytes());
        sb
    }

    const LEVEL: usize = 72;
    const RAID_DISKS: usize = 92;
    const DEV_NUMBER: usize = 160;
    const MAX_DEV: usize = 220;

    fn level_name_of(level: u32, raid_disks: u32) -> String {
        let mut sb = superblock_with(LEVEL, level);
        sb[RAID_DISKS..RAID_DISKS + 4].copy_from_slice(&raid_disks.to_le_bytes());
        parse_md_superblock(&sb, "1.2").unwrap().level_name()
    }

    #[test]
    fn a_one_disk_mirror_reads_as_single() {
        assert_eq!(level_name_of(1, 1), "single");
    }

    #[test]
    fn a_mirror_of_two_or_more_disks_reads_as_raid1() {
        assert_eq!(level_name_of(1, 2), "raid1");
        assert_eq!(level_name_of(1, 3), "raid1");
        // Only a mirror is named by its disk count.
        assert_eq!(level_name_of(0, 1), "raid0");
    }

    #[test]
    fn a_members_data_area_is_its_data_size_in_sectors() {
        // md_p.h: data_size counts 512-byte sectors. This member's disk was 128 MiB: its data starts 2 MiB in
        // (data_offset 4096 sectors) and the other 126 MiB hold data, as in the 387072 KiB (3 x 126 MiB) raid5 of
        // mdstat-raid5-failed.txt, built on disks of the same size.
        let sb =
            parse_md_superblock(&from_od(&fixture("superblock-raid5-member.hex")), "1.2").unwrap();
        assert_eq!(sb.member_data_bytes, 126 * 1024 * 1024);
        assert_eq!(sb.member_data_bytes * 3, 387072 * 1024);
    }

    #[test]
    fn a_member_numbered_beyond_the_role_table_is_a_spare() {
        // md's super_1_validate: dev_number >= max_dev means spare, whatever the table holds there. This member
        // is number 1 and its table says active slot 1.
        let inside = parse_md_superblock(&superblock_with(MAX_DEV, 2), "1.2").unwrap();
        assert_eq!(inside.role, MemberRole::Active(1));
        let beyond = parse_md_superblock(&superblock_with(MAX_DEV, 1), "1.2").unwrap();
        assert_eq!(beyond.role, MemberRole::Spare);
    }

    #[test]
    fn a_role_entry_ending_at_the_buffers_edge_is_read() {
        // Member n's role is the u16 at 256 + 2n: a buffer ending right after it holds it, one byte less cuts
        // it. This array's table: members 0 to 2 in slots 0 to 2, member 3 replaced (spare), member 4 in slot 3.
        let table = [
            MemberRole::Active(0),
            MemberRole::Active(1),
            MemberRole::Active(2),
            MemberRole::Spare,
            MemberRole::Active(3),
        ];
        for (n, role) in table.into_iter().enumerate() {
            let sb = superblock_with(DEV_NUMBER, n as u32);
            let end = 256 + 2 * n + 2;
            let whole = parse_md_superblock(&sb[..end], "1.2").unwrap();
            assert_eq!(whole.role, role, "member {n}");
            let cut = parse_md_superblock(&sb[..end - 1], "1.2").unwrap();
            assert_eq!(cut.role, MemberRole::Spare, "member {n}");
        }
    }

    #[test]
    fn a_superblock_filling_the_buffer_exactly_is_read() {
        // The fixed part of a version-1 superblock is 256 bytes: a head ending right after it still names the
        // array; one byte less is not a superblock.
        let head = disk_with_superblock_at_4k();
        let Contents::Md(sb) = identify(&head[..4096 + 256], &[]) else {
            panic!("not recognised as an md member");
        };
        assert_eq!(
            (sb.uuid.as_str(), sb.metadata),
            ("92cef75c:3273207a:3e100ad7:3714c3ca", "1.2")
        );
        assert!(parse_md_superblock(&head[4096..4096 + 255], "1.2").is_none());
    }

    #[test]
    fn the_tail_read_from_a_1_0_superblock_reaches_the_last_sector() {
        // md 1.0 keeps its superblock 8 to 12 KiB before the end, 4 KiB aligned (super_1_load:
        // `(sectors - 16) & !7`); read from there, the tail must also cover the last sector, where a backup GPT
        // header lives, on any disk sized in whole 4 KiB blocks.
        for mib in [64u64, 256, 1024 * 1024] {
            let sectors = mib * 2048;
            let superblock = ((sectors - 16) & !7) * 512;
            assert_eq!(superblock + TAIL_BYTES as u64, sectors * 512, "{mib} MiB");
        }
    }

    #[test]
    fn a_damaged_magic_is_not_an_array_but_still_data() {
        let mut head = disk_with_superblock_at_4k();
        head[4096] ^= 0xff;
        assert!(matches!(identify(&head, &[]), Contents::Data { .. }));
    }

    #[test]
    fn blank_disks_and_known_filesystems() {
        assert_eq!(
            identify(&vec![0; HEAD_BYTES], &[0; TAIL_BYTES]),
            Contents::Blank
        );
        let mut ext = vec![0u8; HEAD_BYTES];
        ext[1080] = 0x53;
        ext[1081] = 0xef;
        assert_eq!(
            identify(&ext, &[]),
            Contents::Data {
                what: "an ext2/3/4 filesystem".into()
            }
        );
        let mut gpt = vec![0u8; HEAD_BYTES];
        gpt[512..520].copy_from_slice(b"EFI PART");
        gpt[510] = 0x55;
        gpt[511] = 0xaa;
        assert_eq!(
            identify(&gpt, &[]),
            Contents::Data {
                what: "a GPT partition table".into()
            }
        );
        let mut tail_only = vec![0u8; TAIL_BYTES];
        tail_only[100] = 1;
        assert!(matches!(
            identify(&vec![0; HEAD_BYTES], &tail_only),
            Contents::Data { .. }
        ));
    }

    #[test]
    fn truncated_blocks_never_panic() {
        let head = disk_with_superblock_at_4k();
        // A head shorter than 4 KiB + 256 bytes is not searched at 4 KiB (slicing there panics below 4096).
        for len in [0, 1, 100, 3840, 4000, 4095, 4096, 4100, 4351, 4352, 5000] {
            let _ = identify(&head[..len], &head[..len.min(300)]);
        }
    }
}
