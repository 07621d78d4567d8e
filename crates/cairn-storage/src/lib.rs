//! Storage: the box's disks, the volumes Cairn builds on them (md RAID with ext4), the jobs that build, rebuild
//! and scrub them, and the storage event log.
//!
//! Owns: finding disks in sysfs and telling what each holds (`discover`, `contents`, `md`), the rules a new
//! volume must pass before any disk is touched (`volumes`), and the manager (`manager`) that records what each
//! volume should be in the store and reads how it is from the kernel at every question. Every change to the
//! machine (mdadm, mke2fs, e2fsck, modprobe, mounts, wiping a disk's ends, md `sync_action`) goes through one
//! seam, [`Tools`]; the crate never spawns a process itself (`cairn-exec` does, inside `tools::system`) and has
//! no unsafe code. Never touches: the boot medium (never offered as a data disk), shares, users, the network.
//!
//! Testing: parsers and rules are pure and tested against fixture files taken from real disks and real tool
//! output (`tests/fixtures/md`). The manager runs on the host over a fixture tree (`Paths` pointing at
//! temporary `sys`, `dev`, `proc`, `data`) with `tools::fake::Fake` (cargo feature `fake`, on for this crate's
//! own tests), an md simulator that writes sysfs, holders, /proc/mounts and md 1.2 superblocks as the kernel
//! would and can cut the power before any call: `tests/manager.rs` (what disks and found arrays are called,
//! refusals), `tests/orchestration.rs` (create, fail, replace, scrub, the monitor, power cuts). The QEMU
//! storage scenario (`tests/tests/storage.rs`) runs the same code with real mdadm and disks pulled from bays.
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

pub mod contents;
mod error;
pub mod manager;
pub mod md;
pub mod tools;
pub mod volumes;

pub use error::StorageError;

/// This crate's settings schema steps for its disk and volume records (none yet: they have not changed since schema 1).
/// A change to their shape adds its forward and backward step here; the binary hands them to the store.
pub static MIGRATIONS: &[cairn_store::Migration] = &[];
pub use manager::{DiskView, Event, JobView, MemberView, Paths, Storage, VolumeView};
pub use tools::{Fsck, Tools};
pub use volumes::{CreateRequest, Level, VolumeRecord};

use cairn_board::Board;
use serde::Serialize;
use std::path::Path;

/// What a disk is used for.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DiskRole {
    /// Blank, or nothing Cairn recognises on it that holds data: may be used for a new volume.
    Free,
    /// A member of an md array.
    Member,
    /// Holds a partition table or a filesystem: data Cairn did not create.
    Foreign,
    /// The medium the box boots from. Never offered.
    Boot,
    /// Its first or last blocks could not be read (I/O error, short read): what it holds is unknown, so it is
    /// never taken for blank; building on it needs a confirmation that names the error.
    Unreadable,
}

/// One disk, as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Disk {
    /// Stable identifier: the serial when the disk reports one, else the kernel name.
    pub id: String,
    /// Kernel name (`vdb`, `sda`): changes between boots, so never stored.
    pub device: String,
    pub serial: String,
    pub model: String,
    pub size_bytes: u64,
    pub rotational: bool,
    /// The bay the disk sits in, when the board says how to tell.
    pub slot: Option<u32>,
    pub role: DiskRole,
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Every whole disk the board treats as a data-disk bay, plus the boot medium (marked `boot`), sorted by name.
/// `sys` is the sysfs root (`/sys`).
pub fn discover(sys: &Path, board: &Board) -> Vec<Disk> {
    let root = std::fs::canonicalize(sys).unwrap_or_else(|_| sys.to_path_buf());
    let Ok(entries) = std::fs::read_dir(sys.join("block")) else {
        return vec![];
    };
    let pci_slots = pci_slots(sys);
    let mut disks: Vec<Disk> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let device = e.file_name().to_string_lossy().into_owned();
            // The device's path as the kernel names it (`/sys/devices/...`), whatever root `sys` is.
            let real = std::fs::canonicalize(e.path())
                .ok()
                .and_then(|p| {
                    p.strip_prefix(&root)
                        .ok()
                        .map(|r| Path::new("/sys").join(r).to_string_lossy().into_owned())
                })
                .unwrap_or_default();
            let is_boot = board.is_boot_device(&real);
            if !is_boot && !board.is_data_disk(&device, &real) {
                return None;
            }
            let dir = e.path();
            let serial = serial_of(&dir);
            let model = {
                let m = read(&dir.join("device/model"));
                if m.is_empty() {
                    "Virtual disk".to_string()
                } else {
                    m
                }
            };

            let role = if is_boot {
                DiskRole::Boot
            } else if first_holder(&dir).is_some() && read(&dir.join("md/level")).is_empty() {
                DiskRole::Member
            } else if !partitions(&dir).is_empty() {
                DiskRole::Foreign
            } else {
                DiskRole::Free
            };
            Some(Disk {
                id: if serial.is_empty() {
                    device.clone()
                } else {
                    serial.clone()
                },
                device,
                serial,
                model,
                size_bytes: size_of(&dir),
                rotational: read(&dir.join("queue/rotational")) == "1",
                slot: board.bay_of(&real).or_else(|| {
                    if !board.storage.bays_from_pci_slots {
                        return None;
                    }
                    pci_slots
                        .iter()
                        .find(|(_, addr)| real.contains(&format!("/{addr}.")))
                        .map(|(n, _)| *n)
                }),
                role,
            })
        })
        .collect();
    disks.sort_by(|a, b| a.device.cmp(&b.device));
    disks
}

