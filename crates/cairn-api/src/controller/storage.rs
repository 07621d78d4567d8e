//! Disks, volumes, jobs and the storage event log. The work is the storage manager's; the rules that span
//! domains are here: a volume with shares is not deleted, and deleting or importing a volume changes what
//! the share servers serve.

use super::{blocking, changed};
use crate::app::App;
use crate::error::{Error, RequestError};
use cairn_storage::{CreateRequest, DiskView, Event, JobView, Storage, StorageError, VolumeView};
use std::sync::Arc;

/// How many jobs and events the lists show.
pub(crate) const JOBS_LISTED: usize = 50;
pub(crate) const EVENTS_LISTED: usize = 200;
pub(crate) const EVENTS_ON_PAGE: usize = 30;

fn storage(app: &App) -> Result<Storage, Error> {
    app.storage
        .clone()
        .ok_or(Error::Request(RequestError::StorageUnavailable))
}

/// Runs storage work (disk reads, mdadm) off the async threads.
async fn with_storage<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(Storage) -> Result<T, StorageError> + Send + 'static,
) -> Result<T, Error> {
    let s = storage(app)?;
    blocking(move || f(s)).await
}

/// Names of the shares placed on `volume`.
pub(crate) fn shares_on(app: &App, volume: &str) -> Result<Vec<String>, Error> {
    Ok(app
        .accounts
        .shares()?
        .into_iter()
        .filter(|s| s.volume == volume)
        .map(|s| s.name)
        .collect())
}

/// Every disk by bay. A development server with a board file lists the workstation's matching disks
/// read-only; without one, none.
pub(crate) async fn disks(app: &App) -> Result<serde_json::Value, Error> {
    let value = match (&app.storage, &app.board) {
        (Some(_), _) => serde_json::to_value(with_storage(app, |s| s.disks()).await?),
        (None, Some(board)) => serde_json::to_value(cairn_storage::discover(&app.sys_root, board)),
        (None, None) => Ok(serde_json::json!([])),
    };
    value.map_err(Error::internal)
}

pub(crate) async fn volumes(app: &App) -> Result<Vec<VolumeView>, Error> {
    with_storage(app, |s| s.volumes()).await
}

pub(crate) async fn volume(app: &App, name: &str) -> Result<VolumeView, Error> {
    let name = name.to_string();
    with_storage(app, move |s| s.volume(&name)).await
}

pub(crate) async fn create(app: &App, req: CreateRequest) -> Result<JobView, Error> {
    with_storage(app, move |s| s.create(req)).await
}

/// Deletes a volume with the typed confirmation, refused while shares live on it.
pub(crate) async fn delete(
    app: &Arc<App>,
    name: &str,
    confirm: Option<String>,
) -> Result<(), Error> {
    let shares = shares_on(app, name)?;
    let name = name.to_string();
    let result = with_storage(app, move |s| s.delete(&name, confirm.as_deref(), &shares)).await;
    changed(app).await;
    result
}

pub(crate) async fn replace(
    app: &App,
    name: &str,
    failed: String,
    with: String,
    confirm: Option<String>,
) -> Result<JobView, Error> {
    let name = name.to_string();
    with_storage(app, move |s| {
        s.replace(&name, &failed, &with, confirm.as_deref())
    })
    .await
}

/// Marks a member failed; `by` names who did it in the event log.
pub(crate) async fn fail(
    app: &App,
    name: &str,
    disk: String,
    by: String,
) -> Result<VolumeView, Error> {
    let name = name.to_string();
    with_storage(app, move |s| s.fail(&name, &disk, &by)).await
}

pub(crate) async fn scrub(app: &App, name: &str) -> Result<JobView, Error> {
    let name = name.to_string();
    with_storage(app, move |s| s.scrub(&name)).await
}

/// Imports a found array with its data; its shares (if any were kept) are served again.
pub(crate) async fn import(
    app: &Arc<App>,
    name: &str,
    as_name: Option<String>,
) -> Result<VolumeView, Error> {
    let name = name.to_string();
    let result = with_storage(app, move |s| s.import(&name, as_name.as_deref())).await;
    changed(app).await;
    result
}

pub(crate) async fn jobs(app: &App) -> Result<Vec<JobView>, Error> {
    with_storage(app, |s| s.jobs(JOBS_LISTED)).await
}

pub(crate) async fn job(app: &App, id: &str) -> Result<JobView, Error> {
    let id = id.to_string();
    with_storage(app, move |s| s.job(&id)).await
}

pub(crate) async fn events(app: &App, limit: usize) -> Result<Vec<Event>, Error> {
    with_storage(app, move |s| s.events(limit)).await
}

/// Everything the Storage page shows, read in one pass off the async threads.
pub(crate) async fn overview(
    app: &App,
) -> Result<(Vec<DiskView>, Vec<VolumeView>, Vec<Event>), Error> {
    with_storage(app, |s| {
        Ok((s.disks()?, s.volumes()?, s.events(EVENTS_ON_PAGE)?))
    })
    .await
}

/// Names of the mounted data volumes, where new shares may go (read from the kernel off the async threads).
pub(crate) async fn mounted_volumes(app: &App) -> Vec<String> {
    let Some(storage) = app.storage.clone() else {
        return vec![];
    };
    blocking(move || Ok::<_, Error>(storage.mounted_roots().into_keys().collect()))
        .await
        .unwrap_or_default()
}
