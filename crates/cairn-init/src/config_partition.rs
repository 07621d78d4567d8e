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

/// Finds the partition named `name` (GPT) on the boot medium, whose resolved sysfs path `is_boot` accepts.
/// Only the boot medium counts: a data disk carrying another box's partitions is never mistaken for ours.
pub fn find_by_partname(
    sys_class_block: &Path,
    is_boot: &dyn Fn(&str) -> bool,
    name: &str,
) -> Option<PathBuf> {
    let entries = std::fs::read_dir(sys_class_block).ok()?;
    let mut found: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let uevent = std::fs::read_to_string(e.path().join("uevent")).ok()?;
            let partname = uevent.lines().find_map(|l| l.strip_prefix("PARTNAME="))?;
            let devname = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
            // A partition's sysfs directory sits inside its disk's: the parent is the disk.
            let disk_path = std::fs::canonicalize(e.path())
                .ok()?
                .parent()?
                .to_string_lossy()
                .into_owned();
            let on_disk = is_boot(&disk_path);
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
    fn partitions_are_found_by_gpt_name_on_the_boot_medium_only() {
        let dir = tempfile::tempdir().unwrap();
        let class = dir.path().join("class");
        std::fs::create_dir(&class).unwrap();
        // vdc is the boot medium (probed last); vda is a data disk that carries another box's partitions.
        for (disk, dev, part) in [
            ("mmio/vdc", "vdc1", "boot"),
            ("mmio/vdc", "vdc4", "config"),
            ("pci/vda", "vda4", "config"),
        ] {
            let d = dir.path().join(disk).join(dev);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(
                d.join("uevent"),
                format!("MAJOR=254\nDEVNAME={dev}\nDEVTYPE=partition\nPARTNAME={part}\n"),
            )
            .unwrap();
            std::os::unix::fs::symlink(&d, class.join(dev)).unwrap();
        }
        let is_boot = |p: &str| p.contains("/mmio/");
        assert_eq!(
            find_by_partname(&class, &is_boot, "config"),
            Some(PathBuf::from("/dev/vdc4"))
        );
        assert_eq!(find_by_partname(&class, &is_boot, "root-b"), None);
    }
}
