//! Firmware update on one boot of the aarch64 box: the refusals over HTTP (a bundle for another board, cut
//! short, with a payload byte changed, with its manifest changed after signing, signed with a key the box does
//! not trust), each with its code and slot B left not bootable; then a bundle made by `make bundle VERSION=...`
//! is installed over `POST /api/v1/firmware` (202, the job done, slot B holding the new version), the box
//! reboots into slot B (`cairn.slot=b`, health says so) and, once the commit lands, slot B is the good one.
//! The armv7 box does the same install and reboot on a boot of its own.
// This test builds bundles with `make` when they are missing.
#![allow(clippy::disallowed_methods)]

use cairn_e2e::*;
use cairn_qemu::{board_out_dir, workspace_root, BootDisk, BootOptions, Machine, Manifest};
use serde_json::Value;
use std::time::{Duration, Instant};

const BOARD: &str = "qemu-aarch64-virt";
const VERSION: &str = "0.2.0";

/// `out/<board>/cairn-<board>-<version>.cfw`, made by `make bundle` once per run when absent.
fn bundle(board: &str) -> Vec<u8> {
    let path = board_out_dir(board).join(format!("cairn-{board}-{VERSION}.cfw"));
    if !path.exists() {
        let status = std::process::Command::new("make")
            .args([
                "bundle",
                &format!("BOARD={board}"),
                &format!("VERSION={VERSION}"),
            ])
            .current_dir(workspace_root())
            .status()
            .expect("make runs");
        assert!(
            status.success(),
            "make bundle BOARD={board} VERSION={VERSION} failed"
        );
    }
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The bundle's header length (magic, lengths, manifest, signature block).
fn header_len(bundle: &[u8]) -> usize {
    let m = u32::from_le_bytes(bundle[8..12].try_into().unwrap()) as usize;
    let s = u32::from_le_bytes(bundle[12..16].try_into().unwrap()) as usize;
    16 + m + s
}

/// The same bundle with its manifest changed by `change` and signed again with `key`.
fn resigned(
    bundle: &[u8],
    key: &cairn_firmware::SigningKey,
    change: impl FnOnce(&mut cairn_firmware::Manifest),
) -> Vec<u8> {
    let signed =
        cairn_firmware::SignedManifest::read_from(&mut &bundle[..], cairn_firmware::Magic::Bundle)
            .unwrap();
    let mut manifest = cairn_firmware::Manifest::parse(signed.manifest_bytes()).unwrap();
    change(&mut manifest);
    let mut out = cairn_firmware::SignedManifest::sign(&manifest, key)
        .unwrap()
        .encode(cairn_firmware::Magic::Bundle);
    out.extend_from_slice(&bundle[header_len(bundle)..]);
    out
}

fn upload(admin: &cairn_qemu::HttpClient, csrf: &str, body: Vec<u8>) -> cairn_qemu::HttpResponse {
    admin
        .clone()
        .with_timeout(Duration::from_secs(300))
        .request(
            "POST",
            "/api/v1/firmware",
            &[
                ("content-type", "application/octet-stream"),
                ("x-csrf-token", csrf),
            ],
            body,
        )
        .unwrap()
}

/// The daemon's peak resident memory (VmHWM) in KiB, read on the serial console.
fn daemon_peak_kib(m: &mut Machine) -> u64 {
    let out = m
        .serial(
            "for p in /proc/[0-9]*; do if tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q '^[^ ]*cairn daemon'; then grep VmHWM $p/status; fi; done",
            Duration::from_secs(30),
        )
        .unwrap();
    out.lines()
        .find_map(|l| l.trim().strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no daemon VmHWM in {out:?}"))
}

fn firmware(admin: &cairn_qemu::HttpClient) -> Value {
    expect(&admin.get("/api/v1/firmware").unwrap(), 200)
}

fn assert_refused(
    r: &cairn_qemu::HttpResponse,
    status: u16,
    code: &str,
    admin: &cairn_qemu::HttpClient,
) {
    assert_eq!(r.status, status, "{}", r.text());
    let body = r.json().unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["hint"].as_str().is_some_and(|h| h.len() > 10),
        "{body}"
    );
    let f = firmware(admin);
    assert_ne!(
        f["slots"][1]["state"], "good",
        "slot B must not be bootable after {code}: {f}"
    );
    assert_eq!(f["pending"], Value::Null, "{f}");
}

#[test]
fn a_bundle_installed_over_http_boots_from_slot_b_and_refusals_leave_it_unbootable() {
    let good = bundle(BOARD);
    // For another board, signed with the key `make bundle` signs with (the image trusts it).
    let signing_key = std::env::var_os("CAIRN_SIGNING_KEY")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("keys/development.pk8"));
    let dev_key = cairn_firmware::SigningKey::load(&signing_key).unwrap();
    let other_board = resigned(&good, &dev_key, |m| {
        m.board = cairn_firmware::Name::new("qemu-armv7-virt").unwrap()
    });
    let stranger_key = cairn_firmware::SigningKey::from_pkcs8(
        &cairn_firmware::SigningKey::generate_pkcs8().unwrap(),
    )
    .unwrap();
    let stranger = resigned(&good, &stranger_key, |_| {});
    let (manifest, dir) = Manifest::load(BOARD).unwrap_or_else(|e| panic!("{e}"));
    let disk = BootDisk::flash(&manifest, &dir).unwrap();
    let mut m = Machine::boot(BOARD, &disk, &BootOptions::default()).unwrap();
    let _console = ConsoleOnFailure(m.console_handle(), "update");
    let (_, health) = m
        .wait_healthy(Instant::now(), Duration::from_secs(180))
        .unwrap();
    assert_eq!(health["slot"], "a", "{health}");
    let admin = m.http();
    setup_through_form(&admin);
    let token = csrf(&admin);
    let before = firmware(&admin);
    assert_eq!(before["slots"][0]["state"], "booted", "{before}");
    // The daemon's peak memory before any upload, to compare with after the refusals and the install.
    let peak_before = daemon_peak_kib(&mut m);

    // Refusals decided on the header are sent the header and a little more: nothing after it is read.
    let head = |b: &[u8]| b[..header_len(b) + 4096].to_vec();
    let refused = |body: Vec<u8>, status: u16, code: &str| {
        assert_refused(&upload(&admin, &token, body), status, code, &admin)
    };
    refused(head(&other_board), 422, "firmware.wrong_board");
    refused(head(&stranger), 422, "firmware.unknown_key");
    let mut forged = good.clone();
    let quoted = format!("\"{VERSION}\"");
    let version_at = 16
        + good[16..]
            .windows(quoted.len())
            .position(|w| w == quoted.as_bytes())
            .unwrap();
    forged[version_at + 1] = b'9';
    refused(head(&forged), 422, "firmware.bad_signature");
    // Refusals found while streaming: slot B was being written, and is left out of the boot order.
    refused(good[..good.len() / 2].to_vec(), 400, "firmware.truncated");
    let mut tampered = good.clone();
    tampered[header_len(&good) + 4096 * 3 + 17] ^= 0x40;
    refused(tampered, 422, "firmware.digest_mismatch");

    let started = Instant::now();
    install(&admin, &token, good.clone());
    println!(
        "install of a {} MiB bundle: {:.1} s (upload, write, read-back, activation)",
        good.len() >> 20,
        started.elapsed().as_secs_f64()
    );
    let peak_after = daemon_peak_kib(&mut m);
    println!(
        "daemon peak memory (VmHWM): {peak_before} KiB before any upload, {peak_after} KiB after five refusals and the install ({} KiB added; goal <= 8192)",
        peak_after.saturating_sub(peak_before)
    );
    reboot_into_b_and_commit(&mut m, &admin);
}

