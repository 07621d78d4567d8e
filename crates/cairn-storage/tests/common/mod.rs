//! The host bench the storage tests share: a sysfs tree shaped like the kernel's, disks as files under `dev/`
//! (with real superblock bytes where a test needs them), a real store, and the md simulator
//! (`tools::fake::Fake`) standing in for mdadm, mke2fs and mount.
#![allow(dead_code)] // each test file uses its own share of the helpers

use cairn_board::Board;
use cairn_storage::tools::fake::Fake;
use cairn_storage::{CreateRequest, DiskRole, Paths, Storage};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Bench {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub fake: Arc<Fake>,
    pub store: cairn_store::Store,
    pub board: Board,
}

impl Bench {
    pub fn new() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for d in ["sys/block", "dev", "proc", "data", "store"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("proc/mounts"), "/dev/vde4 /config ext4 rw 0 0\n").unwrap();
        let board = Board::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../board/qemu-aarch64-virt/board.toml"),
        )
        .unwrap();
        let store = cairn_store::Store::open(&root.join("store")).unwrap();
        let paths = paths(&root);
        Bench {
            _dir: dir,
            fake: Arc::new(Fake::new(&paths)),
            root,
            store,
            board,
        }
    }

    /// The boot medium and blank disks `vda`, `vdb`, ... in bays 1, 2, ..., with the given serials.
    pub fn with_blank_disks(serials: &[&str]) -> Bench {
        let b = Bench::new();
        b.disk("vde", 0, "", &[]);
        for (i, serial) in serials.iter().enumerate() {
            let name = format!("vd{}", (b'a' + i as u8) as char);
            b.disk(&name, i as u32 + 1, serial, &[]);
        }
        b
    }

    pub fn paths(&self) -> Paths {
        paths(&self.root)
    }

    /// A disk in PCIe bay `bay` (or the virtio-mmio boot medium when `bay` is 0) holding `head` at its start.
    pub fn disk(&self, name: &str, bay: u32, serial: &str, head: &[u8]) {
        let parent = if bay == 0 {
            "sys/devices/platform/a003e00.virtio_mmio/virtio3/block".to_string()
        } else {
            format!("sys/devices/platform/4010000000.pcie/pci0000:00/0000:00:0{bay}.0/0000:0{bay}:00.0/virtio{bay}/block")
        };
        let d = self.root.join(parent).join(name);
        for sub in ["queue", "holders"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::os::unix::fs::symlink(&d, self.root.join("sys/block").join(name)).unwrap();
        std::fs::write(d.join("size"), "524288\n").unwrap(); // 256 MiB
        std::fs::write(d.join("serial"), format!("{serial}\n")).unwrap();
        std::fs::write(d.join("queue/rotational"), "1\n").unwrap();
        if bay > 0 {
            let slot = self.root.join(format!("sys/bus/pci/slots/{bay}"));
            std::fs::create_dir_all(&slot).unwrap();
            std::fs::write(slot.join("address"), format!("0000:0{bay}:00\n")).unwrap();
        }
        let mut bytes = vec![0u8; 256 * 1024];
        bytes[..head.len()].copy_from_slice(head);
        std::fs::write(self.root.join("dev").join(name), bytes).unwrap();
    }

    /// A partition `name` of disk `disk` holding `head` at its start.
    pub fn partition(&self, disk: &str, name: &str, head: &[u8]) {
        let d = std::fs::canonicalize(self.root.join("sys/block").join(disk)).unwrap();
        std::fs::create_dir_all(d.join(name).join("holders")).unwrap();
        std::fs::write(d.join(name).join("partition"), "1\n").unwrap();
        // The kernel lists partitions under class/block (where md's members are looked up), not under block/.
        std::fs::create_dir_all(self.root.join("sys/class/block")).unwrap();
        std::os::unix::fs::symlink(d.join(name), self.root.join("sys/class/block").join(name))
            .unwrap();
        let mut bytes = vec![0u8; 64 * 1024];
        bytes[..head.len()].copy_from_slice(head);
        std::fs::write(self.root.join("dev").join(name), bytes).unwrap();
    }

    /// Disk `name` fails every read from now on (its node opens, reads fail with an I/O error, as a disk with
    /// bad sectors does under the page cache): here a directory stands in for it, whose reads fail (EISDIR).
    pub fn fail_reads(&self, name: &str) {
        let node = self.root.join("dev").join(name);
        std::fs::remove_file(&node).unwrap();
        std::fs::create_dir(&node).unwrap();
    }

    /// A storage manager over the bench (a new one after a power cut is the daemon starting again).
    pub fn storage(&self) -> Storage {
        self.storage_on(self.board.clone())
    }

    pub fn storage_on(&self, board: Board) -> Storage {
        Storage::with_tools(board, self.paths(), self.store.clone(), self.fake.clone()).unwrap()
    }

    /// The job records as stored (with the daemon's step), newest last.
    pub fn job_records(&self) -> Vec<serde_json::Value> {
        self.store
            .table("jobs")
            .unwrap()
            .all::<serde_json::Value>()
            .unwrap()
            .into_iter()
            .map(|(_, j)| j)
            .collect()
    }

    pub fn volume_records(&self) -> Vec<cairn_storage::VolumeRecord> {
        self.store
            .table("volumes")
            .unwrap()
            .all::<cairn_storage::VolumeRecord>()
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    pub fn save_volume_record(&self, r: &cairn_storage::VolumeRecord) {
        self.store
            .table("volumes")
            .unwrap()
            .put(&r.name, r)
            .unwrap();
        self.store.commit().unwrap();
    }

    /// Device names of disks the fake was asked to wipe (superblock or ends), from call `from` on.
    pub fn wiped_since(&self, from: usize) -> Vec<String> {
        let calls = self.fake.calls();
        calls[from.min(calls.len())..]
            .iter()
            .filter(|c| c.wipes())
            .flat_map(|c| c.args.iter())
            .filter_map(|a| Path::new(a).file_name())
            .map(|f| f.to_string_lossy().into_owned())
            .collect()
    }

    /// Method names of the calls from `from` on.
    pub fn methods_since(&self, from: usize) -> Vec<&'static str> {
        let calls = self.fake.calls();
        calls[from.min(calls.len())..]
            .iter()
            .map(|c| c.method)
            .collect()
    }
}

