//! Every route, once: method, pattern, who may call it, and the handler. Dispatch, the allow-list of routes
//! answered without a session and the list the tests walk are all read from this one table.
//!
//! Each request passes the same gates in the same order: the Host check and the session cookie (or the
//! console's identity on the control socket), the body read with a limit and a deadline, first-boot setup (only open routes
//! answer before an administrator exists), the route's access, the CSRF token on every change made with a
//! session, then the handler. Errors become answers in one place ([`crate::error`]).

use crate::app::App;
use crate::auth::{console_caller, host_is_ours, session_caller, Ctx, Params};
use crate::error::{Error, RequestError};
use crate::http::{self, Resp};
use crate::{html, json};
use cairn_accounts::Role;
use hyper::body::Incoming;
use hyper::{Method, Request};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone, even before first-boot setup: health, setup, the style sheet and script.
    Open,
    /// Anyone once the box is set up: login.
    Public,
    /// A logged-in user (handlers narrow it further where a user may act only on their own record).
    User,
    /// A logged-in administrator.
    Admin,
    /// Only `cairn ctl` on the root-only control socket, even while the settings are unavailable.
    Console,
}

/// A handler's answer, boxed so every handler fits the one table.
pub(crate) type Answer<'a> = Pin<Box<dyn Future<Output = Result<Resp, Error>> + Send + 'a>>;
type Handler = for<'a> fn(&'a Ctx, &'a Params) -> Answer<'a>;

pub(crate) struct Route {
    method: &'static str,
    pattern: &'static str,
    access: Access,
    handler: Handler,
}

macro_rules! routes {
    ($( $method:literal $pattern:literal $access:ident => $handler:path ;)*) => {
        static TABLE: &[Route] = &[ $( Route {
            method: $method,
            pattern: $pattern,
            access: Access::$access,
            handler: |ctx, params| Box::pin($handler(ctx, params)),
        }, )* ];
    };
}

