//! The JSON resources under /api/v1: users, groups, shares, the caller's own record and sessions, system.

use crate::error::ApiError;
use crate::http::{self, Resp};
use crate::routes::{Caller, Ctx};
use crate::system;
use cairn_accounts::{
    Group, Level, NewShare, NewUser, Role, Share, SharePatch, User, UserPatch, UserView,
};
use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

/// Runs CPU-heavy account work (password hashing) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, cairn_accounts::AccountError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::from)
}

fn ok(value: Value) -> Result<Resp, ApiError> {
    Ok(http::json(StatusCode::OK, &value))
}

fn created(value: Value) -> Result<Resp, ApiError> {
    Ok(http::json(StatusCode::CREATED, &value))
}

fn user_json(u: &User) -> Value {
    serde_json::to_value(UserView::from(u)).expect("serialisable")
}

pub(crate) fn share_json(s: &Share) -> Value {
    serde_json::to_value(s).expect("serialisable")
}

fn group_json(g: &Group) -> Value {
    json!({"name": g.name, "members": g.members})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGroup {
    name: String,
    #[serde(default)]
    members: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupPatch {
    members: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MePatch {
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub password: Option<String>,
    pub current_password: Option<String>,
}

/// Routes under /api/v1 other than health, setup and session. `segs` is the path after `/api/v1/`.
pub(crate) async fn route(ctx: &Ctx<'_>, method: &Method, segs: &[&str]) -> Result<Resp, ApiError> {
    if let Some(answer) = crate::storage::route(ctx, method, segs).await {
        return answer;
    }
    let accounts = &ctx.app.accounts;
    match (method, segs) {
        (&Method::GET, ["users"]) => {
            ctx.admin()?;
            ok(Value::Array(
                accounts.users()?.iter().map(user_json).collect(),
            ))
        }
        (&Method::POST, ["users"]) => {
            ctx.admin()?;
            let new: NewUser = http::parse_json(&ctx.body)?;
            let a = accounts.clone();
            let user = blocking(move || a.create_user(new)).await?;
            ctx.app.changed();
            created(user_json(&user))
        }
        (&Method::GET, ["users", name]) => {
            let c = ctx.caller()?;
            if c.user.role != Role::Admin && c.user.name != *name {
                return Err(ApiError::admin_only());
            }
            let u = accounts.require_user(name)?;
            ok(user_json(&u))
        }
        (&Method::PATCH, ["users", name]) => {
            ctx.admin()?;
            let patch: UserPatch = http::parse_json(&ctx.body)?;
            let (a, n) = (accounts.clone(), name.to_string());
            let user = blocking(move || a.update_user(&n, patch)).await?;
            ctx.app.changed();
            ok(user_json(&user))
        }
        (&Method::DELETE, ["users", name]) => {
            ctx.admin()?;
            accounts.delete_user(name)?;
            ctx.app.changed();
            ok(json!({"deleted": name}))
        }
        (&Method::GET, ["me"]) => me(ctx),
        (&Method::PATCH, ["me"]) => {
            let patch: MePatch = http::parse_json(&ctx.body)?;
            update_me(ctx, patch).await?;
            me(ctx)
        }
        (&Method::GET, ["me", "sessions"]) => {
            let c = ctx.caller()?;
            let list: Vec<Value> = accounts
                .sessions_of(&c.user.name)?
                .iter()
                .map(|s| json!({"id": s.id, "client": s.client, "created_s": s.created_s, "last_used_s": s.last_used_s, "current": s.id == c.session.id}))
                .collect();
            ok(Value::Array(list))
        }
        (&Method::DELETE, ["me", "sessions", id]) => {
            let c = ctx.caller()?;
            if accounts.revoke_session(&c.user.name, id)? {
                ok(json!({"revoked": id}))
            } else {
                Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "session.not_found",
                    "You have no session with that id.",
                    "List your sessions with GET /api/v1/me/sessions.",
                ))
            }
        }
        (&Method::GET, ["groups"]) => {
            ctx.admin()?;
            ok(Value::Array(
                accounts.groups()?.iter().map(group_json).collect(),
            ))
        }
        (&Method::POST, ["groups"]) => {
            ctx.admin()?;
            let g: NewGroup = http::parse_json(&ctx.body)?;
            let group = accounts.create_group(&g.name, &g.members)?;
            ctx.app.changed();
            created(group_json(&group))
        }
        (&Method::GET, ["groups", name]) => {
            ctx.admin()?;
            ok(group_json(&accounts.require_group(name)?))
        }
        (&Method::PATCH, ["groups", name]) => {
            ctx.admin()?;
            let p: GroupPatch = http::parse_json(&ctx.body)?;
            let group = accounts.update_group(name, &p.members)?;
            ctx.app.changed();
            ok(group_json(&group))
        }
        (&Method::DELETE, ["groups", name]) => {
            ctx.admin()?;
            accounts.delete_group(name)?;
            ctx.app.changed();
            ok(json!({"deleted": name}))
        }
        (&Method::GET, ["shares"]) => {
            ctx.admin()?;
            ok(Value::Array(
                accounts.shares()?.iter().map(share_json).collect(),
            ))
        }
        (&Method::POST, ["shares"]) => {
            ctx.admin()?;
            let new: NewShare = http::parse_json(&ctx.body)?;
            check_volume(ctx, new.volume.as_deref())?;
            let share = accounts.create_share(new)?;
            ctx.app.changed();
            created(share_json(&share))
        }
        (&Method::GET, ["shares", name]) => {
            ctx.admin()?;
            let share = accounts.require_share(name)?;
            let mut v = share_json(&share);
            // Space the share's folder takes: counted up to 100,000 entries (`used_complete` false beyond).
            let used = match share_dir(ctx, &share) {
                Some(dir) => tokio::task::spawn_blocking(move || {
                    cairn_storage::manager::used_bytes(&dir, 100_000)
                })
                .await
                .ok(),
                None => None,
            };
            if let Some((bytes, complete)) = used {
                v["used_bytes"] = json!(bytes);
                v["used_complete"] = json!(complete);
            }
            ok(v)
        }
        (&Method::PATCH, ["shares", name]) => {
            ctx.admin()?;
            let patch: SharePatch = http::parse_json(&ctx.body)?;
            let share = accounts.update_share(name, patch)?;
            ctx.app.changed();
            ok(share_json(&share))
        }
        (&Method::DELETE, ["shares", name]) => {
            ctx.admin()?;
            accounts.delete_share(name)?;
            ctx.app.changed();
            ok(json!({"deleted": name}))
        }
        (&Method::GET, ["system"]) => {
            ctx.caller()?;
            ok(system::describe(ctx.app)?)
        }
        (&Method::PATCH, ["system"]) => {
            ctx.admin()?;
            let patch: system::SystemPatch = http::parse_json(&ctx.body)?;
            system::update(ctx.app, patch)?;
            ok(system::describe(ctx.app)?)
        }
        (&Method::GET, ["network"]) => {
            ctx.admin()?;
            ok(crate::network::describe(ctx.app)?)
        }
        (&Method::PUT, ["network"]) => {
            ctx.admin()?;
            let settings: crate::network::NetworkSettings = http::parse_json(&ctx.body)?;
            ok(crate::network::change(&ctx.shared, settings)?)
        }
        (&Method::POST, ["network", "confirm"]) => {
            ctx.admin()?;
            ok(crate::network::confirm(ctx.app)?)
        }
        (_, ["network"] | ["network", "confirm"]) => Err(ApiError::method()),
        (
            _,
            ["users"]
            | ["users", _]
            | ["me"]
            | ["me", "sessions"]
            | ["me", "sessions", _]
            | ["groups"]
            | ["groups", _]
            | ["shares"]
            | ["shares", _]
            | ["system"],
        ) => Err(ApiError::method()),
        _ => Err(ApiError::not_found()),
    }
}

/// The caller's own record, with the shares they can reach.
pub(crate) fn me(ctx: &Ctx) -> Result<Resp, ApiError> {
    let c = ctx.caller()?;
    let shares: serde_json::Map<String, Value> = ctx
        .app
        .accounts
        .access_of(&c.user.name)?
        .into_iter()
        .map(|(k, v)| (k, json!(if v == Level::Write { "write" } else { "read" })))
        .collect();
    let mut v = user_json(&c.user);
    v["shares"] = Value::Object(shares);
    ok(v)
}

/// Self-service: e-mail, full name, or password (with the current one); other sessions end on a new password.
pub(crate) async fn update_me(ctx: &Ctx<'_>, patch: MePatch) -> Result<(), ApiError> {
    let c: &Caller = ctx.caller()?;
    let name = c.user.name.clone();
    if patch.email.is_some() || patch.full_name.is_some() {
        let p = UserPatch {
            email: patch.email.clone(),
            full_name: patch.full_name.clone(),
            ..Default::default()
        };
        ctx.app.accounts.update_user(&name, p)?;
    }
    if let Some(new) = patch.password {
        let current = patch.current_password.unwrap_or_default();
        let (a, keep) = (ctx.app.accounts.clone(), c.session.id.clone());
        blocking(move || a.change_own_password(&name, &current, &new, &keep)).await?;
    }
    ctx.app.changed();
    Ok(())
}

/// A share may only be placed on the system volume or a volume of this box.
pub(crate) fn check_volume(ctx: &Ctx, volume: Option<&str>) -> Result<(), ApiError> {
    match volume {
        None => Ok(()),
        Some(v) if v == cairn_accounts::SYSTEM_VOLUME => Ok(()),
        Some(v) if ctx.app.storage.as_ref().is_some_and(|s| s.exists(v)) => Ok(()),
        Some(v) => Err(cairn_accounts::AccountError::NoSuchVolume(v.to_string()).into()),
    }
}

/// A share's folder when its volume is mounted and the folder exists.
pub(crate) fn share_dir(ctx: &Ctx, share: &Share) -> Option<std::path::PathBuf> {
    let root = if share.volume == cairn_accounts::SYSTEM_VOLUME {
        Some(std::path::PathBuf::from("/config/shares"))
    } else {
        ctx.app
            .storage
            .as_ref()
            .and_then(|s| s.mounted_roots().remove(&share.volume))
    }?;
    let dir = root.join(&share.path);
    dir.is_dir().then_some(dir)
}
