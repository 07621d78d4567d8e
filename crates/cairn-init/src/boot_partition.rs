//! The boot partition (FAT, GPT name `boot`) mounted read-write at `/boot`: U-Boot's boot script, the two
//! boot-state copies (`/boot/env-1/cairn.env`, `/boot/env-2/cairn.env`) and the slots' kernels and initrds
//! (`/boot/slot-a/`, `/boot/slot-b/`), which the boot state and the update install read and write.
//!
//! Mounted after the config partition, unmounted at shutdown so the FAT's dirty bit is cleared. A box whose
//! boot partition cannot be mounted still serves its owner: init logs why and carries on (updates and the
//! boot commit then report the partition missing).

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::path::{Path, PathBuf};

/// Where the boot partition is mounted.
pub const BOOT_MOUNT: &str = "/boot";
/// Its GPT partition name on the boot medium.
pub const PARTNAME: &str = "boot";

/// Why the boot partition is not mounted.
#[derive(Debug, thiserror::Error)]
pub enum BootPartitionError {
    #[error("no partition named {PARTNAME:?} on the boot medium")]
    NoPartition,
    #[error("cannot mount {device} at {BOOT_MOUNT}: {source}")]
    Mount {
        device: PathBuf,
        source: nix::errno::Errno,
    },
}

/// Mount options: `flush` writes a file's data out as soon as it is closed, so boot state written by Cairn
/// reaches the medium without waiting for writeback; a FAT error stops writes instead of spreading damage.
const OPTIONS: &str = "flush,errors=remount-ro";

/// The FAT checker in the image (dosfstools).
const FSCK_FAT: &str = "/sbin/fsck.fat";
/// A 128 MiB FAT is checked in seconds; bounded so a failing medium cannot hold the boot.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Checks and repairs the FAT on `device` before it is mounted: FAT has no journal, so a power cut in the
/// middle of a write (an update's boot files, the boot state) leaves clusters allocated that no file owns, and
/// after a few such cuts the partition is full. Returns the line for the log.
pub fn repair(device: &Path) -> String {
    let dev = device.to_string_lossy();
    // -a: repair without asking; -w: write changes at once.
    match cairn_exec::run(FSCK_FAT, &["-a", "-w", &dev], CHECK_TIMEOUT) {
        Ok(_) => format!("boot partition {dev} checked: clean"),
        Err(cairn_exec::ExecError::Failed {
            code: Some(1),
            stdout,
            ..
        }) => format!(
            "boot partition {dev} checked: repaired ({})",
            stdout
                .lines()
                .filter(|l| !l.trim().is_empty())
                .take(4)
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Err(e) => {
            format!("ERROR boot partition {dev} could not be checked: {e}; mounting it as it is")
        }
    }
}

/// Finds the boot partition on the boot medium (whose resolved sysfs path `is_boot` accepts) under
/// `sys_class_block`, lets `check` look at it (see [`repair`]) and mounts it read-write at `at`; returns the
/// device.
pub fn mount_boot(
    sys_class_block: &Path,
    is_boot: &dyn Fn(&str) -> bool,
    check: &mut dyn FnMut(&Path),
    at: &Path,
) -> Result<PathBuf, BootPartitionError> {
    let device = crate::config_partition::find_by_partname(sys_class_block, is_boot, PARTNAME)
        .ok_or(BootPartitionError::NoPartition)?;
    check(&device);
    let _ = std::fs::create_dir_all(at);
    mount(
        Some(&device),
        at,
        Some("vfat"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_NOATIME,
        Some(OPTIONS),
    )
    .map_err(|source| BootPartitionError::Mount {
        device: device.clone(),
        source,
    })?;
    Ok(device)
}

/// Removes what an install cut by a power failure left in the slots' folders under the mounted boot partition
/// (`slot-*/.*.new`: a file being written when the power went); returns how many. Such a file can hold clusters
/// its directory entry does not account for, which only a check after its removal gives back, so the caller
/// checks the partition again when this found any.
pub fn remove_leftovers(at: &Path) -> usize {
    let mut removed = 0;
    for slot in ["slot-a", "slot-b"] {
        let Ok(entries) = std::fs::read_dir(at.join(slot)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.')
                && name.ends_with(".new")
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

/// Unmounts `at` cleanly (the FAT is marked clean); if something still holds it, remounts it read-only so
/// nothing more is written. Returns the line for the log; `None` when nothing was mounted there.
pub fn unmount_boot(at: &Path) -> Option<String> {
    match umount2(at, MntFlags::empty()) {
        Ok(()) => Some("boot partition unmounted cleanly".into()),
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => None,
        Err(e) => {
            let _ = mount(
                None::<&str>,
                at,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            );
            Some(format!(
                "ERROR unmount {}: {e}; remounted read-only",
                at.display()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cut_installs_leftovers_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        for (slot, files) in [
            ("slot-a", &["Image", "initrd.img"][..]),
            ("slot-b", &["Image", ".Image.new", ".initrd.img.new"][..]),
        ] {
            std::fs::create_dir_all(dir.path().join(slot)).unwrap();
            for f in files {
                std::fs::write(dir.path().join(slot).join(f), b"x").unwrap();
            }
        }
        std::fs::write(dir.path().join(".boot.new"), b"x").unwrap();
        assert_eq!(super::remove_leftovers(dir.path()), 2);
        assert!(dir.path().join("slot-a/Image").exists());
        assert!(dir.path().join("slot-b/Image").exists());
        assert!(!dir.path().join("slot-b/.Image.new").exists());
        assert!(
            dir.path().join(".boot.new").exists(),
            "only the slots' folders"
        );
        assert_eq!(super::remove_leftovers(dir.path()), 0);
    }

    use super::*;

    /// A fake /sys/class/block with the boot partition on a data disk only: never taken for ours.
    #[test]
    fn boot_partition_on_a_data_disk_is_not_mounted() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("devices/pci/vdb");
        let part = disk.join("vdb1");
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(
            part.join("uevent"),
            "MAJOR=254\nMINOR=17\nDEVNAME=vdb1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=boot\n",
        )
        .unwrap();
        let class = dir.path().join("class");
        std::fs::create_dir_all(&class).unwrap();
        std::os::unix::fs::symlink(&part, class.join("vdb1")).unwrap();
        let target = dir.path().join("boot");
        let err =
            mount_boot(&class, &|p: &str| p.contains("mmio"), &mut |_| {}, &target).unwrap_err();
        assert!(matches!(err, BootPartitionError::NoPartition), "{err}");
        assert_eq!(
            err.to_string(),
            "no partition named \"boot\" on the boot medium"
        );
    }

    #[test]
    fn unmounting_where_nothing_is_mounted_says_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(unmount_boot(dir.path()), None);
    }
}
