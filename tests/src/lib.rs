//! Shared steps of the end-to-end scenarios: the things an owner does, as functions.

use cairn_qemu::{BootDisk, HttpClient, Machine};
use std::path::Path;
use std::process::Command;

/// The first administrator every scenario creates, through the setup page like a person would.
pub const ADMIN: &str = "owner";
pub const ADMIN_PASSWORD: &str = "correct horse battery";

/// Fills in the setup form; returns the redirect target.
pub fn setup_through_form(client: &HttpClient) -> String {
    let r = client
        .post_form(
            "/setup",
            &[
                ("username", ADMIN),
                ("email", "owner@example.org"),
                ("password", ADMIN_PASSWORD),
                ("password_again", ADMIN_PASSWORD),
            ],
        )
        .expect("POST /setup");
    assert_eq!(
        r.status,
        303,
        "setup should redirect to the dashboard: {}",
        r.text()
    );
    assert!(
        client.cookie("cairn_session").is_some(),
        "setup should log the new administrator in"
    );
    r.header("location").unwrap_or("").to_string()
}

/// Logs in through the API; returns the CSRF token.
pub fn login_api(client: &HttpClient, user: &str, password: &str) -> String {
    let r = client
        .post_json(
            "/api/v1/session",
            &serde_json::json!({"username": user, "password": password}),
            &[],
        )
        .expect("POST /api/v1/session");
    assert_eq!(r.status, 200, "login as {user}: {}", r.text());
    r.json().unwrap()["csrf_token"]
        .as_str()
        .expect("csrf_token")
        .to_string()
}

/// Checks a filesystem image offline: e2fsck must find nothing to fix and the superblock must say clean.
pub fn assert_ext4_clean(image: &Path) {
    let fsck = Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(image)
        .output()
        .expect("run e2fsck");
    assert!(
        fsck.status.success(),
        "e2fsck found problems:\n{}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    let dump = Command::new("dumpe2fs")
        .arg("-h")
        .arg(image)
        .output()
        .expect("run dumpe2fs");
    let text = String::from_utf8_lossy(&dump.stdout);
    let state = text
        .lines()
        .find(|l| l.starts_with("Filesystem state:"))
        .unwrap_or("");
    assert!(
        state.ends_with(" clean"),
        "config filesystem state: {state:?}"
    );
    let features = text
        .lines()
        .find(|l| l.starts_with("Filesystem features:"))
        .unwrap_or("");
    assert!(
        !features.contains("needs_recovery"),
        "journal still needs recovery: {features}"
    );
}

/// Copies the config partition out of a powered-off box's disk.
pub fn extract_config_partition(machine: &Machine, disk: &BootDisk, to: &Path) {
    let mut offset = 1u64;
    for p in &machine.board.partitions {
        if p.name == "config" {
            disk.extract(offset, u64::from(p.size_mib), to)
                .expect("extract config partition");
            return;
        }
        offset += u64::from(p.size_mib);
    }
    panic!("board has no config partition");
}

/// The console line the daemon prints as it starts, for the version `m` was booted from (its image's
/// manifest), so a test that boots another version waits for that version's line, never a literal.
pub fn starting_line(m: &Machine) -> String {
    format!("Cairn {} starting", m.manifest.version)
}

/// A machine booted once and shared by the scenario tests of one test binary (they take turns).
pub struct SharedBox {
    pub machine: Machine,
    pub disk: BootDisk,
    /// An administrator's logged-in client and its CSRF token.
    pub admin: HttpClient,
    pub admin_csrf: String,
}

/// Boots `board` on first use with `options`, creates the administrator, and hands out turns.
/// QEMU is started from a thread that stays alive, so it lives as long as the test process and no longer.
pub fn shared_box(
    cell: &'static std::sync::OnceLock<std::sync::Mutex<SharedBox>>,
    board: &'static str,
    options: impl FnOnce() -> cairn_qemu::BootOptions,
) -> std::sync::MutexGuard<'static, SharedBox> {
    let lock = cell.get_or_init(|| {
        let options = options();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (manifest, dir) =
                cairn_qemu::Manifest::load(board).unwrap_or_else(|e| panic!("{e}"));
            let disk = BootDisk::flash(&manifest, &dir).unwrap();
            let started = std::time::Instant::now();
            let mut machine = Machine::boot(board, &disk, &options).unwrap();
            if let Err(e) = machine.wait_healthy(started, std::time::Duration::from_secs(180)) {
                panic!("{e}\n{}", machine.console_log());
            }
            let admin = machine.http();
            setup_through_form(&admin);
            let admin_csrf = admin.get("/api/v1/session").unwrap().json().unwrap()["csrf_token"]
                .as_str()
                .unwrap()
                .to_string();
            tx.send(SharedBox {
                machine,
                disk,
                admin,
                admin_csrf,
            })
            .unwrap();
            loop {
                std::thread::park();
            }
        });
        std::sync::Mutex::new(rx.recv().expect("the shared machine booted"))
    });
    lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Prints the console log if the scenario holding it fails (shared machines are never dropped).
