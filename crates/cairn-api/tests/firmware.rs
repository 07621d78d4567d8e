//! Firmware over HTTP on the host: the real server and install engine over a box in temporary files. A bundle
//! is streamed into slot B and its job followed; every refusal answers its code with slot B left out of the
//! boot order; a slow upload lives on its per-chunk deadline while other routes keep theirs.

mod common;

use cairn_firmware::install::testing::{
    bundle_bytes, bundle_for, keypair, manifest, new_box, root_bytes, TestBox,
};
use cairn_firmware::install::Slot;
use cairn_firmware::Target;
use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct FirmwareBox {
    server: Server,
    tb: TestBox,
}

/// A server whose app installs into `tb`, under `policy`.
fn serve_box(policy: cairn_api::ConnPolicy) -> FirmwareBox {
    let tb = new_box();
    let dir = tempfile::tempdir().unwrap();
    let store = cairn_store::Store::open(&dir.path().join("settings.db")).unwrap();
    let mut app = app_on(store);
    app.firmware = Some(firmware_on(&tb));
    let app = Arc::new(app);
    let conns = cairn_api::Connections::new(policy);
    let port = spawn_server(move |l| cairn_api::serve_with(l, app, conns)).port();
    FirmwareBox {
        server: Server {
            port,
            tls_port: 0,
            _dir: dir,
        },
        tb,
    }
}

fn upload(
    c: &cairn_qemu::HttpClient,
    token: &str,
    query: &str,
    bundle: Vec<u8>,
) -> cairn_qemu::HttpResponse {
    c.request(
        "POST",
        &format!("/api/v1/firmware{query}"),
        &[
            ("content-type", "application/octet-stream"),
            ("x-csrf-token", token),
        ],
        bundle,
    )
    .unwrap()
}

