//! Health, first-boot setup, the session (login, who am I, logout) and the API's own description.

use super::{body, ok};
use crate::auth::{Ctx, Params};
use crate::controller::{self, session::Opened};
use crate::error::Error;
use crate::http::{self, Resp};
use cairn_accounts::UserView;
use hyper::header::SET_COOKIE;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

/// The OpenAPI description the box serves; a test checks it against the route table.
const OPENAPI: &[u8] = include_bytes!("../../static/openapi.json");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupRequest {
    username: String,
    password: String,
    #[serde(default)]
    email: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    password: String,
}

fn session_answer(ctx: &Ctx, status: StatusCode, (session, token, user): Opened) -> Resp {
    let mut resp = http::json(
        status,
        &json!({"user": UserView::from(&user), "csrf_token": session.csrf_token}),
    );
    resp.headers_mut()
        .insert(SET_COOKIE, ctx.session_cookie(&token, &session));
    resp
}

pub(crate) async fn health(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    ok(controller::system::health(&ctx.app))
}

pub(crate) async fn setup(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let req: SetupRequest = body(ctx)?;
    let opened = controller::session::setup(ctx, req.username, req.password, req.email).await?;
    Ok(session_answer(ctx, StatusCode::CREATED, opened))
}

pub(crate) async fn login(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let req: LoginRequest = body(ctx)?;
    let opened = controller::session::login(ctx, req.username, req.password).await?;
    Ok(session_answer(ctx, StatusCode::OK, opened))
}

pub(crate) async fn current(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let c = ctx.caller()?;
    ok(json!({"user": UserView::from(&c.user), "csrf_token": c.session.csrf_token}))
}

pub(crate) async fn logout(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    controller::session::logout(ctx).await?;
    let mut resp = http::json(StatusCode::OK, &json!({"logged_out": true}));
    resp.headers_mut()
        .insert(SET_COOKIE, http::clear_session_cookie());
    Ok(resp)
}

pub(crate) async fn openapi(_: &Ctx, _: &Params) -> Result<Resp, Error> {
    Ok(http::static_file("application/json", OPENAPI))
}
