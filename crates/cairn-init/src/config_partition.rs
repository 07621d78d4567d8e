//! The config partition: found by its GPT name, formatted only when blank, never otherwise.
//!
//! What init does with it at boot ([`bring_up`]) and what the owner does from the console ([`repair`],
//! [`format`]) are decisions over a [`Partition`] seam, tested on the host with a fake; [`Device`] is the real
//! one (the block device, `mke2fs`, `e2fsck` and `mount`). When the partition cannot be used, nothing writable
//! is put in its place: the daemon then refuses setup instead of offering a new box to the network.

use cairn_store::unavailable::{ConfigState, RecoveryError, Unavailable};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The steps taken on the partition, so the decisions between them can be tested without a disk.
pub trait Partition {
    /// Reads the head and classifies it.
    fn probe(&self) -> std::io::Result<Contents>;
    /// Makes a new, empty settings filesystem.
    fn make_filesystem(&self) -> Result<(), String>;
    /// Checks the filesystem and repairs what it can (`e2fsck -y`; `force` checks even a clean one).
    fn check(&self, force: bool) -> Result<(), String>;
    /// Mounts it where the settings live.
    fn mount(&self) -> Result<(), String>;
    /// Unmounts whatever is at the settings' place (a placeholder, or the partition itself before a check).
    fn unmount(&self);
}

/// What init does at boot: format only a blank partition, mount an ext4 one (checking it when it does not
/// mount), and leave anything else exactly as it is.
pub fn bring_up(device: &str, part: &dyn Partition) -> ConfigState {
    let unavailable = |why| ConfigState::Unavailable {
        device: Some(device.to_string()),
        why,
    };
    let contents = match part.probe() {
        Ok(c) => c,
        Err(e) => {
            return unavailable(Unavailable::Unreadable {
                device: device.into(),
                error: e.to_string(),
            })
        }
    };
    match contents {
        Contents::Foreign => unavailable(Unavailable::Unrecognised {
            device: device.into(),
        }),
        Contents::Blank => match part.make_filesystem().and_then(|()| part.mount()) {
            Ok(()) => ConfigState::Formatted {
                device: device.into(),
            },
            Err(error) => unavailable(Unavailable::Unmountable {
                device: device.into(),
                error,
            }),
        },
        Contents::Ext4 => {
            if part.mount().is_ok() {
                return ConfigState::Mounted {
                    device: device.into(),
                };
            }
            // The check's own verdict matters less than whether the filesystem mounts after it.
            let checked = part.check(false);
            match part.mount() {
                Ok(()) => ConfigState::Repaired {
                    device: device.into(),
                },
                Err(error) => unavailable(Unavailable::Unmountable {
                    device: device.into(),
                    error: match checked {
                        Err(check) => format!("{error}; the check said: {check}"),
                        Ok(()) => error,
                    },
                }),
            }
        }
    }
}

/// The console's repair: a full check (e2fsck finds a backup superblock when the first one is gone), then the
/// mount. Never formats.
pub fn repair(device: &str, part: &dyn Partition) -> Result<ConfigState, RecoveryError> {
    part.unmount();
    part.check(true).map_err(RecoveryError::CheckFailed)?;
    part.mount().map_err(RecoveryError::MountFailed)?;
    Ok(ConfigState::Repaired {
        device: device.into(),
    })
}

/// The console's format, after the owner typed the confirmation: a new, empty settings filesystem on the
/// config partition only.
pub fn format(device: &str, part: &dyn Partition) -> Result<ConfigState, RecoveryError> {
    part.unmount();
    part.make_filesystem()
        .map_err(RecoveryError::FormatFailed)?;
    part.mount().map_err(RecoveryError::MountFailed)?;
    Ok(ConfigState::Formatted {
        device: device.into(),
    })
}

/// The real partition: its block device, mounted at `mount_point`.
pub struct Device {
    pub device: PathBuf,
    pub mount_point: PathBuf,
}

/// How long a check of the config partition may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(300);

impl Device {
    fn name(&self) -> String {
        self.device.to_string_lossy().into_owned()
    }
}

impl Partition for Device {
    fn probe(&self) -> std::io::Result<Contents> {
        probe(&self.device)
    }

