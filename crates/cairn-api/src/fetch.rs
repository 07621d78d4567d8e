//! A small GET over HTTP or HTTPS (hyper, rustls), for the update check's index. The index is signed, so its
//! integrity never rests on the transport; HTTPS still keeps what the box asks for private. The CAs trusted
//! for HTTPS are the system bundle at [`CA_BUNDLE`] (none on an image without one: HTTPS sources then fail
//! with a sentence saying so, plain HTTP ones work).

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// The CA certificates trusted for HTTPS (Debian's and most distributions' path).
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What is read at most.
pub const FETCH_LIMIT: usize = 64 * 1024;

/// The whole answer to `GET url` (status 200 only), within `deadline` and [`FETCH_LIMIT`].
pub async fn get(url: &str, deadline: Duration) -> Result<Vec<u8>, String> {
    let read = async {
        let answer = open(url).await?;
        let body = Limited::new(answer.into_body(), FETCH_LIMIT)
            .collect()
            .await
            .map_err(|e| format!("reading the answer of {url}: {e}"))?;
        Ok(body.to_bytes().to_vec())
    };
    tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| format!("no answer from {url} within {} s", deadline.as_secs()))?
}

fn roots() -> Result<rustls::RootCertStore, String> {
    let text = std::fs::read_to_string(CA_BUNDLE)
        .map_err(|e| format!("no CA certificates to check an HTTPS source ({CA_BUNDLE}: {e}); use an http:// source (the index is signed either way)"))?;
    let mut roots = rustls::RootCertStore::empty();
    for block in pem::parse_many(text).map_err(|e| format!("{CA_BUNDLE}: {e}"))? {
        if block.tag() == "CERTIFICATE" {
            let _ = roots.add(block.into_contents().into());
        }
    }
    Ok(roots)
}

/// `GET url`, answered 200: its head, and its body to stream (a bundle download is never held whole).
pub async fn open(url: &str) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(format!(
                "{url:?}: only http:// and https:// sources are read"
            ))
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("{url:?} names no host"))?
        .to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot reach {host}:{port}: {e}"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    if tls {
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots()?)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{host}: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        exchange(stream, &host, &path).await
    } else {
        exchange(stream, &host, &path).await
    }
}

async fn exchange<S>(
    stream: S,
    host: &str,
    path: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("{host}: {e}"))?;
    tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header("host", host)
        .header("user-agent", "cairn-update-check")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let answer = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{host}: {e}"))?;
    if answer.status() != hyper::StatusCode::OK {
        return Err(format!("{host} answered {} for {path}", answer.status()));
    }
    Ok(answer)
}
