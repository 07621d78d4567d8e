//! `POST /api/v1/system/backup` and `POST /api/v1/system/restore` (shapes in `shared/api-contract.md`).

use super::{body, ok};
use crate::auth::{Ctx, Params};
use crate::controller::backup as ctl;
use crate::error::{Error, RequestError};
use crate::http::{self, Resp};
use cairn_backup::Part;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupRequest {
    passphrase: String,
}

/// The settings, encrypted with the passphrase in the body, as a file to save.
pub(crate) async fn backup(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let req: BackupRequest = body(ctx)?;
    let (bytes, name) = ctl::backup(&ctx.app, req.passphrase).await?;
    Ok(http::download(bytes, &name))
}

/// The backup file as the body and its passphrase in `X-Cairn-Passphrase`; `?dry_run=1` answers what would
/// change, `?parts=network,users,shares` restores only those.
pub(crate) async fn restore(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let mut dry_run = false;
    let mut parts = String::new();
    for (k, v) in form_urlencoded::parse(ctx.query.as_bytes()) {
        match k.as_ref() {
            "dry_run" => dry_run = v == "1" || v == "true",
            "parts" => parts = v.into_owned(),
            _ => {}
        }
    }
    let parts = Part::parse_list(&parts).map_err(RequestError::RestoreParts)?;
    let passphrase = ctx
        .headers
        .get("x-cairn-passphrase")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or(RequestError::PassphraseMissing)?
        .to_string();
    ok(ctl::restore(&ctx.app, ctx.body.to_vec(), passphrase, parts, dry_run).await?)
}
