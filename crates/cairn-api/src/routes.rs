//! Routing and per-request authentication.

use crate::error::ApiError;
use crate::http::{self, Resp};
use crate::pages;
use crate::{is_local_network, App, PowerControl};
use cairn_accounts::{Role, Session, SessionPolicy, User, UserView};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HOST, ORIGIN, SET_COOKIE, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;

/// Routes answered without a session: the complete allow-list. A test walks every other route without one.
pub const PUBLIC_ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/health"),
    ("POST", "/api/v1/setup"),
    ("POST", "/api/v1/session"),
    ("GET", "/setup"),
    ("POST", "/setup"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/static/cairn.css"),
    ("GET", "/static/cairn.js"),
];

/// Every route this server answers, for the tests that walk them all (unauthenticated, CSRF, documented).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/health"),
    ("POST", "/api/v1/setup"),
    ("GET", "/api/v1/session"),
    ("POST", "/api/v1/session"),
    ("DELETE", "/api/v1/session"),
    ("GET", "/api/v1/system"),
    ("PATCH", "/api/v1/system"),
    ("POST", "/api/v1/system/reboot"),
    ("POST", "/api/v1/system/poweroff"),
    ("GET", "/api/v1/users"),
    ("POST", "/api/v1/users"),
    ("GET", "/api/v1/users/{name}"),
    ("PATCH", "/api/v1/users/{name}"),
    ("DELETE", "/api/v1/users/{name}"),
    ("GET", "/api/v1/me"),
    ("PATCH", "/api/v1/me"),
    ("GET", "/api/v1/me/sessions"),
    ("DELETE", "/api/v1/me/sessions/{id}"),
    ("GET", "/api/v1/groups"),
    ("POST", "/api/v1/groups"),
    ("GET", "/api/v1/groups/{name}"),
    ("PATCH", "/api/v1/groups/{name}"),
    ("DELETE", "/api/v1/groups/{name}"),
    ("GET", "/api/v1/shares"),
    ("POST", "/api/v1/shares"),
    ("GET", "/api/v1/shares/{name}"),
    ("PATCH", "/api/v1/shares/{name}"),
    ("DELETE", "/api/v1/shares/{name}"),
    ("GET", "/api/v1/disks"),
    ("GET", "/api/v1/volumes"),
    ("POST", "/api/v1/volumes"),
    ("GET", "/api/v1/volumes/{name}"),
    ("DELETE", "/api/v1/volumes/{name}"),
    ("POST", "/api/v1/volumes/{name}/replace"),
    ("POST", "/api/v1/volumes/{name}/fail"),
    ("POST", "/api/v1/volumes/{name}/scrub"),
    ("POST", "/api/v1/volumes/{name}/import"),
    ("GET", "/api/v1/jobs"),
    ("GET", "/api/v1/jobs/{id}"),
    ("GET", "/api/v1/storage/events"),
    ("GET", "/api/v1/network"),
    ("PUT", "/api/v1/network"),
    ("POST", "/api/v1/network/confirm"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/"),
    ("GET", "/setup"),
    ("POST", "/setup"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("POST", "/system/reboot"),
    ("POST", "/system/poweroff"),
    ("GET", "/users"),
    ("POST", "/users"),
    ("GET", "/users/{name}"),
    ("POST", "/users/{name}"),
    ("POST", "/users/{name}/delete"),
    ("GET", "/groups"),
    ("POST", "/groups"),
    ("POST", "/groups/{name}"),
    ("POST", "/groups/{name}/delete"),
    ("GET", "/shares"),
    ("POST", "/shares"),
    ("GET", "/shares/{name}"),
    ("POST", "/shares/{name}"),
    ("POST", "/shares/{name}/delete"),
    ("GET", "/system"),
    ("POST", "/system"),
    ("POST", "/system/network"),
    ("POST", "/system/network/confirm"),
    ("GET", "/static/cairn.js"),
    ("GET", "/me"),
    ("POST", "/me"),
    ("POST", "/me/password"),
    ("POST", "/me/sessions/{id}/revoke"),
    ("GET", "/static/cairn.css"),
    ("GET", "/storage"),
    ("POST", "/storage/volumes"),
    ("POST", "/storage/volumes/{name}/delete"),
    ("POST", "/storage/volumes/{name}/replace"),
    ("POST", "/storage/volumes/{name}/fail"),
    ("POST", "/storage/volumes/{name}/scrub"),
    ("POST", "/storage/volumes/{name}/import"),
];

/// The OpenAPI description the box serves; a test checks it against [`ROUTES`].
pub(crate) const OPENAPI: &[u8] = include_bytes!("../static/openapi.json");

const CSS: &[u8] = include_bytes!("../static/cairn.css");
const JS: &[u8] = include_bytes!("../static/cairn.js");

/// Who is asking, once the cookie checked out.
pub(crate) struct Caller {
    pub session: Session,
    pub user: User,
}

pub(crate) struct Ctx<'a> {
    pub app: &'a App,
    /// The request came through the root-only control socket (`cairn ctl`): the console is trusted.
    pub console: bool,
    /// The same app, owned, for work that outlives the request (network rollback timers).
    pub shared: std::sync::Arc<App>,
    pub headers: HeaderMap,
    pub peer: SocketAddr,
    pub caller: Option<Caller>,
    /// Form or JSON body, read once for state-changing requests.
    pub body: hyper::body::Bytes,
    /// The query string (after `?`), empty when there is none.
    pub query: String,
}

