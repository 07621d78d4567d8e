//! Controllers: one per domain. Each owns the rules that span two domains (a share must sit on a volume of
//! this box; a volume with shares is not deleted), the change notification after an acknowledged change, and
//! the offload of blocking work (password hashing, settings commits, disk reads, tools) off the async
//! threads, each in one place. JSON and HTML handlers call them and only parse and render.

pub(crate) mod accounts;
pub(crate) mod backup;
pub(crate) mod certificate;
pub(crate) mod cloud;
pub(crate) mod firmware;
pub(crate) mod session;
pub(crate) mod storage;
pub(crate) mod system;

use crate::app::App;
use crate::error::Error;
use std::sync::Arc;

/// Runs blocking work on tokio's blocking pool, so the server keeps answering meanwhile.
pub(crate) async fn blocking<T, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, Error>
where
    T: Send + 'static,
    E: Into<Error> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(Error::internal)?
        .map_err(Into::into)
}

/// An acknowledged change: `f` runs off the async threads, then servers' files follow (see [`changed`]).
pub(crate) async fn change<T, E>(
    app: &Arc<App>,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, Error>
where
    T: Send + 'static,
    E: Into<Error> + Send + 'static,
{
    let done = blocking(f).await?;
    changed(app).await;
    Ok(done)
}

/// After every acknowledged change that servers' files depend on (accounts, shares, volumes, the host
/// name): renders them before the answer, so a client that was told "done" finds the share served.
pub(crate) async fn changed(app: &Arc<App>) {
    let app = app.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || app.notify_change()).await {
        log::error!("change notification failed: {e}");
    }
}
