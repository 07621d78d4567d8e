//! `make bench` (storage): figures for the disk and RAID manager, each printed with how it was measured.
//!
//! - CPU used by all Cairn processes (init and daemon) while a RAID 5 rebuild runs, against the same window
//!   length idle, from /proc/<pid>/stat (utime + stime) read in the guest per process (pid and start time) and
//!   summed over the processes there at both ends, over the window the guest's uptime measured; the idle
//!   window opens once the processes have settled (at most 1 % of a core over 2 s); nobody polls the API
//!   during either window;
//! - time from a disk failing in the kernel (`mdadm --fail` typed on the console) to the dashboard's Storage
//!   page showing the volume degraded in the volume's own card, read fresh, measured on the host; each round
//!   starts from the page showing it clean, and its own event (newer than the round's start) must be logged;
//! - array assembly at boot (Cairn: finding members by the stored UUID + `mdadm --assemble`) against
//!   `mdadm --assemble --scan` run by hand in the same boot after stopping the array.
//!
//! A figure that cannot be measured stops the run with a sentence naming it (`measure::unmeasured`).

use cairn_e2e::measure::{self, unmeasured};
use cairn_e2e::*;
use cairn_qemu::{BootDisk, BootOptions, DataDisk, HttpClient, Machine, Manifest, Network};
use serde_json::json;
use std::time::{Duration, Instant};

const WINDOW_S: u64 = 10;
const VOLUME: &str = "bench";
const CPU: &str = "rebuild CPU";
const SHOWN: &str = "failure to dashboard";
const ASSEMBLY: &str = "assembly at boot";

/// Percent of one core used by the Cairn processes over a window of `WINDOW_S`, and the window's real length.
fn cpu_percent(m: &mut Machine, what: &str) -> (f64, f64) {
    let a = measure::cpu_sample(m, CPU);
    std::thread::sleep(Duration::from_secs(WINDOW_S));
    let b = measure::cpu_sample(m, CPU);
    let used = measure::cpu_between(&a, &b).unwrap_or_else(|e| unmeasured(CPU, e));
    if !used.counts_daemon() {
        unmeasured(
            CPU,
            format!(
                "the daemon was not there at both ends of the {what} window (counted {:?}, left out {:?})",
                used.counted, used.left_out
            ),
        );
    }
    if used.seconds < WINDOW_S as f64 {
        unmeasured(
            CPU,
            format!(
                "the {what} window lasted {:.2} s in the guest",
                used.seconds
            ),
        );
    }
    if !used.left_out.is_empty() {
        println!(
            "# {what} window: left out processes not there at both ends: {:?}",
            used.left_out
        );
    }
    (used.percent(), used.seconds)
}

fn wait_done(admin: &HttpClient, job: &serde_json::Value) {
    let (j, _) = wait_job(admin, job, Duration::from_secs(900));
    assert_eq!(j["state"], "done", "{j}");
}

