//! `make bench`: the walking skeleton's figures, each printed with how it was measured.
//!
//! - boot to a healthy dashboard on both boards, against a floor measured in the same run (the same kernel
//!   with a busybox-only init that starts busybox httpd, booted directly by QEMU); Cairn boots through U-Boot
//!   as a board does, and U-Boot's share (QEMU start to its "Starting kernel") is printed on its own;
//! - power-on to healthy after an update (the first boot of the new slot, on trial: the initramfs reads the
//!   whole slot through dm-verity before it mounts it) against the normal boot above;
//! - sizes: stripped `cairn`, root squashfs without kernel modules, whole image;
//! - resident memory (Rss and Pss) of all Cairn processes after boot, once they are idle (their CPU use per
//!   process, read in the guest, at most 1 % of a core over 2 s).
//!
//! A figure that cannot be measured stops the run with a sentence naming it (`measure::unmeasured`).

use cairn_e2e::measure::{self, unmeasured};
use cairn_qemu::{board_out_dir, BootDisk, BootOptions, Machine, Manifest};
use std::time::{Duration, Instant};

const MEMORY: &str = "memory of all Cairn processes, idle after boot";
const U_BOOT: &str = "U-Boot's share of boot";

const RUNS: usize = 3;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / 1024.0 / 1024.0)
}

/// A size from the image's manifest; missing or zero stops the run (0 MiB would read as under the goal).
fn size(m: &Manifest, key: &str, figure: &str) -> u64 {
    match m.sizes.get(key).and_then(|v| v.as_u64()) {
        Some(n) if n > 0 => n,
        other => unmeasured(
            figure,
            format!(
                "{} gives {other:?} for sizes.{key}; run `make images`",
                board_out_dir(&m.board).join("manifest.json").display()
            ),
        ),
    }
}

/// Waits for `GET /api/v1/health` and checks the box runs the version the manifest describes.
fn healthy(m: &mut Machine, manifest: &Manifest, started: Instant, deadline: Duration) -> Duration {
    let (took, health) = m
        .wait_healthy(started, deadline)
        .unwrap_or_else(|e| panic!("{e}\n{}", m.console_log()));
    if health["version"] != manifest.version.as_str() {
        panic!(
            "the booted box reports version {} but out/{}/manifest.json says {}",
            health["version"], manifest.board, manifest.version
        );
    }
    took
}

fn boot_floor(board: &str, manifest: &Manifest, deadline: Duration) -> Duration {
    let disk = BootDisk::flash(manifest, &board_out_dir(board)).unwrap();
    let floor = board_out_dir(board).join("floor-initrd.img");
    let options = BootOptions {
        initrd_override: Some(floor),
        ..BootOptions::default()
    };
    let started = Instant::now();
    let mut m = Machine::boot(board, &disk, &options).unwrap();
    m.wait_http("/", started, deadline)
        .unwrap_or_else(|e| panic!("floor of {board}: {e}\n{}", m.console_log()))
}

/// First boot of a freshly flashed box (formats the config partition), then a normal boot of the same box;
/// returns both and U-Boot's share of the normal one.
fn boot_cairn(
    board: &str,
    manifest: &Manifest,
    deadline: Duration,
    memory: &mut Option<measure::Memory>,
) -> (Duration, Duration, Duration) {
    let disk = BootDisk::flash(manifest, &board_out_dir(board)).unwrap();
    let started = Instant::now();
    let mut m = Machine::boot(board, &disk, &BootOptions::default()).unwrap();
    let first = healthy(&mut m, manifest, started, deadline);
    m.serial("poweroff", Duration::from_secs(5)).ok();
    m.wait_exit(Duration::from_secs(60)).unwrap();
    drop(m);
    let started = Instant::now();
    let mut m = Machine::boot(board, &disk, &BootOptions::default()).unwrap();
    let normal = healthy(&mut m, manifest, started, deadline);
    let u_boot = m.u_boot_time().unwrap_or_else(|| {
        unmeasured(
            U_BOOT,
            "the console never showed U-Boot's \"Starting kernel\"",
        )
    });
    if memory.is_none() {
        // Idle: DHCP and the first requests settled, told by the processes' own CPU use, not by a sleep.
        measure::wait_idle(&mut m, MEMORY, Duration::from_secs(60));
        let out = m
            .serial(measure::MEMORY_COMMAND, Duration::from_secs(20))
            .unwrap_or_else(|e| unmeasured(MEMORY, format!("reading /proc in the guest: {e}")));
        *memory = Some(measure::parse_memory(&out).unwrap_or_else(|e| unmeasured(MEMORY, e)));
    }
    (first, normal, u_boot)
}

