//! System settings the daemon owns: the host name. Stored in the settings store, applied to the running box.

use crate::error::ApiError;
use crate::App;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

const TABLE: &str = "system";
const HOSTNAME_KEY: &str = "hostname";
/// The name a new box answers to until its owner picks one.
pub const DEFAULT_HOSTNAME: &str = "cairn";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemPatch {
    pub hostname: Option<String>,
}

/// RFC 1123 label: what DHCP, mDNS and SMB all accept.
pub fn validate_hostname(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "system.hostname_invalid",
            format!("{name:?} is not a valid host name."),
            "Use 1 to 63 letters, digits and '-', not starting or ending with '-'.",
        ))
    }
}

/// The stored host name (lowercase), or the default.
pub fn hostname(app: &App) -> String {
    app.store
        .table(TABLE)
        .ok()
        .and_then(|t| t.get::<String>(HOSTNAME_KEY).ok().flatten())
        .unwrap_or_else(|| DEFAULT_HOSTNAME.to_string())
}

pub fn describe(app: &App) -> Result<Value, ApiError> {
    Ok(json!({
        "hostname": hostname(app),
        "version": app.identity.version,
        "board": app.identity.board,
        "uptime_s": app.started.elapsed().as_secs(),
    }))
}

/// Stores the change durably, then applies it to the running system.
pub fn update(app: &App, patch: SystemPatch) -> Result<(), ApiError> {
    if let Some(name) = patch.hostname {
        let name = name.to_ascii_lowercase();
        validate_hostname(&name)?;
        let table = app.store.table(TABLE).map_err(ApiError::internal)?;
        table.put(HOSTNAME_KEY, &name).map_err(ApiError::internal)?;
        app.store.commit().map_err(ApiError::internal)?;
        apply_hostname(app, &name);
        app.changed();
    }
    Ok(())
}

/// Sets the kernel's host name on the box (not on a development host).
pub fn apply_hostname(app: &App, name: &str) {
    if app.power == crate::PowerControl::Init {
        if let Err(e) = std::process::Command::new("/bin/hostname")
            .arg(name)
            .status()
        {
            log::warn!("cannot set host name: {e}");
        }
    }
}
