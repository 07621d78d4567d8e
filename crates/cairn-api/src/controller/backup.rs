//! Settings backups and restores: the file is `cairn-backup`'s, the migrations the store's; here the box's
//! facts (board, firmware, volumes), the work off the async threads, and what follows a restore (the SMB
//! server renders the restored accounts; a restored network applies with a restart).

use super::{blocking, changed};
use crate::app::App;
use crate::error::{Error, RequestError};
use cairn_backup::{BackupInfo, Part};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The encrypted settings file and the name to save it under.
pub(crate) async fn backup(app: &Arc<App>, passphrase: String) -> Result<(Vec<u8>, String), Error> {
    let worker = app.clone();
    let bytes = blocking(move || -> Result<Vec<u8>, Error> {
        let export = worker.store.export()?;
        Ok(cairn_backup::seal(
            &export,
            &passphrase,
            BackupInfo {
                schema: export.schema,
                board: worker.identity.board.clone(),
                firmware: worker.identity.version.clone(),
                created_s: cairn_accounts::now_s(),
            },
            cairn_backup::file::ITERATIONS,
        )?)
    })
    .await?;
    let name = format!("cairn-{}-settings.cairn-backup", app.system.hostname());
    Ok((bytes, name))
}

/// The volumes a restored share may point into: this box's, and the system volume.
fn volumes(app: &App) -> BTreeSet<String> {
    let mut names = BTreeSet::from([cairn_accounts::SYSTEM_VOLUME.to_string()]);
    if let Some(storage) = &app.storage {
        if let Ok(all) = storage.volumes() {
            names.extend(all.into_iter().map(|v| v.name));
        }
    }
    names
}

/// Opens the file, migrates it, and compares it with the box's settings; with `dry_run` nothing else
/// happens, otherwise the chosen parts are written in one transaction (and the box restarts when the
/// network was restored).
pub(crate) async fn restore(
    app: &Arc<App>,
    file: Vec<u8>,
    passphrase: String,
    parts: Vec<Part>,
    dry_run: bool,
) -> Result<Value, Error> {
    let worker = app.clone();
    let restart = !dry_run && parts.contains(&Part::Network);
    let answer = blocking(move || -> Result<Value, Error> {
        let (info, backup) = cairn_backup::open(&file, &passphrase, cairn_store::SCHEMA_VERSION)?;
        let schema = worker
            .settings_schema
            .clone()
            .ok_or(RequestError::ResetUnavailable)?;
        let backup = backup.migrated(&schema)?;
        let current = worker.store.export()?;
        let plan = cairn_backup::plan(&current, &backup, &parts, &volumes(&worker));
        if !dry_run {
            worker.store.import(&plan.settings)?;
            log::warn!(
                "settings restored from a backup of {} ({} {}, schema {}): {:?}",
                info.board,
                info.firmware,
                info.created_s,
                info.schema,
                parts
            );
        }
        Ok(json!({
            "dry_run": dry_run,
            "backup": info,
            "parts": parts,
            "changes": plan.diff,
            "restarting": restart,
        }))
    })
    .await?;
    if !dry_run {
        changed(app).await;
        if restart {
            if let Err(e) = super::system::power(app, cairn_system::PowerAction::Reboot).await {
                log::warn!("restored; the box could not restart by itself ({e:?}): restart it so the network settings apply");
            }
        }
    }
    Ok(answer)
}
