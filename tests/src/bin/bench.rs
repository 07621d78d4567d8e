//! `make bench`: the walking skeleton's figures, each printed with how it was measured.
//!
//! - boot to a healthy dashboard on both boards, against a floor measured in the same run (the same kernel
//!   with a busybox-only init that starts busybox httpd);
//! - sizes: stripped `cairn`, root squashfs without kernel modules, whole image;
//! - resident memory (Rss and Pss) of all Cairn processes after boot, idle.

use cairn_qemu::{board_out_dir, BootDisk, BootOptions, Machine, Manifest};
use std::time::{Duration, Instant};

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

fn size(m: &Manifest, key: &str) -> u64 {
    m.sizes.get(key).and_then(|v| v.as_u64()).unwrap_or(0)
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
    m.wait_http("/", started, deadline).unwrap()
}

/// First boot of a freshly flashed box (formats the config partition), then a normal boot of the same box.
fn boot_cairn(
    board: &str,
    manifest: &Manifest,
    deadline: Duration,
    memory: &mut Option<(u64, u64, String)>,
) -> (Duration, Duration) {
    let disk = BootDisk::flash(manifest, &board_out_dir(board)).unwrap();
    let started = Instant::now();
    let mut m = Machine::boot(board, &disk, &BootOptions::default()).unwrap();
    let (first, _) = m.wait_healthy(started, deadline).unwrap();
    m.serial("poweroff", Duration::from_secs(5)).ok();
    m.wait_exit(Duration::from_secs(60)).unwrap();
    drop(m);
    let started = Instant::now();
    let mut m = Machine::boot(board, &disk, &BootOptions::default()).unwrap();
    let (normal, _) = m.wait_healthy(started, deadline).unwrap();
    if memory.is_none() {
        // Idle: let DHCP and the first requests settle before reading.
        std::thread::sleep(Duration::from_secs(3));
        let out = m
            .serial("for p in $(echo 1 $(pidof cairn) | tr ' ' '\\n' | sort -u); do echo \"$p $(cat /proc/$p/comm) $(grep -E '^(Rss|Pss):' /proc/$p/smaps_rollup | tr -s ' ' | tr '\\n' ' ')\"; done", Duration::from_secs(20))
            .unwrap();
        let (mut rss, mut pss) = (0u64, 0u64);
        for line in out.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            for (i, w) in words.iter().enumerate() {
                let kb = words
                    .get(i + 1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                match *w {
                    "Rss:" => rss += kb,
                    "Pss:" => pss += kb,
                    _ => {}
                }
            }
        }
        *memory = Some((rss, pss, out));
    }
    (first, normal)
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
    for (board, deadline) in boards {
        if !only.is_empty() && !only.split(',').any(|b| b == board) {
            continue;
        }
        let (manifest, _) = Manifest::load(board).unwrap_or_else(|e| panic!("{e}"));
        let floors: Vec<Duration> = (0..RUNS)
            .map(|_| boot_floor(board, &manifest, deadline))
            .collect();
        let mut memory = None;
        let cairn: Vec<(Duration, Duration)> = (0..RUNS)
            .map(|_| boot_cairn(board, &manifest, deadline, &mut memory))
            .collect();
        let floor = median(floors);
        let first = median(cairn.iter().map(|c| c.0).collect());
        let normal = median(cairn.iter().map(|c| c.1).collect());
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
            "Cairn extra boot time over the floor (goal <= 1 s on aarch64): {:+.2} s",
            normal.as_secs_f64() - floor.as_secs_f64()
        );
        println!(
            "stripped cairn binary (goal <= 4 MiB):                  {}",
            mib(size(&manifest, "cairn_binary"))
        );
        println!(
            "root squashfs without kernel modules (goal <= 8 MiB):   {}",
            mib(size(&manifest, "root_squashfs_without_modules"))
        );
        println!(
            "root squashfs with modules:                             {}",
            mib(size(&manifest, "root_squashfs"))
        );
        println!(
            "initramfs:                                              {}",
            mib(size(&manifest, "initrd"))
        );
        println!(
            "kernel:                                                 {}",
            mib(size(&manifest, "kernel"))
        );
        println!(
            "whole image (partitioned size; allocated):              {} ; {}",
            mib(size(&manifest, "image")),
            mib(size(&manifest, "image_allocated"))
        );
        if let Some((rss, pss, raw)) = memory {
            println!(
                "memory of all Cairn processes, idle after boot (goal <= 12 MiB): Pss {} (Rss {})",
                mib(pss * 1024),
                mib(rss * 1024)
            );
            for line in raw.lines() {
                println!("    {}", line.trim());
            }
        }
    }
}