fn wait_job(c: &cairn_qemu::HttpClient, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let j = c
            .get(&format!("/api/v1/jobs/{id}"))
            .unwrap()
            .json()
            .unwrap();
        if j["state"] != "running" || Instant::now() > deadline {
            return j;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn b_not_bootable(fb: &FirmwareBox) {
    let v = fb.tb.boot_state();
    assert!(
        !v.order.contains(&Slot::B) && v.left_of(Slot::B) == 0,
        "{v:?}"
    );
}

#[test]
fn an_uploaded_bundle_is_installed_into_slot_b_and_its_job_finishes() {
    let fb = serve_box(cairn_api::ConnPolicy::LAN);
    let (c, token) = set_up(&fb.server);
    let health = c.get("/api/v1/health").unwrap().json().unwrap();
    assert_eq!(
        health["slot"], "a",
        "health names the booted slot: {health}"
    );
    let before = c.get("/api/v1/firmware").unwrap().json().unwrap();
    assert_eq!(before["slots"][0]["state"], "booted");
    assert_eq!(before["slots"][0]["version"], "0.1.0");
    assert_eq!(before["slots"][1]["state"], "empty");
    assert_eq!(before["pending"], Value::Null);

    let r = upload(
        &c,
        &token,
        "",
        bundle_for(&fb.tb, "0.2.0", "qemu-aarch64-virt"),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json().unwrap()["job"]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("fw-"), "{id}");
    let job = wait_job(&c, &id);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["percent"], 100.0);
    assert_eq!(job["kind"], "firmware_install");

    let after = c.get("/api/v1/firmware").unwrap().json().unwrap();
    assert_eq!(after["slots"][1]["name"], "b");
    assert_eq!(after["slots"][1]["version"], "0.2.0");
    assert_eq!(after["slots"][1]["state"], "good");
    assert_eq!(after["pending"]["version"], "0.2.0");
    assert_eq!(
        std::fs::read(fb.tb.layout.boot_dir.join("slot-b/Image")).unwrap(),
        b"kernel 2"
    );
    // Storage jobs are still answered by the same route (a development server has none).
    assert_error(
        &c.get("/api/v1/jobs/7").unwrap(),
        503,
        "storage.unavailable",
    );
    assert_error(
        &c.get("/api/v1/jobs/fw-99").unwrap(),
        503,
        "storage.unavailable",
    );
}

#[test]
fn refusals_answer_their_code_and_leave_slot_b_out_of_the_boot_order() {
    let fb = serve_box(cairn_api::ConnPolicy::LAN);
    let (c, token) = set_up(&fb.server);
    let good = bundle_for(&fb.tb, "0.2.0", "qemu-aarch64-virt");

    let r = upload(
        &c,
        &token,
        "",
        bundle_for(&fb.tb, "0.2.0", "qemu-armv7-virt"),
    );
    assert_error(&r, 422, "firmware.wrong_board");

    // Slot B held an earlier install: a failed one must leave it out of the boot order.
    let earlier = || {
        fb.tb
            .layout
            .boot
            .update(|s| s.mark_good(Slot::B, 3))
            .unwrap()
    };
    earlier();
    let mut tampered = good.clone();
    let n = tampered.len();
    tampered[n - 100_000] ^= 1;
    assert_error(
        &upload(&c, &token, "", tampered),
        422,
        "firmware.digest_mismatch",
    );
    b_not_bootable(&fb);

    earlier();
    let mut cut = good.clone();
    cut.truncate(good.len() - 200_000);
    assert_error(&upload(&c, &token, "", cut), 400, "firmware.truncated");
    b_not_bootable(&fb);

    let mut forged = good.clone();
    let at = forged.windows(5).position(|w| w == b"0.2.0").unwrap();
    forged[at + 2] = b'9';
    assert_error(
        &upload(&c, &token, "", forged),
        422,
        "firmware.bad_signature",
    );

    let root = root_bytes();
    let m = manifest(
        "0.2.0",
        "qemu-aarch64-virt",
        &[("root", Target::Slot, &root)],
    );
    let stranger = bundle_bytes(&keypair(), &m, &[&root]);
    assert_error(
        &upload(&c, &token, "", stranger),
        422,
        "firmware.unknown_key",
    );

    std::fs::create_dir_all(&fb.tb.layout.firmware_dir).unwrap();
    std::fs::write(fb.tb.layout.failed_file(), "0.2.0\n").unwrap();
    assert_error(
        &upload(&c, &token, "", good.clone()),
        409,
        "firmware.failed_before",
    );
    b_not_bootable(&fb);
    let status = c.get("/api/v1/firmware").unwrap().json().unwrap();
    assert_ne!(status["slots"][1]["state"], "good", "{status}");

    // Without the CSRF token nothing is read.
    let r = c
        .request(
            "POST",
            "/api/v1/firmware",
            &[("content-type", "application/octet-stream")],
            good.clone(),
        )
        .unwrap();
    assert_error(&r, 403, "session.csrf_missing");

    // The owner insists on the version that failed before.
    let r = upload(&c, &token, "?insist=1", good);
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json().unwrap()["job"]["id"].as_str().unwrap().to_string();
    assert_eq!(wait_job(&c, &id)["state"], "done");
}

/// Sends a request head and then `body` in `chunks` pieces, `gap` apart, on a raw connection; returns the
/// answer's status line and body.
fn trickle(port: u16, head: &str, body: &[u8], chunks: usize, gap: Duration) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    for piece in body.chunks(body.len().div_ceil(chunks)) {
        std::thread::sleep(gap);
        if s.write_all(piece).is_err() {
            break;
        }
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

#[test]
fn a_slow_upload_lives_on_its_per_chunk_deadline_and_other_routes_keep_theirs() {
    // The connection's own deadlines short too, so they are checked during the upload.
    let policy = cairn_api::ConnPolicy {
        head_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        ..cairn_api::ConnPolicy::LAN
    };
    let fb = serve_box(policy);
    let (c, token) = set_up(&fb.server);
    let cookie = c.cookie("cairn_session").unwrap();
    let bundle = bundle_for(&fb.tb, "0.2.0", "qemu-aarch64-virt");
    let head = |path: &str, ty: &str, len: usize| {
        format!(
            "POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{}\r\ncookie: cairn_session={cookie}\r\nx-csrf-token: {token}\r\ncontent-type: {ty}\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n",
            fb.server.port
        )
    };
    // 16 pieces 300 ms apart: 4.8 s in all, past the connection's body deadline (1 s + 2 s of grace), never
    // 1 s between two.
    let started = Instant::now();
    let answer = trickle(
        fb.server.port,
        &head("/api/v1/firmware", "application/octet-stream", bundle.len()),
        &bundle,
        16,
        Duration::from_millis(300),
    );
    assert!(started.elapsed() > Duration::from_secs(4));
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");

    // Any other route: the same pace runs out of its whole-body deadline.
    let body = vec![b' '; 3000];
    let answer = trickle(
        fb.server.port,
        &head("/api/v1/users", "application/json", body.len()),
        &body,
        12,
        Duration::from_millis(300),
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A stalled upload is given up after one chunk deadline: the slot is left out of the boot order.
    let fb2 = serve_box(policy);
    let (c2, token2) = set_up(&fb2.server);
    let cookie2 = c2.cookie("cairn_session").unwrap();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", fb2.server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /api/v1/firmware HTTP/1.1\r\nhost: 127.0.0.1:{}\r\ncookie: cairn_session={cookie2}\r\nx-csrf-token: {token2}\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
        fb2.server.port,
        bundle.len()
    )
    .unwrap();
    s.write_all(&bundle[..bundle.len() / 2]).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    b_not_bootable(&fb2);
}

#[test]
fn the_update_check_reads_a_signed_index_and_says_plainly_when_it_cannot() {
    use cairn_firmware::install::index::{sign_index, Release, UpdateIndex, INDEX_FORMAT};
    let fb = serve_box(cairn_api::ConnPolicy::LAN);
    let (c, token) = set_up(&fb.server);
    let h = [("x-csrf-token", token.as_str())];
    assert_error(
        &c.get("/api/v1/firmware/check").unwrap(),
        409,
        "firmware.no_update_source",
    );

    let mut boards = std::collections::BTreeMap::new();
    boards.insert(
        "qemu-aarch64-virt".to_string(),
        Release {
            version: "0.3.0".parse().unwrap(),
            url: "https://updates.example/b.cfw".into(),
        },
    );
    let index = UpdateIndex {
        format: INDEX_FORMAT,
        boards,
    };
    let port = serve_document(sign_index(&index, &fb.tb.key));
    let url = format!("http://127.0.0.1:{port}/index.json");
    let put = |url: &str| {
        c.request(
            "PUT",
            "/api/v1/firmware/source",
            &[("content-type", "application/json"), h[0]],
            serde_json::to_vec(&serde_json::json!({"url": url})).unwrap(),
        )
        .unwrap()
    };
    assert_eq!(put(&url).status, 200);
    let found = c.get("/api/v1/firmware/check").unwrap();
    assert_eq!(found.status, 200, "{}", found.text());
    let found = found.json().unwrap();
    assert_eq!(found["running"], "0.1.0", "{found}");
    assert_eq!(found["update_available"], true, "{found}");
    assert_eq!(found["newest"]["version"], "0.3.0");
    assert_eq!(
        c.get("/api/v1/firmware").unwrap().json().unwrap()["update_source"],
        url
    );

    // An index signed with a key the box does not trust.
    let port = serve_document(sign_index(&index, &keypair()));
    assert_eq!(
        put(&format!("http://127.0.0.1:{port}/index.json")).status,
        200
    );
    let r = c.get("/api/v1/firmware/check").unwrap();
    assert_error(&r, 502, "firmware.check_failed");
    assert!(r.text().contains("refused"), "{}", r.text());

    // No network: the answer says so, and nothing changes.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert_eq!(
        put(&format!("http://127.0.0.1:{closed}/index.json")).status,
        200
    );
    let before = c.get("/api/v1/firmware").unwrap().json().unwrap();
    let r = c.get("/api/v1/firmware/check").unwrap();
    assert_error(&r, 502, "firmware.check_failed");
    assert!(r.text().contains("cannot reach 127.0.0.1"), "{}", r.text());
    assert_eq!(c.get("/api/v1/firmware").unwrap().json().unwrap(), before);
    assert_error(&put("ftp://example.org/x"), 400, "request.invalid_body");
}

#[test]
fn a_rolled_back_update_is_told_on_the_front_page_and_a_committed_one_is_not() {
    let fb = serve_box(cairn_api::ConnPolicy::LAN);
    let (c, _) = set_up(&fb.server);
    let home = c.get("/").unwrap().text();
    assert!(!home.contains("update-rolled-back"), "{home}");
    let last = fb.tb.layout.last_update_file();
    std::fs::create_dir_all(last.parent().unwrap()).unwrap();
    std::fs::write(
        &last,
        r#"{"slot":"B","version":"0.9.1","outcome":"rolled_back","at":"2026-12-01T01:00:00Z"}"#,
    )
    .unwrap();
    let home = c.get("/").unwrap().text();
    assert!(
        home.contains("update-rolled-back") && home.contains("0.9.1"),
        "{home}"
    );
    std::fs::write(
        &last,
        r#"{"slot":"B","version":"0.9.2","outcome":"committed","at":"2026-12-01T02:00:00Z"}"#,
    )
    .unwrap();
    assert!(!c.get("/").unwrap().text().contains("update-rolled-back"));
}
