//! What the API's host tests share: the real server on a loopback port, over a workstation (settings only)
//! or over a box as far as the host allows it (power through a recording fake, disks and volumes through the
//! storage manager over the md simulator), and the client helpers that check an answer.
#![allow(dead_code)] // each test file uses its own share of the helpers

use cairn_api::{App, Identity};
use cairn_qemu::HttpClient;
use cairn_storage::tools::fake::Fake;
use cairn_storage::{Paths, Storage};
use cairn_system::host::{Recorder, Workstation};
use cairn_system::{Facts, System};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

pub const PASSWORD: &str = "correct horse battery";

/// A certificate and its key made with openssl (P-256, valid from their making for a century), and a key of
/// no certificate here: what an owner uploads, and what a mix-up uploads.
pub const OWNER_CRT: &str = include_str!("../fixtures/tls/owner.crt");
pub const OWNER_KEY: &str = include_str!("../fixtures/tls/owner.key");
pub const OTHER_KEY: &str = include_str!("../fixtures/tls/other.key");
pub const RSA_CRT: &str = include_str!("../fixtures/tls/rsa.crt");
pub const RSA_KEY: &str = include_str!("../fixtures/tls/rsa.key");

pub struct Server {
    pub port: u16,
    /// The HTTPS port of the same app, when the app has a certificate (0 otherwise).
    pub tls_port: u16,
    pub _dir: tempfile::TempDir,
}

pub fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = cairn_store::Store::open(&dir.path().join("settings.db")).unwrap();
    let app = app_on(store);
    serve_app(dir, app)
}

/// Serves `app` on a loopback port from a thread of its own, and over HTTPS on another when the app has a
/// certificate.
pub fn serve_app(dir: tempfile::TempDir, app: App) -> Server {
    let app = Arc::new(app);
    // One set of caps for both listeners, as on the box.
    let conns = cairn_api::Connections::new(cairn_api::ConnPolicy::LAN);
    let tls_port = match app.certificates {
        Some(_) => {
            let (app, conns) = (app.clone(), conns.clone());
            spawn_server(move |listener| cairn_api::serve_tls(listener, app, conns)).port()
        }
        None => 0,
    };
    let port = spawn_server(move |listener| cairn_api::serve_with(listener, app, conns)).port();
    Server {
        port,
        tls_port,
        _dir: dir,
    }
}

/// A server on a workstation that also serves HTTPS with a certificate of its own.
pub fn start_with_tls() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = cairn_store::Store::open(&dir.path().join("settings.db")).unwrap();
    let mut app = app_on(store);
    app.certificates = Some(Arc::new(
        cairn_tls::Certificates::open(dir.path(), &cairn_api::box_names(&app.system)).unwrap(),
    ));
    serve_app(dir, app)
}

/// Serves `app` on a loopback port and on a control socket in `dir` (as `cairn ctl` reaches the daemon).
pub fn serve_with_console(dir: tempfile::TempDir, app: Arc<App>) -> (Server, std::path::PathBuf) {
    let socket = dir.path().join("ctl.sock");
    let control = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    control.set_nonblocking(true).unwrap();
    let port = spawn_server(move |listener| async move {
        let control = tokio::net::UnixListener::from_std(control).unwrap();
        tokio::spawn(cairn_api::serve_control(control, app.clone()));
        cairn_api::serve(listener, app).await
    })
    .port();
    (
        Server {
            port,
            tls_port: 0,
            _dir: dir,
        },
        socket,
    )
}

/// Runs `serve` on a loopback listener, on a thread and runtime of its own; returns the listener's address.
pub fn spawn_server<F, Fut>(serve: F) -> std::net::SocketAddr
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<()>>,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            serve(listener).await.unwrap();
        });
    });
    addr
}

/// The API over `store` on a workstation: settings stored, the machine left alone.
pub fn app_on(store: cairn_store::Store) -> App {
    let system = System::new(store.clone(), Arc::new(Workstation), Facts::default()).unwrap();
    App::new(
        Identity {
            version: "test".into(),
            board: "host".into(),
        },
        store,
        system,
    )
    .unwrap()
}

pub fn set_up(server: &Server) -> (HttpClient, String) {
    set_up_as(server, "owner", PASSWORD)
}

/// Setup (or, after the reset pin, an administrator's new password) as `user`; the logged-in client and token.
pub fn set_up_as(server: &Server, user: &str, password: &str) -> (HttpClient, String) {
    let c = HttpClient::new(server.port);
    let r = c
        .post_json(
            "/api/v1/setup",
            &json!({"username": user, "password": password}),
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let token = r.json().unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    (c, token)
}

/// POST /api/v1/session as a browser would.
pub fn login(c: &HttpClient, user: &str, password: &str) -> cairn_qemu::HttpResponse {
    login_with(c, user, password, &[])
}

pub fn login_with(
    c: &HttpClient,
    user: &str,
    password: &str,
    headers: &[(&str, &str)],
) -> cairn_qemu::HttpResponse {
    c.post_json(
        "/api/v1/session",
        &json!({"username": user, "password": password}),
        headers,
    )
    .unwrap()
}

pub fn assert_error(r: &cairn_qemu::HttpResponse, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let body = r.json().unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.len() > 10),
        "{body}"
    );
    assert!(
        body["error"]["hint"].as_str().is_some_and(|m| m.len() > 5),
        "{body}"
    );
}

