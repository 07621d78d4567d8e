//! Firmware update on one boot of the aarch64 box, from version 1 (this tree built at settings schema 2) with
//! users and a share on a RAID volume: the refusals over HTTP (a bundle for another board, below the floor,
//! signed with a key the box does not trust, its manifest changed after signing, no room for the settings
//! snapshot, cut short, a payload byte changed), each with its code and slot B left not bootable; then the
//! schema-3 bundle made by `make bundle VERSION=...` is installed over `POST /api/v1/firmware` (202, the job
//! done, slot B holding the new version, the migration dry-run shown), the box reboots into slot B
//! (`cairn.slot=b`, health says so) and, once the commit lands, every user logs in as before.
//! The armv7 box does the same install and reboot on a boot of its own.
// This test builds bundles with `make` when they are missing.
#![allow(clippy::disallowed_methods)]

use cairn_e2e::*;
use cairn_qemu::{workspace_root, BootDisk, BootOptions, Machine, Manifest};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const BOARD: &str = "qemu-aarch64-virt";
const VERSION: &str = "0.2.0";

/// `out/<board>/cairn-<board>-<version>.cfw`, made by `make bundle` once per run when absent.
fn bundle(board: &str) -> Vec<u8> {
    assert_eq!(VERSION, UPDATE_VERSION);
    let path = update_bundle(board);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
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
    out.extend_from_slice(&bundle[bundle_header_len(bundle)..]);
    out
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
    let f = firmware_status(admin);
    assert_ne!(
        f["slots"][1]["state"], "good",
        "slot B must not be bootable after {code}: {f}"
    );
    assert_eq!(f["pending"], Value::Null, "{f}");
}

/// `out/<board>-schema-2-only/`: this tree built as it was at settings schema 2 (`make image
/// FEATURES=schema-2-only`, docs/updates.md), the "version 1" an update starts from; built once when absent.
fn old_build(board: &str) -> std::path::PathBuf {
    let dir = workspace_root()
        .join("out")
        .join(format!("{board}-schema-2-only"));
    if !dir.join("manifest.json").exists() {
        let status = std::process::Command::new("make")
            .args(["image", &format!("BOARD={board}"), "FEATURES=schema-2-only"])
            .current_dir(workspace_root())
            .status()
            .expect("make runs");
        assert!(status.success(), "make image FEATURES=schema-2-only failed");
    }
    dir
}

/// The owners' accounts the update must keep: name, password, e-mail, access to the share on the volume.
const PEOPLE: [(&str, &str, &str, &str); 3] = [
    (
        "alice",
        "alice's long password",
        "alice@example.org",
        "write",
    ),
    ("bob", "bob's other password", "bob@example.net", "read"),
    (
        "carol",
        "carol keeps this one",
        "carol@example.com",
        "write",
    ),
];
const SHARE: &str = "family";
const VOLUME: &str = "vault";

/// Every person logs in to the dashboard with their password and sees their e-mail; SMB logins read the
/// file on the volume's share (its SHA-256 as written).
fn everyone_logs_in(m: &Machine, file_sha: &str, dir: &std::path::Path) {
    let port = m.host_port(445).unwrap();
    for (name, password, email, _) in PEOPLE {
        let c = m.http();
        login_api(&c, name, password);
        let me = expect(&c.get("/api/v1/me").unwrap(), 200);
        assert_eq!(me["email"], email, "{name}: {me}");
        let back = dir.join(format!("back-{name}.bin"));
        let _ = std::fs::remove_file(&back);
        smbclient_until_ok(
            port,
            SHARE,
            (name, password),
            &format!("get photos.bin {}", back.display()),
            Duration::from_secs(60),
            &format!("{name} over SMB"),
        );
        assert_eq!(sha256_file(&back), file_sha, "{name} read the file back");
    }
}

