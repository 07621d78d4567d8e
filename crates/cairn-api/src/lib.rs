//! The management API and LAN dashboard: HTTP in, accounts and settings out.
//!
//! Owns routing, authentication of each request (session cookie plus CSRF token on every change), the
//! JSON conventions of `shared/api-contract.md` and the server-rendered pages. It holds no state of its own
//! beyond what `cairn-store` keeps; it never touches disks or the network configuration directly.
//! Tested on the host by starting the real server on a loopback port (see `tests/`), and in the image by
//! the QEMU scenario tests.
#![forbid(unsafe_code)]

mod dashboard;
mod error;
mod http;
pub mod network;
mod pages;
mod resources;
mod routes;
mod storage;
mod storage_page;
pub mod system;
mod throttle;

pub use error::{ApiError, ALL_CODES};
pub use routes::{PUBLIC_ROUTES, ROUTES};

use cairn_accounts::Accounts;
use cairn_store::Store;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Who carries out reboot and power-off requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerControl {
    /// Signal PID 1 (`cairn init`), which stops services and unmounts cleanly first.
    Init,
    /// No control (a development server on a workstation): such requests are refused.
    None,
}

/// Fixed facts about this box, for health and the pages.
#[derive(Debug, Clone)]
pub struct Identity {
    pub version: String,
    pub board: String,
    /// The LAN interface network settings apply to.
    pub interface: String,
}

/// Called after every acknowledged change to accounts or shares, so servers' files follow (SMB).
pub type ChangeHook = Box<dyn Fn(&App) + Send + Sync>;

/// Everything a request handler needs.
pub struct App {
    pub identity: Identity,
    pub accounts: Accounts,
    pub store: Store,
    pub power: PowerControl,
    pub started: Instant,
    /// How long a network change waits for confirmation before rolling back.
    pub network_window: std::time::Duration,
    /// The board description, for disk bays; absent on a development host without one.
    pub board: Option<cairn_board::Board>,
    /// Root of sysfs (`/sys`), where disks are discovered.
    pub sys_root: std::path::PathBuf,
    /// The disk and volume manager; absent on a development host.
    pub storage: Option<cairn_storage::Storage>,
    throttle: throttle::Throttle,
    on_change: Option<ChangeHook>,
}

impl App {
    pub fn new(
        identity: Identity,
        store: Store,
        power: PowerControl,
    ) -> Result<App, cairn_accounts::AccountError> {
        Ok(App {
            identity,
            accounts: Accounts::new(store.clone())?,
            store,
            power,
            started: Instant::now(),
            network_window: network::CONFIRM_WINDOW,
            board: None,
            sys_root: std::path::PathBuf::from("/sys"),
            storage: None,
            throttle: throttle::Throttle::new(throttle::ThrottlePolicy::LOGIN),
            on_change: None,
        })
    }

    /// Registers what runs after each change (the SMB renderer on the box).
    pub fn with_change_hook(mut self, hook: ChangeHook) -> App {
        self.on_change = Some(hook);
        self
    }

    /// Runs the change hook (also called periodically by the daemon to repair drift).
    pub fn changed(&self) {
        if let Some(hook) = &self.on_change {
            hook(self);
        }
    }

    /// The names this box answers to, for the Host check; IP literals are always accepted.
    pub(crate) fn own_names(&self) -> Vec<String> {
        let name = system::hostname(self);
        vec![
            name.clone(),
            format!("{name}.local"),
            "localhost".to_string(),
        ]
    }
}

/// How long a client may take to send its request head before the connection is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the API and dashboard on `listener` until the process ends.
pub async fn serve(listener: TcpListener, app: Arc<App>) -> std::io::Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Running out of descriptors must not end the server; back off and go on.
                log::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, std::convert::Infallible>(routes::handle(app, req, peer).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                log::debug!("connection from {peer}: {e}");
            }
        });
    }
}

/// Serves the same API on the root-only control socket used by `cairn ctl`. Connections from any uid other
/// than root (or the daemon's own, for a development server) are closed unanswered.
pub async fn serve_control(
    listener: tokio::net::UnixListener,
    app: Arc<App>,
) -> std::io::Result<()> {
    let own_uid = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(0);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                log::warn!("control socket accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let uid = stream.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
        if uid != 0 && uid != own_uid {
            log::warn!("control socket: refused a connection from uid {uid}");
            continue;
        }
        let app = app.clone();
        tokio::spawn(async move {
            let peer: SocketAddr = ([127, 0, 0, 1], 0).into();
            let service = service_fn(move |req| {
                let app = app.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(routes::handle_as(app, req, peer, true).await)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Whether a client address is on the local network: the only place first-boot setup is offered.
pub fn is_local_network(addr: SocketAddr) -> bool {
    match addr.ip() {
        std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4.is_loopback() || v4.is_private() || v4.is_link_local();
            }
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}