    fn make_filesystem(&self) -> Result<(), String> {
        let reserved = cairn_store::Headroom::RESERVED_PERCENT.to_string();
        cairn_exec::run(
            "/sbin/mke2fs",
            &[
                "-q",
                "-F",
                "-t",
                "ext4",
                "-L",
                "cairn-config",
                // Root's share, stated rather than left to mke2fs's default. It holds back ordinary users
                // only: ksmbd's kernel threads write past it (the settings' own reserve covers logins).
                "-m",
                &reserved,
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
                &self.name(),
            ],
            Duration::from_secs(120),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    fn check(&self, force: bool) -> Result<(), String> {
        let mut args = vec!["-y"];
        if force {
            args.push("-f");
        }
        let dev = self.name();
        args.push(&dev);
        match cairn_exec::run("/sbin/e2fsck", &args, CHECK_TIMEOUT) {
            Ok(_) => Ok(()),
            // 1 and 2: errors were found and corrected.
            Err(cairn_exec::ExecError::Failed {
                code: Some(1 | 2), ..
            }) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn mount(&self) -> Result<(), String> {
        let flags =
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_NOATIME;
        mount(
            Some(&self.device),
            &self.mount_point,
            Some("ext4"),
            flags,
            None::<&str>,
        )
        .map_err(|e| format!("mount {}: {e}", self.name()))
    }

    fn unmount(&self) {
        // The system volume's image (or its placeholder) sits on the partition: it comes off first.
        while umount2(&self.mount_point.join("shares"), MntFlags::empty()).is_ok() {}
        // Stacked mounts (a placeholder under the partition) come off one by one.
        while umount2(&self.mount_point, MntFlags::empty()).is_ok() {}
    }
}

/// Puts an empty, read-only placeholder where an unusable partition would have been mounted, so nothing
/// (no daemon, no shell script) can mistake the root filesystem's folder for the settings.
pub fn mount_placeholder(mount_point: &Path) -> Result<(), String> {
    mount(
        Some("tmpfs"),
        mount_point,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
        Some("mode=0500,size=4k"),
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A partition whose answers the test sets, recording the steps taken.
    struct Fake {
        contents: std::io::Result<Contents>,
        mounts: RefCell<Vec<bool>>,
        check_ok: bool,
        steps: RefCell<Vec<&'static str>>,
    }

    impl Fake {
        fn new(contents: std::io::Result<Contents>, mounts: &[bool]) -> Fake {
            Fake {
                contents,
                mounts: RefCell::new(mounts.iter().rev().copied().collect()),
                check_ok: true,
                steps: RefCell::default(),
            }
        }
        fn steps(&self) -> Vec<&'static str> {
            self.steps.borrow().clone()
        }
    }

    impl Partition for Fake {
        fn probe(&self) -> std::io::Result<Contents> {
            self.steps.borrow_mut().push("probe");
            match &self.contents {
                Ok(c) => Ok(*c),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            }
        }
        fn make_filesystem(&self) -> Result<(), String> {
            self.steps.borrow_mut().push("mkfs");
            Ok(())
        }
        fn check(&self, force: bool) -> Result<(), String> {
            self.steps
                .borrow_mut()
                .push(if force { "fsck -f" } else { "fsck" });
            if self.check_ok {
                Ok(())
            } else {
                Err("e2fsck: Bad magic number".into())
            }
        }
        fn unmount(&self) {
            self.steps.borrow_mut().push("umount");
        }
        fn mount(&self) -> Result<(), String> {
            self.steps.borrow_mut().push("mount");
            if self.mounts.borrow_mut().pop().unwrap_or(false) {
                Ok(())
            } else {
                Err("EUCLEAN".into())
            }
        }
    }

    const DEV: &str = "/dev/vda4";

    #[test]
    fn only_a_blank_partition_is_formatted() {
        let f = Fake::new(Ok(Contents::Blank), &[true]);
        assert!(matches!(bring_up(DEV, &f), ConfigState::Formatted { .. }));
        assert_eq!(f.steps(), ["probe", "mkfs", "mount"]);
    }

    #[test]
    fn foreign_contents_are_neither_formatted_nor_replaced() {
        let f = Fake::new(Ok(Contents::Foreign), &[true]);
        assert_eq!(
            bring_up(DEV, &f),
            ConfigState::Unavailable {
                device: Some(DEV.into()),
                why: Unavailable::Unrecognised { device: DEV.into() }
            }
        );
        assert_eq!(f.steps(), ["probe"], "nothing is written, nothing mounted");
    }

    #[test]
    fn an_unreadable_partition_is_unavailable_with_the_error() {
        let f = Fake::new(Err(std::io::Error::other("Input/output error")), &[true]);
        match bring_up(DEV, &f) {
            ConfigState::Unavailable {
                why: Unavailable::Unreadable { error, .. },
                ..
            } => assert!(error.contains("Input/output"), "{error}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(f.steps(), ["probe"]);
    }

    #[test]
    fn ext4_that_does_not_mount_is_checked_once_then_mounted_or_left_unavailable() {
        let f = Fake::new(Ok(Contents::Ext4), &[true]);
        assert!(matches!(bring_up(DEV, &f), ConfigState::Mounted { .. }));
        assert_eq!(f.steps(), ["probe", "mount"]);

        let f = Fake::new(Ok(Contents::Ext4), &[false, true]);
        assert!(matches!(bring_up(DEV, &f), ConfigState::Repaired { .. }));
        assert_eq!(f.steps(), ["probe", "mount", "fsck", "mount"]);

        let mut f = Fake::new(Ok(Contents::Ext4), &[false, false]);
        f.check_ok = false;
        match bring_up(DEV, &f) {
            ConfigState::Unavailable {
                why: Unavailable::Unmountable { error, .. },
                ..
            } => assert!(
                error.contains("EUCLEAN") && error.contains("Bad magic"),
                "{error}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            f.steps(),
            ["probe", "mount", "fsck", "mount"],
            "never formatted"
        );
    }

    #[test]
    fn the_console_repair_checks_then_mounts_and_never_formats() {
        let f = Fake::new(Ok(Contents::Foreign), &[true]);
        assert!(matches!(repair(DEV, &f), Ok(ConfigState::Repaired { .. })));
        assert_eq!(f.steps(), ["umount", "fsck -f", "mount"]);

        let mut f = Fake::new(Ok(Contents::Foreign), &[true]);
        f.check_ok = false;
        assert!(matches!(
            repair(DEV, &f),
            Err(RecoveryError::CheckFailed(_))
        ));
        assert_eq!(
            f.steps(),
            ["umount", "fsck -f"],
            "not mounted after a failed check"
        );
    }

    #[test]
    fn the_console_format_makes_a_filesystem_and_mounts_it() {
        let f = Fake::new(Ok(Contents::Foreign), &[true]);
        assert!(matches!(format(DEV, &f), Ok(ConfigState::Formatted { .. })));
        assert_eq!(f.steps(), ["umount", "mkfs", "mount"]);
    }

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