/// Version 1 (the schema-2 build) with users (e-mails, passwords) and a share on a RAID 1 volume; the
/// refusals; then the schema-3 bundle installed over HTTP, its migration dry-run shown with the pending
/// update; after the reboot every user logs in (dashboard and SMB) with the same password, e-mails, the
/// share and the file's checksum intact, slot B booted and committed, and the settings at schema 3.
#[test]
fn update_keeps_every_user_and_credential() {
    let good = bundle(BOARD);
    let old = old_build(BOARD);
    // For another board, signed with the key `make bundle` signs with (the image trusts it).
    let signing_key = std::env::var_os("CAIRN_SIGNING_KEY")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("keys/development.pk8"));
    let dev_key = cairn_firmware::SigningKey::load(&signing_key).unwrap();
    let other_board = resigned(&good, &dev_key, |m| {
        m.board = cairn_firmware::Name::new("qemu-armv7-virt").unwrap()
    });
    // Older than the running firmware's floor (0.1.0); a manifest's own floor is never above its version.
    let below_floor = resigned(&good, &dev_key, |m| {
        m.version = "0.0.9".parse::<cairn_firmware::Version>().unwrap();
        m.floor = m.version;
    });
    let stranger_key = cairn_firmware::SigningKey::from_pkcs8(
        &cairn_firmware::SigningKey::generate_pkcs8().unwrap(),
    )
    .unwrap();
    let stranger = resigned(&good, &stranger_key, |_| {});

    let work = workspace_root()
        .join("target/e2e-disks")
        .join("update-keeps-users");
    let _ = std::fs::remove_dir_all(&work);
    let bays = cairn_qemu::blank_data_disks(&work, 2, 256).unwrap();
    let (manifest, dir) = Manifest::load_from(BOARD, old.clone()).unwrap_or_else(|e| panic!("{e}"));
    let disk = BootDisk::flash(&manifest, &dir).unwrap();
    let options = BootOptions {
        data_disks: bays,
        forward: vec![445],
        build: Some(old),
        ..BootOptions::default()
    };
    let mut m = Machine::boot(BOARD, &disk, &options).unwrap();
    let _console = ConsoleOnFailure(m.console_handle(), "update");
    let (_, health) = m
        .wait_healthy(Instant::now(), Duration::from_secs(180))
        .unwrap();
    assert_eq!(health["slot"], "a", "{health}");
    assert_eq!(
        health["settings"]["schema"], 2,
        "version 1 is the schema-2 build: {health}"
    );
    let admin = m.http();
    setup_through_form(&admin);
    let token = csrf(&admin);

    // Version 1's settings: a RAID 1 volume, a share on it, three people with e-mails and passwords.
    let r = expect(
        &send(
            &admin,
            "POST",
            "/api/v1/volumes",
            json!({"name": VOLUME, "level": "raid1", "disks": ["CAIRN-BAY1", "CAIRN-BAY2"]}),
        ),
        202,
    );
    let (job, _) = wait_job(&admin, &r["job"], Duration::from_secs(600));
    assert_eq!(job["state"], "done", "{job}");
    let mut access = serde_json::Map::new();
    for (name, password, email, grant) in PEOPLE {
        expect(
            &send(
                &admin,
                "POST",
                "/api/v1/users",
                json!({"name": name, "password": password, "email": email}),
            ),
            201,
        );
        access.insert(name.into(), json!(grant));
    }
    expect(
        &send(
            &admin,
            "POST",
            "/api/v1/shares",
            json!({"name": SHARE, "volume": VOLUME, "access": {"users": access}}),
        ),
        201,
    );
    let file = work.join("photos.bin");
    let mut rng = fastrand::Rng::with_seed(11);
    std::fs::write(&file, (0..3 << 20).map(|_| rng.u8(..)).collect::<Vec<u8>>()).unwrap();
    let file_sha = sha256_file(&file);
    let port = m.host_port(445).unwrap();
    smbclient_until_ok(
        port,
        SHARE,
        (PEOPLE[0].0, PEOPLE[0].1),
        &format!("put {} photos.bin", file.display()),
        Duration::from_secs(60),
        "alice writes the file",
    );
    everyone_logs_in(&m, &file_sha, &work);
    let users_before = expect(&admin.get("/api/v1/users").unwrap(), 200);
    let shares_before = expect(&admin.get(&format!("/api/v1/shares/{SHARE}")).unwrap(), 200);
    let before = firmware_status(&admin);
    assert_eq!(before["slots"][0]["state"], "booted", "{before}");
    // The daemon's peak memory before any upload, to compare with after the refusals and the install.
    let peak_before = daemon_peak_kib(&mut m);

    // Refusals decided on the header are sent the header and a little more: nothing after it is read.
    let head = |b: &[u8]| b[..bundle_header_len(b) + 4096].to_vec();
    let refused = |body: Vec<u8>, status: u16, code: &str| {
        assert_refused(
            &upload_bundle(&admin, &token, "/api/v1/firmware", body),
            status,
            code,
            &admin,
        )
    };
    refused(head(&other_board), 422, "firmware.wrong_board");
    refused(head(&below_floor), 422, "firmware.below_floor");
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
    // No room on the settings partition for the settings' snapshot: refused before anything is written.
    let fill = m
        .serial(
            "dd if=/dev/zero of=/config/filler bs=1M 2>/dev/null; sync; df -k /config | tail -n1",
            Duration::from_secs(120),
        )
        .unwrap();
    refused(head(&good), 507, "firmware.no_space");
    m.serial("rm -f /config/filler; sync", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e} after {fill}"));
    // Refusals found while streaming: slot B was being written, and is left out of the boot order.
    refused(good[..good.len() / 2].to_vec(), 400, "firmware.truncated");
    let mut tampered = good.clone();
    tampered[bundle_header_len(&good) + 4096 * 3 + 17] ^= 0x40;
    refused(tampered, 422, "firmware.digest_mismatch");

    let started = Instant::now();
    let pending = install(&admin, &token, good.clone());
    println!(
        "install of a {} MiB bundle: {:.1} s (upload, write, read-back, migration dry run, activation)",
        good.len() >> 20,
        started.elapsed().as_secs_f64()
    );
    // The new firmware's migrations, dry-run on a copy of the settings before the reboot: 2 -> 3, by the
    // accounts domain, nothing dropped.
    let report = &pending["migration"];
    assert_eq!(report["ok"], true, "{pending}");
    assert_eq!(
        (report["from"].as_u64(), report["to"].as_u64()),
        (Some(2), Some(3)),
        "{pending}"
    );
    assert_eq!(report["dropped"], 0, "{pending}");
    assert_eq!(report["steps"][0]["owner"], "cairn-accounts", "{pending}");
    let page = admin.get("/system").unwrap().text();
    assert!(
        page.contains("Schema 2 → 3"),
        "the System page shows the migration: {page}"
    );
    let peak_after = daemon_peak_kib(&mut m);
    println!(
        "daemon peak memory (VmHWM): {peak_before} KiB before any upload, {peak_after} KiB after six refusals and the install ({} KiB added; goal <= 8192)",
        peak_after.saturating_sub(peak_before)
    );
    reboot_into_b_and_commit(&mut m, &admin);

    // After the update: schema 3, every account and its credential, the share and its file.
    let (_, health) = m
        .wait_healthy(Instant::now(), Duration::from_secs(60))
        .unwrap();
    assert_eq!(health["settings"]["schema"], 3, "{health}");
    let admin = m.http();
    login_api(&admin, ADMIN, ADMIN_PASSWORD);
    assert_eq!(
        expect(&admin.get("/api/v1/users").unwrap(), 200),
        users_before
    );
    assert_eq!(
        expect(&admin.get(&format!("/api/v1/shares/{SHARE}")).unwrap(), 200)["volume"],
        shares_before["volume"]
    );
    let v = expect(
        &admin.get(&format!("/api/v1/volumes/{VOLUME}")).unwrap(),
        200,
    );
    assert_eq!(
        (v["state"].as_str(), v["mounted"].as_bool()),
        (Some("clean"), Some(true)),
        "{v}"
    );
    everyone_logs_in(&m, &file_sha, &work);
    let _ = std::fs::remove_dir_all(&work);
}