/// The serial a disk reports (`serial`, or `device/serial` for SCSI/SATA), from its sysfs directory.
pub(crate) fn serial_of(disk_dir: &Path) -> String {
    let s = read(&disk_dir.join("serial"));
    if s.is_empty() {
        read(&disk_dir.join("device/serial"))
    } else {
        s
    }
}

/// The disk's size in bytes, from its sysfs directory (`size` counts 512-byte sectors).
pub(crate) fn size_of(disk_dir: &Path) -> u64 {
    read(&disk_dir.join("size")).parse::<u64>().unwrap_or(0) * 512
}

/// The first device stacked on a block device (`holders/`): the md array it runs in, say.
pub(crate) fn first_holder(device_dir: &Path) -> Option<String> {
    std::fs::read_dir(device_dir.join("holders"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
}

/// A disk's partitions by kernel name, in order (sysfs subdirectories with a `partition` file).
pub(crate) fn partitions(disk_dir: &Path) -> Vec<String> {
    let mut parts: Vec<String> = std::fs::read_dir(disk_dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().join("partition").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    parts.sort();
    parts
}

/// Numbered PCI hot-plug slots and the bus address behind each (`/sys/bus/pci/slots/<n>/address`).
fn pci_slots(sys: &Path) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir(sys.join("bus/pci/slots")) else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n: u32 = e.file_name().to_str()?.parse().ok()?;
            let addr = read(&e.path().join("address"));
            (!addr.is_empty()).then_some((n, addr))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> Board {
        Board::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../board/qemu-aarch64-virt/board.toml"),
        )
        .unwrap()
    }

    /// Lays a disk out like the kernel: the device under devices/, a link to it under block/.
    fn disk(sys: &Path, name: &str, serial: &str, sectors: u64, extra: &[&str]) {
        let parent = if serial.is_empty() && name != "loop0" {
            "devices/platform/a003e00.virtio_mmio/virtio31/block"
        } else {
            "devices/platform/4010000000.pcie/pci0000:00/0000:00:02.0/block"
        };
        let d = sys.join(parent).join(name);
        std::fs::create_dir_all(sys.join("block")).unwrap();
        std::fs::create_dir_all(&d).unwrap();
        std::os::unix::fs::symlink(&d, sys.join("block").join(name)).unwrap();
        std::fs::create_dir_all(d.join("queue")).unwrap();
        std::fs::create_dir_all(d.join("holders")).unwrap();
        std::fs::write(d.join("size"), format!("{sectors}\n")).unwrap();
        std::fs::write(d.join("serial"), format!("{serial}\n")).unwrap();
        std::fs::write(d.join("queue/rotational"), "0\n").unwrap();
        for x in extra {
            match *x {
                "partitioned" => {
                    std::fs::create_dir_all(d.join(format!("{name}1"))).unwrap();
                    std::fs::write(d.join(format!("{name}1/partition")), "1\n").unwrap();
                }
                "md-member" => std::fs::create_dir_all(d.join("holders/md0")).unwrap(),
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn disks_are_found_with_their_roles_and_the_boot_medium_is_marked() {
        let sys = tempfile::tempdir().unwrap();
        disk(sys.path(), "vda", "", 659_456, &["partitioned"]);
        disk(sys.path(), "vdb", "CAIRN-BAY1", 2_097_152, &[]);
        disk(sys.path(), "vdc", "CAIRN-BAY2", 2_097_152, &["md-member"]);
        disk(sys.path(), "vdd", "CAIRN-BAY3", 2_097_152, &["partitioned"]);
        disk(sys.path(), "loop0", "", 100, &[]);
        for (n, addr) in [
            ("1", "0000:01:00"),
            ("2", "0000:00:02"),
            ("0-1", "0000:03:00"),
        ] {
            std::fs::create_dir_all(sys.path().join("bus/pci/slots").join(n)).unwrap();
            std::fs::write(
                sys.path().join("bus/pci/slots").join(n).join("address"),
                format!("{addr}\n"),
            )
            .unwrap();
        }
        let found = discover(sys.path(), &board());
        let roles: Vec<(&str, DiskRole)> =
            found.iter().map(|d| (d.device.as_str(), d.role)).collect();
        assert_eq!(
            roles,
            vec![
                ("vda", DiskRole::Boot),
                ("vdb", DiskRole::Free),
                ("vdc", DiskRole::Member),
                ("vdd", DiskRole::Foreign)
            ]
        );
        assert_eq!(found[1].id, "CAIRN-BAY1");
        assert_eq!(
            found[1].slot,
            Some(2),
            "the PCI slot whose address the disk sits behind"
        );
        assert_eq!(found[0].slot, None);
        assert_eq!(found[1].size_bytes, 1024 * 1024 * 1024);
        assert!(!found[1].rotational);
    }

    #[test]
    fn a_missing_sysfs_finds_nothing_rather_than_failing() {
        assert!(discover(Path::new("/nonexistent"), &board()).is_empty());
    }
}
