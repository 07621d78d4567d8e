//! A failed update rolls back (aarch64, one box): slot A with settings (a user with an e-mail, a share); a bundle
//! whose system never becomes healthy (`scripts/image/variant.py ... no-daemon`: the daemon's service removed, so
//! the dashboard never answers) is installed over `POST /api/v1/firmware`; the box reboots into slot B
//! (`cairn.slot=b`), init reboots it at its commit deadline, U-Boot counts B's tries down and falls back to A; A
//! comes up with its settings as before, `GET /api/v1/firmware` says the update was rolled back and slot B is bad,
//! and the same bundle is refused without `?insist=1` (`firmware.failed_before`).
// This test builds the failing bundle from the image build with variant.py and cairn-bundle.
#![allow(clippy::disallowed_methods)]

use cairn_e2e::*;
use cairn_qemu::{board_out_dir, workspace_root, BootDisk, BootOptions, Machine, Manifest};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const BOARD: &str = "qemu-aarch64-virt";
const FAILING_VERSION: &str = "0.9.1";
const USER: &str = "alice";
const USER_PASSWORD: &str = "alice password";
const USER_EMAIL: &str = "alice@example.org";

/// `out/<board>/cairn-<board>-<version>-no-daemon.cfw`: the image build's slot with the daemon's service removed,
/// signed with the key `make` signs with; made once per build.
fn failing_bundle() -> Vec<u8> {
    let build = board_out_dir(BOARD);
    let out = build.join(format!("cairn-{BOARD}-{FAILING_VERSION}-no-daemon.cfw"));
    let stale = |p: &PathBuf| {
        let built = std::fs::metadata(build.join("root.slot")).and_then(|m| m.modified());
        let made = std::fs::metadata(p).and_then(|m| m.modified());
        !matches!((built, made), (Ok(b), Ok(m)) if m >= b)
    };
    if stale(&out) {
        let variant_dir = build.join("variant-no-daemon");
        let root = workspace_root();
        let ok = Command::new("python3")
            .arg(root.join("scripts/image/variant.py"))
            .arg(&build)
            .arg("no-daemon")
            .arg(&variant_dir)
            .status()
            .expect("python3 runs")
            .success();
        assert!(ok, "variant.py no-daemon failed");
        let ok = Command::new("cargo")
            .args([
                "build",
                "--locked",
                "-q",
                "-p",
                "cairn-firmware",
                "--bin",
                "cairn-bundle",
            ])
            .current_dir(&root)
            .status()
            .expect("cargo runs")
            .success();
        assert!(ok, "building cairn-bundle failed");
        let key = std::env::var_os("CAIRN_SIGNING_KEY")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("keys/development.pk8"));
        let ok = Command::new(root.join("target/debug/cairn-bundle"))
            .arg("bundle")
            .arg("--build")
            .arg(&variant_dir)
            .arg("--key")
            .arg(&key)
            .args(["--version", FAILING_VERSION, "--floor", "0.1.0", "--out"])
            .arg(&out)
            .status()
            .expect("cairn-bundle runs")
            .success();
        assert!(ok, "cairn-bundle bundle failed");
    }
    std::fs::read(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()))
}

/// The settings the owner made on slot A, as the API shows them (to compare after the fallback).
fn settings(admin: &cairn_qemu::HttpClient) -> (Value, Value) {
    let users = expect(&admin.get("/api/v1/users").unwrap(), 200);
    let shares = expect(&admin.get("/api/v1/shares").unwrap(), 200);
    (users, shares)
}

