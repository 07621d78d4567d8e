//! The box: its description and host name, network settings, power.

use super::{body, ok};
use crate::auth::{Ctx, Params};
use crate::controller::certificate as cert;
use crate::controller::system as ctl;
use crate::error::Error;
use crate::http::{self, Resp};
use cairn_system::{NetworkSettings, NetworkView, PowerAction};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemPatch {
    hostname: Option<String>,
}

/// The confirmed settings, with the change on trial under `pending` and its deadline as `confirm_by`.
fn network_json(view: NetworkView) -> Result<Value, Error> {
    let mut v = serde_json::to_value(view.confirmed).map_err(Error::internal)?;
    if let Some(trial) = view.pending {
        v["pending"] = serde_json::to_value(&trial.settings).map_err(Error::internal)?;
        v["confirm_by"] = trial.confirm_by_s.into();
    }
    Ok(v)
}

pub(crate) async fn describe(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    ok(ctl::describe(&ctx.app))
}

pub(crate) async fn update(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    let patch: SystemPatch = body(ctx)?;
    if let Some(name) = patch.hostname {
        ctl::set_hostname(&ctx.app, name).await?;
    }
    describe(ctx, p).await
}

async fn power(ctx: &Ctx, action: PowerAction, name: &str) -> Result<Resp, Error> {
    ctl::power(&ctx.app, action).await?;
    Ok(http::json(
        StatusCode::ACCEPTED,
        &json!({"action": name, "state": "started"}),
    ))
}

pub(crate) async fn reboot(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    power(ctx, PowerAction::Reboot, "reboot").await
}

pub(crate) async fn poweroff(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    power(ctx, PowerAction::PowerOff, "poweroff").await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetRequest {
    tier: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /api/v1/system/reset`: `{"tier":"network|settings","confirm":"<host name>"}`; the box restarts.
pub(crate) async fn reset(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let req: ResetRequest = body(ctx)?;
    let last = ctl::reset(&ctx.app, &req.tier, &req.confirm).await?;
    Ok(http::json(
        StatusCode::ACCEPTED,
        &json!({"reset": last, "state": "restarting"}),
    ))
}

/// `POST /api/v1/system/reset/undo`: the settings from before the last reset come back; the box restarts.
pub(crate) async fn undo_reset(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let last = ctl::undo_reset(&ctx.app).await?;
    Ok(http::json(
        StatusCode::ACCEPTED,
        &json!({"undone": last, "state": "restarting"}),
    ))
}

/// `POST /api/v1/system/reset/dismiss`: keeps the reset, forgets the settings from before it.
pub(crate) async fn dismiss_reset(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    ctl::dismiss_reset(&ctx.app).await?;
    ok(json!({"dismissed": true}))
}

pub(crate) async fn network(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    ok(network_json(ctl::network(&ctx.app))?)
}

pub(crate) async fn change_network(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let settings: NetworkSettings = body(ctx)?;
    let trial = ctl::change_network(&ctx.app, settings).await?;
    ok(json!({"confirm_by": trial.confirm_by_s, "settings": trial.settings}))
}

pub(crate) async fn confirm_network(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    ok(ctl::confirm_network(&ctx.app).await?)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FormatRequest {
    #[serde(default)]
    confirm: Option<String>,
}

/// `POST /api/v1/config/repair` (console only): check, repair and remount the config partition.
pub(crate) async fn repair_config(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    ok(json!({"repaired": true, "message": ctl::repair_config(&ctx.app).await?}))
}

/// `POST /api/v1/config/format` (console only): `{"confirm": word}` erases the settings partition.
pub(crate) async fn format_config(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let req: FormatRequest = if ctx.body.is_empty() {
        FormatRequest::default()
    } else {
        body(ctx)?
    };
    let message = ctl::format_config(&ctx.app, req.confirm.unwrap_or_default()).await?;
    ok(json!({"formatted": true, "message": message}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificateUpload {
    certificate: String,
    key: String,
}

pub(crate) async fn certificate(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    ok(cert::view(&cert::current(&ctx.app)?))
}

pub(crate) async fn install_certificate(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let upload: CertificateUpload = body(ctx)?;
    ok(cert::view(
        &cert::install(&ctx.app, upload.certificate, upload.key).await?,
    ))
}

pub(crate) async fn regenerate_certificate(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    ok(cert::view(&cert::regenerate(&ctx.app).await?))
}