/// The update the after-update boot installs (`make bench` builds it with the test artifacts).
const UPDATE_VERSION: &str = "0.2.0";
const AFTER_UPDATE: &str = "boot after an update";

/// A box set up, the update bundle installed over HTTP, powered off; then power-on to healthy on the new
/// slot, which is on trial (its whole root read through dm-verity first).
fn boot_after_update(board: &str, manifest: &Manifest, deadline: Duration) -> Duration {
    let path = board_out_dir(board).join(format!("cairn-{board}-{UPDATE_VERSION}.cfw"));
    let bundle = std::fs::read(&path).unwrap_or_else(|e| {
        unmeasured(
            AFTER_UPDATE,
            format!("{}: {e}; run `make test-artifacts`", path.display()),
        )
    });
    let disk = BootDisk::flash(manifest, &board_out_dir(board)).unwrap();
    let started = Instant::now();
    let mut m = Machine::boot(board, &disk, &BootOptions::default()).unwrap();
    healthy(&mut m, manifest, started, deadline);
    let admin = m.http().with_timeout(Duration::from_secs(600));
    cairn_e2e::setup_through_form(&admin);
    let token = cairn_e2e::csrf(&admin);
    let r = admin
        .request(
            "POST",
            "/api/v1/firmware",
            &[
                ("content-type", "application/octet-stream"),
                ("x-csrf-token", &token),
            ],
            bundle,
        )
        .unwrap();
    if r.status != 202 {
        unmeasured(
            AFTER_UPDATE,
            format!("the install answered {}: {}", r.status, r.text()),
        );
    }
    let (job, _) = cairn_e2e::wait_job(&admin, &r.json().unwrap()["job"], Duration::from_secs(600));
    if job["state"] != "done" {
        unmeasured(AFTER_UPDATE, format!("the install job ended {job}"));
    }
    m.serial("poweroff", Duration::from_secs(5)).ok();
    m.wait_exit(Duration::from_secs(60)).unwrap();
    drop(m);
    let started = Instant::now();
    let mut m = Machine::boot(board, &disk, &BootOptions::default()).unwrap();
    let (took, health) = m
        .wait_healthy(started, deadline * 2)
        .unwrap_or_else(|e| panic!("{e}\n{}", m.console_log()));
    if health["version"] != UPDATE_VERSION || health["slot"] != "b" {
        unmeasured(
            AFTER_UPDATE,
            format!("the box came back as {health}, not version {UPDATE_VERSION} on slot b"),
        );
    }
    took
}