#[test]
fn failed_update_rolls_back() {
    let bad = failing_bundle();
    let (manifest, dir) = Manifest::load(BOARD).unwrap_or_else(|e| panic!("{e}"));
    let disk = BootDisk::flash(&manifest, &dir).unwrap();
    let mut m = Machine::boot(BOARD, &disk, &BootOptions::default()).unwrap();
    let _console = ConsoleOnFailure(m.console_handle(), "rollback");
    let (_, health) = m
        .wait_healthy(Instant::now(), Duration::from_secs(180))
        .unwrap();
    assert_eq!(health["slot"], "a", "{health}");
    let admin = m.http();
    setup_through_form(&admin);
    expect(
        &send(
            &admin,
            "POST",
            "/api/v1/users",
            json!({"name": USER, "password": USER_PASSWORD, "email": USER_EMAIL}),
        ),
        201,
    );
    expect(
        &send(
            &admin,
            "POST",
            "/api/v1/shares",
            json!({"name": "docs", "description": "Documents", "access": {"users": {USER: "write"}}}),
        ),
        201,
    );
    let before = settings(&admin);
    assert!(before.0.to_string().contains(USER_EMAIL), "{}", before.0);

    let token = csrf(&admin);
    let r = upload_bundle(&admin, &token, "/api/v1/firmware", bad.clone());
    assert_eq!(r.status, 202, "{}", r.text());
    let job = r.json().unwrap()["job"].clone();
    let (done, _) = wait_job(&admin, &job, Duration::from_secs(300));
    assert_eq!(done["state"], "done", "{done}");
    let f = firmware_status(&admin);
    assert_eq!(f["slots"][1]["version"], FAILING_VERSION, "{f}");
    assert_eq!(f["pending"]["slot"], "b", "{f}");

    let mark = m.mark();
    let started = Instant::now();
    let r = send(&admin, "POST", "/api/v1/system/reboot", json!({}));
    assert_eq!(r.status, 202, "{}", r.text());
    // B boots on trial and, never healthy, is rebooted by init at its deadline until U-Boot gives up on it.
    m.wait_console("cairn: booting slot B", mark, Duration::from_secs(300))
        .unwrap();
    // Back on A: the daemon's start line on a boot with cairn.slot=a after B's tries.
    let (_, health) = m
        .wait_healthy(Instant::now(), Duration::from_secs(1800))
        .unwrap();
    assert_eq!(health["slot"], "a", "{health}");
    println!(
        "failed update: reboot to slot A serving again after B's tries: {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // A's settings as before: the owner and the user log in with the same passwords, e-mail and share there.
    let admin = m.http();
    login_api(&admin, ADMIN, ADMIN_PASSWORD);
    let after = settings(&admin);
    assert_eq!(after, before, "settings changed across the failed update");
    let user = m.http();
    login_api(&user, USER, USER_PASSWORD);
    // The owner's front page says what happened.
    let home = admin.get("/").unwrap().text();
    assert!(
        home.contains("update-rolled-back") && home.contains(FAILING_VERSION),
        "the front page does not tell the owner about the failed update: {home}"
    );

    // The box says what happened, and does not install that version again by itself.
    let f = firmware_status(&admin);
    assert_eq!(f["last_update"]["outcome"], "rolled_back", "{f}");
    assert_eq!(f["last_update"]["version"], FAILING_VERSION, "{f}");
    assert_eq!(f["slots"][0]["state"], "booted", "{f}");
    assert_eq!(f["slots"][1]["state"], "bad", "{f}");
    let token = csrf(&admin);
    let head_len = bundle_header_len(&bad);
    let r = upload_bundle(
        &admin,
        &token,
        "/api/v1/firmware",
        bad[..head_len + 4096].to_vec(),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        r.json().unwrap()["error"]["code"],
        "firmware.failed_before",
        "{}",
        r.text()
    );
    assert_eq!(firmware_status(&admin)["slots"][1]["state"], "bad");
}

/// `out/<board>/cairn-<board>-<version>.cfw`, made by `make bundle` once when absent (as update.rs does).
fn good_bundle() -> Vec<u8> {
    assert_eq!(GOOD_VERSION, UPDATE_VERSION);
    let path = update_bundle(BOARD);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const GOOD_VERSION: &str = "0.2.0";

/// A good bundle installed into slot B, then bytes of slot B changed on the disk before the reboot (as a
/// failing medium or an attacker with the disk would): the initramfs's dm-verity read-through refuses B on
/// each of its tries, U-Boot falls back to A, and A says the update was rolled back with B bad; its settings
/// are as before.
#[test]
fn tampered_slot_is_not_booted() {
    let good = good_bundle();
    let (manifest, dir) = Manifest::load(BOARD).unwrap_or_else(|e| panic!("{e}"));
    let disk = BootDisk::flash(&manifest, &dir).unwrap();
    let mut m = Machine::boot(BOARD, &disk, &BootOptions::default()).unwrap();
    let _console = ConsoleOnFailure(m.console_handle(), "tampered slot");
    m.wait_healthy(Instant::now(), Duration::from_secs(180))
        .unwrap();
    let admin = m.http();
    setup_through_form(&admin);
    expect(
        &send(
            &admin,
            "POST",
            "/api/v1/users",
            json!({"name": USER, "password": USER_PASSWORD, "email": USER_EMAIL}),
        ),
        201,
    );
    let before = settings(&admin);
    let token = csrf(&admin);
    let r = upload_bundle(&admin, &token, "/api/v1/firmware", good);
    assert_eq!(r.status, 202, "{}", r.text());
    let (done, _) = wait_job(&admin, &r.json().unwrap()["job"], Duration::from_secs(300));
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(firmware_status(&admin)["pending"]["slot"], "b");

    // One byte of B's squashfs, 1 MiB in (well inside what verity covers), changed on the medium.
    let out = m
        .serial(
            "for d in /sys/class/block/*; do grep -qx PARTNAME=root-b $d/uevent && p=/dev/${d##*/}; done; \
             printf Z | dd of=$p bs=1 seek=1048593 conv=notrunc 2>/dev/null && sync && echo tampered $p",
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(out.contains("tampered /dev/"), "{out}");

    let mark = m.mark();
    let started = Instant::now();
    let r = send(&admin, "POST", "/api/v1/system/reboot", json!({}));
    assert_eq!(r.status, 202, "{}", r.text());
    m.wait_console("cairn: booting slot B", mark, Duration::from_secs(300))
        .unwrap();
    m.wait_console("verity refuses the slot", mark, Duration::from_secs(600))
        .unwrap();
    let (_, health) = m
        .wait_healthy(Instant::now(), Duration::from_secs(1200))
        .unwrap();
    assert_eq!(health["slot"], "a", "{health}");
    println!(
        "tampered slot: reboot to slot A serving again after B's refused tries: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    // B's own init never ran: no daemon of B ever started.
    let log = m.console_log();
    let since = log.get(mark..).unwrap_or(&log);
    assert!(
        !since.contains(&format!("Cairn {GOOD_VERSION} starting")),
        "slot B's system ran despite its changed bytes"
    );
    let admin = m.http();
    login_api(&admin, ADMIN, ADMIN_PASSWORD);
    assert_eq!(
        settings(&admin),
        before,
        "settings changed across the refused update"
    );
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let f = firmware_status(&admin);
        if f["last_update"]["outcome"] == "rolled_back" {
            assert_eq!(f["last_update"]["version"], GOOD_VERSION, "{f}");
            assert_eq!(f["slots"][0]["state"], "booted", "{f}");
            assert_eq!(f["slots"][1]["state"], "bad", "{f}");
            break;
        }
        assert!(
            Instant::now() < until,
            "the fallback was never recorded: {f}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}
