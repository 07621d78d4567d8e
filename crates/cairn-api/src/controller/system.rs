//! The box itself: health, host name, network settings on trial, power. The rules are `cairn-system`'s;
//! here the offload (settings commits) and the change notification (the SMB server announces the name).

use super::{blocking, change};
use crate::app::App;
use crate::error::{Error, RequestError};
use cairn_reset::{LastReset, Resets, Tier, Trigger};
use cairn_store::unavailable::{RecoveryError, FORMAT_CONFIRM};
use cairn_system::{NetworkSettings, NetworkView, PowerAction, Trial};
use serde_json::{json, Value};
use std::sync::Arc;

/// The health answer, also the start of the system answer and the home page's facts. `settings` says whether
/// the box has its settings, and if not why (the same code and hint every refused request answers with).
pub(crate) fn health(app: &App) -> Value {
    let settings = match &app.settings_unavailable {
        Some(why) => {
            let e = Error::from(RequestError::SettingsUnavailable(why.clone())).render();
            json!({"available": false, "code": e.code, "message": e.message, "hint": e.hint})
        }
        None => json!({
            "available": true,
            "damaged_records": app.accounts.damaged_records(),
            "schema": cairn_store::SCHEMA_VERSION,
            "migrated": app.settings_opening.as_ref().map(|o| &o.migrated),
            "restored_snapshot": app.settings_opening.as_ref().and_then(|o| o.restored.as_ref()),
        }),
    };
    json!({
        "version": app.identity.version,
        "board": app.identity.board,
        "uptime_s": app.started.elapsed().as_secs(),
        "setup_done": app.settings_unavailable.is_none() && app.accounts.setup_done(),
        // The reset pin cleared the administrator passwords: setup sets one again.
        "admin_password_reset": app.settings_unavailable.is_none() && app.accounts.admin_password_reset(),
        "settings": settings,
        // The root slot U-Boot booted (cairn.slot=), absent on a box or server booted without one.
        "slot": app.firmware.as_ref().and_then(|f| f.layout.booted().ok()).map(|s| s.lower()),
    })
}

/// The recovery, when the settings are unavailable and the daemon knows how to reach the partition.
fn recovery(app: &App) -> Result<&dyn crate::app::ConfigRecovery, Error> {
    if app.settings_unavailable.is_none() {
        return Err(RecoveryError::NotNeeded.into());
    }
    app.config_recovery
        .as_deref()
        .ok_or_else(|| RecoveryError::NoPartition.into())
}

/// After a recovery: the answer goes out first, then the daemon starts again on the recovered settings.
fn restart_soon(app: &Arc<App>) {
    let app = app.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        app.restart.notify_one();
    });
}

/// The console's repair (e2fsck, mount, settings open), off the async threads.
pub(crate) async fn repair_config(app: &Arc<App>) -> Result<String, Error> {
    recovery(app)?;
    let worker = app.clone();
    let message = blocking(move || recovery(&worker)?.repair().map_err(Error::from)).await?;
    log::warn!("settings partition repaired from the console: {message}");
    restart_soon(app);
    Ok(message)
}

/// The console's format, only with the typed confirmation word.
pub(crate) async fn format_config(app: &Arc<App>, confirm: String) -> Result<String, Error> {
    recovery(app)?;
    if confirm != FORMAT_CONFIRM {
        return Err(RecoveryError::ConfirmRequired {
            word: FORMAT_CONFIRM.to_string(),
        }
        .into());
    }
    let worker = app.clone();
    let message = blocking(move || recovery(&worker)?.format().map_err(Error::from)).await?;
    log::warn!("settings partition formatted from the console: {message}");
    restart_soon(app);
    Ok(message)
}

/// `GET /api/v1/system`, with the served certificate's fingerprint where there is one (so `cairn ctl
/// system` shows it on the console).
pub(crate) fn describe(app: &App) -> Value {
    let mut v = json!({
        "hostname": app.system.hostname(),
        "version": app.identity.version,
        "board": app.identity.board,
        "uptime_s": app.started.elapsed().as_secs(),
    });
    if let Ok(info) = super::certificate::current(app) {
        v["tls_fingerprint_sha256"] = info.fingerprint_sha256.into();
    }
    v["reset_pin"] = json!(cairn_reset::held::read(&app.reset_pin_file));
    v["last_reset"] = json!(last_reset(app));
    v
}

/// The last reset while it can be undone or has not been dismissed.
pub(crate) fn last_reset(app: &App) -> Option<LastReset> {
    app.resets.as_ref().and_then(|r| r.last())
}

fn resets(app: &App) -> Result<Arc<Resets>, Error> {
    app.resets
        .clone()
        .ok_or_else(|| RequestError::ResetUnavailable.into())
}

/// The dashboard's reset: the same tiers as the pin, only with the box's name typed as confirmation; the
/// settings from before are kept for undo and the box restarts into the reset settings.
pub(crate) async fn reset(app: &Arc<App>, tier: &str, confirm: &str) -> Result<LastReset, Error> {
    let tier = Tier::parse_reset(tier).ok_or(RequestError::ResetTier)?;
    let hostname = app.system.hostname();
    if confirm != hostname {
        return Err(RequestError::ResetConfirm(hostname).into());
    }
    let resets = resets(app)?;
    let last =
        blocking(move || resets.apply(tier, Trigger::Dashboard, cairn_accounts::now_s())).await?;
    if let Err(e) = power(app, PowerAction::Reboot).await {
        log::warn!("reset applied; the box could not restart by itself ({e:?}): restart it to use the reset settings");
    }
    Ok(last)
}

/// Puts back the settings from before the last reset, then restarts so the network and name apply.
pub(crate) async fn undo_reset(app: &Arc<App>) -> Result<LastReset, Error> {
    let resets = resets(app)?;
    let schema = app
        .settings_schema
        .clone()
        .ok_or(RequestError::ResetUnavailable)?;
    let last = change(app, move || resets.undo(&schema)).await?;
    if let Err(e) = power(app, PowerAction::Reboot).await {
        log::warn!("reset undone; the box could not restart by itself ({e:?})");
    }
    Ok(last)
}

/// Forgets the last reset and the settings kept from before it.
pub(crate) async fn dismiss_reset(app: &Arc<App>) -> Result<(), Error> {
    let resets = resets(app)?;
    blocking(move || resets.dismiss()).await
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