/// The state shown in volume `name`'s own card on the Storage page (never the event log below it).
fn card_state(html: &str, name: &str) -> Option<String> {
    let card = &html[html.find(&format!("<h2>{name} <small>"))?..];
    let card = &card[..card.find("</h2>")?];
    let state = &card[card.find(r#"<span class="state">"#)? + r#"<span class="state">"#.len()..];
    Some(state[..state.find("</span>")?].to_string())
}

fn page_state(admin: &HttpClient, figure: &str) -> String {
    let r = admin.get("/storage").unwrap();
    if r.status != 200 {
        unmeasured(figure, format!("GET /storage answered {}", r.status));
    }
    card_state(&r.text(), VOLUME).unwrap_or_else(|| {
        unmeasured(
            figure,
            format!("the Storage page has no card for volume {VOLUME}"),
        )
    })
}

/// The volume as the API reads it now.
fn volume(admin: &HttpClient) -> serde_json::Value {
    expect(
        &admin.get(&format!("/api/v1/volumes/{VOLUME}")).unwrap(),
        200,
    )
}

/// Waits until the volume is clean with every member in sync, in the API and on the page.
fn wait_clean(admin: &HttpClient, deadline: Duration, figure: &str) {
    let until = Instant::now() + deadline;
    loop {
        let v = volume(admin);
        let members = v["members"].as_array().cloned().unwrap_or_default();
        if v["state"] == "clean"
            && !members.is_empty()
            && members.iter().all(|mm| mm["state"] == "in_sync")
            && page_state(admin, figure) == "clean"
        {
            return;
        }
        if Instant::now() >= until {
            unmeasured(
                figure,
                format!(
                    "volume {VOLUME} not clean in the API and on the page within {} s: {v}",
                    deadline.as_secs()
                ),
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The newest storage event's sequence number (0 when the log is empty).
fn newest_event(admin: &HttpClient) -> u64 {
    let events = expect(&admin.get("/api/v1/storage/events").unwrap(), 200);
    let events = events
        .as_array()
        .unwrap_or_else(|| unmeasured(SHOWN, format!("the event log is not a list: {events}")));
    match events.first() {
        None => 0,
        Some(e) => e["seq"]
            .as_u64()
            .unwrap_or_else(|| unmeasured(SHOWN, format!("an event without a seq: {e}"))),
    }
}

/// Waits for an event newer than `after` saying the volume is degraded.
fn wait_degraded_event(admin: &HttpClient, after: u64, deadline: Duration) -> u64 {
    let until = Instant::now() + deadline;
    loop {
        let events = expect(&admin.get("/api/v1/storage/events").unwrap(), 200);
        if let Some(e) = events.as_array().into_iter().flatten().find(|e| {
            e["seq"].as_u64().is_some_and(|s| s > after)
                && e["volume"] == VOLUME
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("is degraded"))
        }) {
            return e["seq"].as_u64().unwrap();
        }
        if Instant::now() >= until {
            unmeasured(
                SHOWN,
                format!("no event newer than #{after} says volume {VOLUME} is degraded: {events}"),
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs a command in the guest; its exit status must be 0.
fn guest_ok(m: &mut Machine, figure: &str, command: &str, deadline: Duration) -> String {
    let out = m
        .serial(&format!("{command}; echo \"rc=$?\""), deadline)
        .unwrap_or_else(|e| unmeasured(figure, format!("`{command}` in the guest: {e}")));
    if !out.lines().any(|l| l.trim() == "rc=0") {
        unmeasured(figure, format!("`{command}` failed in the guest: {out}"));
    }
    out
}

/// md's own word on what the array is doing (`recover`, `idle`, ...).
fn sync_action(m: &mut Machine) -> String {
    let out = m
        .serial(
            "echo \"action $(cat /sys/block/md0/md/sync_action)\"",
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| unmeasured(CPU, e));
    out.lines()
        .find_map(|l| l.trim().strip_prefix("action "))
        .unwrap_or_else(|| unmeasured(CPU, format!("no sync_action for md0: {out}")))
        .trim()
        .to_string()
}

fn main() {
    let board = "qemu-aarch64-virt";
    let dir = cairn_qemu::workspace_root().join("target/bench-disks");
    let _ = std::fs::remove_dir_all(&dir);
    let disks = cairn_qemu::blank_data_disks(&dir, 4, 512).unwrap();
    let (manifest, mdir) = Manifest::load(board).unwrap();
    let disk = BootDisk::flash(&manifest, &mdir).unwrap();
    let options = BootOptions {
        network: Network::Offline,
        data_disks: disks,
        empty_bays: 1,
        ..BootOptions::default()
    };
    let started = Instant::now();
    let mut m = Machine::boot(board, &disk, &options).unwrap();
    m.wait_healthy(started, Duration::from_secs(240)).unwrap();
    let admin = m.http();
    setup_through_form(&admin);
    let ids: Vec<String> = (1..=4).map(|n| format!("CAIRN-BAY{n}")).collect();
    let r = expect(
        &send(
            &admin,
            "POST",
            "/api/v1/volumes",
            json!({"name": VOLUME, "level": "raid5", "disks": ids}),
        ),
        202,
    );
    wait_done(&admin, &r["job"]);

    // Failure in the kernel to the dashboard: three rounds, the disk re-added by hand after each. Each round
    // starts from the volume clean on the page, and ends on its own card saying degraded, read fresh.
    let mut shown = vec![];
    for round in 1..=3 {
        wait_clean(&admin, Duration::from_secs(600), SHOWN);
        let before = newest_event(&admin);
        let t0 = Instant::now();
        guest_ok(
            &mut m,
            SHOWN,
            "mdadm /dev/md0 --fail /dev/vdc >/dev/null 2>&1",
            Duration::from_secs(30),
        );
        loop {
            if page_state(&admin, SHOWN) == "degraded" {
                shown.push(t0.elapsed());
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                unmeasured(
                    SHOWN,
                    format!("round {round}: /storage never showed volume {VOLUME} degraded"),
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        wait_degraded_event(&admin, before, Duration::from_secs(30));
        guest_ok(
            &mut m,
            SHOWN,
            "mdadm /dev/md0 --remove /dev/vdc && mdadm --zero-superblock /dev/vdc && mdadm /dev/md0 --add /dev/vdc",
            Duration::from_secs(60),
        );
    }
    wait_clean(&admin, Duration::from_secs(600), CPU);
    // A failed disk replaced by a new one in the empty bay: the rebuild whose CPU cost is measured.
    guest_ok(
        &mut m,
        CPU,
        "mdadm /dev/md0 --fail /dev/vdc >/dev/null 2>&1",
        Duration::from_secs(30),
    );
    let until = Instant::now() + Duration::from_secs(60);
    let failed = loop {
        let v = volume(&admin);
        if let Some(mm) = v["members"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|mm| mm["state"] != "in_sync")
        {
            break mm["id"].as_str().unwrap().to_string();
        }
        if Instant::now() >= until {
            unmeasured(CPU, format!("no member of {VOLUME} shown failed: {v}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let new = DataDisk {
        file: dir.join("new5.img"),
        serial: "CAIRN-NEW5".into(),
    };
    cairn_qemu::blank_disk(&new.file, 512).unwrap();
    m.plug_disk(5, &new).unwrap();
    wait_disk(&admin, "CAIRN-NEW5", true);
    // The idle window opens once the daemon has settled after the new disk (an inflated idle would lower
    // the rebuild's "points above idle").
    measure::wait_idle(&mut m, CPU, Duration::from_secs(60));
    let (idle, _) = cpu_percent(&mut m, "idle");
    guest_ok(
        &mut m,
        CPU,
        "echo 8000 > /proc/sys/dev/raid/speed_limit_max",
        Duration::from_secs(10),
    );
    let r = expect(
        &send(
            &admin,
            "POST",
            &format!("/api/v1/volumes/{VOLUME}/replace"),
            json!({"failed": failed, "with": "CAIRN-NEW5"}),
        ),
        202,
    );
    // The window opens once md is recovering onto the new disk, and must close before it is done.
    let until = Instant::now() + Duration::from_secs(60);
    while sync_action(&mut m) != "recover" {
        if Instant::now() >= until {
            unmeasured(CPU, "the rebuild onto CAIRN-NEW5 never started");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (busy, _) = cpu_percent(&mut m, "rebuild");
    let action = sync_action(&mut m);
    if action != "recover" {
        unmeasured(
            CPU,
            format!("the rebuild ended before the window closed (md0 sync_action {action:?})"),
        );
    }
    println!("rebuild CPU: all Cairn processes used {busy:.2} % of one core over {WINDOW_S} s while a RAID 5 rebuild ran (md speed capped at 8 MB/s so it outlasts the window), idle {idle:.2} %: {:+.2} points above idle (goal < 1)", busy - idle);
    guest_ok(
        &mut m,
        CPU,
        "echo 200000 > /proc/sys/dev/raid/speed_limit_max",
        Duration::from_secs(10),
    );
    wait_done(&admin, &r["job"]);
    for (i, d) in shown.iter().enumerate() {
        println!("failure to dashboard, round {}: {:.0} ms from typing `mdadm --fail` on the console to /storage showing the volume degraded (goal < 2000 ms; includes the serial round trip)", i + 1, d.as_secs_f64() * 1000.0);
    }

    // Assembly at boot vs mdadm --assemble --scan in the same boot.
    let mark = m.mark();
    expect(
        &send(&admin, "POST", "/api/v1/system/reboot", json!({})),
        202,
    );
    m.wait_console(&starting_line(&m), mark, Duration::from_secs(120))
        .unwrap();
    m.wait_healthy(Instant::now(), Duration::from_secs(240))
        .unwrap();
    // /run is a tmpfs: the figure can only come from this boot.
    let until = Instant::now() + Duration::from_secs(120);
    let (asm, total) = loop {
        let out = m
            .serial(
                "echo \"asm $(cat /run/cairn/assembly-ms 2>/dev/null)\"",
                Duration::from_secs(10),
            )
            .unwrap_or_else(|e| unmeasured(ASSEMBLY, e));
        let line = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("asm"))
            .unwrap_or_else(|| unmeasured(ASSEMBLY, format!("no answer from the guest: {out}")))
            .trim();
        if !line.is_empty() {
            let v: Vec<u64> = line
                .split_whitespace()
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()
                .unwrap_or_default();
            match v[..] {
                [asm, total] if asm > 0 && asm <= total => break (asm, total),
                _ => unmeasured(
                    ASSEMBLY,
                    format!(
                        "/run/cairn/assembly-ms reads {line:?}, not \"assembling total\" in ms"
                    ),
                ),
            }
        }
        if Instant::now() >= until {
            unmeasured(ASSEMBLY, "the daemon wrote no /run/cairn/assembly-ms");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    // busybox date has no %N: /proc/uptime (10 ms resolution) brackets the run inside the guest. The array
    // must be stopped first, or --scan would find nothing to do and look fast.
    let out = guest_ok(
        &mut m,
        ASSEMBLY,
        "umount /data/bench && mdadm --stop /dev/md0 >/dev/null 2>&1 && ! grep -q '^md' /proc/mdstat && echo stopped; a=$(cut -d' ' -f1 /proc/uptime); mdadm --assemble --scan >/dev/null 2>&1; b=$(cut -d' ' -f1 /proc/uptime); echo by-hand $a $b; cat /proc/mdstat; grep -q ' : active raid5 ' /proc/mdstat",
        Duration::from_secs(120),
    );
    if !out.lines().any(|l| l.trim() == "stopped") {
        unmeasured(
            ASSEMBLY,
            format!("the array could not be stopped before mdadm --assemble --scan: {out}"),
        );
    }
    let by_hand = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("by-hand "))
        .and_then(|l| {
            let v: Vec<f64> = l
                .split_whitespace()
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            match v[..] {
                [a, b] if b >= a => Some((b - a) * 1000.0),
                _ => None,
            }
        })
        .unwrap_or_else(|| {
            unmeasured(
                ASSEMBLY,
                format!("no uptime pair around mdadm --assemble --scan: {out}"),
            )
        });
    println!("assembly at boot (4-disk RAID 5): Cairn {asm} ms (finding members by UUID + mdadm --assemble; {total} ms including loading raid456, e2fsck -p and mount); mdadm --assemble --scan by hand in the same boot: {by_hand:.0} ms (from /proc/uptime, 10 ms resolution)");
}

#[cfg(test)]
mod tests {
    use super::card_state;

    #[test]
    fn the_state_comes_from_the_volume_card_not_the_event_log() {
        let page = r#"<section class="card"><h2>bench <small>raid5 · <span class="state">clean</span></small></h2>
<ul><li class="warning"><time data-s="1">x</time> Volume bench is degraded: vdc is faulty</li></ul>"#;
        assert_eq!(card_state(page, "bench").as_deref(), Some("clean"));
        assert_eq!(card_state(page, "other"), None);
        assert_eq!(card_state("Volume bench is degraded", "bench"), None);
    }
}
