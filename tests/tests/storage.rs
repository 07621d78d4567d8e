//! Disks, RAID and volumes end to end in the image: real md RAID and ext4 on virtual disks, failures by
//! `mdadm --fail` through the API and by pulling a disk (PCIe hot-unplug through QMP), replacement with disks
//! pushed into empty bays, a reboot, and the disks moved to a freshly flashed box that imports the volume.
//! One boot carries the RAID 5 story (it is one story: each step starts from the last one's disks).
//! Every refusal is checked on the disks themselves ([`untouched`]: the image files of disks no running array
//! owns, byte for byte, and the md superblocks of running members), and a volume whose disks are gone is booted
//! beside blank disks that it must leave alone.

use cairn_e2e::*;
use cairn_qemu::{BootDisk, BootOptions, DataDisk, HttpClient, Machine, Manifest, Network};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DISK_MIB: u64 = 128;

fn boot(board: &str, options: &BootOptions) -> (Machine, BootDisk, HttpClient) {
    let (manifest, dir) = Manifest::load(board).unwrap_or_else(|e| panic!("{e}"));
    let disk = BootDisk::flash(&manifest, &dir).unwrap();
    let started = Instant::now();
    let mut m = Machine::boot(board, &disk, options).unwrap();
    if let Err(e) = m.wait_healthy(started, Duration::from_secs(240)) {
        panic!("{e}\n{}", m.console_log());
    }
    let admin = m.http();
    setup_through_form(&admin);
    (m, disk, admin)
}

/// Powers the box off through the API and boots the same boot disk again with other data disks.
fn restart_with(
    mut m: Machine,
    admin: &HttpClient,
    board: &str,
    disk: &BootDisk,
    disks: Vec<DataDisk>,
) -> Machine {
    expect(
        &send(admin, "POST", "/api/v1/system/poweroff", json!({})),
        202,
    );
    m.wait_exit(Duration::from_secs(120)).unwrap();
    drop(m);
    let options = BootOptions {
        network: Network::Offline,
        data_disks: disks,
        ..BootOptions::default()
    };
    let started = Instant::now();
    let mut m = Machine::boot(board, disk, &options).unwrap();
    if let Err(e) = m.wait_healthy(started, Duration::from_secs(240)) {
        panic!("{e}\n{}", m.console_log());
    }
    m
}

/// Asks the box to reboot or power off and waits until it unmounted `volume` cleanly; returns the console mark.
fn power(m: &Machine, admin: &HttpClient, action: &str, volume: &str) -> usize {
    let mark = m.mark();
    expect(
        &send(
            admin,
            "POST",
            &format!("/api/v1/system/{action}"),
            json!({}),
        ),
        202,
    );
    m.wait_console(
        &format!("{volume} unmounted cleanly"),
        mark,
        Duration::from_secs(60),
    )
    .unwrap();
    mark
}