/// Installs `bundle` over HTTP: 202, the job done, slot B holding the new version, waiting for its reboot.
fn install(admin: &cairn_qemu::HttpClient, token: &str, bundle: Vec<u8>) {
    let r = upload(admin, token, bundle);
    assert_eq!(r.status, 202, "{}", r.text());
    let job = r.json().unwrap()["job"].clone();
    let (done, percents) = wait_job(admin, &job, Duration::from_secs(300));
    assert_eq!(done["state"], "done", "{done}");
    println!("job percents seen {percents:?}");
    let after = firmware(admin);
    assert_eq!(after["slots"][1]["version"], VERSION, "{after}");
    assert_eq!(after["slots"][1]["state"], "good", "{after}");
    assert_eq!(after["pending"]["slot"], "b", "{after}");
}

/// Reboots; the box comes up on slot B and init's commit keeps it.
fn reboot_into_b_and_commit(m: &mut Machine, admin: &cairn_qemu::HttpClient) {
    let mark = m.mark();
    let r = send(
        admin,
        "POST",
        "/api/v1/system/reboot",
        serde_json::json!({}),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    // The daemon's start line after the reboot (the old daemon answers health until it stops).
    m.wait_console(&starting_line(m), mark, Duration::from_secs(300))
        .unwrap();
    let (_, health) = m
        .wait_healthy(Instant::now(), Duration::from_secs(300))
        .unwrap();
    assert_eq!(health["slot"], "b", "{health}");
    let cmdline = m
        .serial("cat /proc/cmdline", Duration::from_secs(30))
        .unwrap();
    assert!(cmdline.contains("cairn.slot=b"), "{cmdline}");

    // The commit (init's, once the new slot proved healthy): slot B booted and kept, slot A good to fall back to.
    let admin = m.http();
    login_api(&admin, ADMIN, ADMIN_PASSWORD);
    let until = Instant::now() + Duration::from_secs(300);
    loop {
        let f = firmware(&admin);
        if f["slots"][1]["state"] == "booted" && f["last_update"]["outcome"] == "committed" {
            assert_eq!(f["slots"][1]["version"], VERSION, "{f}");
            assert_eq!(f["slots"][0]["state"], "good", "{f}");
            break;
        }
        assert!(Instant::now() < until, "slot B was not committed: {f}");
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn an_armv7_box_installs_a_bundle_and_boots_from_slot_b() {
    const ARMV7: &str = "qemu-armv7-virt";
    let good = bundle(ARMV7);
    let (manifest, dir) = Manifest::load(ARMV7).unwrap_or_else(|e| panic!("{e}"));
    let disk = BootDisk::flash(&manifest, &dir).unwrap();
    let mut m = Machine::boot(ARMV7, &disk, &BootOptions::default()).unwrap();
    let _console = ConsoleOnFailure(m.console_handle(), "update armv7");
    let (_, health) = m
        .wait_healthy(Instant::now(), Duration::from_secs(300))
        .unwrap();
    assert_eq!(health["slot"], "a", "{health}");
    let admin = m.http();
    setup_through_form(&admin);
    let token = csrf(&admin);
    let started = Instant::now();
    install(&admin, &token, good.clone());
    println!(
        "armv7: install of a {} MiB bundle: {:.1} s",
        good.len() >> 20,
        started.elapsed().as_secs_f64()
    );
    reboot_into_b_and_commit(&mut m, &admin);
}
