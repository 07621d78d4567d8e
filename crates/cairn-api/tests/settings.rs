//! A box without its settings, and a box whose settings partition is full, as the API answers them: the real
//! server on loopback and on a control socket, over a fake partition recovery (the real one runs in the QEMU
//! scenario `tests/tests/config.rs`).

mod common;

use cairn_api::ConfigRecovery;
use cairn_store::unavailable::{RecoveryError, Unavailable, FORMAT_CONFIRM};
use cairn_store::{fake_free_space, Headroom, Store};
use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts what the console asked for.
#[derive(Default)]
struct FakeRecovery {
    repairs: Arc<AtomicUsize>,
    formats: Arc<AtomicUsize>,
}

impl ConfigRecovery for FakeRecovery {
    fn repair(&self) -> Result<String, RecoveryError> {
        self.repairs.fetch_add(1, Ordering::SeqCst);
        Ok("repaired".into())
    }
    fn format(&self) -> Result<String, RecoveryError> {
        self.formats.fetch_add(1, Ordering::SeqCst);
        Ok("formatted".into())
    }
}

struct Unusable {
    server: Server,
    socket: PathBuf,
    app: Arc<cairn_api::App>,
    repairs: Arc<AtomicUsize>,
    formats: Arc<AtomicUsize>,
}

/// The daemon as it runs when init found something foreign on the config partition.
fn start_without_settings() -> Unusable {
    let mut app = app_on(Store::open_temporary().unwrap());
    let recovery = FakeRecovery::default();
    let (repairs, formats) = (recovery.repairs.clone(), recovery.formats.clone());
    app.settings_unavailable = Some(Unavailable::Unrecognised {
        device: "/dev/vda4".into(),
    });
    app.config_recovery = Some(Box::new(recovery));
    let app = Arc::new(app);
    let (server, socket) = serve_with_console(tempfile::tempdir().unwrap(), app.clone());
    Unusable {
        server,
        socket,
        app,
        repairs,
        formats,
    }
}

