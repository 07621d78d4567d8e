//! The reset pin under QEMU, as an owner uses it (docs/reset.md). On the aarch64 box, with a user, a share on a
//! volume and a file on it: a short pulse on the PL061 GPIO line (read through the GPIO character device) is
//! ignored; a 5 s hold (the power key with a hold time, as gpio-keys reports a board's button) resets the
//! network, the name and the administrator password and keeps the user, the share and the file; the owner
//! sets a new administrator password from the LAN; undo brings back the settings from before; then, with the
//! daemon hung (SIGSTOP), a 12 s hold resets every setting: the volume is found with its file and imports, and
//! undo brings the old settings back. Backup and restore: a backup taken before the resets is restored after
//! the settings reset (dry run first; tampered, cut, foreign, wrong-passphrase, oversized and share-escaping
//! files each refused or left out, changing nothing): every user logs in with the same password, on the
//! dashboard and over SMB. The armv7 box resets its network from the pin too, and takes the aarch64 box's
//! backup (another board): its users log in there, a share on a volume that box lacks is left out.

use cairn_e2e::*;
use cairn_qemu::{BootDisk, BootOptions, HttpClient, Machine, Manifest};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

const HOSTNAME: &str = "attic";
const ALICE: (&str, &str) = ("alice", "alice's long password");
const NEW_ADMIN_PASSWORD: &str = "a new admin password";
const PASSPHRASE: &str = "keep this with the file";

/// The aarch64 box's backup, handed to the armv7 test (they run side by side).
static BACKUP: std::sync::Mutex<Option<Vec<u8>>> = std::sync::Mutex::new(None);

