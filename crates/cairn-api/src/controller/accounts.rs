//! Users, groups, shares and everyone's own record. Cross-domain rules: a share sits on the system volume or
//! on a volume of this box; a share's space is measured on its volume, in the background.

use super::{blocking, change, changed};
use crate::app::App;
use crate::auth::{Caller, Ctx};
use crate::error::Error;
use cairn_accounts::{
    AccountError, Group, Level, NewShare, NewUser, Share, SharePatch, User, UserPatch,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::usage::ShareUsages;
pub(crate) use crate::usage::{age, Figure, ShareUsage};

/// Where shares on the small system volume live.
const SYSTEM_VOLUME_ROOT: &str = "/config/shares";

/// The caller's changes to their own record: e-mail and name, or the password with the current one.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct MePatch {
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub password: Option<String>,
    pub current_password: Option<String>,
}

pub(crate) fn users(app: &App) -> Result<Vec<User>, Error> {
    Ok(app.accounts.users()?)
}

pub(crate) fn user(app: &App, name: &str) -> Result<User, Error> {
    Ok(app.accounts.require_user(name)?)
}

pub(crate) async fn create_user(app: &Arc<App>, new: NewUser) -> Result<User, Error> {
    let accounts = app.accounts.clone();
    change(app, move || accounts.create_user(new)).await
}

pub(crate) async fn update_user(
    app: &Arc<App>,
    name: &str,
    patch: UserPatch,
) -> Result<User, Error> {
    let (accounts, name) = (app.accounts.clone(), name.to_string());
    change(app, move || accounts.update_user(&name, patch)).await
}

pub(crate) async fn delete_user(app: &Arc<App>, name: &str) -> Result<(), Error> {
    let (accounts, name) = (app.accounts.clone(), name.to_string());
    change(app, move || accounts.delete_user(&name)).await
}

/// The caller's record as stored now (a change just made shows), and the shares they can reach.
pub(crate) fn me(app: &App, caller: &Caller) -> Result<(User, BTreeMap<String, Level>), Error> {
    let user = app
        .accounts
        .user(&caller.user.name)?
        .unwrap_or_else(|| caller.user.clone());
    let shares = app.accounts.access_of(&user.name)?;
    Ok((user, shares))
}

/// Self-service: e-mail, full name, or password (with the current one); other sessions end on a new password.
pub(crate) async fn update_me(ctx: &Ctx, patch: MePatch) -> Result<(), Error> {
    let caller = ctx.caller()?;
    let app = &ctx.app;
    let name = caller.user.name.clone();
    if patch.email.is_some() || patch.full_name.is_some() {
        let p = UserPatch {
            email: patch.email.clone(),
            full_name: patch.full_name.clone(),
            ..Default::default()
        };
        let (accounts, name) = (app.accounts.clone(), name.clone());
        blocking(move || accounts.update_user(&name, p)).await?;
    }
    if let Some(new) = patch.password {
        let current = patch.current_password.unwrap_or_default();
        let (accounts, keep) = (ctx.app.accounts.clone(), caller.session.id.clone());
        let account = name.clone();
        // The current password is guessed like a login (a stolen session must not try passwords faster).
        super::session::gated(ctx, &account, "current password", move || {
            accounts.change_own_password(&name, &current, &new, &keep)
        })
        .await?;
    }
    changed(&ctx.app).await;
    Ok(())
}

pub(crate) fn sessions_of(app: &App, user: &str) -> Result<Vec<cairn_accounts::Session>, Error> {
    Ok(app.accounts.sessions_of(user)?)
}

/// Ends one of the caller's own sessions; false when they have none with that id.
pub(crate) async fn revoke_session(app: &Arc<App>, user: &str, id: &str) -> Result<bool, Error> {
    let (accounts, user, id) = (app.accounts.clone(), user.to_string(), id.to_string());
    blocking(move || accounts.revoke_session(&user, &id)).await
}

pub(crate) fn groups(app: &App) -> Result<Vec<Group>, Error> {
    Ok(app.accounts.groups()?)
}

pub(crate) fn group(app: &App, name: &str) -> Result<Group, Error> {
    Ok(app.accounts.require_group(name)?)
}

