//! `cairn ctl` against the real daemon binary on a temporary state directory.
// This test drives the real binary as a separate process.
#![allow(clippy::disallowed_methods)]

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon {
    child: Child,
    socket: std::path::PathBuf,
    port: u16,
    tls_port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ctl.sock");
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port, tls_port) = (free(), free());
    let board = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../board/qemu-aarch64-virt/board.toml"
    );
    let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args([
            "daemon",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--listen-tls",
            &format!("127.0.0.1:{tls_port}"),
            "--board",
            board,
            "--power",
            "none",
        ])
        .arg("--state")
        .arg(dir.path().join("state"))
        .arg("--ctl")
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(
            Instant::now() < until,
            "the daemon did not open its control socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Daemon {
        child,
        socket,
        port,
        tls_port,
        dir,
    }
}

fn ctl(d: &Daemon, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("ctl")
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_console_can_set_up_manage_and_rescue() {
    let d = start();
    let (ok, out, err) = ctl(&d, &["--json", "health"], "");
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["setup_done"],
        false
    );
    let (ok, _, err) = ctl(
        &d,
        &["setup", "owner", "--email", "o@example.org"],
        "first password\n",
    );
    assert!(ok, "{err}");
    let (ok, _, err) = ctl(
        &d,
        &["user", "add", "alice", "--email", "a@example.org"],
        "alice password\n",
    );
    assert!(ok, "{err}");
    let (ok, out, _) = ctl(&d, &["--json", "user", "list"], "");
    assert!(ok);
    let users: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 2);
    // The rescue path: a forgotten administrator password is replaced from the console.
    let (ok, _, err) = ctl(&d, &["user", "passwd", "owner"], "rescued password\n");
    assert!(ok, "{err}");
    let client = cairn_qemu::HttpClient::new(d.port);
    let r = client
        .post_json(
            "/api/v1/session",
            &serde_json::json!({"username": "owner", "password": "rescued password"}),
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // Shares and grants.
    assert!(
        ctl(
            &d,
            &["share", "add", "docs", "--description", "Documents"],
            ""
        )
        .0
    );
    let (ok, out, err) = ctl(
        &d,
        &[
            "--json",
            "share",
            "grant",
            "docs",
            "user:alice=write",
            "user:owner=read",
        ],
        "",
    );
    assert!(ok, "{err}");
    let share: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(share["access"]["users"]["alice"], "write");
    // Errors: the API's message, hint and code, and a failing exit status.
    let (ok, _, err) = ctl(&d, &["user", "del", "owner"], "");
    assert!(!ok);
    assert!(
        err.contains("user.last_admin") && err.contains("hint:"),
        "{err}"
    );
    let (ok, _, err) = ctl(&d, &["user", "add", "Bad Name"], "some password\n");
    assert!(!ok && err.contains("name.invalid"), "{err}");
    // A static address that locks the owner out is undone from the console: DHCP again, confirmed.
    let (ok, _, err) = ctl(&d, &["network", "dhcp"], "");
    assert!(ok, "{err}");
    let (_, out, _) = ctl(&d, &["--json", "network"], "");
    let pending: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(pending["pending"]["mode"], "dhcp", "{pending}");
    let (ok, _, err) = ctl(&d, &["network", "confirm"], "");
    assert!(ok, "{err}");
    let (_, out, _) = ctl(&d, &["--json", "network"], "");
    let now: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(now.get("pending").is_none(), "{now}");
    let (ok, _, err) = ctl(&d, &["network", "confirm"], "");
    assert!(!ok && err.contains("network.nothing_to_confirm"), "{err}");
    let (ok, _, err) = ctl(&d, &["network", "frobnicate"], "");
    assert!(!ok && err.contains("usage"), "{err}");
    let (ok, _, err) = ctl(&d, &["frobnicate"], "");
    assert!(!ok && err.contains("usage"), "{err}");
}

#[test]
fn the_console_shows_the_certificate_served_and_installs_the_owners_own() {
    let d = start();
    assert!(ctl(&d, &["setup", "owner"], "first password\n").0);
    let (ok, out, err) = ctl(&d, &["certificate"], "");
    assert!(ok, "{err}");
    assert!(out.contains("fingerprint_sha256="), "{out}");
    let (ok, out, err) = ctl(&d, &["--json", "certificate"], "");
    assert!(ok, "{err}");
    let cert: serde_json::Value = serde_json::from_str(&out).unwrap();
    let fp = cert["fingerprint_sha256"].as_str().unwrap();
    assert_eq!(cert["source"], "generated");
    let (_, system, _) = ctl(&d, &["system"], "");
    assert!(
        system.contains(&format!("tls_fingerprint_sha256={fp}")),
        "{system}"
    );
    // The fingerprint is the one HTTPS presents.
    let https = cairn_qemu::HttpClient::https(d.tls_port, fp);
    let until = Instant::now() + Duration::from_secs(20);
    while https.get("/api/v1/health").is_err() {
        assert!(Instant::now() < until, "HTTPS never answered with {fp}");
        std::thread::sleep(Duration::from_millis(50));
    }
    use std::os::unix::fs::PermissionsExt;
    let file = d.dir.path().join("state/tls.pem");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let fixture = |name: &str| {
        format!(
            "{}/../cairn-api/tests/fixtures/tls/{name}",
            env!("CARGO_MANIFEST_DIR")
        )
    };
    let (ok, _, err) = ctl(
        &d,
        &[
            "certificate",
            "install",
            &fixture("owner.crt"),
            &fixture("other.key"),
        ],
        "",
    );
    assert!(!ok);
    assert!(err.contains("certificate.key_mismatch"), "{err}");
    let (ok, out, err) = ctl(
        &d,
        &[
            "--json",
            "certificate",
            "install",
            &fixture("owner.crt"),
            &fixture("owner.key"),
        ],
        "",
    );
    assert!(ok, "{err}");
    let uploaded: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(uploaded["source"], "uploaded");
    let owners = uploaded["fingerprint_sha256"].as_str().unwrap();
    let r = cairn_qemu::HttpClient::https(d.tls_port, owners)
        .get("/api/v1/health")
        .unwrap();
    assert_eq!(r.status, 200);
    let (ok, out, err) = ctl(&d, &["--json", "certificate", "generate"], "");
    assert!(ok, "{err}");
    let back: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(back["source"], "generated");
    assert_ne!(back["fingerprint_sha256"], fp);
}
