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

mod app;
mod auth;
mod controller;
mod error;
mod html;
mod http;
mod json;
mod routes;
mod throttle;

pub use app::{App, ChangeHook, Identity};
pub use auth::is_local_network;
pub use error::{ApiError, Error, RequestError, ALL_CODES};
pub use routes::{public_routes, routes};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

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