/// One request on the control socket, as `cairn ctl` sends it.
fn console(socket: &Path, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    // One write of the whole request (a GET carries no body): the server may answer and close as soon as
    // it has the head, and a second write would then meet a closed socket.
    let body = if method == "GET" {
        String::new()
    } else {
        body.to_string()
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let json = answer
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

#[test]
fn without_settings_setup_and_login_are_refused_with_the_reason_and_health_says_it() {
    let u = start_without_settings();
    let c = cairn_qemu::HttpClient::new(u.server.port);
    let health = c.get("/api/v1/health").unwrap();
    assert_eq!(health.status, 200);
    let h = health.json().unwrap();
    assert_eq!(h["settings"]["available"], false, "{h}");
    assert_eq!(h["settings"]["code"], "settings.unrecognised", "{h}");
    assert!(
        h["settings"]["hint"]
            .as_str()
            .unwrap()
            .contains("cairn ctl config repair"),
        "{h}"
    );
    assert_eq!(h["setup_done"], false);

    let setup = c
        .post_json(
            "/api/v1/setup",
            &json!({"username": "intruder", "password": PASSWORD}),
            &[],
        )
        .unwrap();
    assert_error(&setup, 503, "settings.unrecognised");
    assert_error(&login(&c, "owner", PASSWORD), 503, "settings.unrecognised");
    let page = c.get("/setup").unwrap();
    assert_eq!(page.status, 503);
    assert!(
        page.text().contains("cairn ctl config repair") && !page.text().contains("password"),
        "the setup page explains and offers no form: {}",
        page.text()
    );
    let form = c
        .post_form(
            "/setup",
            &[
                ("username", "intruder"),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .unwrap();
    assert_eq!(form.status, 503, "{}", form.text());
    assert_error(
        &c.get("/api/v1/users").unwrap(),
        503,
        "settings.unrecognised",
    );
    // Repair and format are the console's; the network never reaches them.
    for path in ["/api/v1/config/repair", "/api/v1/config/format"] {
        let r = c
            .post_json(path, &json!({"confirm": FORMAT_CONFIRM}), &[])
            .unwrap();
        assert_error(&r, 503, "settings.unrecognised");
    }
    assert_eq!(u.repairs.load(Ordering::SeqCst), 0);
    assert_eq!(u.formats.load(Ordering::SeqCst), 0);
    // The console sees the same reason.
    let (status, h) = console(&u.socket, "GET", "/api/v1/health", &json!({}));
    assert_eq!(
        (status, &h["settings"]["code"]),
        (200, &json!("settings.unrecognised"))
    );
    let (status, e) = console(
        &u.socket,
        "POST",
        "/api/v1/setup",
        &json!({"username": "x", "password": PASSWORD}),
    );
    assert_eq!(
        (status, &e["error"]["code"]),
        (503, &json!("settings.unrecognised"))
    );
}

#[test]
fn the_console_formats_only_with_the_typed_word_and_repairs_then_restarts() {
    let u = start_without_settings();
    for wrong in [json!({}), json!({"confirm": "yes"})] {
        let (status, e) = console(&u.socket, "POST", "/api/v1/config/format", &wrong);
        assert_eq!(status, 409, "{e}");
        assert_eq!(e["error"]["code"], "config.confirm_required");
        assert_eq!(e["error"]["confirm"], FORMAT_CONFIRM);
    }
    assert_eq!(u.formats.load(Ordering::SeqCst), 0, "nothing formatted");

    let restarted = {
        let app = u.app.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    tokio::time::timeout(std::time::Duration::from_secs(10), app.restart.notified())
                        .await
                        .is_ok()
                })
        })
    };
    let (status, r) = console(&u.socket, "POST", "/api/v1/config/repair", &json!({}));
    assert_eq!(status, 200, "{r}");
    assert_eq!(u.repairs.load(Ordering::SeqCst), 1);
    assert!(
        restarted.join().unwrap(),
        "the daemon is told to start again"
    );

    let (status, r) = console(
        &u.socket,
        "POST",
        "/api/v1/config/format",
        &json!({"confirm": FORMAT_CONFIRM}),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(u.formats.load(Ordering::SeqCst), 1);
}

#[test]
fn with_settings_available_there_is_nothing_to_repair() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = app_on(Store::open(&dir.path().join("settings.db")).unwrap());
    let recovery = FakeRecovery::default();
    let formats = recovery.formats.clone();
    app.config_recovery = Some(Box::new(recovery));
    let (_server, socket) = serve_with_console(dir, Arc::new(app));
    let (status, e) = console(
        &socket,
        "POST",
        "/api/v1/config/format",
        &json!({"confirm": FORMAT_CONFIRM}),
    );
    assert_eq!(
        (status, &e["error"]["code"]),
        (409, &json!("config.not_needed"))
    );
    assert_eq!(formats.load(Ordering::SeqCst), 0);
    let (_, h) = console(&socket, "GET", "/api/v1/health", &json!({}));
    assert_eq!(h["settings"]["available"], true, "{h}");
}

#[test]
fn with_the_settings_partition_full_the_owner_logs_in_and_a_change_says_why_it_failed() {
    let dir = tempfile::tempdir().unwrap();
    let free = Arc::new(AtomicU64::new(64 << 20));
    let measure = fake_free_space(dir.path(), free.clone());
    let store =
        Store::open_with(&dir.path().join("settings.db"), Headroom::CONFIG, measure).unwrap();
    let server = serve_app(dir, app_on(store));
    let (_, _) = set_up(&server);
    // Filled to its last block (by root, past the reserved blocks).
    free.store(0, Ordering::SeqCst);
    let c = cairn_qemu::HttpClient::new(server.port);
    let r = login(&c, "owner", PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json().unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .request(
            "PATCH",
            "/api/v1/system",
            &[
                ("content-type", "application/json"),
                ("x-csrf-token", &token),
            ],
            json!({"hostname": "renamed"}).to_string().into_bytes(),
        )
        .unwrap();
    assert_error(&r, 507, "settings.full");
    let r = c
        .post_json(
            "/api/v1/users",
            &json!({"name": "alice", "password": "alice password", "role": "user"}),
            &[("x-csrf-token", &token)],
        )
        .unwrap();
    assert_error(&r, 507, "settings.full");
    let me = c.get("/api/v1/users").unwrap();
    assert_eq!(me.status, 200, "reading still works: {}", me.text());
}
