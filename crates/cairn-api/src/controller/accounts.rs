//! Users, groups, shares and everyone's own record. Cross-domain rules: a share sits on the system volume or
//! on a volume of this box; a share's space is measured on its volume.

use super::{blocking, change, changed};
use crate::app::App;
use crate::auth::Caller;
use crate::error::Error;
use cairn_accounts::{
    AccountError, Group, Level, NewShare, NewUser, Share, SharePatch, User, UserPatch,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Entries walked at most when measuring a share's space (beyond: shown as a floor).
const USAGE_WALK_LIMIT: usize = 100_000;
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
pub(crate) async fn update_me(
    app: &Arc<App>,
    caller: &Caller,
    patch: MePatch,
) -> Result<(), Error> {
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
        let (accounts, keep) = (app.accounts.clone(), caller.session.id.clone());
        blocking(move || accounts.change_own_password(&name, &current, &new, &keep)).await?;
    }
    changed(app).await;
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

/// How much a share's folder holds, as the pages and the API show it.
pub(crate) enum ShareUsage {
    /// Bytes counted; `complete` is false when the count stopped at its limit (then a floor).
    Counted { bytes: u64, complete: bool },
    /// The volume is mounted but the folder is not made yet.
    NoFolder,
    /// The share's volume is not mounted (missing, being created).
    VolumeUnavailable,
}

/// Where each volume's shares live now: the mounted data volumes and the small system volume.
fn volume_roots(app: &App) -> BTreeMap<String, PathBuf> {
    let mut roots = app
        .storage
        .as_ref()
        .map(|s| s.mounted_roots())
        .unwrap_or_default();
    roots.insert(
        cairn_accounts::SYSTEM_VOLUME.to_string(),
        PathBuf::from(SYSTEM_VOLUME_ROOT),
    );
    roots
}

/// Measures the shares' folders in one pass off the async threads, reading once which volumes are mounted.
pub(crate) async fn share_usages(app: &App, shares: &[Share]) -> Vec<ShareUsage> {
    let roots = volume_roots(app);
    let places: Vec<Option<PathBuf>> = shares
        .iter()
        .map(|s| roots.get(&s.volume).map(|root| root.join(&s.path)))
        .collect();
    let measure = move || {
        places
            .into_iter()
            .map(|dir| match dir {
                None => ShareUsage::VolumeUnavailable,
                Some(dir) if !dir.is_dir() => ShareUsage::NoFolder,
                Some(dir) => {
                    let (bytes, complete) =
                        cairn_storage::manager::used_bytes(&dir, USAGE_WALK_LIMIT);
                    ShareUsage::Counted { bytes, complete }
                }
            })
            .collect()
    };
    tokio::task::spawn_blocking(measure)
        .await
        .unwrap_or_else(|e| {
            log::error!("measuring shares failed: {e}");
            shares.iter().map(|_| ShareUsage::NoFolder).collect()
        })
}