routes! {
    "GET" "/api/v1/health" Open => json::session::health;
    "POST" "/api/v1/setup" Open => json::session::setup;
    "POST" "/api/v1/session" Public => json::session::login;
    "GET" "/setup" Open => html::session::setup_page;
    "POST" "/setup" Open => html::session::setup;
    "GET" "/login" Public => html::session::login_page;
    "POST" "/login" Public => html::session::login;
    "GET" "/static/cairn.css" Open => html::session::css;
    "GET" "/static/cairn.js" Open => html::session::js;

    "GET" "/api/v1/session" User => json::session::current;
    "DELETE" "/api/v1/session" User => json::session::logout;
    "GET" "/api/v1/openapi.json" User => json::session::openapi;
    "GET" "/api/v1/system" User => json::system::describe;
    "PATCH" "/api/v1/system" Admin => json::system::update;
    "POST" "/api/v1/system/reboot" Admin => json::system::reboot;
    "POST" "/api/v1/system/poweroff" Admin => json::system::poweroff;
    "POST" "/api/v1/system/reset" Admin => json::system::reset;
    "POST" "/api/v1/system/reset/undo" Admin => json::system::undo_reset;
    "POST" "/api/v1/system/reset/dismiss" Admin => json::system::dismiss_reset;
    "POST" "/api/v1/system/backup" Admin => json::backup::backup;
    "POST" "/api/v1/system/restore" Admin => json::backup::restore;
    "GET" "/api/v1/cloud/pairings" Admin => json::cloud::list_pairings;
    "POST" "/api/v1/cloud/pairings" Admin => json::cloud::issue_pairing;
    "DELETE" "/api/v1/cloud/pairings/{id}" Admin => json::cloud::remove_pairing;
    "GET" "/api/v1/system/certificate" User => json::system::certificate;
    "PUT" "/api/v1/system/certificate" Admin => json::system::install_certificate;
    "DELETE" "/api/v1/system/certificate" Admin => json::system::regenerate_certificate;
    "GET" "/api/v1/network" Admin => json::system::network;
    "PUT" "/api/v1/network" Admin => json::system::change_network;
    "POST" "/api/v1/network/confirm" Admin => json::system::confirm_network;
    "GET" "/api/v1/users" Admin => json::accounts::list_users;
    "POST" "/api/v1/users" Admin => json::accounts::create_user;
    "GET" "/api/v1/users/{name}" User => json::accounts::get_user;
    "PATCH" "/api/v1/users/{name}" Admin => json::accounts::update_user;
    "DELETE" "/api/v1/users/{name}" Admin => json::accounts::delete_user;
    "GET" "/api/v1/me" User => json::accounts::me;
    "PATCH" "/api/v1/me" User => json::accounts::update_me;
    "GET" "/api/v1/me/sessions" User => json::accounts::my_sessions;
    "DELETE" "/api/v1/me/sessions/{id}" User => json::accounts::revoke_session;
    "GET" "/api/v1/groups" Admin => json::accounts::list_groups;
    "POST" "/api/v1/groups" Admin => json::accounts::create_group;
    "GET" "/api/v1/groups/{name}" Admin => json::accounts::get_group;
    "PATCH" "/api/v1/groups/{name}" Admin => json::accounts::update_group;
    "DELETE" "/api/v1/groups/{name}" Admin => json::accounts::delete_group;
    "GET" "/api/v1/shares" Admin => json::accounts::list_shares;
    "POST" "/api/v1/shares" Admin => json::accounts::create_share;
    "GET" "/api/v1/shares/{name}" Admin => json::accounts::get_share;
    "PATCH" "/api/v1/shares/{name}" Admin => json::accounts::update_share;
    "DELETE" "/api/v1/shares/{name}" Admin => json::accounts::delete_share;
    "GET" "/api/v1/disks" Admin => json::storage::disks;
    "GET" "/api/v1/volumes" Admin => json::storage::list_volumes;
    "POST" "/api/v1/volumes" Admin => json::storage::create_volume;
    "GET" "/api/v1/volumes/{name}" Admin => json::storage::get_volume;
    "DELETE" "/api/v1/volumes/{name}" Admin => json::storage::delete_volume;
    "POST" "/api/v1/volumes/{name}/replace" Admin => json::storage::replace;
    "POST" "/api/v1/volumes/{name}/fail" Admin => json::storage::fail;
    "POST" "/api/v1/volumes/{name}/scrub" Admin => json::storage::scrub;
    "POST" "/api/v1/volumes/{name}/import" Admin => json::storage::import;
    "GET" "/api/v1/jobs" Admin => json::storage::jobs;
    "GET" "/api/v1/jobs/{id}" Admin => json::storage::job;
    "GET" "/api/v1/firmware" Admin => json::firmware::status;
    "POST" "/api/v1/firmware" Admin => json::firmware::install;
    "GET" "/api/v1/firmware/check" Admin => json::firmware::check;
    "PUT" "/api/v1/firmware/source" Admin => json::firmware::set_source;
    "GET" "/api/v1/storage/events" Admin => json::storage::events;
    "POST" "/api/v1/config/repair" Console => json::system::repair_config;
    "POST" "/api/v1/config/format" Console => json::system::format_config;

    "GET" "/" User => html::session::home;
    "POST" "/logout" User => html::session::logout;
    "POST" "/system/reboot" Admin => html::session::reboot;
    "POST" "/system/poweroff" Admin => html::session::poweroff;
    "POST" "/system/reset/undo" Admin => html::session::undo_reset;
    "POST" "/system/reset/dismiss" Admin => html::session::dismiss_reset;
    "POST" "/system/reset" Admin => html::system::reset;
    "POST" "/system/backup" Admin => html::system::backup;
    "GET" "/me" User => html::accounts::me;
    "POST" "/me" User => html::accounts::update_me;
    "POST" "/me/password" User => html::accounts::change_password;
    "POST" "/me/sessions/{id}/revoke" User => html::accounts::revoke_session;
    "GET" "/users" Admin => html::accounts::users;
    "POST" "/users" Admin => html::accounts::create_user;
    "GET" "/users/{name}" Admin => html::accounts::user;
    "POST" "/users/{name}" Admin => html::accounts::update_user;
    "POST" "/users/{name}/delete" Admin => html::accounts::delete_user;
    "GET" "/groups" Admin => html::accounts::groups;
    "POST" "/groups" Admin => html::accounts::create_group;
    "POST" "/groups/{name}" Admin => html::accounts::update_group;
    "POST" "/groups/{name}/delete" Admin => html::accounts::delete_group;
    "GET" "/shares" Admin => html::accounts::shares;
    "POST" "/shares" Admin => html::accounts::create_share;
    "GET" "/shares/{name}" Admin => html::accounts::share;
    "POST" "/shares/{name}" Admin => html::accounts::update_share;
    "POST" "/shares/{name}/delete" Admin => html::accounts::delete_share;
    "GET" "/system" Admin => html::system::system;
    "POST" "/system" Admin => html::system::rename;
    "POST" "/system/network" Admin => html::system::change_network;
    "POST" "/system/network/confirm" Admin => html::system::confirm_network;
    "POST" "/system/certificate" Admin => html::system::install_certificate;
    "POST" "/system/certificate/generate" Admin => html::system::regenerate_certificate;
    "POST" "/system/firmware/source" Admin => html::firmware::set_source;
    "POST" "/system/firmware/check" Admin => html::firmware::check;
    "GET" "/storage" Admin => html::storage::storage;
    "POST" "/storage/volumes" Admin => html::storage::create;
    "POST" "/storage/volumes/{name}/delete" Admin => html::storage::delete;
    "POST" "/storage/volumes/{name}/replace" Admin => html::storage::replace;
    "POST" "/storage/volumes/{name}/fail" Admin => html::storage::fail;
    "POST" "/storage/volumes/{name}/scrub" Admin => html::storage::scrub;
    "POST" "/storage/volumes/{name}/import" Admin => html::storage::import;
}

