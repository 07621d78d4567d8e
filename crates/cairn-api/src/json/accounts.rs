//! Users, groups, shares, and the caller's own record and sessions.

use super::{body, created, ok};
use crate::auth::{Ctx, Params};
use crate::controller::accounts::{self as ctl, MePatch};
use crate::error::{Error, RequestError};
use crate::http::Resp;
use cairn_accounts::{Group, Level, NewShare, NewUser, SharePatch, User, UserPatch, UserView};
use serde::Deserialize;
use serde_json::{json, Value};

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

fn user_json(u: &User) -> UserView {
    UserView::from(u)
}

fn group_json(g: &Group) -> Value {
    json!({"name": g.name, "members": g.members})
}

pub(crate) async fn list_users(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    ok(ctl::users(&ctx.app)?
        .iter()
        .map(user_json)
        .collect::<Vec<_>>())
}

pub(crate) async fn create_user(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let new: NewUser = body(ctx)?;
    created(user_json(&ctl::create_user(&ctx.app, new).await?))
}

pub(crate) async fn get_user(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    let name = p.get("name");
    ctx.is_self_or_admin(name)?;
    ok(user_json(&ctl::user(&ctx.app, name)?))
}

pub(crate) async fn update_user(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    let patch: UserPatch = body(ctx)?;
    ok(user_json(
        &ctl::update_user(&ctx.app, p.get("name"), patch).await?,
    ))
}

pub(crate) async fn delete_user(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    ctl::delete_user(&ctx.app, p.get("name")).await?;
    ok(json!({"deleted": p.get("name")}))
}

pub(crate) async fn me(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let (user, access) = ctl::me(&ctx.app, ctx.caller()?)?;
    let shares: serde_json::Map<String, Value> = access
        .into_iter()
        .map(|(k, v)| (k, json!(if v == Level::Write { "write" } else { "read" })))
        .collect();
    let mut v = serde_json::to_value(user_json(&user)).map_err(Error::internal)?;
    v["shares"] = Value::Object(shares);
    ok(v)
}

pub(crate) async fn update_me(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    let patch: MePatch = body(ctx)?;
    ctl::update_me(ctx, patch).await?;
    me(ctx, p).await
}

pub(crate) async fn my_sessions(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let c = ctx.caller()?;
    let list: Vec<Value> = ctl::sessions_of(&ctx.app, &c.user.name)?
        .iter()
        .map(|s| json!({"id": s.id, "client": s.client, "created_s": s.created_s, "last_used_s": s.last_used_s, "current": s.id == c.session.id}))
        .collect();
    ok(list)
}

pub(crate) async fn revoke_session(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    let c = ctx.caller()?;
    if ctl::revoke_session(&ctx.app, &c.user.name, p.get("id")).await? {
        ok(json!({"revoked": p.get("id")}))
    } else {
        Err(RequestError::SessionNotFound.into())
    }
}

pub(crate) async fn list_groups(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    ok(ctl::groups(&ctx.app)?
        .iter()
        .map(group_json)
        .collect::<Vec<_>>())
}

pub(crate) async fn create_group(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let g: NewGroup = body(ctx)?;
    created(group_json(
        &ctl::create_group(&ctx.app, &g.name, g.members).await?,
    ))
}

pub(crate) async fn get_group(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    ok(group_json(&ctl::group(&ctx.app, p.get("name"))?))
}

pub(crate) async fn update_group(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    let g: GroupPatch = body(ctx)?;
    ok(group_json(
        &ctl::update_group(&ctx.app, p.get("name"), g.members).await?,
    ))
}

pub(crate) async fn delete_group(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    ctl::delete_group(&ctx.app, p.get("name")).await?;
    ok(json!({"deleted": p.get("name")}))
}

pub(crate) async fn list_shares(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    ok(ctl::shares(&ctx.app)?)
}

pub(crate) async fn create_share(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let new: NewShare = body(ctx)?;
    created(ctl::create_share(&ctx.app, new).await?)
}

/// A share with the space its folder takes (`used_complete` false when the count stopped at its limit),
/// measured at `used_measured_s` (seconds since the epoch), `used_age_s` ago.
pub(crate) async fn get_share(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    let share = ctl::share(&ctx.app, p.get("name"))?;
    let mut v = serde_json::to_value(&share).map_err(Error::internal)?;
    if let Some(ctl::Figure {
        usage: ctl::ShareUsage::Counted { bytes, complete },
        measured_s,
    }) = ctl::share_usage(&ctx.app, &share).await
    {
        v["used_bytes"] = json!(bytes);
        v["used_complete"] = json!(complete);
        v["used_measured_s"] = json!(measured_s);
        v["used_age_s"] = json!(cairn_accounts::now_s().saturating_sub(measured_s));
    }
    ok(v)
}

pub(crate) async fn update_share(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    let patch: SharePatch = body(ctx)?;
    ok(ctl::update_share(&ctx.app, p.get("name"), patch).await?)
}

pub(crate) async fn delete_share(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    ctl::delete_share(&ctx.app, p.get("name")).await?;
    ok(json!({"deleted": p.get("name")}))
}
