//! Who is asking and whether they may: the request context, the session behind the cookie, the console's
//! identity, the Host check against DNS rebinding, CSRF tokens and the same-origin rule for logins.
//! Route access (open, public, user, admin) is declared in the route table; this module enforces it.

use crate::app::App;
use crate::error::{Error, RequestError};
use crate::http;
use cairn_accounts::{Role, Session, User};
use hyper::body::Bytes;
use hyper::header::{HeaderMap, HOST, ORIGIN, USER_AGENT};
use std::net::SocketAddr;
use std::sync::Arc;

/// Who is asking, once the cookie checked out.
pub(crate) struct Caller {
    pub session: Session,
    pub user: User,
}

/// One request as handlers see it: the app, the caller, the body read once, the query string.
pub(crate) struct Ctx {
    pub app: Arc<App>,
    /// The request came through the root-only control socket (`cairn ctl`): the console is trusted.
    pub console: bool,
    pub headers: HeaderMap,
    /// The request came over TLS (port 443): its session cookie is `Secure`, its origin `https://`.
    pub tls: bool,
    pub peer: SocketAddr,
    pub caller: Option<Caller>,
    /// Form or JSON body, read once for state-changing requests.
    pub body: Bytes,
    /// The query string (after `?`), empty when there is none.
    pub query: String,
    /// The body of a streamed route (`http::STREAMED_ROUTES`), taken once by its handler.
    pub stream: std::sync::Mutex<Option<crate::firmware::Upload>>,
}

impl Ctx {
    /// "192.168.1.5 (Firefox ...)": how a session's client is listed on the owner's page.
    pub fn client(&self) -> String {
        let agent = self
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown client");
        format!("{} ({})", self.peer.ip(), agent)
    }

    /// The logged-in caller; routes that need one are only reached with one (see the route table).
    pub fn caller(&self) -> Result<&Caller, Error> {
        self.caller
            .as_ref()
            .ok_or(Error::Request(RequestError::Unauthenticated))
    }

    /// Whether the caller may act on `user`'s own record: themselves, or an administrator.
    pub fn is_self_or_admin(&self, user: &str) -> Result<(), Error> {
        let c = self.caller()?;
        if c.user.role == Role::Admin || c.user.name == user {
            Ok(())
        } else {
            Err(RequestError::AdminOnly.into())
        }
    }

    /// A change made with a session carries its CSRF token (header for the API, hidden field for forms).
    pub fn check_csrf(&self) -> Result<(), Error> {
        if self.console {
            return Ok(());
        }
        let Some(caller) = &self.caller else {
            return Ok(());
        };
        let sent = match self
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
        {
            Some(t) => t.to_string(),
            None if http::is_form(&self.headers) => {
                http::form_field(&http::parse_form(&self.body), "csrf_token").to_string()
            }
            None => String::new(),
        };
        if !sent.is_empty() && http::same_secret(&sent, &caller.session.csrf_token) {
            Ok(())
        } else {
            Err(RequestError::CsrfMissing.into())
        }
    }

    /// Requests without a session that change state (login, setup) must not come from another site. The
    /// origin is scheme and host: a page of `http://box` is another origin than `https://box` (a LAN
    /// attacker can write the first), so the scheme must be the one this request came in by.
    pub fn check_same_origin(&self) -> Result<(), Error> {
        let Some(origin) = self.headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
            return Ok(());
        };
        let host = self
            .headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let scheme = if self.tls { "https" } else { "http" };
        let same = origin
            .split_once("://")
            .is_some_and(|(s, h)| s.eq_ignore_ascii_case(scheme) && h.eq_ignore_ascii_case(host));
        if same {
            Ok(())
        } else {
            Err(RequestError::CrossOrigin.into())
        }
    }

    /// The session cookie for a login or setup answered to this request: `Secure` when it came over TLS,
    /// so the browser never sends it back over plain HTTP.
    pub fn session_cookie(&self, token: &str, session: &Session) -> hyper::header::HeaderValue {
        http::session_cookie(
            token,
            session.max_age_s(cairn_accounts::SessionPolicy::DASHBOARD),
            self.tls,
        )
    }

    /// The session cookie's token, if the request carries one.
    pub fn session_token(&self) -> Option<String> {
        http::cookie(&self.headers, http::SESSION_COOKIE)
    }
}

/// The caller behind the session cookie, if it is valid.
pub(crate) fn session_caller(app: &App, headers: &HeaderMap) -> Result<Option<Caller>, Error> {
    let Some(token) = http::cookie(headers, http::SESSION_COOKIE) else {
        return Ok(None);
    };
    match app.accounts.session(&token) {
        Ok((session, user)) => Ok(Some(Caller { session, user })),
        Err(cairn_accounts::AccountError::NoSession) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The console's identity for requests over the control socket: an administrator named `console`.
pub(crate) fn console_caller() -> Caller {
    let user = User {
        name: "console".into(),
        full_name: "Serial console".into(),
        email: String::new(),
        role: Role::Admin,
        enabled: true,
        credential: cairn_accounts::Credential {
            password: cairn_accounts::PasswordHash::dummy(1),
            nt_hash_hex: String::new(),
            changed_s: None,
        },
        uid: 0,
        created_s: 0,
    };
    let session = Session {
        id: "console".into(),
        user: "console".into(),
        csrf_token: String::new(),
        created_s: 0,
        last_used_s: 0,
        client: "control socket".into(),
    };
    Caller { session, user }
}

/// DNS rebinding defence: a browser tricked into sending our cookies to an attacker's name sends that name
/// as Host. IP literals cannot be rebound, so any is fine; names must be the box's own.
pub(crate) fn host_is_ours(app: &App, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, port)) => {
                return v6.parse::<std::net::Ipv6Addr>().is_ok()
                    && (port.is_empty()
                        || port
                            .strip_prefix(':')
                            .is_some_and(|p| p.parse::<u16>().is_ok()))
            }
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, port)) if port.parse::<u16>().is_ok() => n,
            Some(_) => return false,
            None => host,
        }
    };
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    app.system.own_names().contains(&name)
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

/// The `{name}` segments of the matched route, by name.
pub(crate) struct Params(Vec<(&'static str, String)>);

impl Params {
    pub(crate) fn new(pairs: Vec<(&'static str, String)>) -> Params {
        Params(pairs)
    }

    /// The segment the route's pattern calls `{key}`; empty if it has none (a table typo fails the tests).
    pub(crate) fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}
