//! `make bench` (settings part): how long an acknowledged change waits for `Store::commit`, the barrier that
//! makes it survive a power cut (sled's flush, then `fdatasync` of its log). Measured on the host's disk,
//! in the workspace's `target/` (never a tmpfs, where a sync costs nothing): the first commits of a new store
//! and the ones after them, each after one put of a record the size of a user.

use cairn_e2e::measure::unmeasured;
use std::time::{Duration, Instant};

/// Commits measured per case: enough for a p99, few enough to stay under a minute on a slow disk.
const COMMITS: usize = 300;

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Puts and commits `COMMITS` records of `record_bytes`, each on its own key; returns each commit's time.
fn commits(store: &cairn_store::Store, from: usize, record_bytes: usize) -> Vec<Duration> {
    let table = store.table("bench").unwrap();
    let body = "x".repeat(record_bytes);
    let mut took: Vec<Duration> = (from..from + COMMITS)
        .map(|i| {
            table.put(&format!("user{i:06}"), &body).unwrap();
            let t = Instant::now();
            store.commit().unwrap();
            t.elapsed()
        })
        .collect();
    took.sort();
    took
}

fn main() {
    println!("# Cairn settings commit (make bench: cargo run --release -p cairn-e2e --bin cairn-bench-store)");
    let under = cairn_qemu::workspace_root().join("target");
    let dir = tempfile::tempdir_in(&under).unwrap_or_else(|e| {
        unmeasured(
            "settings commit",
            format!("no directory in {}: {e}", under.display()),
        )
    });
    let store = cairn_store::Store::open(&dir.path().join("settings.db")).unwrap();
    println!("## Store::commit after one put of a user-sized record (600 bytes), {COMMITS} commits each, on the disk of {}", under.display());
    for (case, from) in [
        ("first commits of a new store", 0),
        ("the next ones", COMMITS),
    ] {
        let took = commits(&store, from, 600);
        println!(
            "{case:<28} median {:6.2} ms   p99 {:6.2} ms   max {:6.2} ms",
            percentile_ms(&took, 0.5),
            percentile_ms(&took, 0.99),
            percentile_ms(&took, 1.0)
        );
    }
}