impl Ctx<'_> {
    fn client(&self) -> String {
        let agent = self
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown client");
        format!("{} ({})", self.peer.ip(), agent)
    }

    pub fn caller(&self) -> Result<&Caller, ApiError> {
        self.caller.as_ref().ok_or_else(ApiError::unauthenticated)
    }

    pub fn admin(&self) -> Result<&Caller, ApiError> {
        let c = self.caller()?;
        if c.user.role == Role::Admin {
            Ok(c)
        } else {
            Err(ApiError::admin_only())
        }
    }

    /// A change made with a session carries its CSRF token (header for the API, hidden field for forms).
    pub fn check_csrf(&self) -> Result<(), ApiError> {
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
            Err(ApiError::csrf())
        }
    }

    /// Requests without a session that change state (login, setup) must not come from another site.
    fn check_same_origin(&self) -> Result<(), ApiError> {
        let Some(origin) = self.headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
            return Ok(());
        };
        let host = self
            .headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
        if origin != "null" && origin_host.eq_ignore_ascii_case(host) {
            Ok(())
        } else {
            Err(ApiError::cross_origin())
        }
    }
}

/// DNS rebinding defence: a browser tricked into sending our cookies to an attacker's name sends that name
/// as Host. IP literals cannot be rebound, so any is fine; names must be the box's own.
fn host_is_ours(app: &App, headers: &HeaderMap) -> bool {
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
    app.own_names().contains(&name)
}

fn is_public(method: &Method, path: &str) -> bool {
    PUBLIC_ROUTES
        .iter()
        .any(|(m, p)| *m == method.as_str() && *p == path)
}