/// Every route as (method, pattern), for the tests that walk them all and the OpenAPI check.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    TABLE.iter().map(|r| (r.method, r.pattern)).collect()
}

/// The routes answered without a session: the complete allow-list, read from the table.
pub fn public_routes() -> Vec<(&'static str, &'static str)> {
    TABLE
        .iter()
        .filter(|r| matches!(r.access, Access::Open | Access::Public))
        .map(|r| (r.method, r.pattern))
        .collect()
}

/// What a path names in the table.
enum Found {
    Route(&'static Route, Params),
    /// The path is a route, but not for this method.
    OtherMethod,
    Nothing,
}

/// The pattern's `{name}` segments if `path` fits it.
fn fit(pattern: &'static str, path: &str) -> Option<Params> {
    let mut params = Vec::new();
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return Some(Params::new(params)),
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') && !g.is_empty() => {
                params.push((&w[1..w.len() - 1], g.to_string()))
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

/// The route for `method` and `path`. No two patterns of one method fit the same path (a test keeps it so),
/// so the first that fits is the only one.
fn find(method: &str, path: &str) -> Found {
    let mut path_known = false;
    for route in TABLE {
        let Some(params) = fit(route.pattern, path) else {
            continue;
        };
        if route.method == method {
            return Found::Route(route, params);
        }
        path_known = true;
    }
    if path_known {
        Found::OtherMethod
    } else {
        Found::Nothing
    }
}

/// Answers one request; `console` marks the root-only control socket.
pub(crate) async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
    console: bool,
) -> Resp {
    let (parts, body) = req.into_parts();
    let watch = parts.extensions.get::<http::BodyWatch>().cloned();
    let path = parts.uri.path().to_string();
    let method = parts.method.clone();
    let is_api = path.starts_with("/api/");
    let mut ctx = Ctx {
        app,
        console,
        headers: parts.headers,
        tls: parts.extensions.get::<http::OverTls>().is_some(),
        peer,
        caller: None,
        body: Default::default(),
        query: parts.uri.query().unwrap_or("").to_string(),
        stream: Default::default(),
    };
    if console {
        ctx.caller = Some(console_caller());
    } else if !host_is_ours(&ctx.app, &ctx.headers) {
        return answer_error(is_api, &RequestError::BadHost.into(), &ctx);
    } else {
        match session_caller(&ctx.app, &ctx.headers) {
            Ok(caller) => ctx.caller = caller,
            Err(e) => return answer_error(is_api, &e, &ctx),
        }
    }
    let streamed = http::STREAMED_ROUTES
        .iter()
        .any(|(m, p)| method.as_str() == *m && path == *p);
    if streamed {
        *ctx.stream.lock().unwrap_or_else(|p| p.into_inner()) = Some(crate::firmware::Upload {
            body,
            chunk_deadline: watch.as_ref().map_or(http::BODY_TIMEOUT, |w| w.timeout),
            on_chunk: watch.as_ref().map(|w| w.on_chunk.clone()),
            on_read: watch.as_ref().map(|w| w.on_read.clone()),
        });
    } else if method != Method::GET && method != Method::HEAD {
        let deadline = watch.as_ref().map_or(http::BODY_TIMEOUT, |w| w.timeout);
        let admin = ctx
            .caller
            .as_ref()
            .is_some_and(|c| c.user.role == Role::Admin);
        let limit = http::LARGE_BODY_ROUTES
            .iter()
            .find(|(m, p, _)| admin && method.as_str() == *m && path == *p)
            .map_or(http::BODY_LIMIT, |(_, _, limit)| *limit);
        let read = http::read_body(body, deadline, limit).await;
        if let Some(w) = &watch {
            (w.on_read)();
        }
        match read {
            Ok(b) => ctx.body = b,
            Err(e) => return answer_error(is_api, &e, &ctx),
        }
    }
    match dispatch(&ctx, &method, &path, is_api).await {
        Ok(resp) => resp,
        Err(e) => answer_error(is_api, &e, &ctx),
    }
}

/// While the settings are unavailable: health, the page's style and script, and the console's recovery.
fn answered_without_settings(found: &Found, console: bool) -> bool {
    match found {
        Found::Route(r, _) => {
            (r.access == Access::Open && r.method == "GET" && r.pattern != "/setup")
                || (r.access == Access::Console && console)
        }
        _ => false,
    }
}

async fn dispatch(ctx: &Ctx, method: &Method, path: &str, is_api: bool) -> Result<Resp, Error> {
    let found = find(method.as_str(), path);
    if let Some(why) = &ctx.app.settings_unavailable {
        // Before anything else: a box without its settings must not look like a new one (setup) to anyone.
        if !answered_without_settings(&found, ctx.console) {
            return Err(RequestError::SettingsUnavailable(why.clone()).into());
        }
    }
    let open = matches!(&found, Found::Route(r, _) if r.access == Access::Open);
    // A new box answers only setup; after the reset pin cleared the administrator passwords, users keep
    // logging in while setup waits for an administrator password.
    let new_box = !ctx.app.accounts.setup_done() && !ctx.app.accounts.admin_password_reset();
    if !open && !ctx.console && new_box {
        return if is_api {
            Err(RequestError::SetupRequired.into())
        } else {
            Ok(http::redirect("/setup", None))
        };
    }
    let (route, params) = match found {
        Found::Route(route, params) => (route, params),
        // Without a session, nothing is revealed about which addresses exist.
        _ if ctx.caller.is_none() => return Err(RequestError::Unauthenticated.into()),
        Found::OtherMethod => return Err(RequestError::MethodNotAllowed.into()),
        Found::Nothing => return Err(RequestError::NotFound.into()),
    };
    let needs_session = matches!(route.access, Access::User | Access::Admin | Access::Console);
    if needs_session {
        ctx.caller()?;
    }
    // Login and setup forms carry no token (there is no session yet); the API checks one whenever a
    // session comes with a change.
    if *method != Method::GET && *method != Method::HEAD && (is_api || needs_session) {
        ctx.check_csrf()?;
    }
    if route.access == Access::Admin && ctx.caller()?.user.role != Role::Admin {
        return Err(RequestError::AdminOnly.into());
    }
    if route.access == Access::Console && !ctx.console {
        return Err(cairn_store::unavailable::RecoveryError::ConsoleOnly.into());
    }
    (route.handler)(ctx, &params).await
}

fn answer_error(is_api: bool, e: &Error, ctx: &Ctx) -> Resp {
    if is_api {
        http::error_json(&e.render())
    } else if matches!(e, Error::Request(RequestError::Unauthenticated)) {
        http::redirect("/login", None)
    } else {
        http::html(
            e.status(),
            html::error(e, ctx.caller.as_ref().map(|c| &c.user)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_listed_once_and_its_handler_names_fit_its_pattern() {
        let mut seen = std::collections::BTreeSet::new();
        for r in TABLE {
            assert!(
                seen.insert((r.method, r.pattern)),
                "{} {} twice",
                r.method,
                r.pattern
            );
            assert!(r.pattern.starts_with('/'), "{}", r.pattern);
        }
    }

    #[test]
    fn no_two_routes_of_one_method_fit_the_same_path() {
        let overlap = |a: &str, b: &str| {
            let (a, b): (Vec<&str>, Vec<&str>) = (a.split('/').collect(), b.split('/').collect());
            a.len() == b.len()
                && a.iter()
                    .zip(&b)
                    .all(|(x, y)| x == y || x.starts_with('{') || y.starts_with('{'))
        };
        for (i, r) in TABLE.iter().enumerate() {
            for s in &TABLE[i + 1..] {
                assert!(
                    r.method != s.method || !overlap(r.pattern, s.pattern),
                    "{} {} and {} both fit one path",
                    r.method,
                    r.pattern,
                    s.pattern
                );
            }
        }
        assert!(
            overlap("/users/{name}", "/users/me"),
            "the check sees overlaps"
        );
    }

    #[test]
    fn literal_segments_win_over_names_and_other_methods_are_told_apart() {
        match find("POST", "/api/v1/system/reboot") {
            Found::Route(r, p) => {
                assert_eq!(r.pattern, "/api/v1/system/reboot");
                assert_eq!(p.get("name"), "");
            }
            _ => panic!("not found"),
        }
        match find("POST", "/users/alice/delete") {
            Found::Route(r, p) => {
                assert_eq!(r.pattern, "/users/{name}/delete");
                assert_eq!(p.get("name"), "alice");
            }
            _ => panic!("not found"),
        }
        assert!(matches!(find("PUT", "/api/v1/health"), Found::OtherMethod));
        assert!(matches!(find("GET", "/api/v1/users/"), Found::Nothing));
        assert!(matches!(find("GET", "/api/v1/users/a/b/c"), Found::Nothing));
    }
}