fn main() {
    let boards = [
        ("qemu-aarch64-virt", Duration::from_secs(90)),
        ("qemu-armv7-virt", Duration::from_secs(180)),
    ];
    println!("# Cairn benchmark (make bench: cargo run --release -p cairn-e2e --bin cairn-bench)");
    println!("# QEMU TCG on this host, {} cores; times are QEMU start to the first HTTP 200 on the host, median of {RUNS}.", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    // CAIRN_BENCH_BOARDS=qemu-aarch64-virt limits the run to some boards (for quick comparisons).
    let only = std::env::var("CAIRN_BENCH_BOARDS").unwrap_or_default();
    if let Some(unknown) = only
        .split(',')
        .find(|b| !b.is_empty() && !boards.iter().any(|(known, _)| known == b))
    {
        panic!("CAIRN_BENCH_BOARDS names {unknown:?}, which this benchmark does not boot: nothing would be measured");
    }
    for (board, deadline) in boards {
        if !only.is_empty() && !only.split(',').any(|b| b == board) {
            continue;
        }
        let (manifest, _) = Manifest::load(board).unwrap_or_else(|e| panic!("{e}"));
        // Sizes first: a missing one stops the run before minutes of boots.
        let sizes = [
            ("cairn_binary", "stripped cairn binary"),
            (
                "root_squashfs_without_modules",
                "root squashfs without kernel modules",
            ),
            ("root_squashfs", "root squashfs with modules"),
            ("initrd", "initramfs"),
            ("kernel", "kernel"),
            ("image", "whole image (partitioned size)"),
            ("image_allocated", "whole image (allocated)"),
        ]
        .map(|(key, figure)| mib(size(&manifest, key, figure)));
        let floors: Vec<Duration> = (0..RUNS)
            .map(|_| boot_floor(board, &manifest, deadline))
            .collect();
        let mut memory = None;
        let cairn: Vec<(Duration, Duration, Duration)> = (0..RUNS)
            .map(|_| boot_cairn(board, &manifest, deadline, &mut memory))
            .collect();
        let after_update = boot_after_update(board, &manifest, deadline);
        let floor = median(floors);
        let first = median(cairn.iter().map(|c| c.0).collect());
        let normal = median(cairn.iter().map(|c| c.1).collect());
        let u_boot = median(cairn.iter().map(|c| c.2).collect());
        println!();
        println!("## {board}");
        println!(
            "boot, floor (same kernel, busybox init + httpd, GET /):  {}",
            secs(floor)
        );
        println!(
            "boot, Cairn normal boot (GET /api/v1/health):           {}",
            secs(normal)
        );
        println!(
            "boot, Cairn first boot (formats the config partition):  {}",
            secs(first)
        );
        println!(
            "boot, Cairn after an update (slot B on trial, verity read-through): {} ({:+.2} s over a normal boot)",
            secs(after_update),
            after_update.as_secs_f64() - normal.as_secs_f64()
        );
        println!(
            "U-Boot's share of a normal boot (QEMU start to \"Starting kernel\": script, boot state, kernel+initrd load): {}",
            secs(u_boot)
        );
        println!(
            "Cairn extra boot time over the floor, U-Boot included (goal <= 1 s on aarch64): {:+.2} s",
            normal.as_secs_f64() - floor.as_secs_f64()
        );
        println!(
            "Cairn extra boot time over the floor, U-Boot's share left out:                  {:+.2} s",
            normal.as_secs_f64() - u_boot.as_secs_f64() - floor.as_secs_f64()
        );
        println!(
            "stripped cairn binary (goal <= 4 MiB):                  {}",
            sizes[0]
        );
        println!(
            "root squashfs without kernel modules (goal <= 8 MiB):   {}",
            sizes[1]
        );
        println!(
            "root squashfs with modules:                             {}",
            sizes[2]
        );
        println!(
            "initramfs:                                              {}",
            sizes[3]
        );
        println!(
            "kernel:                                                 {}",
            sizes[4]
        );
        println!(
            "whole image (partitioned size; allocated):              {} ; {}",
            sizes[5], sizes[6]
        );
        let memory = memory.unwrap_or_else(|| unmeasured(MEMORY, "no boot read it"));
        println!(
            "memory of all Cairn processes, idle after boot (goal <= 12 MiB): Pss {} (Rss {})",
            mib(memory.pss_kb * 1024),
            mib(memory.rss_kb * 1024)
        );
        for line in &memory.lines {
            println!("    {}", line.trim());
        }
    }
}
