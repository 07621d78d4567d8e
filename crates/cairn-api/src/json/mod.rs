//! The JSON API's handlers: each takes the request apart, calls its controller and renders the answer in
//! the shapes of `shared/api-contract.md`. Access is the route table's; rules are the controllers'.

pub(crate) mod accounts;
pub(crate) mod backup;
pub(crate) mod cloud;
pub(crate) mod firmware;
pub(crate) mod session;
pub(crate) mod storage;
pub(crate) mod system;

use crate::auth::Ctx;
use crate::error::Error;
use crate::http::{self, Resp};
use hyper::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

fn value(v: impl Serialize) -> Result<Value, Error> {
    serde_json::to_value(v).map_err(Error::internal)
}

fn ok(v: impl Serialize) -> Result<Resp, Error> {
    Ok(http::json(StatusCode::OK, &value(v)?))
}

fn created(v: impl Serialize) -> Result<Resp, Error> {
    Ok(http::json(StatusCode::CREATED, &value(v)?))
}

/// The request's JSON body as `T`.
fn body<T: DeserializeOwned>(ctx: &Ctx) -> Result<T, Error> {
    http::parse_json(&ctx.body)
}

/// A JSON body that may be left out entirely.
fn optional_body<T: DeserializeOwned + Default>(ctx: &Ctx) -> Result<T, Error> {
    if ctx.body.iter().all(|b| b.is_ascii_whitespace()) {
        Ok(T::default())
    } else {
        body(ctx)
    }
}