/// Installs `bundle` over HTTP: 202, the job done, slot B holding the new version, waiting for its reboot.
fn install(admin: &cairn_qemu::HttpClient, token: &str, bundle: Vec<u8>) -> Value {
    let r = upload_bundle(admin, token, "/api/v1/firmware", bundle);
    assert_eq!(r.status, 202, "{}", r.text());
    let job = r.json().unwrap()["job"].clone();
    let (done, percents) = wait_job(admin, &job, Duration::from_secs(300));
    assert_eq!(done["state"], "done", "{done}");
    println!("job percents seen {percents:?}");
    let after = firmware_status(admin);
    assert_eq!(after["slots"][1]["version"], VERSION, "{after}");
    assert_eq!(after["slots"][1]["state"], "good", "{after}");
    assert_eq!(after["pending"]["slot"], "b", "{after}");
    after["pending"].clone()
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
    assert_eq!(
        health["version"], VERSION,
        "health names the signed version of the booted slot: {health}"
    );
    let cmdline = m
        .serial("cat /proc/cmdline", Duration::from_secs(30))
        .unwrap();
    assert!(cmdline.contains("cairn.slot=b"), "{cmdline}");

    // The commit (init's, once the new slot proved healthy): slot B booted and kept, slot A good to fall back to.
    let admin = m.http();
    login_api(&admin, ADMIN, ADMIN_PASSWORD);
    let until = Instant::now() + Duration::from_secs(300);
    loop {
        let f = firmware_status(&admin);
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
    let pending = install(&admin, &token, good.clone());
    assert_eq!(pending["migration"]["ok"], true, "{pending}");
    println!(
        "armv7: install of a {} MiB bundle: {:.1} s",
        good.len() >> 20,
        started.elapsed().as_secs_f64()
    );
    reboot_into_b_and_commit(&mut m, &admin);
}
