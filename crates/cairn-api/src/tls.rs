//! HTTPS on the LAN: the same routes, gates and answers as port 80, behind a TLS handshake (rustls, ring)
//! that presents the box's current certificate ([`cairn_tls::Certificates`]), so a certificate the owner
//! uploads is served from the next connection on. Connections are admitted under the same caps as port 80
//! (one [`Connections`] for both listeners) and the handshake runs under the deadline of a request head.
//! Requests that arrive this way carry [`crate::http::OverTls`]: their session cookies are `Secure`, and the
//! same-origin check expects an `https://` origin.

use crate::app::App;
use crate::conns::Connections;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Serves the API and dashboard over TLS on `listener` until the process ends, with the certificate of
/// `app.certificates`, under the caps and deadlines of `conns` (the ones port 80 is served under).
pub async fn serve_tls(
    listener: TcpListener,
    app: Arc<App>,
    conns: Arc<Connections>,
) -> std::io::Result<()> {
    let certificates = app.certificates.clone().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "this server has no TLS certificate",
        )
    })?;
    let config = certificates
        .server_config()
        .map_err(std::io::Error::other)?;
    crate::accept(listener, app, conns, Some(TlsAcceptor::from(config))).await
}
