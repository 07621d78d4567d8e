//! The box itself: health, host name, network settings on trial, power. The rules are `cairn-system`'s;
//! here the offload (settings commits) and the change notification (the SMB server announces the name).

use super::{blocking, change};
use crate::app::App;
use crate::error::Error;
use cairn_system::{NetworkSettings, NetworkView, PowerAction, Trial};
use serde_json::{json, Value};
use std::sync::Arc;

/// The health answer, also the start of the system answer and the home page's facts.
pub(crate) fn health(app: &App) -> Value {
    json!({
        "version": app.identity.version,
        "board": app.identity.board,
        "uptime_s": app.started.elapsed().as_secs(),
        "setup_done": app.accounts.setup_done(),
    })
}

/// `GET /api/v1/system`.
pub(crate) fn describe(app: &App) -> Value {
    json!({
        "hostname": app.system.hostname(),
        "version": app.identity.version,
        "board": app.identity.board,
        "uptime_s": app.started.elapsed().as_secs(),
    })
}

pub(crate) fn hostname(app: &App) -> String {
    app.system.hostname()
}

/// Stores and applies a new host name; the SMB server announces it.
pub(crate) async fn set_hostname(app: &Arc<App>, name: String) -> Result<(), Error> {
    let system = app.system.clone();
    change(app, move || system.set_hostname(&name).map(|_| ())).await
}

pub(crate) fn network(app: &App) -> NetworkView {
    app.system.network()
}

pub(crate) async fn change_network(app: &App, settings: NetworkSettings) -> Result<Trial, Error> {
    let system = app.system.clone();
    blocking(move || system.change_network(settings)).await
}

pub(crate) async fn confirm_network(app: &App) -> Result<NetworkSettings, Error> {
    let system = app.system.clone();
    blocking(move || system.confirm_network()).await
}

pub(crate) async fn power(app: &App, action: PowerAction) -> Result<(), Error> {
    let system = app.system.clone();
    blocking(move || system.power(action)).await
}
