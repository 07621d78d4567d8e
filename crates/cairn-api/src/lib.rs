//! The management API and LAN dashboard: HTTP in, the domain crates' work out.
//!
//! Owns the HTTP side only: the route table ([`routes`]), who may call what ([`auth`]: session cookie, CSRF
//! token on every change, Host check, login throttling), the JSON conventions of `shared/api-contract.md`
//! and the server-rendered pages. A request flows handler (`json/`, `html/`: parse and render) → controller
//! (`controller/`: one per domain, the cross-domain rules, change notification, blocking offload) → domain
//! crate (`cairn-accounts`, `cairn-storage`, `cairn-system`) → tools. Domain errors become statuses and codes
//! in one table ([`error`]). It holds no state of its own beyond the login throttle and the open connections
//! ([`conns`]: caps per source and in all, deadlines for heads, bodies and idle connections, for every
//! listener).
//! Tested on the host by starting the real server on a loopback port (see `tests/`), and in the image by
//! the QEMU scenario tests.
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

mod app;
mod auth;
mod conns;
mod controller;
mod error;
pub mod fetch;
mod firmware;
mod html;
mod http;
mod json;
mod routes;
mod source;
mod throttle;
mod tls;
mod usage;

pub use app::{App, ChangeHook, ConfigRecovery, Identity};
pub use auth::is_local_network;
pub use conns::{serve_accepted, ConnPolicy, Connections, Refused, Source, Ticket};
pub use controller::certificate::box_names;
pub use error::{ApiError, Error, RequestError, ALL_CODES};
pub use firmware::Firmware;
pub use routes::{public_routes, routes};
pub use tls::serve_tls;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Serves the API and dashboard on `listener` until the process ends, under [`ConnPolicy::LAN`].
pub async fn serve(listener: TcpListener, app: Arc<App>) -> std::io::Result<()> {
    serve_with(listener, app, Connections::new(ConnPolicy::LAN)).await
}

/// Serves on `listener` with the connection caps and deadlines of `conns` (shared with any other listener
/// of the box, so the caps count every connection once).
pub async fn serve_with(
    listener: TcpListener,
    app: Arc<App>,
    conns: Arc<Connections>,
) -> std::io::Result<()> {
    accept(listener, app, conns, None).await
}

/// The accept loop of every TCP listener: each connection is admitted under `conns`' caps, then served as it
/// is or, with `tls`, after its handshake (which runs under the same deadlines as a request head).
pub(crate) async fn accept(
    listener: TcpListener,
    app: Arc<App>,
    conns: Arc<Connections>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
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
        match (conns.admit(peer), &tls) {
            (Ok(ticket), None) => {
                tokio::spawn(serve_accepted(
                    ticket,
                    app.clone(),
                    peer,
                    std::future::ready(Ok(stream)),
                ));
            }
            (Ok(ticket), Some(acceptor)) => {
                let handshake = acceptor.accept(stream);
                tokio::spawn(conns::serve_admitted(
                    ticket,
                    app.clone(),
                    peer,
                    handshake,
                    true,
                ));
            }
            (Err(_), None) => refuse(stream),
            // A TLS client cannot read a plain answer; closing is all it can be told.
            (Err(_), Some(_)) => drop(stream),
        }
        // Connections already open are read, and the ones chosen to make room closed, before the next one is
        // taken: under a flood of new connections the server would otherwise only accept, every newcomer
        // would find its source's places held by connections not read yet (none of which may be closed),
        // and the closed ones would pile up as descriptors.
        tokio::task::yield_now().await;
    }
}

/// Tells a refused client why (503 with a code), without waiting for it: whatever does not fit the socket
/// buffer at once is not sent.
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(&conns::refusal_answer());
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
