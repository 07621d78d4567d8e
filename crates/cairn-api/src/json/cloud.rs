//! `/api/v1/cloud/pairings` (shapes in `shared/api-contract.md`).

use super::{created, ok};
use crate::auth::{Ctx, Params};
use crate::controller::cloud as ctl;
use crate::error::Error;
use crate::http::Resp;

pub(crate) async fn list_pairings(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    ok(ctl::list(&ctx.app).await?)
}

pub(crate) async fn issue_pairing(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    created(ctl::issue(&ctx.app).await?)
}

pub(crate) async fn remove_pairing(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    ok(ctl::remove(&ctx.app, p.get("id").to_string()).await?)
}
