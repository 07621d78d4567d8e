//! Disks, volumes, jobs and the storage event log.

use super::{body, ok, optional_body, value};
use crate::auth::{Ctx, Params};
use crate::controller::storage as ctl;
use crate::error::Error;
use crate::http::{self, Resp};
use cairn_storage::{CreateRequest, JobView};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Confirm {
    #[serde(default)]
    confirm: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Replace {
    failed: String,
    with: String,
    #[serde(default)]
    confirm: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fail {
    disk: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Import {
    #[serde(default, rename = "as")]
    as_name: Option<String>,
}

/// Long work answers 202 with the job to follow.
fn job_answer(job: JobView) -> Result<Resp, Error> {
    Ok(http::json(
        StatusCode::ACCEPTED,
        &json!({"job": value(job)?}),
    ))
}

pub(crate) async fn disks(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    ok(ctl::disks(&ctx.app).await?)
}

pub(crate) async fn list_volumes(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    ok(ctl::volumes(&ctx.app).await?)
}

pub(crate) async fn create_volume(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let req: CreateRequest = body(ctx)?;
    job_answer(ctl::create(&ctx.app, req).await?)
}

pub(crate) async fn get_volume(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    ok(ctl::volume(&ctx.app, p.get("name")).await?)
}

pub(crate) async fn delete_volume(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    let c: Confirm = optional_body(ctx)?;
    ctl::delete(&ctx.app, p.get("name"), c.confirm).await?;
    ok(json!({"deleted": p.get("name")}))
}

pub(crate) async fn replace(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    let r: Replace = body(ctx)?;
    job_answer(ctl::replace(&ctx.app, p.get("name"), r.failed, r.with, r.confirm).await?)
}

pub(crate) async fn fail(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    let f: Fail = body(ctx)?;
    let by = ctx.caller()?.user.name.clone();
    ok(ctl::fail(&ctx.app, p.get("name"), f.disk, by).await?)
}

pub(crate) async fn scrub(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    job_answer(ctl::scrub(&ctx.app, p.get("name")).await?)
}

pub(crate) async fn import(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    let i: Import = optional_body(ctx)?;
    ok(ctl::import(&ctx.app, p.get("name"), i.as_name).await?)
}

pub(crate) async fn jobs(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    ok(ctl::jobs(&ctx.app).await?)
}

/// A storage job, or a firmware install's (ids `fw-N`).
pub(crate) async fn job(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    if let Some(job) = crate::controller::firmware::job(&ctx.app, p.get("id")) {
        return ok(job);
    }
    ok(ctl::job(&ctx.app, p.get("id")).await?)
}

pub(crate) async fn events(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    ok(ctl::events(&ctx.app, ctl::EVENTS_LISTED).await?)
}
