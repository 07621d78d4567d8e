//! The verified root (docs/updates.md, "Verified root"): every box mounts its root slot through dm-verity with the
//! root hash from the slot's signed trailer. One boot of each board carries the checks.

use cairn_qemu::{BootDisk, BootOptions, Machine, Manifest};
use std::time::{Duration, Instant};

const BOOT_DEADLINE: Duration = Duration::from_secs(240);
const CONSOLE: Duration = Duration::from_secs(30);
const MIB: u64 = 1024 * 1024;

/// Byte offset and size of a partition of the boot medium: the image's GPT starts the first partition at 1 MiB
/// and lays them out in the board's order and sizes.
fn partition(board: &cairn_board::Board, name: &str) -> (u64, u64) {
    let mut offset = MIB;
    for p in &board.partitions {
        let size = u64::from(p.size_mib) * MIB;
        if p.name == name {
            return (offset, size);
        }
        offset += size;
    }
    panic!("board {} has no partition {name}", board.name);
}

/// Boots a fresh box of `board` and checks that `/` is the verity device over slot A: the mount table, the
/// device-mapper device's name and uuid, the one partition under it, read-only, and the initramfs's line.
fn boots_through_dm_verity(board: &str) {
    let (manifest, dir) = Manifest::load(board).unwrap_or_else(|e| panic!("{e}"));
    let disk = BootDisk::flash(&manifest, &dir).unwrap();
    let started = Instant::now();
    let mut m = Machine::boot(board, &disk, &BootOptions::default()).unwrap();
    let (took, _) = m.wait_healthy(started, BOOT_DEADLINE).unwrap();
    eprintln!("{board}: healthy {took:?} after QEMU start, through dm-verity");
    let log = m.console_log();
    let line = log
        .lines()
        .find(|l| l.starts_with("initramfs: slot a "))
        .unwrap_or_else(|| panic!("no initramfs line for slot a:\n{log}"));
    assert!(
        line.contains("verified through dm-verity"),
        "initramfs: {line}"
    );

    let root = m.serial("grep ' / ' /proc/mounts", CONSOLE).unwrap();
    assert!(
        root.lines()
            .any(|l| l.starts_with("/dev/mapper/root / squashfs ro")),
        "/ is not the verity device, read-only: {root:?}"
    );
    let dm = m
        .serial(
            "cat /sys/block/dm-0/dm/name /sys/block/dm-0/dm/uuid /sys/block/dm-0/ro; ls /sys/block/dm-0/slaves",
            CONSOLE,
        )
        .unwrap();
    let (slot_a, _) = partition(&m.board, "root-a");
    let lines: Vec<&str> = dm.lines().map(str::trim).collect();
    assert_eq!(
        lines.get(..3),
        Some(&["root", "CAIRN-VERITY-root-a", "1"][..]),
        "dm-0: {dm:?}"
    );
    // The one device under the mapping is root-a (partition 2 of the boot medium).
    let slaves = lines.get(3).copied().unwrap_or("");
    let partn = m
        .serial(
            &format!("cat /sys/class/block/{slaves}/partition /sys/class/block/{slaves}/start"),
            CONSOLE,
        )
        .unwrap();
    let partn: Vec<&str> = partn.lines().map(str::trim).collect();
    assert_eq!(
        partn,
        vec![
            m.board.partition_number("root-a").unwrap().to_string(),
            (slot_a / 512).to_string()
        ],
        "dm-0 sits on {slaves:?}"
    );
    // The mapping covers exactly the squashfs (the hash tree and trailer behind it are not part of /).
    let size = m.serial("cat /sys/block/dm-0/size", CONSOLE).unwrap();
    let squashfs = manifest.sizes["root_squashfs"].as_u64().unwrap();
    assert_eq!(
        size.trim().parse::<u64>().unwrap(),
        squashfs.div_ceil(4096) * 8,
        "dm-0's sectors"
    );
}

#[test]
fn aarch64_root_is_verified() {
    boots_through_dm_verity("qemu-aarch64-virt");
}

#[test]
fn armv7_root_is_verified() {
    boots_through_dm_verity("qemu-armv7-virt");
}
