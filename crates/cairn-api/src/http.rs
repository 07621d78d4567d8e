//! Small helpers over hyper: bodies with a size limit, cookies, forms, JSON and HTML answers.

use crate::error::{ApiError, Error, RequestError};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use hyper::{Response, StatusCode};
use serde::de::DeserializeOwned;
use std::time::Duration;

pub type Resp = Response<Full<Bytes>>;

/// Largest request body the API reads; nothing it takes is larger.
pub const BODY_LIMIT: usize = 64 * 1024;

/// How long a whole body may take to arrive where the connection sets no other deadline (the control socket).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Carried by each request from its connection to the body reader: the body's deadline, and whom to tell
/// that the body is read (the connection then counts as at work, see `conns`).
#[derive(Clone)]
pub(crate) struct BodyWatch {
    pub timeout: Duration,
    pub on_read: std::sync::Arc<dyn Fn() + Send + Sync>,
    /// A chunk of a streamed body arrived: its deadline starts again (see [`STREAMED_ROUTES`]).
    pub on_chunk: std::sync::Arc<dyn Fn() + Send + Sync>,
}

/// Routes whose body is streamed to their handler instead of read whole: a firmware bundle is hundreds of
/// MiB. Their body has no size limit here (the handler bounds what it reads) and a deadline per chunk
/// (the body deadline between two chunks) instead of one for the whole body; every other route keeps
/// [`BODY_LIMIT`] and the whole-body deadline.
pub(crate) const STREAMED_ROUTES: &[(&str, &str)] = &[("POST", "/api/v1/firmware")];

/// Marks a request that came over TLS (a request extension, set by the TLS listener's connections only):
/// its session cookie is `Secure` and its origin `https://`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OverTls;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "cairn_session";

/// Routes that take a larger whole body, from an administrator only (anyone else gets [`BODY_LIMIT`]): a
/// settings backup to restore.
pub(crate) const LARGE_BODY_ROUTES: &[(&str, &str, usize)] = &[(
    "POST",
    "/api/v1/system/restore",
    cairn_backup::MAX_FILE_BYTES,
)];

/// The request body, refused beyond `limit` and when it has not all arrived within `deadline` (a
/// trickled body would otherwise hold its connection, and the memory read so far, for ever).
pub async fn read_body(body: Incoming, deadline: Duration, limit: usize) -> Result<Bytes, Error> {
    let Ok(read) = tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await else {
        return Err(RequestError::Timeout.into());
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(RequestError::TooLarge(limit).into())
        }
        Err(e) => Err(RequestError::InvalidBody(format!(
            "The request body could not be read: {e}."
        ))
        .into()),
    }
}

/// Parses a JSON object body into `T`, with a message that names what was wrong.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        RequestError::InvalidBody(format!(
            "The request body is not the JSON this route takes: {e}."
        ))
        .into()
    })
}

/// Parses an `application/x-www-form-urlencoded` body into pairs.
pub fn parse_form(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

pub fn form_field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

pub fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// The value of one cookie from the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A session cookie: script cannot read it, other sites cannot send it.
pub fn session_cookie(token: &str, max_age_s: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    ))
    .expect("token is hex")
}

pub fn clear_session_cookie() -> HeaderValue {
    HeaderValue::from_static("cairn_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

fn base(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    resp
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Resp {
    base(
        status,
        "application/json",
        serde_json::to_vec(value).expect("a Value always serialises"),
    )
}

pub fn error_json(e: &ApiError) -> Resp {
    let mut resp = json(e.status, &e.body());
    if let Some(s) = e.retry_after_s {
        resp.headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}

/// Adds `Retry-After` to a page that shows an error with one (a login held back), as the API's answer has.
pub fn with_retry_after(mut resp: Resp, e: Option<&Error>) -> Resp {
    if let Some(s) = e.and_then(|e| e.render().retry_after_s) {
        resp.headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}

pub fn html(status: StatusCode, page: String) -> Resp {
    let mut resp = base(status, "text/html; charset=utf-8", page);
    resp.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'self'; style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'"),
    );
    resp
}

/// A file to save (a settings backup): never cached, offered under `name` (built from validated names).
pub fn download(body: Vec<u8>, name: &str) -> Resp {
    let mut resp = base(StatusCode::OK, "application/octet-stream", body);
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        resp.headers_mut().insert("content-disposition", v);
    }
    resp
}

pub fn static_file(content_type: &'static str, body: &'static [u8]) -> Resp {
    let mut resp = base(StatusCode::OK, content_type, Bytes::from_static(body));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
    resp
}

/// A 303 to another page, optionally setting or clearing the session cookie.
pub fn redirect(to: &str, cookie: Option<HeaderValue>) -> Resp {
    let mut resp = base(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    // Targets are built from validated names; anything unencodable goes home rather than failing.
    let location = HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/"));
    resp.headers_mut().insert(LOCATION, location);
    if let Some(c) = cookie {
        resp.headers_mut().insert(SET_COOKIE, c);
    }
    resp
}

/// Compares secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Escapes text for HTML element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}
