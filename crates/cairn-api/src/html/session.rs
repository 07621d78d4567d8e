//! The pages around the session: first-boot setup, login, logout, the home page with power, static files.

use crate::auth::{is_local_network, Ctx, Params};
use crate::controller;
use crate::error::{Error, RequestError};
use crate::http::{self, Resp};
use cairn_accounts::{AccountError, Role};
use cairn_system::PowerAction;
use hyper::StatusCode;

const CSS: &[u8] = include_bytes!("../../static/cairn.css");
const JS: &[u8] = include_bytes!("../../static/cairn.js");

pub(crate) async fn css(_: &Ctx, _: &Params) -> Result<Resp, Error> {
    Ok(http::static_file("text/css; charset=utf-8", CSS))
}

pub(crate) async fn js(_: &Ctx, _: &Params) -> Result<Resp, Error> {
    Ok(http::static_file("text/javascript; charset=utf-8", JS))
}

/// Home with the new session's cookie.
fn logged_in(ctx: &Ctx, opened: controller::session::Opened) -> Resp {
    let (session, token, _) = opened;
    http::redirect("/", Some(ctx.session_cookie(&token, &session)))
}

pub(crate) async fn setup_page(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    if ctx.app.accounts.setup_done() {
        return Ok(http::redirect("/login", None));
    }
    if !is_local_network(ctx.peer) {
        return Err(RequestError::SetupNotLocal.into());
    }
    Ok(http::html(
        StatusCode::OK,
        super::setup(None, "", "", ctx.app.accounts.admin_password_reset()),
    ))
}

pub(crate) async fn setup(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    if ctx.app.accounts.setup_done() {
        return Ok(http::redirect("/login", None));
    }
    let form = super::Form::of(ctx);
    let username = form.trimmed("username");
    let email = form.trimmed("email");
    let password = form.get("password");
    let again = |e: &Error| {
        http::html(
            e.status(),
            super::setup(
                Some(e),
                &username,
                &email,
                ctx.app.accounts.admin_password_reset(),
            ),
        )
    };
    if password != form.get("password_again") {
        return Ok(again(&RequestError::PasswordMismatch.into()));
    }
    match controller::session::setup(ctx, username.clone(), password, email.clone()).await {
        Ok(opened) => Ok(logged_in(ctx, opened)),
        // Refusals about where the request came from are not the form's fault: an error page says so.
        Err(e @ Error::Request(RequestError::SetupNotLocal | RequestError::CrossOrigin)) => Err(e),
        Err(e) if e.status().is_client_error() => Ok(again(&e)),
        Err(e) => Err(e),
    }
}

pub(crate) async fn login_page(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    if ctx.caller.is_some() {
        return Ok(http::redirect("/", None));
    }
    Ok(http::html(
        StatusCode::OK,
        super::login(None, "", ctx.app.accounts.admin_password_reset()),
    ))
}

pub(crate) async fn login(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let form = super::Form::of(ctx);
    let username = form.trimmed("username");
    let password = form.get("password");
    match controller::session::login(ctx, username.clone(), password).await {
        Ok(opened) => Ok(logged_in(ctx, opened)),
        // Wrong, held back or busy: the form again, with what to do (and `Retry-After` when it applies).
        Err(
            e @ (Error::Account(AccountError::BadCredentials)
            | Error::Request(
                RequestError::RateLimited(_)
                | RequestError::LoginInProgress
                | RequestError::LoginBusy(_),
            )),
        ) => Ok(http::with_retry_after(
            http::html(
                e.status(),
                super::login(Some(&e), &username, ctx.app.accounts.admin_password_reset()),
            ),
            Some(&e),
        )),
        Err(e) => Err(e),
    }
}

pub(crate) async fn logout(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    controller::session::logout(ctx).await?;
    Ok(http::redirect("/login", Some(http::clear_session_cookie())))
}

pub(crate) async fn home(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let c = ctx.caller()?;
    if c.user.role != Role::Admin {
        return Ok(http::redirect("/me", None));
    }
    let health = controller::system::health(&ctx.app);
    // A failed update is told at the front page until the next update (none on a server without slots).
    let last_update = controller::firmware::status(&ctx.app)
        .await
        .ok()
        .and_then(|v| v.last_update);
    let last_reset = controller::system::last_reset(&ctx.app);
    Ok(http::html(
        StatusCode::OK,
        super::home(
            &c.user,
            &c.session,
            &health,
            last_update.as_ref(),
            last_reset.as_ref(),
        ),
    ))
}

/// Puts back the settings from before the last reset; the box restarts with them.
pub(crate) async fn undo_reset(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    controller::system::undo_reset(&ctx.app).await?;
    Ok(http::html(
        StatusCode::ACCEPTED,
        super::notice(
            &ctx.caller()?.user,
            "Settings restored",
            "The settings from before the reset are back. The box is restarting so its network and name apply: reload this page in a minute (at the box's old address if it had a fixed one).",
        ),
    ))
}

/// Keeps the reset and forgets the settings from before it.
pub(crate) async fn dismiss_reset(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    controller::system::dismiss_reset(&ctx.app).await?;
    Ok(http::redirect("/", None))
}

/// Asks for a restart or power-off and says what happens next.
async fn power(ctx: &Ctx, action: PowerAction, title: &str, text: &str) -> Result<Resp, Error> {
    controller::system::power(&ctx.app, action).await?;
    Ok(http::html(
        StatusCode::ACCEPTED,
        super::notice(&ctx.caller()?.user, title, text),
    ))
}

pub(crate) async fn reboot(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let text = "The box is restarting. This page will not update by itself: reload it in a minute.";
    power(ctx, PowerAction::Reboot, "Restarting", text).await
}

pub(crate) async fn poweroff(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let text = "The box is shutting down cleanly. It is safe to unplug it once its lights are off.";
    power(ctx, PowerAction::PowerOff, "Powering off", text).await
}
