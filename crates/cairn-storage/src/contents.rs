//! What a disk holds, read from its first and last blocks: an md RAID superblock (version 1.x), a known
//! filesystem or partition table, other data, nothing, or bytes that could not be read. Pure parsers over the
//! bytes, so the rules are tested on the host against blocks captured from real disks
//! (tests/fixtures/md/superblock-*.hex); [`read_ends`] reads through any `Read + Seek`, so a disk that fails
//! part way is tested on the host too.

use serde::Serialize;
use std::io::{Read, Seek, SeekFrom};

/// How many bytes from the start of a disk are read to tell what it holds.
pub const HEAD_BYTES: usize = 128 * 1024;
/// How many bytes from the end at least (md 1.0 superblocks and backup GPT headers live there); see
/// [`tail_offset`] for where the tail read starts.
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
    /// The head or the tail could not be read completely (an I/O error, a short read): what the disk holds is
    /// unknown, so it is never taken for blank. `error` says what failed, in the owner's words.
    Unreadable { error: String },
}

/// Where the tail read starts on a disk of `size` bytes: the 4 KiB-aligned block 8 to 12 KiB before the
/// end, where md 1.0 keeps its superblock (md's super_1_load: `(sectors - 16) & !7`). The read runs from
/// there to the very end, so it covers the last sector (a backup GPT header) on disks of any size, not only
/// those sized in whole 4 KiB blocks. `None` for disks too small to have a tail apart from their head.
pub fn tail_offset(size: u64) -> Option<u64> {
    let sectors = size / 512;
    (sectors > 16).then(|| ((sectors - 16) & !7) * 512)
}

/// Reads the first [`HEAD_BYTES`] (or the whole disk, when smaller) and everything from [`tail_offset`] to
/// the end of a disk of `size` bytes. Either read that fails or ends early is an error naming the byte range
/// and the cause, never a shorter buffer that would look blank.
pub fn read_ends(disk: &mut (impl Read + Seek), size: u64) -> Result<(Vec<u8>, Vec<u8>), String> {
    let head_len = (HEAD_BYTES as u64).min(size);
    let head = read_range(disk, 0, head_len)?;
    let tail = match tail_offset(size) {
        Some(at) => read_range(disk, at, size - at)?,
        None => vec![],
    };
    Ok((head, tail))
}

fn read_range(disk: &mut (impl Read + Seek), at: u64, len: u64) -> Result<Vec<u8>, String> {
    let end = at + len;
    let mut buf = vec![0u8; len as usize];
    disk.seek(SeekFrom::Start(at))
        .map_err(|e| format!("seeking to byte {at} failed: {e}"))?;
    let mut done = 0usize;
    while done < buf.len() {
        match disk.read(&mut buf[done..]) {
            Ok(0) => {
                return Err(format!(
                    "reading bytes {at}..{end} stopped short at byte {}",
                    at + done as u64
                ))
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(format!(
                    "reading bytes {at}..{end} failed at byte {}: {e}",
                    at + done as u64
                ))
            }
        }
    }
    Ok(buf)
}

