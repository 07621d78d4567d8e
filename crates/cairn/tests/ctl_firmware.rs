//! `cairn ctl firmware ...` (the real binary) against the API's control socket over a box in temporary files:
//! a bundle file is streamed in and its job followed; a refusal is printed with its code and hint.
// This test drives the real binary as a separate process.
#![allow(clippy::disallowed_methods)]

use cairn_firmware::install::testing::{bundle_for, new_box, DirSettings, TestBox};
use std::process::Command;
use std::sync::Arc;

/// Serves an app whose firmware installs into `tb` on a control socket in `dir`.
fn serve(tb: &TestBox, dir: &std::path::Path) -> std::path::PathBuf {
    let store = cairn_store::Store::open(&dir.join("settings.db")).unwrap();
    let system = cairn_system::System::new(
        store.clone(),
        Arc::new(cairn_system::host::Workstation),
        cairn_system::Facts::default(),
    )
    .unwrap();
    let identity = cairn_api::Identity {
        version: "test".into(),
        board: "qemu-aarch64-virt".into(),
    };
    let mut app = cairn_api::App::new(identity, store, system).unwrap();
    app.firmware = Some(Arc::new(cairn_api::Firmware {
        layout: tb.layout.clone(),
        settings: Arc::new(DirSettings::new(1 << 20, 10 << 20)),
    }));
    let app = Arc::new(app);
    let socket = dir.join("ctl.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let listener = tokio::net::UnixListener::from_std(listener).unwrap();
                cairn_api::serve_control(listener, app).await.unwrap();
            });
    });
    socket
}

fn ctl(socket: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("ctl")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_console_installs_a_bundle_file_and_shows_the_slots() {
    let tb = new_box();
    let dir = tempfile::tempdir().unwrap();
    let socket = serve(&tb, dir.path());

    let wrong = dir.path().join("armv7.cfw");
    std::fs::write(&wrong, bundle_for(&tb, "0.2.0", "qemu-armv7-virt")).unwrap();
    let (ok, _, err) = ctl(&socket, &["firmware", "install", wrong.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("(firmware.wrong_board)"), "{err}");
    assert!(err.contains("hint: "), "{err}");

    let bundle = dir.path().join("cairn-0.2.0.cfw");
    std::fs::write(&bundle, bundle_for(&tb, "0.2.0", "qemu-aarch64-virt")).unwrap();
    let (ok, out, err) = ctl(&socket, &["firmware", "install", bundle.to_str().unwrap()]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("state=done"), "{out}");
    assert!(err.contains("100%"), "{err}");

    let (ok, out, _) = ctl(&socket, &["--json", "firmware", "status"]);
    assert!(ok);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["slots"][1]["version"], "0.2.0", "{status}");
    assert_eq!(status["slots"][1]["state"], "good", "{status}");
    assert_eq!(status["pending"]["slot"], "b", "{status}");

    // From a URL: downloaded as it is sent on.
    let served = bundle_for(&tb, "0.3.0", "qemu-aarch64-virt");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        let mut head = [0u8; 4096];
        let _ = s.read(&mut head);
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            served.len()
        );
        let _ = s.write_all(&served);
    });
    let url = format!("http://127.0.0.1:{port}/cairn-0.3.0.cfw");
    let (ok, out, err) = ctl(&socket, &["firmware", "install", &url]);
    assert!(ok, "{out}\n{err}");
    let (_, out, _) = ctl(&socket, &["--json", "firmware", "status"]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["slots"][1]["version"], "0.3.0", "{status}");
}
