//! A small blocking HTTP client over hyper, with a cookie jar: what a test needs to act like a browser.

use crate::{HarnessError, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .map_err(|e| HarnessError::Http(format!("body is not JSON ({e}): {}", self.text())))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Talks to one host port; remembers cookies the server sets, like a browser would.
#[derive(Clone)]
pub struct HttpClient {
    port: u16,
    timeout: Duration,
    cookies: Arc<Mutex<Vec<(String, String)>>>,
    host_header: Option<String>,
    /// Speak TLS with this configuration (see [`HttpClient::https`]).
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl HttpClient {
    pub fn new(port: u16) -> HttpClient {
        HttpClient {
            port,
            timeout: Duration::from_secs(60),
            cookies: Arc::new(Mutex::new(Vec::new())),
            host_header: None,
            tls: None,
        }
    }

    /// A client for HTTPS on `port` that trusts only the certificate with this SHA-256 `fingerprint`.
    pub fn https(port: u16, fingerprint: &str) -> HttpClient {
        HttpClient {
            tls: Some(crate::tls::pinned_client_config(fingerprint)),
            ..HttpClient::new(port)
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> HttpClient {
        self.timeout = timeout;
        self
    }

    /// A client with its own, empty cookie jar (another browser).
    pub fn fresh(&self) -> HttpClient {
        HttpClient {
            cookies: Arc::new(Mutex::new(Vec::new())),
            ..self.clone()
        }
    }

    /// Sends this `Host` header instead of `127.0.0.1:port`.
    pub fn with_host(mut self, host: &str) -> HttpClient {
        self.host_header = Some(host.to_string());
        self
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies
            .lock()
            .unwrap()
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        let mut jar = self.cookies.lock().unwrap();
        jar.retain(|(k, _)| k != name);
        jar.push((name.to_string(), value.to_string()));
    }

    pub fn get(&self, path: &str) -> Result<HttpResponse> {
        self.request("GET", path, &[], Vec::new())
    }

    pub fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        headers: &[(&str, &str)],
    ) -> Result<HttpResponse> {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        self.request("POST", path, &h, serde_json::to_vec(body).unwrap())
    }

    pub fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Result<HttpResponse> {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.request(
            "POST",
            path,
            &[("content-type", "application/x-www-form-urlencoded")],
            body.into_bytes(),
        )
    }

    /// Any request; cookies from the jar are sent and `Set-Cookie` answers are kept.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<HttpResponse> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            tokio::time::timeout(self.timeout, self.send(method, path, headers, body)).await
        })
        .map_err(|_| HarnessError::Timeout {
            what: format!("{method} {path}"),
            seconds: self.timeout.as_secs(),
        })?
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<HttpResponse> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        match &self.tls {
            Some(config) => {
                let name =
                    rustls::pki_types::ServerName::from(std::net::IpAddr::from([127, 0, 0, 1]));
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, stream)
                    .await
                    .map_err(|e| HarnessError::Http(format!("TLS: {e}")))?;
                self.exchange(tls, method, path, headers, body).await
            }
            None => self.exchange(stream, method, path, headers, body).await,
        }
    }

    /// One request and its answer over an open connection.
    async fn exchange<S>(
        &self,
        stream: S,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<HttpResponse>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| HarnessError::Http(e.to_string()))?;
        tokio::spawn(conn);
        let host = self
            .host_header
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{}", self.port));
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", host);
        let jar = self.cookies.lock().unwrap().clone();
        if !jar.is_empty() {
            req = req.header(
                "cookie",
                jar.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            );
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| HarnessError::Http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| HarnessError::Http(e.to_string()))?;
        let status = resp.status().as_u16();
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        for (k, v) in &headers {
            if k == "set-cookie" {
                if let Some((name, rest)) = v.split_once('=') {
                    let value = rest.split(';').next().unwrap_or("");
                    let expired = v.contains("Max-Age=0");
                    let mut jar = self.cookies.lock().unwrap();
                    jar.retain(|(n, _)| n != name);
                    if !expired {
                        jar.push((name.to_string(), value.to_string()));
                    }
                }
            }
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| HarnessError::Http(e.to_string()))?
            .to_bytes()
            .to_vec();
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