/// Answers one request.
pub async fn handle(shared: std::sync::Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Resp {
    handle_as(shared, req, peer, false).await
}

/// The console's identity for requests over the control socket: an administrator named `console`.
fn console_caller() -> Caller {
    let user = User {
        name: "console".into(),
        full_name: "Serial console".into(),
        email: String::new(),
        role: Role::Admin,
        enabled: true,
        password: cairn_accounts::PasswordHash::dummy(1),
        nt_hash_hex: String::new(),
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

/// Answers one request; `console` marks the root-only control socket.
pub async fn handle_as(
    shared: std::sync::Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
    console: bool,
) -> Resp {
    let app: &App = &shared;
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let method = parts.method.clone();
    let is_api = path.starts_with("/api/");
    let mut ctx = Ctx {
        app,
        console,
        shared: shared.clone(),
        headers: parts.headers,
        peer,
        caller: None,
        body: Default::default(),
        query: parts.uri.query().unwrap_or("").to_string(),
    };
    if console {
        ctx.caller = Some(console_caller());
    } else if !host_is_ours(app, &ctx.headers) {
        return answer_error(is_api, &ApiError::bad_host(), &ctx);
    }
    if let Some(token) = http::cookie(&ctx.headers, http::SESSION_COOKIE) {
        match app.accounts.session(&token) {
            Ok((session, user)) => ctx.caller = Some(Caller { session, user }),
            Err(cairn_accounts::AccountError::NoSession) => {}
            Err(e) => return answer_error(is_api, &ApiError::from(e), &ctx),
        }
    }
    if method != Method::GET && method != Method::HEAD {
        match http::read_body(body).await {
            Ok(b) => ctx.body = b,
            Err(e) => return answer_error(is_api, &e, &ctx),
        }
    }
    let result = if is_api {
        api(&ctx, &method, &path).await
    } else {
        page(&ctx, &method, &path).await
    };
    match result {
        Ok(resp) => resp,
        Err(e) => answer_error(is_api, &e, &ctx),
    }
}

fn answer_error(is_api: bool, e: &ApiError, ctx: &Ctx) -> Resp {
    if is_api {
        http::error_json(e)
    } else if e.code == "session.required" {
        http::redirect("/login", None)
    } else {
        http::html(
            e.status,
            pages::error(e, ctx.caller.as_ref().map(|c| &c.user)),
        )
    }
}

/// Before the first administrator exists, only health and setup answer.
fn gate_setup(ctx: &Ctx, method: &Method, path: &str) -> Result<(), ApiError> {
    if ctx.console || ctx.app.accounts.setup_done() {
        return Ok(());
    }
    let allowed = matches!(
        (method.as_str(), path),
        ("GET", "/api/v1/health") | ("POST", "/api/v1/setup")
    );
    if allowed {
        Ok(())
    } else {
        Err(ApiError::setup_required())
    }
}

fn require_session_unless_public(ctx: &Ctx, method: &Method, path: &str) -> Result<(), ApiError> {
    if ctx.caller.is_none() && !is_public(method, path) {
        return Err(ApiError::unauthenticated());
    }
    Ok(())
}

async fn api(ctx: &Ctx<'_>, method: &Method, path: &str) -> Result<Resp, ApiError> {
    gate_setup(ctx, method, path)?;
    require_session_unless_public(ctx, method, path)?;
    if *method != Method::GET && *method != Method::HEAD {
        ctx.check_csrf()?;
    }
    match (method, path) {
        (&Method::GET, "/api/v1/health") => Ok(http::json(StatusCode::OK, &health(ctx.app))),
        (&Method::POST, "/api/v1/setup") => api_setup(ctx).await,
        (&Method::GET, "/api/v1/session") => {
            let c = ctx.caller()?;
            Ok(http::json(
                StatusCode::OK,
                &json!({"user": UserView::from(&c.user), "csrf_token": c.session.csrf_token}),
            ))
        }
        (&Method::POST, "/api/v1/session") => api_login(ctx).await,
        (&Method::DELETE, "/api/v1/session") => {
            logout(ctx)?;
            let mut resp = http::json(StatusCode::OK, &json!({"logged_out": true}));
            resp.headers_mut()
                .insert(SET_COOKIE, http::clear_session_cookie());
            Ok(resp)
        }
        (&Method::POST, "/api/v1/system/reboot") => {
            power(ctx, PowerAction::Reboot).map(|_| accepted("reboot"))
        }
        (&Method::POST, "/api/v1/system/poweroff") => {
            power(ctx, PowerAction::Poweroff).map(|_| accepted("poweroff"))
        }
        (&Method::GET, "/api/v1/openapi.json") => {
            ctx.caller()?;
            Ok(http::static_file(
                "application/json",
                crate::routes::OPENAPI,
            ))
        }
        (
            _,
            "/api/v1/health"
            | "/api/v1/setup"
            | "/api/v1/session"
            | "/api/v1/system/reboot"
            | "/api/v1/system/poweroff"
            | "/api/v1/openapi.json",
        ) => Err(ApiError::method()),
        _ => match path.strip_prefix("/api/v1/") {
            Some(rest) => {
                let segs: Vec<&str> = rest.split('/').collect();
                crate::resources::route(ctx, method, &segs).await
            }
            None => Err(ApiError::not_found()),
        },
    }
}

fn accepted(action: &str) -> Resp {
    http::json(
        StatusCode::ACCEPTED,
        &json!({"action": action, "state": "started"}),
    )
}

/// The health answer, also the start of the system answer.
fn health(app: &App) -> serde_json::Value {
    json!({
        "version": app.identity.version,
        "board": app.identity.board,
        "uptime_s": app.started.elapsed().as_secs(),
        "setup_done": app.accounts.setup_done(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupRequest {
    username: String,
    password: String,
    #[serde(default)]
    email: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    password: String,
}

/// Creates the first administrator and logs them in; the password work runs off the async threads.
async fn do_setup(ctx: &Ctx<'_>, req: SetupRequest) -> Result<(Session, String, User), ApiError> {
    if !is_local_network(ctx.peer) {
        return Err(ApiError::setup_not_local());
    }
    ctx.check_same_origin()?;
    let accounts = ctx.app.accounts.clone();
    let client = ctx.client();
    tokio::task::spawn_blocking(move || {
        let user = accounts.setup(&req.username, &req.password, &req.email)?;
        let (session, token) = accounts.open_session(&user.name, &client)?;
        Ok::<_, cairn_accounts::AccountError>((session, token, user))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::from)
}

async fn do_login(ctx: &Ctx<'_>, req: LoginRequest) -> Result<(Session, String, User), ApiError> {
    ctx.check_same_origin()?;
    let source = ctx.peer.ip();
    if let Some(wait) = ctx.app.throttle.check(&req.username, source) {
        return Err(ApiError::rate_limited(wait.as_secs().max(1)));
    }
    let accounts = ctx.app.accounts.clone();
    let client = ctx.client();
    let name = req.username.clone();
    let result =
        tokio::task::spawn_blocking(move || accounts.login(&req.username, &req.password, &client))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::from);
    match &result {
        Ok(_) => ctx.app.throttle.succeeded(&name, source),
        Err(e) if e.code == "session.bad_credentials" => ctx.app.throttle.failed(&name, source),
        Err(_) => {}
    }
    result
}

fn session_answer(status: StatusCode, session: &Session, token: &str, user: &User) -> Resp {
    let mut resp = http::json(
        status,
        &json!({"user": UserView::from(user), "csrf_token": session.csrf_token}),
    );
    resp.headers_mut().insert(
        SET_COOKIE,
        http::session_cookie(token, session.max_age_s(SessionPolicy::DASHBOARD), false),
    );
    resp
}

async fn api_setup(ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let req: SetupRequest = http::parse_json(&ctx.body)?;
    let (session, token, user) = do_setup(ctx, req).await?;
    Ok(session_answer(StatusCode::CREATED, &session, &token, &user))
}

async fn api_login(ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let req: LoginRequest = http::parse_json(&ctx.body)?;
    let (session, token, user) = do_login(ctx, req).await?;
    Ok(session_answer(StatusCode::OK, &session, &token, &user))
}

fn logout(ctx: &Ctx) -> Result<(), ApiError> {
    ctx.caller()?;
    if let Some(token) = http::cookie(&ctx.headers, http::SESSION_COOKIE) {
        ctx.app.accounts.logout(&token)?;
    }
    Ok(())
}

enum PowerAction {
    Reboot,
    Poweroff,
}

fn power(ctx: &Ctx, action: PowerAction) -> Result<(), ApiError> {
    ctx.admin()?;
    if ctx.app.power != PowerControl::Init {
        return Err(ApiError::power_unavailable());
    }
    ctx.app.store.commit().map_err(ApiError::internal)?;
    // Answer first, then ask init: it stops this daemon as part of a clean shutdown.
    let signal = match action {
        PowerAction::Reboot => nix_signal::REBOOT,
        PowerAction::Poweroff => nix_signal::POWEROFF,
    };
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        nix_signal::send_to_init(signal);
    });
    Ok(())
}

/// Signals init the way busybox's `reboot` and `poweroff` do.
mod nix_signal {
    pub const REBOOT: i32 = 15; // SIGTERM
    pub const POWEROFF: i32 = 12; // SIGUSR2

    pub fn send_to_init(signal: i32) {
        let status = std::process::Command::new("/bin/kill")
            .arg(format!("-{signal}"))
            .arg("1")
            .status();
        if let Err(e) = status {
            log::error!("could not signal init: {e}");
        }
    }
}

async fn page(ctx: &Ctx<'_>, method: &Method, path: &str) -> Result<Resp, ApiError> {
    if (method, path) == (&Method::GET, "/static/cairn.css") {
        return Ok(http::static_file("text/css; charset=utf-8", CSS));
    }
    if (method, path) == (&Method::GET, "/static/cairn.js") {
        return Ok(http::static_file("text/javascript; charset=utf-8", JS));
    }
    let setup_done = ctx.app.accounts.setup_done();
    if !setup_done && path != "/setup" {
        return Ok(http::redirect("/setup", None));
    }
    match (method, path) {
        (&Method::GET, "/setup") => {
            if setup_done {
                return Ok(http::redirect("/login", None));
            }
            if !is_local_network(ctx.peer) {
                return Err(ApiError::setup_not_local());
            }
            Ok(http::html(StatusCode::OK, pages::setup(None, "", "")))
        }
        (&Method::POST, "/setup") => {
            if setup_done {
                return Ok(http::redirect("/login", None));
            }
            let form = http::parse_form(&ctx.body);
            let req = SetupRequest {
                username: http::form_field(&form, "username").trim().to_string(),
                password: http::form_field(&form, "password").to_string(),
                email: http::form_field(&form, "email").trim().to_string(),
            };
            let (username, email) = (req.username.clone(), req.email.clone());
            if req.password != http::form_field(&form, "password_again") {
                let e = ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "user.password_mismatch",
                    "The two passwords differ.",
                    "Type the same password in both fields.",
                );
                return Ok(http::html(
                    e.status,
                    pages::setup(Some(&e), &username, &email),
                ));
            }
            match do_setup(ctx, req).await {
                Ok((session, token, _)) => Ok(http::redirect(
                    "/",
                    Some(http::session_cookie(
                        &token,
                        session.max_age_s(SessionPolicy::DASHBOARD),
                        false,
                    )),
                )),
                Err(e)
                    if e.status.is_client_error()
                        && e.code != "setup.not_local"
                        && e.code != "request.cross_origin" =>
                {
                    Ok(http::html(
                        e.status,
                        pages::setup(Some(&e), &username, &email),
                    ))
                }
                Err(e) => Err(e),
            }
        }
        (&Method::GET, "/login") => {
            if ctx.caller.is_some() {
                return Ok(http::redirect("/", None));
            }
            Ok(http::html(StatusCode::OK, pages::login(None, "")))
        }
        (&Method::POST, "/login") => {
            let form = http::parse_form(&ctx.body);
            let username = http::form_field(&form, "username").trim().to_string();
            let req = LoginRequest {
                username: username.clone(),
                password: http::form_field(&form, "password").to_string(),
            };
            match do_login(ctx, req).await {
                Ok((session, token, _)) => Ok(http::redirect(
                    "/",
                    Some(http::session_cookie(
                        &token,
                        session.max_age_s(SessionPolicy::DASHBOARD),
                        false,
                    )),
                )),
                Err(e) if e.code == "session.bad_credentials" => {
                    Ok(http::html(e.status, pages::login(Some(&e), &username)))
                }
                Err(e) => Err(e),
            }
        }
        _ => {
            require_session_unless_public(ctx, method, path)?;
            if *method != Method::GET && *method != Method::HEAD {
                ctx.check_csrf()?;
            }
            let caller = ctx.caller()?;
            if let Some(answer) = crate::dashboard::route(ctx, method, path).await {
                return answer;
            }
            if let Some(answer) = crate::storage_page::route(ctx, method, path).await {
                return answer;
            }
            match (method, path) {
                (&Method::GET, "/") if caller.user.role != Role::Admin => {
                    Ok(http::redirect("/me", None))
                }
                (&Method::GET, "/") => Ok(http::html(
                    StatusCode::OK,
                    pages::home(&caller.user, &caller.session, &health(ctx.app)),
                )),
                (&Method::POST, "/logout") => {
                    logout(ctx)?;
                    Ok(http::redirect("/login", Some(http::clear_session_cookie())))
                }
                (&Method::POST, "/system/reboot") => {
                    power(ctx, PowerAction::Reboot)?;
                    Ok(http::html(StatusCode::ACCEPTED, pages::notice(&caller.user, "Restarting", "The box is restarting. This page will not update by itself: reload it in a minute.")))
                }
                (&Method::POST, "/system/poweroff") => {
                    power(ctx, PowerAction::Poweroff)?;
                    Ok(http::html(StatusCode::ACCEPTED, pages::notice(&caller.user, "Powering off", "The box is shutting down cleanly. It is safe to unplug it once its lights are off.")))
                }
                _ => Err(ApiError::not_found()),
            }
        }
    }
}
