//! The machine as it is right now: md arrays in sysfs, /proc/mounts, what the first and last blocks of each
//! disk hold. Read fresh at every question and never cached, so the pages show a failed disk the moment the
//! kernel knows; nothing here changes the machine.

use super::{norm_uuid, read_trim, Storage};
use crate::contents::{self, Contents, MdSuperblock};
use crate::volumes::{DiskSnapshot, VolumeRecord};
use crate::{discover, Disk, DiskRole, StorageError};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The kernel's view of one md array.
#[derive(Debug, Clone, Default)]
pub(super) struct MdLive {
    pub(super) sync_action: String,
    pub(super) degraded: u32,
    pub(super) size_bytes: u64,
    pub(super) component_kib: u64,
    pub(super) sync: Option<(u64, u64)>,
    pub(super) speed_kib_s: Option<u64>,
    pub(super) mismatch_cnt: u64,
    /// (kernel name, state words from dev-*/state, device still exists).
    pub(super) members: Vec<(String, String, bool)>,
}

impl MdLive {
    pub(super) fn member(&self, device: &str) -> Option<&(String, String, bool)> {
        self.members.iter().find(|(d, _, _)| d == device)
    }

    /// The member on a disk: the whole disk or one of its partitions.
    pub(super) fn member_on(&self, disk: &str) -> Option<&(String, String, bool)> {
        self.members
            .iter()
            .find(|(d, _, _)| d == disk || is_partition_of(d, disk))
    }
}

/// Everything read in one pass over the disks.
pub(super) struct Survey {
    pub(super) disks: Vec<Surveyed>,
    pub(super) records: Vec<VolumeRecord>,
    pub(super) mounts: Vec<(String, String)>,
}

/// One disk as read: what its start holds, which md array runs on it, and the md superblocks on it (on the
/// whole disk, or on its partitions: arrays made by other systems often live on partitions, several per disk).
pub(super) struct Surveyed {
    pub(super) disk: Disk,
    pub(super) contents: Contents,
    pub(super) holder: Option<String>,
    /// (device carrying the superblock: the disk or one of its partitions, the superblock).
    pub(super) md: Vec<(String, MdSuperblock)>,
}

/// Whether kernel name `part` is a partition of disk `disk` (`vdb1` of `vdb`, `nvme0n1p2` of `nvme0n1`).
pub(super) fn is_partition_of(part: &str, disk: &str) -> bool {
    part.strip_prefix(disk).is_some_and(|rest| {
        let digits = rest.strip_prefix('p').unwrap_or(rest);
        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
    })
}

impl Storage {
    pub(super) fn md_dir(&self, minor: u32) -> PathBuf {
        self.inner.paths.sys.join(format!("block/md{minor}/md"))
    }

    /// `/dev/<name>`, for a tool.
    pub(super) fn dev_path(&self, device: impl AsRef<Path>) -> PathBuf {
        self.inner.paths.dev.join(device)
    }

    pub(super) fn md_dev(&self, minor: u32) -> PathBuf {
        self.dev_path(format!("md{minor}"))
    }

