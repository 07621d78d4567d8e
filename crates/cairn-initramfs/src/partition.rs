//! Finding the booted slot's partition on the boot medium, by GPT name, while the kernel is still probing.

use cairn_board::Board;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long block devices may take to appear after their driver loads, and how often to look.
pub struct Poll {
    pub deadline: Duration,
    pub every: Duration,
}

impl Poll {
    /// What the shell initramfs waited: 10 s, checking every 100 ms.
    pub const DEVICES: Poll = Poll {
        deadline: Duration::from_secs(10),
        every: Duration::from_millis(100),
    };
}

/// The device node of partition `name` on the board's boot medium (never a data disk that happens to carry a
/// partition of that name), polling `sys_class_block` until it appears or the deadline passes.
pub fn wait_for(sys_class_block: &Path, board: &Board, name: &str, poll: &Poll) -> Option<PathBuf> {
    let started = Instant::now();
    let is_boot = |path: &str| board.is_boot_device(path);
    loop {
        if let Some(dev) =
            cairn_init::config_partition::find_by_partname(sys_class_block, &is_boot, name)
        {
            return Some(dev);
        }
        if started.elapsed() >= poll.deadline {
            return None;
        }
        std::thread::sleep(poll.every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> Board {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../board/qemu-aarch64-virt/board.toml");
        Board::load(&path).unwrap()
    }

    /// A /sys/class/block with the boot medium on virtio-mmio and a data disk on PCIe that carries another
    /// box's root slots.
    fn fake_sysfs(root: &Path, parts: &[(&str, &str, &str)]) -> PathBuf {
        let class = root.join("class/block");
        std::fs::create_dir_all(&class).unwrap();
        for (disk, dev, partname) in parts {
            let d = root.join(disk).join(dev);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(
                d.join("uevent"),
                format!("MAJOR=254\nMINOR=2\nDEVNAME={dev}\nDEVTYPE=partition\nPARTN=2\nPARTNAME={partname}\n"),
            )
            .unwrap();
            std::os::unix::fs::symlink(&d, class.join(dev)).unwrap();
        }
        class
    }

    #[test]
    fn the_slot_is_found_on_the_boot_medium_not_on_a_data_disk() {
        let dir = tempfile::tempdir().unwrap();
        // A path shaped like the real one, so the board's glob (/sys/devices/platform/*.virtio_mmio/*) is what
        // decides: the test tree lives under a temporary directory, so match on its tail.
        let mmio = "devices/platform/a003c00.virtio_mmio/virtio1/block/vdb";
        let pci = "devices/pci0000:00/0000:00:02.0/virtio2/block/vda";
        let class = fake_sysfs(
            dir.path(),
            &[
                (pci, "vda2", "root-a"),
                (mmio, "vdb2", "root-a"),
                (mmio, "vdb3", "root-b"),
            ],
        );
        let mut board = board();
        board.storage.boot_device = format!(
            "{}/{}",
            dir.path().display(),
            "devices/platform/*.virtio_mmio/*"
        );
        let quick = Poll {
            deadline: Duration::ZERO,
            every: Duration::ZERO,
        };
        assert_eq!(
            wait_for(&class, &board, "root-a", &quick),
            Some(PathBuf::from("/dev/vdb2"))
        );
        assert_eq!(
            wait_for(&class, &board, "root-b", &quick),
            Some(PathBuf::from("/dev/vdb3"))
        );
        assert_eq!(wait_for(&class, &board, "config", &quick), None);
    }

    #[test]
    fn a_partition_that_appears_late_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let class = fake_sysfs(dir.path(), &[]);
        let mut board = board();
        board.storage.boot_device = format!("{}/disk", dir.path().display());
        let late = dir.path().to_path_buf();
        let maker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            fake_sysfs(&late, &[("disk", "vda2", "root-b")]);
        });
        let poll = Poll {
            deadline: Duration::from_secs(5),
            every: Duration::from_millis(20),
        };
        assert_eq!(
            wait_for(&class, &board, "root-b", &poll),
            Some(PathBuf::from("/dev/vda2"))
        );
        maker.join().unwrap();
    }
}