pub struct ConsoleOnFailure(pub cairn_qemu::ConsoleHandle, pub &'static str);

impl Drop for ConsoleOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- console during {} ----\n{}\n---- end ----",
                self.1,
                self.0.text()
            );
        }
    }
}

/// Runs the host's smbclient with an argument vector; returns (success, combined output).
pub fn smbclient(
    port: u16,
    share: &str,
    user: Option<(&str, &str)>,
    commands: &str,
) -> (bool, String) {
    let mut cmd = Command::new("smbclient");
    cmd.arg(format!("//127.0.0.1/{share}")).args([
        "-p",
        &port.to_string(),
        "-m",
        "SMB3",
        "-c",
        commands,
    ]);
    match user {
        Some((u, p)) => cmd.args(["-U", &format!("{u}%{p}")]),
        None => cmd.arg("-N"),
    };
    let out = cmd
        .output()
        .expect("run smbclient (scripts/bootstrap installs it)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Runs `smbclient` until it succeeds (the SMB server may still be starting or rendering the latest accounts),
/// for at most `within`; panics with `what` and the last output after that. Returns the output.
pub fn smbclient_until_ok(
    port: u16,
    share: &str,
    user: (&str, &str),
    commands: &str,
    within: std::time::Duration,
    what: &str,
) -> String {
    let until = std::time::Instant::now() + within;
    loop {
        let (ok, out) = smbclient(port, share, Some(user), commands);
        if ok {
            return out;
        }
        assert!(std::time::Instant::now() < until, "{what}: {out}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// SHA-256 of a file on the host, in hex.
pub fn sha256_file(path: &Path) -> String {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    cairn_firmware::Sha256::of_reader(f).unwrap().0.to_string()
}

/// Waits until the box lists volume `name` as found (its disks seen, its records gone), then imports it;
/// returns the imported volume. `after` says what happened before, for the failure message.
pub fn import_found_volume(admin: &HttpClient, name: &str, after: &str) -> serde_json::Value {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let all = expect(&admin.get("/api/v1/volumes").unwrap(), 200);
        if all
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == name && v["state"] == "found")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "the volume is not found after {after}: {all}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    expect(
        &send(
            admin,
            "POST",
            &format!("/api/v1/volumes/{name}/import"),
            serde_json::json!({}),
        ),
        200,
    )
}

pub mod measure;
pub mod webdriver;

/// The session's CSRF token.
pub fn csrf(client: &cairn_qemu::HttpClient) -> String {
    client.get("/api/v1/session").unwrap().json().unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Sends a JSON request with the CSRF token.
pub fn send(
    client: &cairn_qemu::HttpClient,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> cairn_qemu::HttpResponse {
    let token = csrf(client);
    client
        .request(
            method,
            path,
            &[
                ("content-type", "application/json"),
                ("x-csrf-token", &token),
            ],
            serde_json::to_vec(&body).unwrap(),
        )
        .unwrap()
}

/// Asserts the status; returns the JSON body (null when there is none).
pub fn expect(r: &cairn_qemu::HttpResponse, status: u16) -> serde_json::Value {
    assert_eq!(r.status, status, "{}", r.text());
    r.json().unwrap_or(serde_json::Value::Null)
}

/// Asserts an error answer's status and code, with a hint; returns the error object.
pub fn refused(r: &cairn_qemu::HttpResponse, status: u16, code: &str) -> serde_json::Value {
    let body = r.json().unwrap_or_default();
    assert_eq!(
        (r.status, body["error"]["code"].as_str()),
        (status, Some(code)),
        "{}",
        r.text()
    );
    assert!(
        body["error"]["hint"].as_str().is_some_and(|h| h.len() > 10),
        "a hint says what to do: {body}"
    );
    body["error"].clone()
}

/// Polls a job until it ends; returns (final job, every percent seen).
pub fn wait_job(
    admin: &cairn_qemu::HttpClient,
    job: &serde_json::Value,
    deadline: std::time::Duration,
) -> (serde_json::Value, Vec<f64>) {
    let id = job["id"].as_str().expect("job id").to_string();
    let until = std::time::Instant::now() + deadline;
    let mut seen = vec![];
    loop {
        let j = expect(&admin.get(&format!("/api/v1/jobs/{id}")).unwrap(), 200);
        seen.push(j["percent"].as_f64().unwrap_or(-1.0));
        if j["state"] != "running" {
            return (j, seen);
        }
        assert!(
            std::time::Instant::now() < until,
            "job {id} still running: {j}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// The disks the box lists, boot medium included.
pub fn disks(admin: &cairn_qemu::HttpClient) -> Vec<serde_json::Value> {
    expect(&admin.get("/api/v1/disks").unwrap(), 200)
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until disk `id` is listed (`present`) or gone; returns it when listed.
pub fn wait_disk(
    admin: &cairn_qemu::HttpClient,
    id: &str,
    present: bool,
) -> Option<serde_json::Value> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let d = disks(admin).into_iter().find(|d| d["id"] == id);
        if d.is_some() == present {
            return d;
        }
        assert!(
            std::time::Instant::now() < until,
            "disk {id} present={} never came",
            present
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// The version of the update bundle the tests install (`make test-artifacts` builds it for each board).
pub const UPDATE_VERSION: &str = "0.2.0";

/// `out/<board>/cairn-<board>-<UPDATE_VERSION>.cfw`, made with `make bundle` when absent (a test run alone).
pub fn update_bundle(board: &str) -> std::path::PathBuf {
    let path = cairn_qemu::board_out_dir(board).join(format!("cairn-{board}-{UPDATE_VERSION}.cfw"));
    if !path.exists() {
        let ok = Command::new("make")
            .args([
                "bundle",
                &format!("BOARD={board}"),
                &format!("VERSION={UPDATE_VERSION}"),
            ])
            .current_dir(cairn_qemu::workspace_root())
            .status()
            .expect("make runs")
            .success();
        assert!(
            ok,
            "make bundle BOARD={board} VERSION={UPDATE_VERSION} failed"
        );
    }
    path
}

/// A firmware bundle's header length (magic, lengths, manifest, signature block): what the box reads before it
/// decides to refuse or go on.
pub fn bundle_header_len(bundle: &[u8]) -> usize {
    let m = u32::from_le_bytes(bundle[8..12].try_into().unwrap()) as usize;
    let s = u32::from_le_bytes(bundle[12..16].try_into().unwrap()) as usize;
    16 + m + s
}

/// POSTs `body` as a bundle to `path` (`/api/v1/firmware`, with `?insist=1` or not), with the CSRF token.
pub fn upload_bundle(
    admin: &HttpClient,
    csrf: &str,
    path: &str,
    body: Vec<u8>,
) -> cairn_qemu::HttpResponse {
    admin
        .clone()
        .with_timeout(std::time::Duration::from_secs(300))
        .request(
            "POST",
            path,
            &[
                ("content-type", "application/octet-stream"),
                ("x-csrf-token", csrf),
            ],
            body,
        )
        .unwrap()
}

/// `GET /api/v1/firmware`: both slots, the pending update, the last update's outcome.
pub fn firmware_status(admin: &HttpClient) -> serde_json::Value {
    expect(&admin.get("/api/v1/firmware").unwrap(), 200)
}