    pub(super) fn md_live(&self, minor: u32) -> Option<MdLive> {
        let dir = self.md_dir(minor);
        let state = read_trim(&dir.join("array_state"));
        if state.is_empty() || state == "clear" || state == "inactive" {
            return None;
        }
        let mut members = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(dev) = name.strip_prefix("dev-") {
                    // /sys/class/block lists partitions too (members of arrays made on partitions).
                    let exists = self.inner.paths.sys.join("class/block").join(dev).exists()
                        || self.inner.paths.sys.join("block").join(dev).exists();
                    members.push((dev.to_string(), read_trim(&e.path().join("state")), exists));
                }
            }
        }
        members.sort();
        let speed = read_trim(&dir.join("sync_speed")).parse().ok();
        Some(MdLive {
            sync_action: read_trim(&dir.join("sync_action")),
            degraded: read_trim(&dir.join("degraded")).parse().unwrap_or(0),
            size_bytes: read_trim(&self.inner.paths.sys.join(format!("block/md{minor}/size")))
                .parse::<u64>()
                .unwrap_or(0)
                * 512,
            component_kib: read_trim(&dir.join("component_size")).parse().unwrap_or(0),
            sync: crate::md::parse_sync_completed(&read_trim(&dir.join("sync_completed"))),
            speed_kib_s: speed,
            mismatch_cnt: read_trim(&dir.join("mismatch_cnt")).parse().unwrap_or(0),
            members,
        })
    }

    /// The running array for a record: by its md number, checked against the UUID.
    pub(super) fn live_of(&self, r: &VolumeRecord) -> Option<MdLive> {
        if r.uuid.is_empty() {
            return self.md_live(r.md_minor);
        }
        let uuid = read_trim(&self.md_dir(r.md_minor).join("uuid"));
        if !uuid.is_empty() && norm_uuid(&uuid) != norm_uuid(&r.uuid) {
            return None;
        }
        self.md_live(r.md_minor)
    }

    pub(super) fn mounts(&self) -> Vec<(String, String)> {
        read_trim(&self.inner.paths.proc.join("mounts"))
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((w.next()?.to_string(), w.next()?.replace("\\040", " ")))
            })
            .collect()
    }

    pub(super) fn mount_point(&self, name: &str) -> PathBuf {
        self.inner.paths.data.join(name)
    }

    pub(super) fn is_mounted(&self, mounts: &[(String, String)], name: &str) -> bool {
        let mp = self.mount_point(name).to_string_lossy().into_owned();
        mounts.iter().any(|(_, m)| *m == mp)
    }

    /// Reads the start and end of a disk past the page cache (md writes superblocks around it). A disk that
    /// cannot be opened or read completely is [`Contents::Unreadable`], never blank.
    pub(super) fn read_contents(&self, device: &str) -> Contents {
        let path = self.inner.paths.dev.join(device);
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                return Contents::Unreadable {
                    error: format!("opening {} failed: {e}", path.display()),
                }
            }
        };
        let _ = nix::fcntl::posix_fadvise(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        );
        match f.seek(SeekFrom::End(0)) {
            Ok(size) => contents::read_contents(&mut f, size),
            Err(e) => Contents::Unreadable {
                error: format!("finding the size of {} failed: {e}", path.display()),
            },
        }
    }

    pub(super) fn survey(&self) -> Result<Survey, StorageError> {
        let found = discover(&self.inner.paths.sys, &self.inner.board);
        let disks = found
            .into_iter()
            .map(|d| {
                if d.role == DiskRole::Boot {
                    return Surveyed {
                        disk: d,
                        contents: Contents::Blank,
                        holder: None,
                        md: vec![],
                    };
                }
                let dir = self.inner.paths.sys.join("block").join(&d.device);
                let contents = self.read_contents(&d.device);
                let mut holder = crate::first_holder(&dir);
                let mut md = vec![];
                match &contents {
                    Contents::Md(sb) => md.push((d.device.clone(), sb.clone())),
                    // A disk whose own ends fail to read may still carry arrays on partitions the kernel found.
                    Contents::Data { .. } | Contents::Unreadable { .. } => {
                        for part in crate::partitions(&dir) {
                            if let Contents::Md(sb) = self.read_contents(&part) {
                                holder = holder.or_else(|| crate::first_holder(&dir.join(&part)));
                                md.push((part, sb));
                            }
                        }
                    }
                    Contents::Blank => {}
                }
                Surveyed {
                    disk: d,
                    contents,
                    holder,
                    md,
                }
            })
            .collect();
        Ok(Survey {
            disks,
            records: self.records()?,
            mounts: self.mounts(),
        })
    }

    /// The survey without reading any disk: enough to tell which member disks are present (the monitor's
    /// once-a-second pass must cost next to nothing).
    pub(super) fn survey_light(&self) -> Result<Survey, StorageError> {
        Ok(Survey {
            disks: discover(&self.inner.paths.sys, &self.inner.board)
                .into_iter()
                .map(|d| Surveyed {
                    disk: d,
                    contents: Contents::Blank,
                    holder: None,
                    md: vec![],
                })
                .collect(),
            records: self.records()?,
            mounts: self.mounts(),
        })
    }

    /// Checks, right before a write that erases, that the disk at `device` (a disk, or one of its partitions)
    /// is still the one that was checked: same serial (or kernel name, for disks without one) and same size.
    /// A disk swapped in between (hot-plug bays reuse kernel names) is [`StorageError::DiskChanged`].
    pub(super) fn still_the_disk(
        &self,
        expected: &DiskSnapshot,
        device: &str,
    ) -> Result<(), StorageError> {
        let sys = &self.inner.paths.sys;
        let node = [
            sys.join("class/block").join(device),
            sys.join("block").join(device),
        ]
        .into_iter()
        .find_map(|p| std::fs::canonicalize(p).ok());
        // A partition's sysfs directory sits inside its disk's.
        let disk_dir = node.map(|n| match n.join("partition").exists() {
            true => n.parent().map(Path::to_path_buf).unwrap_or(n),
            false => n,
        });
        let found = disk_dir.map(|dir| {
            let name = dir
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let serial = crate::serial_of(&dir);
            let id = if serial.is_empty() { name } else { serial };
            (id, crate::size_of(&dir))
        });
        match found {
            Some((id, size)) if id == expected.id && size == expected.size_bytes => Ok(()),
            other => Err(StorageError::DiskChanged {
                device: format!("/dev/{device}"),
                expected: expected.describe(),
                found: match other {
                    Some((id, size)) => format!("disk {id} of {size} bytes"),
                    None => "gone".into(),
                },
            }),
        }
    }

    pub(super) fn device_of(&self, disk_id: &str) -> Option<String> {
        discover(&self.inner.paths.sys, &self.inner.board)
            .into_iter()
            .find(|d| d.id == disk_id)
            .map(|d| d.device)
    }

    pub(super) fn free_minor(&self, records: &[VolumeRecord]) -> u32 {
        (0..)
            .find(|n| {
                !records.iter().any(|r| r.md_minor == *n)
                    && read_trim(&self.md_dir(*n).join("array_state")).is_empty()
            })
            .unwrap_or(0)
    }
}
