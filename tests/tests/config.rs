//! The config partition's promises, on the real image: it is formatted only when blank, what Cairn does not
//! recognise there is never touched, and a damaged filesystem is repaired with the settings kept. Each case
//! changes the box's disk between boots (its qcow2 overlay, with `qemu-io`), as a failing or foreign medium would.

use cairn_e2e::*;
use cairn_qemu::{BootDisk, BootOptions, Machine, Manifest};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BOARD: &str = "qemu-aarch64-virt";

/// Where the config partition starts on the boot disk, and its size, in bytes (GPT starts at 1 MiB).
fn config_partition(board: &cairn_board::Board) -> (u64, u64) {
    let mut offset_mib = 1u64;
    for p in &board.partitions {
        if p.name == "config" {
            return (offset_mib << 20, u64::from(p.size_mib) << 20);
        }
        offset_mib += u64::from(p.size_mib);
    }
    panic!("board has no config partition");
}

fn board() -> cairn_board::Board {
    cairn_board::Board::load(
        &cairn_qemu::workspace_root().join(format!("board/{BOARD}/board.toml")),
    )
    .unwrap()
}

/// Writes `bytes` into the box's disk at `offset` (the overlay takes it; the built image stays pristine).
fn write_into(disk: &BootDisk, offset: u64, bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bytes");
    std::fs::write(&file, bytes).unwrap();
    // qemu-io's `write -s FILE` writes a file's content at an offset.
    let out = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c"])
        .arg(format!(
            "write -s {} {offset} {}",
            file.display(),
            bytes.len()
        ))
        .arg(&disk.path)
        .output()
        .expect("run qemu-io");
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("error"),
        "qemu-io: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// SHA-256 of a file, by the host's sha256sum.
fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn boot(disk: &BootDisk) -> Machine {
    let started = Instant::now();
    let mut m = Machine::boot(BOARD, disk, &BootOptions::default()).unwrap();
    if let Err(e) = m.wait_healthy(started, Duration::from_secs(120)) {
        panic!("{e}\n{}", m.console_log());
    }
    m
}

/// Powers the box off from its console and waits for QEMU to exit (init unmounts everything first).
fn power_off(m: &mut Machine) {
    m.serial("poweroff", Duration::from_secs(20)).ok();
    m.wait_exit(Duration::from_secs(90)).unwrap();
}

#[test]
fn a_config_partition_holding_foreign_bytes_is_left_byte_identical() {
    let (manifest, dir) = Manifest::load(BOARD).unwrap_or_else(|e| panic!("{e}"));
    let disk = BootDisk::flash(&manifest, &dir).unwrap();
    let (offset, size) = config_partition(&board());
    // Not zeros, not ext4: as another system's filesystem or a half-written image would look. The pattern
    // covers the partition's start (what init reads to decide) and a stretch beyond it.
    let foreign: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    write_into(&disk, offset, &foreign);
    let work = tempfile::tempdir().unwrap();
    let before = work.path().join("before.img");
    disk.extract(offset >> 20, size >> 20, &before).unwrap();

    let mut m = boot(&disk);
    let _log = ConsoleOnFailure(m.console_handle(), "foreign config partition");
    m.wait_console("was left untouched", 0, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", m.console_log()));
    assert!(
        !m.console_log().contains("formatting (first boot)"),
        "a partition holding data must never be formatted"
    );
    power_off(&mut m);
    let after = work.path().join("after.img");
    disk.extract(offset >> 20, size >> 20, &after).unwrap();
    assert_eq!(
        sha256(&before),
        sha256(&after),
        "the foreign bytes were changed"
    );
}

/// The group descriptor table's first entry: after the superblock's block (1 KiB blocks: block 2; larger
/// blocks: block 1).
fn first_group_descriptor(partition: &[u8]) -> usize {
    let sb = &partition[1024..2048];
    assert_eq!(&sb[0x38..0x3a], &[0x53, 0xef], "not ext4");
    let block_size = 1024usize << u32::from_le_bytes(sb[24..28].try_into().unwrap());
    let first_data_block = u32::from_le_bytes(sb[20..24].try_into().unwrap()) as usize;
    (first_data_block + 1) * block_size
}

#[test]
fn a_damaged_config_filesystem_is_repaired_and_keeps_the_settings() {
    let (manifest, dir) = Manifest::load(BOARD).unwrap_or_else(|e| panic!("{e}"));
    let disk = BootDisk::flash(&manifest, &dir).unwrap();
    let mut m = boot(&disk);
    {
        let _log = ConsoleOnFailure(m.console_handle(), "first boot");
        setup_through_form(&m.http());
        power_off(&mut m);
    }
    // Damage the filesystem's metadata the way a torn write would: the first group descriptor's free-block
    // count changes, so its checksum no longer matches and the kernel refuses to mount it.
    let (offset, size) = config_partition(&board());
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("config.img");
    disk.extract(offset >> 20, size >> 20, &image).unwrap();
    let bytes = std::fs::read(&image).unwrap();
    let gd = first_group_descriptor(&bytes);
    let damaged = [bytes[gd + 12] ^ 0xff, bytes[gd + 13] ^ 0x0f];
    write_into(&disk, offset + gd as u64 + 12, &damaged);
    disk.extract(offset >> 20, size >> 20, &image).unwrap();
    let fsck = Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        !fsck.status.success(),
        "the damage must be real: e2fsck found nothing"
    );

    let mut m = boot(&disk);
    let _log = ConsoleOnFailure(m.console_handle(), "damaged config partition");
    let console = m.console_log();
    assert!(
        console.contains("does not mount") && console.contains("repaired"),
        "init must check and repair the partition: {console}"
    );
    assert!(
        !console.contains("formatting (first boot)"),
        "never formatted"
    );
    let r = m.http().get("/api/v1/health").unwrap().json().unwrap();
    assert_eq!(
        r["setup_done"], true,
        "the settings survived the repair: {r}"
    );
    login_api(&m.http(), ADMIN, ADMIN_PASSWORD);
    power_off(&mut m);
    disk.extract(offset >> 20, size >> 20, &image).unwrap();
    assert_ext4_clean(&image);
}
