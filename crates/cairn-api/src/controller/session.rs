//! First-boot setup, login (with its throttle) and logout.

use super::blocking;
use crate::auth::{is_local_network, Ctx};
use crate::error::{Error, RequestError};
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

/// Checks a password (off the async threads) behind the throttle, which counts only wrong passwords.
pub(crate) async fn login(ctx: &Ctx, username: String, password: String) -> Result<Opened, Error> {
    ctx.check_same_origin()?;
    let source = ctx.peer.ip();
    if let Some(wait) = ctx.app.throttle.check(&username, source) {
        return Err(RequestError::RateLimited(wait.as_secs().max(1)).into());
    }
    let accounts = ctx.app.accounts.clone();
    let client = ctx.client();
    let name = username.clone();
    let result = blocking(move || accounts.login(&username, &password, &client)).await;
    match &result {
        Ok(_) => ctx.app.throttle.succeeded(&name, source),
        Err(Error::Account(AccountError::BadCredentials)) => ctx.app.throttle.failed(&name, source),
        Err(_) => {}
    }
    result
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