fn backup_from_the_other_box() -> Vec<u8> {
    let until = Instant::now() + Duration::from_secs(900);
    loop {
        if let Some(b) = BACKUP.lock().unwrap().clone() {
            return b;
        }
        assert!(
            Instant::now() < until,
            "no backup from reset_pin_tiers_keep_the_data_and_can_be_undone (run both tests of this file together)"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Sends a backup file to the restore route.
fn restore(
    admin: &HttpClient,
    query: &str,
    file: Vec<u8>,
    passphrase: &str,
) -> cairn_qemu::HttpResponse {
    let token = csrf(admin);
    admin
        .request(
            "POST",
            &format!("/api/v1/system/restore{query}"),
            &[
                ("content-type", "application/octet-stream"),
                ("x-csrf-token", &token),
                ("x-cairn-passphrase", passphrase),
            ],
            file,
        )
        .unwrap()
}

/// Boots `board`, sets up the owner through the form and names the box [`HOSTNAME`]; the owner's client.
fn named_box(board: &str, options: &BootOptions) -> (Machine, BootDisk, HttpClient) {
    let (manifest, dir) = Manifest::load(board).unwrap_or_else(|e| panic!("{e}"));
    let disk = BootDisk::flash(&manifest, &dir).unwrap();
    let mut m = Machine::boot(board, &disk, options).unwrap();
    if let Err(e) = m.wait_healthy(Instant::now(), Duration::from_secs(240)) {
        panic!("{e}\n{}", m.console_log());
    }
    let admin = m.http();
    setup_through_form(&admin);
    expect(
        &send(
            &admin,
            "PATCH",
            "/api/v1/system",
            json!({"hostname": HOSTNAME}),
        ),
        200,
    );
    (m, disk, admin)
}

/// Waits for the box to go down and come back after a reset or an undo (from console mark `from`).
fn wait_restarted(m: &mut Machine, from: usize) -> Value {
    let line = starting_line(m);
    m.wait_console(&line, from, Duration::from_secs(240))
        .unwrap_or_else(|e| panic!("{e}\n{}", m.console_log()));
    m.wait_healthy(Instant::now(), Duration::from_secs(240))
        .unwrap_or_else(|e| panic!("{e}\n{}", m.console_log()))
        .1
}

fn hostname(admin: &HttpClient) -> String {
    expect(&admin.get("/api/v1/system").unwrap(), 200)["hostname"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Alice reads the file back over SMB (retrying while the SMB server starts); returns its checksum.
fn alice_reads(m: &Machine, share: &str, to: &Path) -> String {
    let port = m.host_port(445).unwrap();
    let _ = std::fs::remove_file(to);
    smbclient_until_ok(
        port,
        share,
        ALICE,
        &format!("get photos.bin {}", to.display()),
        Duration::from_secs(90),
        "alice over SMB",
    );
    sha256_file(to)
}

/// Holds the pin for `hold`; halfway through the top tier, the API shows the tier a release would fire.
fn hold_and_watch(m: &Machine, admin: Option<&HttpClient>, hold: Duration, tier: &str) {
    m.hold_reset_pin(hold).unwrap();
    let look_at = match tier {
        "network" => Duration::from_millis(4_600),
        _ => Duration::from_millis(10_800),
    };
    std::thread::sleep(look_at);
    if let Some(admin) = admin {
        let pin = &expect(&admin.get("/api/v1/system").unwrap(), 200)["reset_pin"];
        assert_eq!(pin["tier"], tier, "while held: {pin}");
        assert!(pin["held_ms"].as_u64().unwrap() >= 4_000, "{pin}");
    }
}

#[test]
fn reset_pin_tiers_keep_the_data_and_can_be_undone() {
    const BOARD: &str = "qemu-aarch64-virt";
    let work = cairn_qemu::workspace_root()
        .join("target/e2e-disks")
        .join("reset-pin");
    let _ = std::fs::remove_dir_all(&work);
    let bays = cairn_qemu::blank_data_disks(&work, 1, 128).unwrap();
    let options = BootOptions {
        data_disks: bays,
        forward: vec![445],
        ..BootOptions::default()
    };
    let (mut m, _disk, admin) = named_box(BOARD, &options);
    let _console = ConsoleOnFailure(m.console_handle(), "reset pin");

    // The owner's box: a name (above), a volume with a share, a user with a file on it.
    let r = expect(
        &send(
            &admin,
            "POST",
            "/api/v1/volumes",
            json!({"name": "vault", "level": "single", "disks": ["CAIRN-BAY1"]}),
        ),
        202,
    );
    let (job, _) = wait_job(&admin, &r["job"], Duration::from_secs(300));
    assert_eq!(job["state"], "done", "{job}");
    expect(
        &send(
            &admin,
            "POST",
            "/api/v1/users",
            json!({"name": ALICE.0, "password": ALICE.1, "email": "alice@example.org"}),
        ),
        201,
    );
    expect(
        &send(
            &admin,
            "POST",
            "/api/v1/shares",
            json!({"name": "family", "volume": "vault", "access": {"users": {"alice": "write"}}}),
        ),
        201,
    );
    let file = work.join("photos.bin");
    let mut rng = fastrand::Rng::with_seed(12);
    std::fs::write(&file, (0..1 << 20).map(|_| rng.u8(..)).collect::<Vec<u8>>()).unwrap();
    let file_sha = sha256_file(&file);
    let port = m.host_port(445).unwrap();
    smbclient_until_ok(
        port,
        "family",
        ALICE,
        &format!("put {} photos.bin", file.display()),
        Duration::from_secs(90),
        "alice writes the file",
    );
    let back = work.join("back.bin");
    assert_eq!(alice_reads(&m, "family", &back), file_sha);
    // A share on the system volume too: it can follow the backup to another board.
    expect(
        &send(
            &admin,
            "POST",
            "/api/v1/shares",
            json!({"name": "notes", "volume": "system", "access": {"users": {"alice": "write"}}}),
        ),
        201,
    );

    // The settings backup, encrypted with the owner's passphrase.
    refused(
        &send(
            &admin,
            "POST",
            "/api/v1/system/backup",
            json!({"passphrase": "short"}),
        ),
        400,
        "backup.passphrase_too_short",
    );
    let r = send(
        &admin,
        "POST",
        "/api/v1/system/backup",
        json!({"passphrase": PASSPHRASE}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let backup = r.body.clone();
    assert!(
        !String::from_utf8_lossy(&backup).contains("alice@example.org"),
        "the backup is encrypted"
    );
    *BACKUP.lock().unwrap() = Some(backup.clone());

    // A short pulse on the GPIO line: read through the character device, and ignored.
    let mark = m.mark();
    m.pulse_reset_pin().unwrap();
    m.wait_console("ignored (under 1 s)", mark, Duration::from_secs(30))
        .unwrap();
    assert_eq!(hostname(&admin), HOSTNAME, "a pulse changes nothing");
    assert_eq!(
        expect(&admin.get("/api/v1/system").unwrap(), 200)["reset_pin"],
        Value::Null
    );

    // 5 s: network, name and administrator password reset; the user, the share, the volume and its file kept.
    let mark = m.mark();
    hold_and_watch(&m, Some(&admin), Duration::from_secs(5), "network");
    let health = wait_restarted(&mut m, mark);
    let said = m.console_log()[mark..].to_string();
    assert!(said.contains("pin released after 5."), "{said}");
    assert!(said.contains("network reset done"), "{said}");
    assert_eq!(health["setup_done"], false, "{health}");
    assert_eq!(health["admin_password_reset"], true, "{health}");
    let old_owner = m.http();
    let r = old_owner
        .post_json(
            "/api/v1/session",
            &json!({"username": ADMIN, "password": ADMIN_PASSWORD}),
            &[],
        )
        .unwrap();
    assert_ne!(r.status, 200, "the old administrator password is cleared");
    let alice = m.http();
    login_api(&alice, ALICE.0, ALICE.1);
    assert_eq!(alice_reads(&m, "family", &back), file_sha);
    // The owner sets a new administrator password from the LAN; everything else is as before.
    let owner = m.http();
    let r = owner
        .post_json(
            "/api/v1/setup",
            &json!({"username": ADMIN, "password": NEW_ADMIN_PASSWORD}),
            &[],
        )
        .unwrap();
    assert!(
        r.status < 300,
        "setup sets the administrator password: {}",
        r.text()
    );
    let owner = m.http();
    login_api(&owner, ADMIN, NEW_ADMIN_PASSWORD);
    assert_eq!(hostname(&owner), "cairn", "the board's default name");
    let network = expect(&owner.get("/api/v1/network").unwrap(), 200);
    assert_eq!(network["mode"], "dhcp", "{network}");
    let users = expect(&owner.get("/api/v1/users").unwrap(), 200);
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["name"] == ALICE.0 && u["email"] == "alice@example.org"),
        "{users}"
    );
    let share = expect(&owner.get("/api/v1/shares/family").unwrap(), 200);
    assert_eq!(share["access"]["users"]["alice"], "write", "{share}");
    let vault = expect(&owner.get("/api/v1/volumes/vault").unwrap(), 200);
    assert_eq!(vault["state"], "clean", "{vault}");
    let last = &expect(&owner.get("/api/v1/system").unwrap(), 200)["last_reset"];
    assert_eq!(
        (last["tier"].as_str(), last["trigger"].as_str()),
        (Some("network"), Some("pin")),
        "{last}"
    );
    assert_eq!(last["undo_available"], true, "{last}");
    let home = owner.get("/").unwrap().text();
    assert!(
        home.contains("id=\"settings-reset\""),
        "the front page offers undo"
    );

    // Undo: the settings from before the reset, the old administrator password included.
    let mark = m.mark();
    expect(
        &send(&owner, "POST", "/api/v1/system/reset/undo", json!({})),
        202,
    );
    let health = wait_restarted(&mut m, mark);
    assert_eq!(health["setup_done"], true, "{health}");
    let admin = m.http();
    login_api(&admin, ADMIN, ADMIN_PASSWORD);
    assert_eq!(hostname(&admin), HOSTNAME);
    assert_eq!(
        expect(&admin.get("/api/v1/system").unwrap(), 200)["last_reset"],
        Value::Null
    );

    // 12 s with the daemon hung: init reads the pin by itself and resets every setting.
    m.serial(
        "for p in /proc/[0-9]*; do if tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q '^[^ ]*cairn daemon'; then kill -STOP ${p#/proc/}; fi; done; echo stopped",
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(
        admin
            .clone()
            .with_timeout(Duration::from_secs(2))
            .get("/api/v1/health")
            .is_err(),
        "the daemon is hung"
    );
    let mark = m.mark();
    hold_and_watch(&m, None, Duration::from_secs(12), "settings");
    let health = wait_restarted(&mut m, mark);
    assert!(
        m.console_log()[mark..].contains("settings reset done"),
        "{}",
        &m.console_log()[mark..]
    );
    assert_eq!(health["setup_done"], false, "{health}");
    assert_eq!(health["admin_password_reset"], false, "a new box: {health}");
    let fresh = m.http();
    setup_through_form(&fresh);
    assert_eq!(hostname(&fresh), "cairn");
    assert_eq!(
        expect(&fresh.get("/api/v1/users").unwrap(), 200)
            .as_array()
            .unwrap()
            .len(),
        1,
        "only the new administrator"
    );
    // The volume is found, untouched, and imports with its file.
    let v = import_found_volume(&fresh, "vault", "the reset");
    assert_eq!(v["state"], "clean", "{v}");
    let on_box = m
        .serial(
            "sha256sum /data/vault/family/photos.bin || find /data/vault",
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(
        on_box.contains(&file_sha),
        "the file on the imported volume: {on_box}"
    );

    // Restoring the backup: hostile files first, each refused or left out with nothing changed.
    let users_now = || {
        expect(&fresh.get("/api/v1/users").unwrap(), 200)
            .as_array()
            .unwrap()
            .len()
    };
    refused(
        &restore(&fresh, "", backup.clone(), "not the passphrase"),
        422,
        "backup.cannot_open",
    );
    refused(
        &restore(&fresh, "", backup[..backup.len() / 2].to_vec(), PASSPHRASE),
        422,
        "backup.truncated",
    );
    let mut tampered = backup.clone();
    let at = tampered.len() - 50;
    tampered[at] ^= 0x20;
    refused(
        &restore(&fresh, "", tampered, PASSPHRASE),
        422,
        "backup.cannot_open",
    );
    refused(
        &restore(
            &fresh,
            "",
            b"PK\x03\x04 not a backup at all".to_vec(),
            PASSPHRASE,
        ),
        422,
        "backup.not_a_backup",
    );
    let bundle = std::fs::read(update_bundle(BOARD)).unwrap();
    refused(
        &restore(&fresh, "", bundle[..64 * 1024].to_vec(), PASSPHRASE),
        422,
        "backup.not_a_backup",
    );
    let huge = restore(&fresh, "", vec![b'{'; 9 << 20], PASSPHRASE);
    assert_eq!(huge.status, 413, "{}", huge.text());
    refused(
        &restore(&fresh, "?parts=network,disks", backup.clone(), PASSPHRASE),
        400,
        "backup.parts_invalid",
    );
    assert_eq!(users_now(), 1, "no refused file changed anything");
    assert_eq!(hostname(&fresh), "cairn");
    // Sealed with the right passphrase (so it opens) but with a share that climbs out of its volume.
    let (info, mut export) =
        cairn_backup::open(&backup, PASSPHRASE, cairn_store::SCHEMA_VERSION).unwrap();
    export.put(
        "accounts",
        b"s/escape",
        br#"{"name":"escape","description":"","volume":"vault","path":"../../../config","guest":false,"access":{"users":{"alice":"write"},"groups":{}}}"#.to_vec(),
    );
    let hostile = cairn_backup::seal(&export, PASSPHRASE, info, 100_000).unwrap();
    let dry = expect(
        &restore(&fresh, "?dry_run=1", hostile.clone(), PASSPHRASE),
        200,
    );
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert!(
        dry["changes"]["users"]["users"]["added"]
            .to_string()
            .contains("alice"),
        "{dry}"
    );
    assert!(
        dry["changes"]["left_out"].to_string().contains("s/escape"),
        "{dry}"
    );
    assert_eq!(users_now(), 1, "a dry run changes nothing");
    // The restore itself: every part; the box restarts for the network settings.
    let mark = m.mark();
    let done = expect(&restore(&fresh, "", hostile, PASSPHRASE), 200);
    assert_eq!(done["restarting"], true, "{done}");
    wait_restarted(&mut m, mark);
    let admin = m.http();
    login_api(&admin, ADMIN, ADMIN_PASSWORD);
    assert_eq!(hostname(&admin), HOSTNAME);
    let shares = expect(&admin.get("/api/v1/shares").unwrap(), 200).to_string();
    assert!(
        shares.contains("family") && !shares.contains("escape"),
        "{shares}"
    );
    let alice = m.http();
    login_api(&alice, ALICE.0, ALICE.1);
    assert_eq!(
        alice_reads(&m, "family", &back),
        file_sha,
        "alice over SMB after the restore"
    );

    // Undo the settings reset: users, share, name and volume as they were; alice reads her file over SMB.
    let mark = m.mark();
    expect(
        &send(&fresh, "POST", "/api/v1/system/reset/undo", json!({})),
        202,
    );
    wait_restarted(&mut m, mark);
    let admin = m.http();
    login_api(&admin, ADMIN, ADMIN_PASSWORD);
    assert_eq!(hostname(&admin), HOSTNAME);
    assert_eq!(alice_reads(&m, "family", &back), file_sha);
}

#[test]
fn an_armv7_box_resets_its_network_from_the_pin() {
    const BOARD: &str = "qemu-armv7-virt";
    let options = BootOptions {
        forward: vec![445],
        ..BootOptions::default()
    };
    let (mut m, _disk, admin) = named_box(BOARD, &options);
    let _console = ConsoleOnFailure(m.console_handle(), "armv7 reset pin");
    let mark = m.mark();
    hold_and_watch(&m, Some(&admin), Duration::from_secs(5), "network");
    let health = wait_restarted(&mut m, mark);
    assert_eq!(health["admin_password_reset"], true, "{health}");
    let owner = m.http();
    let r = owner
        .post_json(
            "/api/v1/setup",
            &json!({"username": ADMIN, "password": NEW_ADMIN_PASSWORD}),
            &[],
        )
        .unwrap();
    assert!(r.status < 300, "{}", r.text());
    let owner = m.http();
    login_api(&owner, ADMIN, NEW_ADMIN_PASSWORD);
    assert_eq!(hostname(&owner), "cairn");

    // The aarch64 box's backup onto this board: users and shares (the network stays this box's own).
    let backup = backup_from_the_other_box();
    let dry = expect(
        &restore(
            &owner,
            "?dry_run=1&parts=users,shares",
            backup.clone(),
            PASSPHRASE,
        ),
        200,
    );
    assert!(
        dry["changes"]["left_out"].to_string().contains("s/family"),
        "its volume is not here: {dry}"
    );
    assert!(dry["changes"].get("network").is_none(), "{dry}");
    let done = expect(
        &restore(&owner, "?parts=users,shares", backup, PASSPHRASE),
        200,
    );
    assert_eq!(done["restarting"], false, "{done}");
    let alice = m.http();
    login_api(&alice, ALICE.0, ALICE.1);
    let owner = m.http();
    login_api(&owner, ADMIN, ADMIN_PASSWORD);
    assert_eq!(
        hostname(&owner),
        "cairn",
        "the network part was not restored"
    );
    let port = m.host_port(445).unwrap();
    smbclient_until_ok(
        port,
        "notes",
        ALICE,
        "ls",
        Duration::from_secs(90),
        "alice over SMB on the other board",
    );
}