/// What a disk of `size` bytes holds, read through `disk`: [`identify`] over its ends, or
/// [`Contents::Unreadable`] when they cannot be read completely. One exception keeps arrays running: an md
/// superblock found in a head that was read completely names the disk a member even when its tail fails, so a
/// member with a bad sector near its end is still assembled (md handles bad blocks inside an array).
pub fn read_contents(disk: &mut (impl Read + Seek), size: u64) -> Contents {
    match read_ends(disk, size) {
        Ok((head, tail)) => identify(&head, &tail),
        Err(error) => {
            let head_len = (HEAD_BYTES as u64).min(size);
            if let Ok(head) = read_range(disk, 0, head_len) {
                if let c @ Contents::Md(_) = identify(&head, &[]) {
                    return c;
                }
            }
            Contents::Unreadable { error }
        }
    }
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
    // Metadata 1.0 sits 8 to 12 KiB before the end (4 KiB aligned): the tail read starts at that block.
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
        // `(sectors - 16) & !7`); read from there to the end, the tail covers the last sector too (a backup
        // GPT header lives there), on disks sized in whole 4 KiB blocks and on those that are not.
        for sectors in [
            64u64 * 2048,
            256 * 2048,
            1024 * 1024 * 2048,
            262_147,
            262_151,
            17,
            23,
        ] {
            let size = sectors * 512;
            let at = tail_offset(size).unwrap();
            assert_eq!(at, ((sectors - 16) & !7) * 512, "{sectors} sectors");
            assert!(size - at >= TAIL_BYTES as u64, "{sectors} sectors");
        }
        assert_eq!(tail_offset(16 * 512), None);
    }

    /// A disk image in memory whose reads fail inside `bad` (as a disk with unreadable sectors does), or end
    /// early at `ends` (a short read).
    struct Failing {
        bytes: std::io::Cursor<Vec<u8>>,
        bad: std::ops::Range<u64>,
        ends: u64,
    }

    impl Failing {
        fn new(bytes: Vec<u8>, bad: std::ops::Range<u64>) -> Failing {
            let ends = bytes.len() as u64;
            Failing {
                bytes: std::io::Cursor::new(bytes),
                bad,
                ends,
            }
        }
    }

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let at = self.bytes.position();
            if at >= self.ends {
                return Ok(0);
            }
            if self.bad.contains(&at) {
                return Err(std::io::Error::from_raw_os_error(5));
            }
            // Like the kernel: a read stops before the first bad byte and fails when it starts there.
            let stop = [self.bad.start, self.ends]
                .into_iter()
                .filter(|&b| b > at)
                .min()
                .unwrap_or(u64::MAX);
            let n = buf.len().min((stop - at) as usize);
            self.bytes.read(&mut buf[..n])
        }
    }

    impl Seek for Failing {
        fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
            self.bytes.seek(to)
        }
    }

    #[test]
    fn a_blank_disk_that_reads_completely_is_blank() {
        let size = 1024 * 1024 + 3 * 512;
        let mut d = Failing::new(vec![0; size], 0..0);
        assert_eq!(read_contents(&mut d, size as u64), Contents::Blank);
    }

    #[test]
    fn a_read_error_in_the_head_is_unreadable_not_blank() {
        let size = 1024 * 1024;
        let mut d = Failing::new(vec![0; size], 51_200..51_712);
        let Contents::Unreadable { error } = read_contents(&mut d, size as u64) else {
            panic!("a disk whose head fails to read was taken for readable");
        };
        assert!(error.contains("bytes 0..131072"), "{error}");
        assert!(error.contains("failed at byte 51200"), "{error}");
        assert!(error.contains("os error 5"), "{error}");
    }

    #[test]
    fn a_read_error_in_the_last_sector_is_unreadable_on_any_disk_size() {
        // 1 MiB and three sectors: not a whole number of 4 KiB blocks, so the md 1.0 block read from its
        // aligned start stops 1.5 KiB before the end; the last sector must still be read.
        for size in [1024 * 1024u64, 1024 * 1024 + 3 * 512] {
            let mut d = Failing::new(vec![0; size as usize], size - 512..size);
            assert!(
                matches!(read_contents(&mut d, size), Contents::Unreadable { .. }),
                "{size}: an unreadable last sector was not noticed"
            );
        }
    }

    #[test]
    fn a_disk_that_ends_before_its_size_is_unreadable() {
        let size = 1024 * 1024u64;
        let mut d = Failing::new(vec![0; size as usize], 0..0);
        d.ends = 64 * 1024;
        let Contents::Unreadable { error } = read_contents(&mut d, size) else {
            panic!("a short read was taken for a blank disk");
        };
        assert!(error.contains("stopped short at byte 65536"), "{error}");
    }

    #[test]
    fn a_member_whose_tail_fails_is_still_a_member() {
        let size = 1024 * 1024u64;
        let mut bytes = vec![0u8; size as usize];
        bytes[..HEAD_BYTES].copy_from_slice(&disk_with_superblock_at_4k());
        let mut d = Failing::new(bytes.clone(), size - 512..size);
        assert!(matches!(read_contents(&mut d, size), Contents::Md(_)));
        // ...but not when the head itself fails: then nothing is known.
        let mut d = Failing::new(bytes, 4096..4608);
        assert!(matches!(
            read_contents(&mut d, size),
            Contents::Unreadable { .. }
        ));
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
