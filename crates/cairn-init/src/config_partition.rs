//! The config partition: found by its GPT name, formatted only when blank, never otherwise.

use std::io::Read;
use std::path::{Path, PathBuf};

/// What the start of a partition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents {
    /// Only zeros: a new image. Safe to format.
    Blank,
    /// An ext2/3/4 superblock.
    Ext4,
    /// Something else: never formatted automatically, so nothing is lost by a mistake.
    Foreign,
}

/// Bytes read to decide; mkfs writes within the first 64 KiB, so any real filesystem shows there.
pub const PROBE_BYTES: usize = 128 * 1024;
const EXT_MAGIC_OFFSET: usize = 1024 + 0x38;

/// Classifies the first bytes of a partition.
pub fn classify(head: &[u8]) -> Contents {
    if head.len() >= EXT_MAGIC_OFFSET + 2
        && head[EXT_MAGIC_OFFSET] == 0x53
        && head[EXT_MAGIC_OFFSET + 1] == 0xEF
    {
        Contents::Ext4
    } else if head.iter().all(|&b| b == 0) {
        Contents::Blank
    } else {
        Contents::Foreign
    }
}

/// Reads the head of a block device and classifies it.
pub fn probe(device: &Path) -> std::io::Result<Contents> {
    let mut head = vec![0u8; PROBE_BYTES];
    let mut f = std::fs::File::open(device)?;
    let mut filled = 0;
    while filled < head.len() {
        match f.read(&mut head[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    head.truncate(filled);
    Ok(classify(&head))
}

/// Finds the partition of the boot disk `disk` whose GPT name is `name`, by reading sysfs uevents.
/// Only the boot disk counts: a data disk carrying another box's partitions is never mistaken for ours.
pub fn find_by_partname(sys_class_block: &Path, disk: &str, name: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(sys_class_block).ok()?;
    let mut found: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let uevent = std::fs::read_to_string(e.path().join("uevent")).ok()?;
            let partname = uevent.lines().find_map(|l| l.strip_prefix("PARTNAME="))?;
            let devname = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
            let on_disk = devname.strip_prefix(disk).is_some_and(|rest| {
                let rest = rest.strip_prefix('p').unwrap_or(rest);
                !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit())
            });
            (partname == name && on_disk).then(|| devname.to_string())
        })
        .collect();
    found.sort();
    found.first().map(|d| Path::new("/dev").join(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_are_blank() {
        assert_eq!(classify(&vec![0u8; PROBE_BYTES]), Contents::Blank);
    }

    #[test]
    fn ext_superblock_is_recognised() {
        let mut head = vec![0u8; PROBE_BYTES];
        head[1080] = 0x53;
        head[1081] = 0xEF;
        head[2000] = 7;
        assert_eq!(classify(&head), Contents::Ext4);
    }

    #[test]
    fn anything_else_is_foreign_and_never_blank() {
        let mut head = vec![0u8; PROBE_BYTES];
        head[PROBE_BYTES - 1] = 1;
        assert_eq!(classify(&head), Contents::Foreign);
        assert_eq!(classify(b"hsqs"), Contents::Foreign);
    }

    #[test]
    fn partitions_are_found_by_gpt_name() {
        let dir = tempfile::tempdir().unwrap();
        for (dev, part) in [
            ("vda1", "boot"),
            ("vda4", "config"),
            ("vdb", ""),
            ("vdb4", "config"),
            ("vdaa1", "config"),
        ] {
            std::fs::create_dir(dir.path().join(dev)).unwrap();
            let mut uevent = format!("MAJOR=254\nDEVNAME={dev}\nDEVTYPE=partition\n");
            if !part.is_empty() {
                uevent.push_str(&format!("PARTNAME={part}\n"));
            }
            std::fs::write(dir.path().join(dev).join("uevent"), uevent).unwrap();
        }
        assert_eq!(
            find_by_partname(dir.path(), "vda", "config"),
            Some(PathBuf::from("/dev/vda4"))
        );
        assert_eq!(
            find_by_partname(dir.path(), "vdb", "config"),
            Some(PathBuf::from("/dev/vdb4"))
        );
        assert_eq!(find_by_partname(dir.path(), "vda", "root-b"), None);
    }
}
