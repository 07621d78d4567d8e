//! The management API and LAN dashboard: HTTP in, the domain crates' work out.
//!
//! Owns the HTTP side only: the route table ([`routes`]), who may call what ([`auth`]: session cookie, CSRF
//! token on every change, Host check, login throttling), the JSON conventions of `shared/api-contract.md`
//! and the server-rendered pages. A request flows handler (`json/`, `html/`: parse and render) → controller
//! (`controller/`: one per domain, the cross-domain rules, change notification, blocking offload) → domain
//! crate (`cairn-accounts`, `cairn-storage`, `cairn-system`) → tools. Domain errors become statuses and codes
//! in one table ([`error`]). It holds no state of its own beyond the login throttle.
//! Tested on the host by starting the real server on a loopback port (see `tests/`), and in the image by
//! the QEMU scenario tests.
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

mod auth;
mod controller;
mod error;
mod html;
mod http;
mod json;
mod routes;
mod throttle;

pub use auth::is_local_network;
pub use error::{ApiError, Error, RequestError, ALL_CODES};
pub use routes::{public_routes, routes};

use cairn_accounts::Accounts;
use cairn_store::Store;
use cairn_system::System;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Fixed facts about this box, for health and the pages.
#[derive(Debug, Clone)]
pub struct Identity {
    pub version: String,
    pub board: String,
}

/// Called after every acknowledged change that servers' files depend on (SMB), off the async threads.
pub type ChangeHook = Box<dyn Fn(&App) + Send + Sync>;

/// Everything a request handler needs.
pub struct App {
    pub identity: Identity,
    pub accounts: Accounts,
    pub store: Store,
    /// Host name, network, power.
    pub system: System,
    pub started: Instant,
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
        system: System,
    ) -> Result<App, cairn_accounts::AccountError> {
        Ok(App {
            identity,
            accounts: Accounts::new(store.clone())?,
            store,
            system,
            started: Instant::now(),
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

    /// Runs the change hook. Blocking: the API calls it off the async threads, the daemon periodically to
    /// repair drift.
    pub fn notify_change(&self) {
        if let Some(hook) = &self.on_change {
            hook(self);
        }
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
                async move {
                    Ok::<_, std::convert::Infallible>(routes::handle(app, req, peer, false).await)
                }
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
                    Ok::<_, std::convert::Infallible>(routes::handle(app, req, peer, true).await)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
