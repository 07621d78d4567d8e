//! The verified root (docs/updates.md, "Verified root"): every box mounts its root slot through dm-verity with the
//! root hash from the slot's signed trailer (one boot of each board carries those checks), and a slot whose bytes
//! changed is never booted: on a trial boot the initramfs reads it through, refuses it with one console line and
//! restarts, and U-Boot's count of the slot's tries goes down.

use cairn_qemu::{BootDisk, BootOptions, Machine, Manifest};
use std::path::Path;
use std::process::Command;
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
fn aarch64_tampered_slot_on_trial_is_refused_and_its_tries_run_down() {
    let board = "qemu-aarch64-virt";
    let (manifest, dir) = Manifest::load(board).unwrap_or_else(|e| panic!("{e}"));
    let disk = BootDisk::flash(&manifest, &dir).unwrap();
    let facts = cairn_board::Board::load(
        &cairn_qemu::workspace_root().join(format!("board/{board}/board.toml")),
    )
    .unwrap();
    // 16 bytes in the middle of the squashfs (file data, far from the superblock), and slot A on trial as an
    // install leaves a new slot: the initramfs reads it through before switching root.
    let squashfs = manifest.sizes["root_squashfs"].as_u64().unwrap();
    let (slot_a, _) = partition(&facts, "root-a");
    write_into(
        &disk,
        slot_a + (squashfs / 2 / 4096) * 4096 + 1000,
        &[0x55; 16],
    );
    set_trial_a(&disk, &facts);

    let m = Machine::boot(board, &disk, &BootOptions::default()).unwrap();
    let refused = "initramfs: not booting: verity refuses the slot";
    m.wait_console(refused, 0, BOOT_DEADLINE)
        .unwrap_or_else(|e| panic!("{e}\n{}", m.console_log()));
    // It restarts by itself: U-Boot spends another of A's tries and the initramfs refuses again.
    let first = m.console_log().find(refused).unwrap();
    m.wait_console(refused, first + refused.len(), BOOT_DEADLINE)
        .unwrap_or_else(|e| panic!("{e}\n{}", m.console_log()));
    let log = m.console_log();
    assert!(
        !log.contains("[init]"),
        "the tampered slot's init ran:\n{log}"
    );
    let line = log.lines().find(|l| l.contains(refused)).unwrap();
    assert!(line.contains("restarting"), "{line}");
    let left: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("boot state") && l.contains(", A left "))
        .filter_map(|l| l.split_once(", A left ").map(|(_, r)| r))
        .filter_map(|r| r.split(',').next())
        .filter_map(|n| u64::from_str_radix(n.trim(), 16).ok())
        .collect();
    assert!(
        left.len() >= 2 && left[1] < left[0],
        "U-Boot's count of A's tries must go down between the refused boots: {left:?}\n{log}"
    );
    eprintln!("{board}: tampered slot refused on trial, A's tries {left:?}: {line}");
}

#[test]
fn armv7_root_is_verified() {
    boots_through_dm_verity("qemu-armv7-virt");
}

/// Writes `bytes` into the box's disk at `offset` (its qcow2 overlay; the built image stays pristine).
fn write_into(disk: &BootDisk, offset: u64, bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bytes");
    std::fs::write(&file, bytes).unwrap();
    qemu_io(
        disk,
        &format!("write -s {} {offset} {}", file.display(), bytes.len()),
    );
}

fn qemu_io(disk: &BootDisk, command: &str) {
    let out = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", command])
        .arg(&disk.path)
        .output()
        .expect("run qemu-io");
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("error"),
        "qemu-io {command}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Puts slot A on trial in the box's boot state (BOOT_TRIAL=A, as an install of A would leave it), editing the
/// two copies on the FAT boot partition with cairn-bootenv, as the box itself does.
fn set_trial_a(disk: &BootDisk, board: &cairn_board::Board) {
    let dir = tempfile::tempdir().unwrap();
    let (offset, size) = partition(board, "boot");
    let fat = dir.path().join("boot.vfat");
    disk.extract(offset / MIB, size / MIB, &fat).unwrap();
    let state = dir.path().join("state");
    let copies = board.boot.state_files.clone().map(|f| state.join(f));
    for (name, copy) in board.boot.state_files.iter().zip(&copies) {
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        mtools(&["mcopy", "-n", "-i"], &fat, &format!("::{name}"), copy);
    }
    let files = cairn_bootenv::BootFiles::at(copies.clone(), board.boot.state_size as usize);
    let stored = files
        .update(|s| s.trial = Some(cairn_bootenv::Slot::A))
        .unwrap();
    assert_eq!(stored.trial, Some(cairn_bootenv::Slot::A));
    for (name, copy) in board.boot.state_files.iter().zip(&copies) {
        mtools(
            &["mcopy", "-o", "-i"],
            &fat,
            copy.to_str().unwrap(),
            Path::new(&format!("::{name}")),
        );
    }
    qemu_io(disk, &format!("write -s {} {offset} {size}", fat.display()));
}

fn mtools(argv: &[&str], image: &Path, from: &str, to: &Path) {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .arg(image)
        .arg(from)
        .arg(to)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .expect("run mtools");
    assert!(
        out.status.success(),
        "{argv:?} {from} {}: {}",
        to.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