/// A box as far as the host allows: power and network through a [`Recorder`], the storage manager over the
/// md simulator on a sysfs/dev/proc tree with the boot medium and blank disks `A`, `B`, ... in bays 1, 2, ...,
/// and the QEMU board's description. `found` volumes (name, disk serial), single-disk, were made by another
/// box whose records are gone: this one finds them at start, ready to import.
pub struct RealBox {
    pub server: Server,
    pub host: Arc<Recorder>,
    pub fake: Arc<Fake>,
    /// The root slots and boot state firmware installs go to (temporary files).
    pub firmware: cairn_firmware::install::testing::TestBox,
}

/// Firmware for `app` over `tb`'s slots, with room for the settings snapshot.
pub fn firmware_on(tb: &cairn_firmware::install::testing::TestBox) -> Arc<cairn_api::Firmware> {
    Arc::new(cairn_api::Firmware {
        layout: tb.layout.clone(),
        settings: Arc::new(cairn_firmware::install::testing::DirSettings::new(
            tb.settings.size,
            tb.settings.free,
        )),
    })
}

/// Serves `body` to every GET on a loopback port (an update source); returns its port.
pub fn serve_document(body: Vec<u8>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut head = [0u8; 4096];
            let _ = s.read(&mut head);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    port
}

pub fn start_box(serials: &[&str], found: &[(&str, &str)]) -> RealBox {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["sys/block", "dev", "proc", "data"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("proc/mounts"), "/dev/vdz4 /config ext4 rw 0 0\n").unwrap();
    add_disk(root, "vdz", 0, "");
    for (i, serial) in serials.iter().enumerate() {
        add_disk(
            root,
            &format!("vd{}", (b'a' + i as u8) as char),
            i as u32 + 1,
            serial,
        );
    }
    let board = cairn_board::Board::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../board/qemu-aarch64-virt/board.toml"),
    )
    .unwrap();
    let paths = Paths {
        sys: root.join("sys"),
        dev: root.join("dev"),
        proc: root.join("proc"),
        data: root.join("data"),
    };
    let fake = Arc::new(Fake::new(&paths));
    if !found.is_empty() {
        let old_store = cairn_store::Store::open(&root.join("old-box.db")).unwrap();
        let old =
            Storage::with_tools(board.clone(), paths.clone(), old_store, fake.clone()).unwrap();
        for (name, disk) in found {
            let job = old
                .create(cairn_storage::CreateRequest {
                    name: name.to_string(),
                    level: "single".into(),
                    disks: vec![disk.to_string()],
                    confirm: None,
                })
                .unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while old.job(&job.id).unwrap().state == "running" {
                for minor in 0..16 {
                    fake.finish_sync(minor);
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the old box's {name} never got built"
                );
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        // The disks leave the old box and arrive in this one.
        fake.power_cut();
    }
    let store = cairn_store::Store::open(&root.join("settings.db")).unwrap();
    let storage = Storage::with_tools(board.clone(), paths, store.clone(), fake.clone()).unwrap();
    storage.start();
    let host = Arc::new(Recorder::default());
    let system = System::new(store.clone(), host.clone(), Facts::from(&board.network)).unwrap();
    let mut app = App::new(
        Identity {
            version: "test".into(),
            board: board.name.clone(),
        },
        store.clone(),
        system,
    )
    .unwrap();
    app.pairings = Some(cairn_cloud::Pairings::new(store.clone()).unwrap());
    app.resets = Some(Arc::new(cairn_reset::Resets::new(store, root)));
    app.settings_schema = Some(Arc::new(
        cairn_store::Schema::new(&[
            cairn_accounts::MIGRATIONS,
            cairn_storage::MIGRATIONS,
            cairn_system::MIGRATIONS,
        ])
        .unwrap(),
    ));
    app.sys_root = root.join("sys");
    app.certificates = Some(Arc::new(
        cairn_tls::Certificates::open(root, &cairn_api::box_names(&app.system)).unwrap(),
    ));
    app.board = Some(board);
    app.storage = Some(storage);
    let firmware = cairn_firmware::install::testing::new_box();
    app.firmware = Some(firmware_on(&firmware));
    RealBox {
        server: serve_app(dir, app),
        host,
        fake,
        firmware,
    }
}

/// A disk as the kernel shows it (a compact copy of cairn-storage's test bench): in PCIe bay `bay`, or the
/// virtio-mmio boot medium when `bay` is 0; 256 MiB as sysfs says, its first 256 KiB blank under `dev/`.
fn add_disk(root: &Path, name: &str, bay: u32, serial: &str) {
    let parent = if bay == 0 {
        "sys/devices/platform/a003e00.virtio_mmio/virtio3/block".to_string()
    } else {
        format!("sys/devices/platform/4010000000.pcie/pci0000:00/0000:00:{bay:02x}.0/0000:{bay:02x}:00.0/virtio{bay}/block")
    };
    let d = root.join(parent).join(name);
    for sub in ["queue", "holders"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    std::os::unix::fs::symlink(&d, root.join("sys/block").join(name)).unwrap();
    std::fs::write(d.join("size"), "524288\n").unwrap();
    std::fs::write(d.join("serial"), format!("{serial}\n")).unwrap();
    std::fs::write(d.join("queue/rotational"), "1\n").unwrap();
    if bay > 0 {
        let slot = root.join(format!("sys/bus/pci/slots/{bay}"));
        std::fs::create_dir_all(&slot).unwrap();
        std::fs::write(slot.join("address"), format!("0000:{bay:02x}:00\n")).unwrap();
    }
    std::fs::write(root.join("dev").join(name), vec![0u8; 256 * 1024]).unwrap();
}

/// The codes `docs/errors.md` documents.
pub fn documented_codes() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/errors.md")).unwrap()
}