/// Waits until the volume's filesystem is mounted (it is checked first after assembly).
fn wait_mounted(admin: &HttpClient, name: &str) {
    let until = Instant::now() + Duration::from_secs(120);
    while volume(admin, name)["mounted"] != true {
        assert!(Instant::now() < until, "{}", volume(admin, name));
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn volume(admin: &HttpClient, name: &str) -> Value {
    expect(&admin.get(&format!("/api/v1/volumes/{name}")).unwrap(), 200)
}

/// Waits until the volume reaches `state`; returns it and how long that took.
fn wait_state(
    admin: &HttpClient,
    name: &str,
    state: &str,
    deadline: Duration,
) -> (Value, Duration) {
    let start = Instant::now();
    loop {
        let v = volume(admin, name);
        if v["state"] == state {
            return (v, start.elapsed());
        }
        assert!(
            start.elapsed() < deadline,
            "volume {name} never became {state}: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The one array the box lists as found (there is one at a time in these scenarios).
fn found_volume(admin: &HttpClient) -> Value {
    let all = expect(&admin.get("/api/v1/volumes").unwrap(), 200);
    all.as_array()
        .unwrap()
        .iter()
        .find(|v| v["state"] == "found")
        .unwrap_or_else(|| panic!("no found array: {all}"))
        .clone()
}

/// sha256 of files as the box reads them, by name.
fn box_checksums(m: &mut Machine, dir: &str, names: &[&str]) -> Vec<String> {
    let files: Vec<String> = names.iter().map(|n| format!("{dir}/{n}")).collect();
    let out = m
        .serial(
            &format!("sha256sum {}", files.join(" ")),
            Duration::from_secs(60),
        )
        .unwrap();
    files
        .iter()
        .map(|f| {
            out.lines()
                .find(|l| l.trim_end().ends_with(f.as_str()))
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or_else(|| panic!("no checksum for {f} in {out:?}"))
                .to_string()
        })
        .collect()
}

fn host_sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// SHA-256 of each disk's image file as the host reads it, by serial. Bays are raw files attached with QEMU's
/// default cache (writeback through the host's page cache: QEMU's process keeps no copy of written data, and
/// a plugged disk's `blockdev-add` uses the same default), so once the guest's `sync` has returned, every write
/// the box made is what the host reads from the file. Only disks no running array owns hold still: md and ext4
/// write to members all the time (see [`untouched`]).
fn bay_hashes(m: &mut Machine, bays: &[&DataDisk]) -> Vec<(String, String)> {
    m.serial("sync", Duration::from_secs(60)).unwrap();
    file_hashes(bays)
}

/// SHA-256 of each disk's image file, by serial, hashed side by side (the file's own bytes: no box involved).
fn file_hashes(bays: &[&DataDisk]) -> Vec<(String, String)> {
    std::thread::scope(|s| {
        let jobs: Vec<_> = bays
            .iter()
            .map(|d| s.spawn(|| (d.serial.clone(), host_sha256(&d.file))))
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    })
}

/// The lines of a member's md superblock that say which array it belongs to and in which place; event counts,
/// update times and checksums change while the array runs, these only when a member joins, leaves or is erased.
const MD_PLACE: [&str; 7] = [
    "Array UUID",
    "Name",
    "Raid Level",
    "Raid Devices",
    "Device UUID",
    "Device Role",
    "Array State",
];

/// What a refusal must leave as it was, read after the box flushed its writes: the image files of the disks
/// no running array owns (free, foreign, found, failed out), byte for byte, and for each member of a running
/// array the place its md superblock gives it, as `mdadm --examine` reads it on the box.
#[derive(Debug, PartialEq)]
struct Untouched {
    superblocks: Vec<(String, Vec<String>)>,
    files: Vec<(String, String)>,
}

fn untouched(
    m: &mut Machine,
    admin: &HttpClient,
    loose: &[&DataDisk],
    members: &[&str],
) -> Untouched {
    let mut superblocks = vec![];
    if !members.is_empty() {
        let listed = disks(admin);
        let devs: Vec<String> = members
            .iter()
            .map(|id| {
                let d = listed
                    .iter()
                    .find(|d| d["id"] == *id)
                    .unwrap_or_else(|| panic!("{id} is not listed"));
                d["device"].as_str().unwrap().to_string()
            })
            .collect();
        let out = m
            .serial(
                &format!(
                    "sync; echo 3 > /proc/sys/vm/drop_caches; for d in {}; do printf '%s %s\\n' '>>' $d; mdadm --examine /dev/$d 2>&1; done",
                    devs.join(" ")
                ),
                Duration::from_secs(60),
            )
            .unwrap();
        for (id, dev) in members.iter().zip(&devs) {
            let section = out
                .split(">> ")
                .find(|s| s.starts_with(&format!("{dev}\n")))
                .unwrap_or_else(|| panic!("no mdadm --examine of {dev}: {out}"));
            let place: Vec<String> = section
                .lines()
                .filter_map(|l| {
                    let (k, v) = l.split_once(" : ")?;
                    MD_PLACE
                        .contains(&k.trim())
                        .then(|| format!("{}: {}", k.trim(), v.trim()))
                })
                .collect();
            assert!(
                place.iter().any(|l| l.starts_with("Array UUID"))
                    && place.iter().any(|l| l.starts_with("Device Role")),
                "{id} ({dev}) carries no md superblock: {section}"
            );
            superblocks.push((id.to_string(), place));
        }
    }
    Untouched {
        superblocks,
        files: bay_hashes(m, loose),
    }
}

/// SHA-256 of the boot medium's first MiB (partition table and the gap before the first partition) as the box
/// reads it: what a create that took the boot medium would wipe first.
fn boot_start(m: &mut Machine, device: &str) -> String {
    let out = m
        .serial(
            &format!("sync; echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/{device} bs=1M count=1 2>/dev/null | sha256sum"),
            Duration::from_secs(60),
        )
        .unwrap();
    out.lines()
        .rev()
        .find_map(|l| {
            let h = l.split_whitespace().next()?;
            (h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())).then(|| h.to_string())
        })
        .unwrap_or_else(|| panic!("no checksum of {device}'s start: {out}"))
}

fn random_file(path: &Path, mib: usize, seed: u8) {
    // Deterministic but not compressible or repetitive at the block level.
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    let data: Vec<u8> = (0..mib * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(path, data).unwrap();
}

fn disk_file(dir: &Path, name: &str) -> DataDisk {
    sized_disk_file(dir, name, DISK_MIB)
}

fn sized_disk_file(dir: &Path, name: &str, mib: u64) -> DataDisk {
    let file = dir.join(format!("{name}.img"));
    cairn_qemu::blank_disk(&file, mib).unwrap();
    DataDisk {
        file,
        serial: format!("CAIRN-{}", name.to_uppercase()),
    }
}

/// A new, empty folder for a scenario's disk files, and `count` blank disks in bays 1..=count.
fn fresh_bays(scenario: &str, count: usize) -> (PathBuf, Vec<DataDisk>) {
    let dir = cairn_qemu::workspace_root()
        .join("target/e2e-disks")
        .join(scenario);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let bays = (1..=count)
        .map(|n| disk_file(&dir, &format!("bay{n}")))
        .collect();
    (dir, bays)
}

/// Disks that cannot be read, pushed into bays 7 and 8 (QEMU's blkdebug fails reads of chosen sectors): one
/// fails inside its first 128 KiB; one, blank and not sized in whole 4 KiB blocks, only in its last sector,
/// which the tail read used to stop 1.5 KiB short of (so it showed as free). Both are `unreadable` with the
/// error, never `free`; creating on them is refused until the confirmation naming them comes, even with the
/// volume's name; their image files stay byte-identical (SHA-256 on the host while plugged and after).
fn unreadable_disks_are_never_free_nor_erased_without_their_confirmation(
    m: &mut Machine,
    admin: &HttpClient,
    dir: &Path,
) {
    let bad_head = disk_file(dir, "badhead");
    random_file(&bad_head.file, DISK_MIB as usize, 7);
    let bad_tail = disk_file(dir, "badtail");
    let size = DISK_MIB * 1024 * 1024 + 3 * 512;
    std::fs::File::options()
        .write(true)
        .open(&bad_tail.file)
        .unwrap()
        .set_len(size)
        .unwrap();
    let failing = [&bad_head, &bad_tail];
    let before = file_hashes(&failing);
    m.plug_failing_disk(7, &bad_head, 200..208).unwrap();
    let last = size / 512 - 1;
    m.plug_failing_disk(8, &bad_tail, [last]).unwrap();
    for d in failing {
        let listed = wait_disk(admin, &d.serial, true).unwrap();
        assert_eq!(listed["role"], "unreadable", "{listed}");
        let error = listed["read_error"].as_str().unwrap_or_default();
        assert!(error.contains("(os error 5)"), "{listed}");
    }
    let page = admin.get("/storage").unwrap().text();
    assert!(page.contains("unreadable: reading bytes"), "{page}");
    let ids = ["CAIRN-BADHEAD", "CAIRN-BADTAIL"];
    for (disks, confirm) in [
        (&ids[..], None),
        (&ids[..], Some("shaky")),
        (&ids[1..], Some("shaky")),
    ] {
        let level = if disks.len() == 1 { "single" } else { "raid1" };
        let r = send(
            admin,
            "POST",
            "/api/v1/volumes",
            json!({"name": "shaky", "level": level, "disks": disks, "confirm": confirm}),
        );
        let body = r.json().unwrap();
        assert_eq!(
            (r.status, error_code(&body)),
            (409, "disk.unreadable"),
            "{body}"
        );
        assert_eq!(
            body["error"]["confirm"],
            format!("erase unreadable {}", disks.join(" ")),
            "{body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("(os error 5)"), "{message}");
    }
    assert_eq!(
        bay_hashes(m, &failing),
        before,
        "a refused create wrote to an unreadable disk"
    );
    for (bay, d) in [(7, &bad_head), (8, &bad_tail)] {
        m.unplug_disk(bay).unwrap();
        wait_disk(admin, &d.serial, false);
    }
    assert_eq!(
        file_hashes(&failing),
        before,
        "after the box let go of them"
    );
}

#[test]
fn raid5_lifecycle_failure_repair_reboot_and_move_to_a_new_box() {
    let board = "qemu-aarch64-virt";
    let (dir, bays) = fresh_bays("storage", 4);
    let options = BootOptions {
        network: Network::Offline,
        forward: vec![445],
        data_disks: bays.clone(),
        empty_bays: 4,
        ..BootOptions::default()
    };
    let (mut m, _disk, admin) = boot(board, &options);
    let _log = ConsoleOnFailure(m.console_handle(), "raid5 lifecycle");

    // Disks by bay; the boot medium is listed as such and refused.
    let listed = disks(&admin);
    let boot_id = listed
        .iter()
        .find(|d| d["role"] == "boot")
        .expect("boot medium listed")["id"]
        .as_str()
        .unwrap()
        .to_string();
    for n in 1..=4u64 {
        let d = listed
            .iter()
            .find(|d| d["id"] == format!("CAIRN-BAY{n}"))
            .expect("bay disk");
        assert_eq!(d["slot"], n, "{d}");
        assert_eq!(d["role"], "free", "{d}");
    }
    let ids: Vec<String> = (1..=4).map(|n| format!("CAIRN-BAY{n}")).collect();
    let boot_dev = listed.iter().find(|d| d["role"] == "boot").unwrap()["device"]
        .as_str()
        .unwrap()
        .to_string();
    // A disk too small for any volume, pushed into bay 6: free, and refused for a volume.
    let tiny = sized_disk_file(&dir, "tiny", 32);
    m.plug_disk(6, &tiny).unwrap();
    let d = wait_disk(&admin, "CAIRN-TINY", true).unwrap();
    assert_eq!(d["role"], "free", "{d}");

    // Refusals, before anything is touched: every disk and the boot medium's start stay byte-identical.
    let loose: Vec<&DataDisk> = bays.iter().chain([&tiny]).collect();
    let kept = untouched(&mut m, &admin, &loose, &[]);
    let boot_kept = boot_start(&mut m, &boot_dev);
    let r = send(
        &admin,
        "POST",
        "/api/v1/volumes",
        json!({"name": "vault", "level": "raid5", "disks": ["CAIRN-BAY1", "CAIRN-BAY2"]}),
    );
    assert_eq!(
        (r.status, error_code(&r.json().unwrap())),
        (422, "volume.disk_count"),
        "{}",
        r.text()
    );
    let r = send(
        &admin,
        "POST",
        "/api/v1/volumes",
        json!({"name": "vault", "level": "raid1", "disks": ["CAIRN-BAY1", boot_id]}),
    );
    assert_eq!(
        (r.status, error_code(&r.json().unwrap())),
        (422, "disk.boot_medium"),
        "{}",
        r.text()
    );
    assert!(r.json().unwrap()["error"]["hint"].as_str().unwrap().len() > 10);
    let r = send(
        &admin,
        "POST",
        "/api/v1/volumes",
        json!({"name": "small", "level": "single", "disks": ["CAIRN-TINY"]}),
    );
    assert_eq!(
        (r.status, error_code(&r.json().unwrap())),
        (422, "disk.too_small"),
        "{}",
        r.text()
    );
    assert_eq!(
        untouched(&mut m, &admin, &loose, &[]),
        kept,
        "a refused create wrote to a disk"
    );
    assert_eq!(
        boot_start(&mut m, &boot_dev),
        boot_kept,
        "a refused create wrote to the boot medium"
    );
    let after = disks(&admin);
    for id in &ids {
        let d = after
            .iter()
            .find(|d| d["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} is no longer listed after a refusal"));
        assert_eq!(d["role"], "free", "a refusal touched a disk: {d}");
    }

    unreadable_disks_are_never_free_nor_erased_without_their_confirmation(&mut m, &admin, &dir);

    // RAID 5 on four disks: the job reaches 100 %.
    let r = expect(
        &send(
            &admin,
            "POST",
            "/api/v1/volumes",
            json!({"name": "vault", "level": "raid5", "disks": ids}),
        ),
        202,
    );
    let (job, seen) = wait_job(&admin, &r["job"], Duration::from_secs(600));
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["percent"], 100.0, "{job}");
    assert!(
        seen.len() >= 2,
        "the job was seen only once, so progress was never watched: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[1] >= w[0] || w[1] == 100.0),
        "progress went backwards: {seen:?}"
    );
    let v = volume(&admin, "vault");
    assert_eq!(
        (
            v["state"].as_str(),
            v["mounted"].as_bool(),
            v["level"].as_str()
        ),
        (Some("clean"), Some(true), Some("raid5")),
        "{v}"
    );
    assert!(
        v["size_bytes"].as_u64().unwrap() > 2 * DISK_MIB * 1024 * 1024,
        "{v}"
    );
    // The console sees the same (the rescue path when the dashboard is out of reach).
    let out = m
        .serial(
            "cairn ctl volume list; cairn ctl disks",
            Duration::from_secs(30),
        )
        .unwrap();
    assert!(
        out.contains("name=vault") && out.contains("state=clean"),
        "{out}"
    );
    assert!(
        out.contains("serial=CAIRN-BAY1") && out.contains("slot=1"),
        "{out}"
    );
    // A disk already in use is refused, naming it, and the array's members keep their places.
    let members: Vec<&str> = ids.iter().map(String::as_str).collect();
    let kept = untouched(&mut m, &admin, &[&tiny], &members);
    let r = send(
        &admin,
        "POST",
        "/api/v1/volumes",
        json!({"name": "more", "level": "single", "disks": ["CAIRN-BAY1"]}),
    );
    let body = r.json().unwrap();
    assert_eq!(
        (r.status, error_code(&body)),
        (409, "disk.in_use"),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("bay 1"),
        "{body}"
    );
    assert_eq!(
        untouched(&mut m, &admin, &[&tiny], &members),
        kept,
        "a refused create touched a disk"
    );

    // Files written over SMB to a share on the volume.
    expect(
        &send(
            &admin,
            "POST",
            "/api/v1/shares",
            json!({"name": "safe", "volume": "vault", "access": {"users": {ADMIN: "write"}}}),
        ),
        201,
    );
    let port = m.host_port(445).expect("SMB forwarded");
    let names = ["a.bin", "b.bin", "c.bin"];
    let mut sums = vec![];
    for (i, n) in names.iter().enumerate() {
        let f = dir.join(n);
        random_file(&f, 3, i as u8);
        sums.push(host_sha256(&f));
    }
    let commands = names
        .iter()
        .map(|n| format!("put {} {n}", dir.join(n).display()))
        .collect::<Vec<_>>()
        .join("; ");
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out) = smbclient(port, "safe", Some((ADMIN, ADMIN_PASSWORD)), &commands);
        if ok {
            break;
        }
        assert!(
            Instant::now() < until,
            "SMB writes to the volume failed: {out}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let share_dir = "/data/vault/safe";
    assert_eq!(box_checksums(&mut m, share_dir, &names), sums);
    // Space per share and per volume.
    let share = expect(&admin.get("/api/v1/shares/safe").unwrap(), 200);
    assert!(share["used_bytes"].as_u64().unwrap() >= 9 << 20, "{share}");
    assert!(volume(&admin, "vault")["used_bytes"].as_u64().unwrap() >= 9 << 20);
    assert!(
        admin.get("/shares").unwrap().text().contains("vault · 9."),
        "the shares page shows the space used"
    );
    m.serial("sync", Duration::from_secs(30)).unwrap();

    // Deleting a volume that carries shares is refused: members, files and the free disk as they were.
    let kept = untouched(&mut m, &admin, &[&tiny], &members);
    let r = send(
        &admin,
        "DELETE",
        "/api/v1/volumes/vault",
        json!({"confirm": "vault"}),
    );
    assert_eq!(
        (r.status, error_code(&r.json().unwrap())),
        (409, "volume.has_shares"),
        "{}",
        r.text()
    );
    assert_eq!(
        untouched(&mut m, &admin, &[&tiny], &members),
        kept,
        "a refused delete touched a disk"
    );
    assert_eq!(box_checksums(&mut m, share_dir, &names), sums);

    // Failure 1: mdadm --fail through the API; the volume is degraded and names the disk by bay and serial.
    let failed_at = Instant::now();
    let v = expect(
        &send(
            &admin,
            "POST",
            "/api/v1/volumes/vault/fail",
            json!({"disk": "CAIRN-BAY2"}),
        ),
        200,
    );
    assert_eq!(v["state"], "degraded", "{v}");
    let problem = v["problem"].as_str().unwrap();
    assert!(
        problem.contains("bay 2") && problem.contains("CAIRN-BAY2"),
        "{problem}"
    );
    let page = admin.get("/storage").unwrap().text();
    assert!(
        page.contains("degraded")
            && page.contains("bay 2 (Virtual disk, serial CAIRN-BAY2) is out of the array"),
        "{page}"
    );
    eprintln!(
        "degraded shown {:?} after the failure request",
        failed_at.elapsed()
    );
    // Failing a second disk would lose data: refused. So is a replacement too small for the array. The disk
    // failed out, the free one and the remaining members' places stay as they were.
    let loose = [&bays[1], &tiny];
    let members = ["CAIRN-BAY1", "CAIRN-BAY3", "CAIRN-BAY4"];
    let kept = untouched(&mut m, &admin, &loose, &members);
    let r = send(
        &admin,
        "POST",
        "/api/v1/volumes/vault/fail",
        json!({"disk": "CAIRN-BAY3"}),
    );
    assert_eq!(
        (r.status, error_code(&r.json().unwrap())),
        (422, "volume.refused"),
        "{}",
        r.text()
    );
    let r = send(
        &admin,
        "POST",
        "/api/v1/volumes/vault/replace",
        json!({"failed": "CAIRN-BAY2", "with": "CAIRN-TINY"}),
    );
    assert_eq!(
        (r.status, error_code(&r.json().unwrap())),
        (422, "disk.too_small"),
        "{}",
        r.text()
    );
    assert_eq!(
        untouched(&mut m, &admin, &loose, &members),
        kept,
        "a refused failure or replacement touched a disk"
    );

    // A fresh disk pushed into empty bay 5 replaces it; the rebuild is a job.
    let new5 = disk_file(&dir, "new5");
    m.plug_disk(5, &new5).unwrap();
    let d = wait_disk(&admin, "CAIRN-NEW5", true).unwrap();
    assert_eq!(
        (d["slot"].as_u64(), d["role"].as_str()),
        (Some(5), Some("free")),
        "{d}"
    );
    let r = expect(
        &send(
            &admin,
            "POST",
            "/api/v1/volumes/vault/replace",
            json!({"failed": "CAIRN-BAY2", "with": "CAIRN-NEW5"}),
        ),
        202,
    );
    let (job, _) = wait_job(&admin, &r["job"], Duration::from_secs(600));
    assert_eq!(
        (job["state"].as_str(), job["kind"].as_str()),
        (Some("done"), Some("rebuild")),
        "{job}"
    );
    wait_state(&admin, "vault", "clean", Duration::from_secs(30));

    // Failure 2: bay 3's disk is pulled out (PCIe hot-unplug). The box notices by itself.
    m.unplug_disk(3).unwrap();
    let (v, took) = wait_state(&admin, "vault", "degraded", Duration::from_secs(60));
    eprintln!("pulled disk shown as degraded {took:?} after the unplug request (includes the 5 s PCIe button delay)");
    let problem = v["problem"].as_str().unwrap();
    assert!(
        problem.contains("bay 3") && problem.contains("CAIRN-BAY3"),
        "{problem}"
    );
    wait_disk(&admin, "CAIRN-BAY3", false);
    // The event log names the pulled disk by bay (the monitor's next pass, within 10 s).
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let events = expect(&admin.get("/api/v1/storage/events").unwrap(), 200);
        if events.as_array().unwrap().iter().any(|e| {
            let m = e["message"].as_str().unwrap_or("");
            m.contains("bay 3")
                && (m.contains("missing from the box") || m.contains("removed from the box"))
        }) {
            break;
        }
        assert!(
            Instant::now() < until,
            "no event for the pulled disk: {events}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // A new disk goes into the same bay and replaces the pulled one.
    let new3 = disk_file(&dir, "new3");
    m.plug_disk(3, &new3).unwrap();
    wait_disk(&admin, "CAIRN-NEW3", true);
    // This rebuild is slowed down so the daemon can be restarted in the middle: the job goes on, because
    // the kernel, not the daemon, is its source of truth.
    m.serial(
        "echo 3000 > /proc/sys/dev/raid/speed_limit_max",
        Duration::from_secs(10),
    )
    .unwrap();
    let r = expect(
        &send(
            &admin,
            "POST",
            "/api/v1/volumes/vault/replace",
            json!({"failed": "CAIRN-BAY3", "with": "CAIRN-NEW3"}),
        ),
        202,
    );
    let id = r["job"]["id"].as_str().unwrap().to_string();
    let until = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let j = expect(&admin.get(&format!("/api/v1/jobs/{id}")).unwrap(), 200);
        let p = j["percent"].as_f64().unwrap();
        if p > 0.0 {
            break p;
        }
        assert!(Instant::now() < until, "rebuild never progressed: {j}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let mark = m.mark();
    m.serial(
        "for p in $(pidof cairn); do [ $p != 1 ] && kill $p; done; true",
        Duration::from_secs(10),
    )
    .unwrap();
    m.wait_console("started daemon", mark, Duration::from_secs(30))
        .unwrap();
    m.wait_healthy(Instant::now(), Duration::from_secs(60))
        .unwrap();
    let j = expect(&admin.get(&format!("/api/v1/jobs/{id}")).unwrap(), 200);
    assert_eq!(j["kind"], "rebuild", "{j}");
    assert!(
        j["state"] == "running" && j["percent"].as_f64().unwrap() >= before,
        "after a daemon restart the job must go on from the kernel's figures: {j} (was {before} %)"
    );
    assert!(j["speed_kib_s"].as_u64().is_some(), "{j}");
    m.serial(
        "echo 200000 > /proc/sys/dev/raid/speed_limit_max",
        Duration::from_secs(10),
    )
    .unwrap();
    let (job, _) = wait_job(&admin, &r["job"], Duration::from_secs(600));
    assert_eq!(job["state"], "done", "{job}");
    let v = wait_state(&admin, "vault", "clean", Duration::from_secs(30)).0;
    let members: Vec<&str> = v["disks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(
        members,
        ["CAIRN-BAY1", "CAIRN-NEW5", "CAIRN-NEW3", "CAIRN-BAY4"]
    );
    m.serial("echo 3 > /proc/sys/vm/drop_caches", Duration::from_secs(30))
        .unwrap();
    assert_eq!(
        box_checksums(&mut m, share_dir, &names),
        sums,
        "data after two rebuilds"
    );

    // A scrub reads everything and reports mismatches.
    let r = expect(
        &send(&admin, "POST", "/api/v1/volumes/vault/scrub", json!({})),
        202,
    );
    let (job, _) = wait_job(&admin, &r["job"], Duration::from_secs(600));
    assert_eq!(job["state"], "done", "{job}");
    assert!(
        job["message"].as_str().unwrap().contains("0 mismatched"),
        "{job}"
    );

    // Reboot: the volume is assembled from the store's UUID with the same data.
    let mark = power(&m, &admin, "reboot", "/data/vault");
    m.wait_console(&starting_line(&m), mark, Duration::from_secs(120))
        .unwrap();
    m.wait_healthy(Instant::now(), Duration::from_secs(240))
        .unwrap();
    wait_state(&admin, "vault", "clean", Duration::from_secs(120));
    // Assembled first, then the filesystem is checked and mounted.
    wait_mounted(&admin, "vault");
    assert_eq!(
        box_checksums(&mut m, share_dir, &names),
        sums,
        "data after a reboot"
    );

    // Power off, move the four member disks to a freshly flashed box (in another order): found, imported.
    power(&m, &admin, "poweroff", "/data/vault");
    m.wait_exit(Duration::from_secs(60)).unwrap();
    drop(m);
    // Two more disks, partitioned on the host, will carry a plain Linux md mirror made on their partitions.
    let legacy: Vec<DataDisk> = ["legacy1", "legacy2"]
        .iter()
        .map(|n| disk_file(&dir, n))
        .collect();
    for d in &legacy {
        let mut sfdisk = std::process::Command::new("sfdisk")
            .args(["-q", &d.file.to_string_lossy()])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sfdisk (util-linux) on the host");
        use std::io::Write;
        sfdisk
            .stdin
            .take()
            .unwrap()
            .write_all(b"label: gpt\n,,L\n")
            .unwrap();
        assert!(sfdisk.wait().unwrap().success());
    }
    let mut moved = vec![new3, bays[3].clone(), bays[0].clone(), new5];
    moved.extend(legacy);
    let options = BootOptions {
        network: Network::Offline,
        data_disks: moved,
        ..BootOptions::default()
    };
    let (mut m2, _disk2, admin2) = boot(board, &options);
    let _log2 = ConsoleOnFailure(m2.console_handle(), "import on a new box");
    // Nothing runs yet: a create on a found and a foreign disk without the volume's name typed is refused, and
    // all six disks stay byte-identical.
    let loose: Vec<&DataDisk> = options.data_disks.iter().collect();
    let kept = untouched(&mut m2, &admin2, &loose, &[]);
    for confirm in [json!(null), json!("vault")] {
        let r = send(
            &admin2,
            "POST",
            "/api/v1/volumes",
            json!({"name": "spare", "level": "raid1", "disks": ["CAIRN-BAY4", "CAIRN-LEGACY1"], "confirm": confirm}),
        );
        assert_eq!(
            (r.status, error_code(&r.json().unwrap())),
            (409, "volume.confirm_required"),
            "{}",
            r.text()
        );
    }
    assert_eq!(
        untouched(&mut m2, &admin2, &loose, &[]),
        kept,
        "a refused create touched a disk"
    );
    let f = found_volume(&admin2);
    assert_eq!(
        (
            f["name"].as_str(),
            f["origin"].as_str(),
            f["level"].as_str()
        ),
        (Some("vault"), Some("cairn"), Some("raid5")),
        "{f}"
    );
    assert_eq!(f["disks"].as_array().unwrap().len(), 4);
    // Found disks are never offered as free.
    let vault_disks = f["disks"].as_array().unwrap().clone();
    let found_disks: Vec<Value> = disks(&admin2)
        .into_iter()
        .filter(|d| vault_disks.contains(&d["id"]))
        .collect();
    assert_eq!(
        found_disks.len(),
        vault_disks.len(),
        "every disk of the found volume is listed: {found_disks:?}"
    );
    assert!(
        found_disks.iter().all(|d| d["role"] == "member"),
        "{found_disks:?}"
    );
    let v = expect(
        &send(&admin2, "POST", "/api/v1/volumes/vault/import", json!({})),
        200,
    );
    assert_eq!(
        (v["state"].as_str(), v["mounted"].as_bool()),
        (Some("clean"), Some(true)),
        "{v}"
    );
    assert_eq!(
        box_checksums(&mut m2, share_dir, &names),
        sums,
        "data after moving the disks"
    );

    // A plain Linux md mirror on partitions (as other systems make them), with a file on it: found, imported.
    let dev = |serial: &str| -> String {
        disks(&admin2)
            .into_iter()
            .find(|d| d["serial"] == serial)
            .unwrap_or_else(|| panic!("no disk {serial}"))["device"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (a, b) = (dev("CAIRN-LEGACY1"), dev("CAIRN-LEGACY2"));
    let out = m2
        .serial(
            &format!(
                "mdadm --create /dev/md9 --config=none --run --level=1 --raid-devices=2 --metadata=1.2 --homehost=debian --name=0 /dev/{a}1 /dev/{b}1 >/dev/null 2>&1 && /sbin/mke2fs -t ext4 -q /dev/md9 && mkdir -p /tmp/l && mount /dev/md9 /tmp/l && dd if=/dev/urandom of=/tmp/l/old bs=1024 count=512 2>/dev/null && sha256sum /tmp/l/old && umount /tmp/l && mdadm --stop /dev/md9 >/dev/null 2>&1 && echo legacy-ready"
            ),
            Duration::from_secs(180),
        )
        .unwrap();
    assert!(out.contains("legacy-ready"), "{out}");
    let old_sum = out
        .lines()
        .find(|l| l.trim_end().ends_with("/tmp/l/old") && !l.contains("sha256sum"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let legacy = found_volume(&admin2);
    assert_eq!(
        (
            legacy["origin"].as_str(),
            legacy["level"].as_str(),
            legacy["disks"].as_array().unwrap().len()
        ),
        (Some("linux"), Some("raid1"), 2),
        "{legacy}"
    );
    let name = legacy["name"].as_str().unwrap().to_string();
    assert!(
        name.starts_with("found-"),
        "md name \"0\" is no volume name: {name}"
    );
    let v = expect(
        &send(
            &admin2,
            "POST",
            &format!("/api/v1/volumes/{name}/import"),
            json!({"as": "legacy"}),
        ),
        200,
    );
    assert_eq!(
        (v["state"].as_str(), v["mounted"].as_bool()),
        (Some("clean"), Some(true)),
        "{v}"
    );
    assert_eq!(
        box_checksums(&mut m2, "/data/legacy", &["old"]),
        vec![old_sum]
    );
    let members: Vec<&str> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(members, ["in_sync", "in_sync"], "{v}");
}

/// RAID 1 on the armv7 board: build, write, delete (with the typed confirmation), and the disks are free again.
#[test]
fn raid1_on_armv7() {
    let board = "qemu-armv7-virt";
    let (dir, bays) = fresh_bays("storage-armv7", 2);
    let options = BootOptions {
        network: Network::Offline,
        data_disks: bays.clone(),
        ..BootOptions::default()
    };
    let (mut m, disk, admin) = boot(board, &options);
    let _log = ConsoleOnFailure(m.console_handle(), "raid1 armv7");
    // Built from the dashboard's Storage page, as an owner would.
    let token = csrf(&admin);
    let page = admin.get("/storage").unwrap();
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("CAIRN-BAY2") && page.text().contains("Create volume"),
        "{}",
        page.text()
    );
    let r = admin
        .post_form(
            "/storage/volumes",
            &[
                ("csrf_token", token.as_str()),
                ("name", "mirror"),
                ("level", "raid1"),
                ("disk", "CAIRN-BAY1"),
                ("disk", "CAIRN-BAY2"),
            ],
        )
        .unwrap();
    // Post, then redirect: a reload never repeats the change.
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/storage?done=created")),
        "{}",
        r.text()
    );
    let page = admin.get("/storage?done=created").unwrap().text();
    assert!(
        page.contains("being built") && page.contains("mirror"),
        "{page}"
    );
    let jobs = expect(&admin.get("/api/v1/jobs").unwrap(), 200);
    let job = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["volume"] == "mirror")
        .expect("create job")
        .clone();
    let (job, _) = wait_job(&admin, &job, Duration::from_secs(900));
    assert_eq!(job["state"], "done", "{job}");
    let v = volume(&admin, "mirror");
    assert_eq!(
        (
            v["state"].as_str(),
            v["level"].as_str(),
            v["mounted"].as_bool()
        ),
        (Some("clean"), Some("raid1"), Some(true)),
        "{v}"
    );
    let out = m
        .serial("dd if=/dev/urandom of=/data/mirror/f bs=1024 count=2048 2>/dev/null; sync; sha256sum /data/mirror/f", Duration::from_secs(120))
        .unwrap();
    let sum = out
        .lines()
        .find(|l| l.trim_end().ends_with("/data/mirror/f") && !l.contains("sha256sum"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let cookie = admin.cookie("cairn_session").unwrap();

    // Restarted with only one disk of the mirror: degraded, the missing disk named, the data intact.
    let mut m = restart_with(m, &admin, board, &disk, vec![bays[1].clone()]);
    let admin = m.http();
    admin.set_cookie("cairn_session", &cookie);
    let (v, _) = wait_state(&admin, "mirror", "degraded", Duration::from_secs(120));
    let problem = v["problem"].as_str().unwrap();
    assert!(
        problem.contains("CAIRN-BAY1") && problem.contains("missing from the box"),
        "{problem}"
    );
    wait_mounted(&admin, "mirror");
    assert_eq!(
        box_checksums(&mut m, "/data/mirror", &["f"]),
        vec![sum.clone()]
    );

    // Restarted with blank disks in the mirror's bays and its own disks out of the box: the volume is missing,
    // says what to do, and is never re-created on the blanks. They stay free and byte-identical and no array
    // is started, at boot and through the monitor's passes (at least one every 10 s).
    let blanks: Vec<DataDisk> = ["blank1", "blank2"]
        .iter()
        .map(|n| disk_file(&dir, n))
        .collect();
    let blank_refs: Vec<&DataDisk> = blanks.iter().collect();
    let pristine = file_hashes(&blank_refs);
    let mut m = restart_with(m, &admin, board, &disk, blanks.clone());
    let admin = m.http();
    admin.set_cookie("cairn_session", &cookie);
    let (v, _) = wait_state(&admin, "mirror", "missing", Duration::from_secs(120));
    assert!(
        v["problem"].as_str().unwrap().contains("never re-created"),
        "{v}"
    );
    assert!(admin.get("/storage").unwrap().text().contains("missing"));
    let watch_until = Instant::now() + Duration::from_secs(21);
    let mut rounds = 0;
    loop {
        let mdstat = m
            .serial("cat /proc/mdstat 2>&1", Duration::from_secs(30))
            .unwrap();
        assert!(
            !mdstat.lines().any(|l| l.starts_with("md")),
            "an array was started beside the missing volume: {mdstat}"
        );
        assert_eq!(
            bay_hashes(&mut m, &blank_refs),
            pristine,
            "a blank disk was written beside the missing volume"
        );
        for b in &blanks {
            let d = disks(&admin)
                .into_iter()
                .find(|d| d["id"] == b.serial.as_str())
                .unwrap_or_else(|| panic!("{} is not listed", b.serial));
            assert_eq!(d["role"], "free", "{d}");
        }
        rounds += 1;
        if Instant::now() >= watch_until {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(
        volume(&admin, "mirror")["state"],
        "missing",
        "after {rounds} looks"
    );

    // Both disks back: the data is there; the one left out is stale and stays out of the array until it is
    // replaced (by itself).
    let mut m = restart_with(m, &admin, board, &disk, bays.clone());
    assert_eq!(
        file_hashes(&blank_refs),
        pristine,
        "the blank disks after the box let go of them"
    );
    let admin = m.http();
    admin.set_cookie("cairn_session", &cookie);
    let (v, _) = wait_state(&admin, "mirror", "degraded", Duration::from_secs(120));
    assert!(v["problem"].as_str().unwrap().contains("CAIRN-BAY1"), "{v}");
    wait_mounted(&admin, "mirror");
    assert_eq!(
        box_checksums(&mut m, "/data/mirror", &["f"]),
        vec![sum.clone()],
        "the mirror's data after the blank disks"
    );
    let r = expect(
        &send(
            &admin,
            "POST",
            "/api/v1/volumes/mirror/replace",
            json!({"failed": "CAIRN-BAY1", "with": "CAIRN-BAY1"}),
        ),
        202,
    );
    let (job, _) = wait_job(&admin, &r["job"], Duration::from_secs(900));
    assert_eq!(job["state"], "done", "{job}");
    wait_state(&admin, "mirror", "clean", Duration::from_secs(60));
    wait_mounted(&admin, "mirror");
    assert_eq!(
        box_checksums(&mut m, "/data/mirror", &["f"]),
        vec![sum.clone()]
    );
    let token = csrf(&admin);

    // Deleting without the name typed, or with it misspelt, is refused: the members keep their places and
    // the file is intact.
    let members = ["CAIRN-BAY1", "CAIRN-BAY2"];
    let kept = untouched(&mut m, &admin, &[], &members);
    let r = send(&admin, "DELETE", "/api/v1/volumes/mirror", json!({}));
    assert_eq!(
        (r.status, error_code(&r.json().unwrap())),
        (409, "volume.confirm_required"),
        "{}",
        r.text()
    );
    assert_eq!(
        r.json().unwrap()["error"]["confirm"],
        "mirror",
        "the refusal gives the token to send"
    );
    let r = send(
        &admin,
        "DELETE",
        "/api/v1/volumes/mirror",
        json!({"confirm": "Mirror"}),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        untouched(&mut m, &admin, &[], &members),
        kept,
        "a refused delete touched a disk"
    );
    assert_eq!(
        box_checksums(&mut m, "/data/mirror", &["f"]),
        vec![sum.clone()]
    );
    let page = admin.get("/storage").unwrap().text();
    assert!(page.contains("Type <b>mirror</b>"), "{page}");
    let r = admin
        .post_form(
            "/storage/volumes/mirror/delete",
            &[("csrf_token", token.as_str()), ("confirm", "mirror")],
        )
        .unwrap();
    assert_eq!(
        r.header("location"),
        Some("/storage?done=deleted"),
        "{}",
        r.text()
    );
    let free: Vec<Value> = disks(&admin)
        .into_iter()
        .filter(|d| d["role"] == "free")
        .collect();
    assert_eq!(
        free.len(),
        2,
        "both disks free again after delete: {free:?}"
    );
}
