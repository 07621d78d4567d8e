//! Remote access as the box keeps it: pairing codes and paired devices. Local and immediate, relay or not
//! (`cairn-cloud` holds the rules and the outbox the agent sends later).

use super::blocking;
use crate::app::App;
use crate::error::{Error, RequestError};
use cairn_cloud::{Pairing, Pairings};
use serde_json::{json, Value};
use std::sync::Arc;

fn pairings(app: &App) -> Result<Pairings, Error> {
    app.pairings
        .clone()
        .ok_or_else(|| RequestError::ResetUnavailable.into())
}

/// A pairing as the API shows it: times in RFC 3339 (never before the clock was known good).
pub(crate) fn view(p: &Pairing, now_s: u64) -> Value {
    json!({
        "id": p.id,
        "state": if p.expired(now_s) { "expired" } else { match p.state {
            cairn_cloud::PairingState::Pending => "pending",
            cairn_cloud::PairingState::Paired => "paired",
        } },
        "created_at": cairn_system::clock::rfc3339(p.created_s),
        "expires_at": cairn_system::clock::rfc3339(p.expires_s),
        "device": p.device,
    })
}

pub(crate) async fn list(app: &Arc<App>) -> Result<Value, Error> {
    let p = pairings(app)?;
    let now = cairn_system::clock::now_s();
    let all = blocking(move || p.list()).await?;
    Ok(Value::Array(all.iter().map(|x| view(x, now)).collect()))
}

/// Issues a code: stored with its real expiry and shown once, or an error and nothing stored.
pub(crate) async fn issue(app: &Arc<App>) -> Result<Value, Error> {
    let p = pairings(app)?;
    let now = cairn_system::clock::now_s();
    let issued = blocking(move || p.issue(now)).await?;
    let mut v = view(&issued.pairing, now);
    v["code"] = issued.code.into();
    Ok(v)
}

/// Removes a pairing locally at once; the relay is told when it is next reachable.
pub(crate) async fn remove(app: &Arc<App>, id: String) -> Result<Value, Error> {
    let p = pairings(app)?;
    let now = cairn_system::clock::now_s();
    let removed = blocking(move || p.remove(&id)).await?;
    Ok(json!({"removed": view(&removed, now), "relay": "told when next reachable"}))
}