fn paths(root: &Path) -> Paths {
    Paths {
        sys: root.join("sys"),
        dev: root.join("dev"),
        proc: root.join("proc"),
        data: root.join("data"),
    }
}

/// Polls `done` until it holds, failing with `what` after a deadline (never a fixed sleep).
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The first 8 KiB of a RAID 5 member from the image (superblock at 4 KiB), its array UUID changed to `uuid`.
pub fn member(uuid_byte: u8, name: &str) -> Vec<u8> {
    let hex = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/md/superblock-raid5-member.hex"),
    )
    .unwrap();
    let sb: Vec<u8> = hex
        .split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    let mut head = vec![0u8; 8192];
    head[4096..4096 + sb.len()].copy_from_slice(&sb);
    head[4096 + 16] = uuid_byte;
    head[4096 + 32..4096 + 64].fill(0);
    head[4096 + 32..4096 + 32 + name.len()].copy_from_slice(name.as_bytes());
    head
}

pub fn ext4() -> Vec<u8> {
    let mut head = vec![0u8; 2048];
    head[1080] = 0x53;
    head[1081] = 0xef;
    head
}

pub fn gpt() -> Vec<u8> {
    let mut head = vec![0u8; 1024];
    head[510] = 0x55;
    head[511] = 0xaa;
    head[512..520].copy_from_slice(b"EFI PART");
    head
}

pub fn request(name: &str, level: &str, disks: &[&str], confirm: Option<&str>) -> CreateRequest {
    CreateRequest {
        name: name.into(),
        level: level.into(),
        disks: disks.iter().map(|d| d.to_string()).collect(),
        confirm: confirm.map(String::from),
    }
}

/// Every disk but the boot medium is free, or belongs to a volume this box has recorded.
pub fn every_disk_is_free_or_recorded(s: &Storage) -> Result<(), String> {
    let recorded: Vec<String> = s
        .volumes()
        .unwrap()
        .into_iter()
        .filter(|v| v.state != "found")
        .map(|v| v.name)
        .collect();
    for d in s.disks().unwrap() {
        if d.disk.role == DiskRole::Boot {
            continue;
        }
        let free = d.disk.role == DiskRole::Free && d.in_use.is_none() && d.volume.is_none();
        let ours = d.volume.as_ref().is_some_and(|v| recorded.contains(v));
        if !free && !ours {
            return Err(format!(
                "{} is neither free nor part of a recorded volume: role {:?}, volume {:?}, holds {:?}, in use {:?}",
                d.disk.id, d.disk.role, d.volume, d.holds, d.in_use
            ));
        }
    }
    Ok(())
}

/// A bench disk (256 MiB, serial = id) as a volume record names it.
pub fn snapshot(id: &str, bay: u32) -> cairn_storage::volumes::DiskSnapshot {
    cairn_storage::volumes::DiskSnapshot {
        id: id.into(),
        serial: id.into(),
        model: "Virtual disk".into(),
        size_bytes: 256 << 20,
        slot: Some(bay),
    }
}
