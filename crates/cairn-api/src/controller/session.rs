//! First-boot setup, login (with its throttle) and logout.

use super::blocking;
use crate::auth::{is_local_network, Ctx};
use crate::error::{Error, RequestError};
use crate::throttle::{Refusal, Verdict};
use cairn_accounts::{AccountError, Session, User};

/// A new session: its record, the cookie token and the user.
pub(crate) type Opened = (Session, String, User);

/// Creates the first administrator and logs them in: only from the local network, never from another site.
pub(crate) async fn setup(
    ctx: &Ctx,
    username: String,
    password: String,
    email: String,
) -> Result<Opened, Error> {
    if !is_local_network(ctx.peer) {
        return Err(RequestError::SetupNotLocal.into());
    }
    ctx.check_same_origin()?;
    let accounts = ctx.app.accounts.clone();
    let client = ctx.client();
    blocking(move || {
        let user = accounts.setup(&username, &password, &email)?;
        let (session, token) = accounts.open_session(&user.name, &client)?;
        Ok::<_, AccountError>((session, token, user))
    })
    .await
}

/// Checks a password behind the throttle (see [`crate::throttle`]): counted before it is hashed, refused
/// without hashing when held back or busy.
pub(crate) async fn login(ctx: &Ctx, username: String, password: String) -> Result<Opened, Error> {
    ctx.check_same_origin()?;
    let accounts = ctx.app.accounts.clone();
    let client = ctx.client();
    let name = username.clone();
    gated(ctx, &name, "login", move || {
        accounts.login(&username, &password, &client)
    })
    .await
}

/// Runs a password check `check` for `account` through the throttle, off the async threads: the attempt is
/// admitted (or refused with a code and `Retry-After`), then moved into the blocking task, so its hashing
/// permit is held until the hash really ends even if the client hangs up.
pub(crate) async fn gated<T: Send + 'static>(
    ctx: &Ctx,
    account: &str,
    what: &'static str,
    check: impl FnOnce() -> Result<T, AccountError> + Send + 'static,
) -> Result<T, Error> {
    let attempt = ctx
        .app
        .throttle
        .admit(account, ctx.peer.ip(), what)
        .await
        .map_err(refused)?;
    blocking(move || {
        let result = check();
        attempt.finish(match &result {
            Ok(_) => Verdict::Right,
            Err(AccountError::BadCredentials | AccountError::WrongCurrentPassword) => {
                Verdict::Wrong
            }
            Err(_) => Verdict::Unknown,
        });
        result
    })
    .await
}

fn refused(r: Refusal) -> Error {
    let seconds = |d: std::time::Duration| d.as_secs_f64().ceil().max(1.0) as u64;
    match r {
        Refusal::Throttled(wait) => RequestError::RateLimited(seconds(wait)),
        Refusal::InFlight => RequestError::LoginInProgress,
        Refusal::Busy(wait) => RequestError::LoginBusy(seconds(wait)),
    }
    .into()
}

/// Ends the caller's session (the one whose cookie came with the request).
pub(crate) async fn logout(ctx: &Ctx) -> Result<(), Error> {
    ctx.caller()?;
    if let Some(token) = ctx.session_token() {
        let accounts = ctx.app.accounts.clone();
        blocking(move || accounts.logout(&token)).await?;
    }
    Ok(())
}