pub(crate) async fn create_group(
    app: &Arc<App>,
    name: &str,
    members: Vec<String>,
) -> Result<Group, Error> {
    let (accounts, name) = (app.accounts.clone(), name.to_string());
    change(app, move || accounts.create_group(&name, &members)).await
}

pub(crate) async fn update_group(
    app: &Arc<App>,
    name: &str,
    members: Vec<String>,
) -> Result<Group, Error> {
    let (accounts, name) = (app.accounts.clone(), name.to_string());
    change(app, move || accounts.update_group(&name, &members)).await
}

pub(crate) async fn delete_group(app: &Arc<App>, name: &str) -> Result<(), Error> {
    let (accounts, name) = (app.accounts.clone(), name.to_string());
    change(app, move || accounts.delete_group(&name)).await
}

pub(crate) fn shares(app: &App) -> Result<Vec<Share>, Error> {
    Ok(app.accounts.shares()?)
}

pub(crate) fn share(app: &App, name: &str) -> Result<Share, Error> {
    Ok(app.accounts.require_share(name)?)
}

/// A share may only be placed on the system volume or a volume of this box.
fn check_volume(app: &App, volume: Option<&str>) -> Result<(), Error> {
    match volume {
        None => Ok(()),
        Some(v) if v == cairn_accounts::SYSTEM_VOLUME => Ok(()),
        Some(v) if app.storage.as_ref().is_some_and(|s| s.exists(v)) => Ok(()),
        Some(v) => Err(AccountError::NoSuchVolume(v.to_string()).into()),
    }
}

pub(crate) async fn create_share(app: &Arc<App>, new: NewShare) -> Result<Share, Error> {
    check_volume(app, new.volume.as_deref())?;
    let accounts = app.accounts.clone();
    change(app, move || accounts.create_share(new)).await
}

pub(crate) async fn update_share(
    app: &Arc<App>,
    name: &str,
    patch: SharePatch,
) -> Result<Share, Error> {
    let (accounts, name) = (app.accounts.clone(), name.to_string());
    change(app, move || accounts.update_share(&name, patch)).await
}

pub(crate) async fn delete_share(app: &Arc<App>, name: &str) -> Result<(), Error> {
    let (accounts, name) = (app.accounts.clone(), name.to_string());
    change(app, move || accounts.delete_share(&name).map(|_| ())).await
}

/// Every share with its folder, if its volume is mounted now: the small system volume or a mounted data volume.
fn places(app: &App) -> Vec<(String, Option<PathBuf>)> {
    let mut roots = app
        .storage
        .as_ref()
        .map(|s| s.mounted_roots())
        .unwrap_or_default();
    roots.insert(
        cairn_accounts::SYSTEM_VOLUME.to_string(),
        PathBuf::from(SYSTEM_VOLUME_ROOT),
    );
    match app.accounts.shares() {
        Ok(shares) => shares
            .into_iter()
            .map(|s| {
                let dir = roots.get(&s.volume).map(|root| root.join(&s.path));
                (s.name, dir)
            })
            .collect(),
        Err(e) => {
            log::error!("share usage: the shares cannot be read: {e}");
            vec![]
        }
    }
}

/// The background measurer of share usage, started on first use; it holds the app only while it reads where
/// the shares are.
fn usages(app: &Arc<App>) -> &ShareUsages {
    let weak = Arc::downgrade(app);
    app.share_usages
        .start(move || weak.upgrade().map(|app| places(&app)));
    &app.share_usages
}

/// The last measured usage of each share, at once (never a walk while answering); asks for a new
/// measurement when one is missing or old.
pub(crate) fn share_usages(app: &Arc<App>, shares: &[Share]) -> Vec<Option<Figure>> {
    let names: Vec<&str> = shares.iter().map(|s| s.name.as_str()).collect();
    usages(app).last(&names)
}

/// One share's usage measured now if that takes at most a moment, else the last figure.
pub(crate) async fn share_usage(app: &Arc<App>, share: &Share) -> Option<Figure> {
    usages(app).fresh(&share.name).await
}
