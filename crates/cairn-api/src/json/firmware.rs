//! Firmware: the slots' status and the bundle upload.

use super::{ok, value};
use crate::auth::{Ctx, Params};
use crate::controller::firmware as ctl;
use crate::error::{Error, RequestError};
use crate::http::{self, Resp};
use cairn_firmware::install::Options;
use hyper::StatusCode;
use serde_json::json;

pub(crate) async fn status(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let mut v = value(ctl::status(&ctx.app).await?)?;
    v["update_source"] = ctl::update_source(&ctx.app).into();
    ok(v)
}

/// `POST /api/v1/firmware[?insist=1]`: the bundle as the body, answered 202 with the job once it is read.
pub(crate) async fn install(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let upload = ctx
        .stream
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .ok_or_else(|| Error::internal("the firmware body was not kept for streaming"))?;
    let insist = form_urlencoded::parse(ctx.query.as_bytes())
        .any(|(k, v)| k == "insist" && (v == "1" || v == "true"));
    if ctx
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| !t.starts_with("application/octet-stream"))
    {
        return Err(RequestError::InvalidBody(
            "A firmware bundle is sent as application/octet-stream.".into(),
        )
        .into());
    }
    let job = ctl::install(&ctx.app, upload, Options { insist }).await?;
    Ok(http::json(
        StatusCode::ACCEPTED,
        &json!({"job": value(job)?}),
    ))
}

/// `GET /api/v1/firmware/check`: the newest version the update source lists for this board.
pub(crate) async fn check(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    ok(ctl::check(&ctx.app).await?)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Source {
    url: String,
}

/// `PUT /api/v1/firmware/source` `{"url"}`: where update checks read the signed index (empty: nowhere).
pub(crate) async fn set_source(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let s: Source = super::body(ctx)?;
    ctl::set_update_source(&ctx.app, s.url).await?;
    ok(json!({"url": ctl::update_source(&ctx.app)}))
}
