//! Firmware: the upload streamed from the connection into the install engine, the install's job, and the
//! slots' status.
//!
//! The engine runs on a blocking thread and reads the body through a bounded channel (a few chunks), so an
//! upload of any size holds a fixed amount of memory. The engine checks the header first: a refusal is
//! answered 4xx with nothing written. Once the whole bundle is read (its digests matched) the request is
//! answered 202 with the job, which goes on with the read-back and the activation.

use crate::app::App;
use crate::error::{Error, RequestError};
use crate::firmware::{lock, Firmware, FirmwareJob, Upload, JOB_PREFIX};
use cairn_firmware::install::{self, Installed, Options, Step};
use http_body_util::BodyExt;
use hyper::body::Bytes;
use std::io::Read;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

/// Chunks of the body in flight between the connection and the engine.
const CHANNEL_CHUNKS: usize = 4;
/// What a refused upload still reads before answering: clients that send the whole body before reading an
/// answer (most do) would otherwise see a reset instead of the refusal. Beyond it the connection is closed.
const DRAIN_LIMIT: u64 = 512 * 1024 * 1024;

/// The body as the engine reads it: chunks from the connection, end of file when the body ended (or the
/// connection gave up, which the engine then sees as a truncated bundle).
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Where the engine is, as the request waiting for it needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Milestone {
    Reading,
    /// The whole bundle is read and matched its digests: the request may be answered 202.
    Streamed,
}

/// Streams the upload into the engine. Answers once the bundle is read: the job (still running its
/// read-back and activation), or the refusal.
pub(crate) async fn install(
    app: &Arc<App>,
    upload: Upload,
    options: Options,
) -> Result<FirmwareJob, Error> {
    let Some(fw) = app.firmware.clone() else {
        return Err(RequestError::FirmwareUnavailable.into());
    };
    let job = app.firmware_jobs.start()?;
    let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
    let (milestone_tx, mut milestone) = watch::channel(Milestone::Reading);
    let engine = {
        let (app, job) = (app.clone(), job.clone());
        tokio::task::spawn_blocking(move || {
            let result =
                run_engine(&app, &fw, &job, rx, options, &milestone_tx).map_err(Error::from);
            let mut j = lock(&job);
            match &result {
                Ok(done) => {
                    j.state = "done";
                    j.percent = 100.0;
                    j.message = format!(
                        "Version {} is installed in slot {}; it runs after a reboot",
                        done.version,
                        done.slot.lower().to_uppercase()
                    );
                }
                Err(e) => {
                    let rendered = e.render();
                    j.state = "failed";
                    j.message = rendered.message.clone();
                    j.error = Some(rendered.body()["error"].clone());
                }
            }
            drop(j);
            app.firmware_jobs.finish();
            result
        })
    };
    let pumped = pump(upload, tx).await;
    // Wait for the whole bundle to be read, or for the engine to end (a refusal).
    while *milestone.borrow() != Milestone::Streamed {
        if milestone.changed().await.is_err() {
            break;
        }
    }
    if *milestone.borrow() == Milestone::Streamed {
        return Ok(lock(&job).clone());
    }
    match engine.await {
        Ok(Ok(_)) => Ok(lock(&job).clone()),
        Ok(Err(_)) if pumped == Pumped::TimedOut => Err(RequestError::Timeout.into()),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(Error::internal(e)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pumped {
    Whole,
    TimedOut,
    Broken,
}

/// Passes the body to the engine chunk by chunk, each within the chunk deadline. When the engine stops
/// reading (a refusal), the rest is read and dropped up to [`DRAIN_LIMIT`] so the client reads the answer.
async fn pump(upload: Upload, tx: mpsc::Sender<Bytes>) -> Pumped {
    let Upload {
        mut body,
        chunk_deadline,
        on_chunk,
        on_read,
    } = upload;
    let mut tx = Some(tx);
    let mut drained = 0u64;
    let outcome = loop {
        let frame = match tokio::time::timeout(chunk_deadline, body.frame()).await {
            Err(_) => break Pumped::TimedOut,
            Ok(None) => break Pumped::Whole,
            Ok(Some(Err(_))) => break Pumped::Broken,
            Ok(Some(Ok(frame))) => frame,
        };
        if let Some(f) = &on_chunk {
            f();
        }
        let Ok(data) = frame.into_data() else {
            continue;
        };
        match &tx {
            Some(sender) => {
                if sender.send(data).await.is_err() {
                    tx = None;
                }
            }
            None => {
                drained += data.len() as u64;
                if drained > DRAIN_LIMIT {
                    break Pumped::Broken;
                }
            }
        }
    };
    drop(tx);
    if let Some(f) = &on_read {
        f();
    }
    outcome
}

fn run_engine(
    app: &App,
    fw: &Firmware,
    job: &Mutex<FirmwareJob>,
    rx: mpsc::Receiver<Bytes>,
    options: Options,
    milestone: &watch::Sender<Milestone>,
) -> Result<Installed, install::InstallError> {
    let mut input = ChannelReader {
        rx,
        current: Bytes::new(),
    };
    let volumes: Vec<String> = app
        .storage
        .as_ref()
        .and_then(|s| s.volumes().ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v.mounted && !v.uuid.is_empty())
        .map(|v| v.uuid)
        .collect();
    let mut on_step = |step: &Step| {
        let mut j = lock(job);
        match step {
            Step::Accepted {
                version,
                slot,
                total: _,
            } => {
                j.version = Some(version.clone());
                j.slot = Some(slot.lower().to_string());
                j.message = format!(
                    "Writing version {version} into slot {}",
                    slot.lower().to_uppercase()
                );
            }
            Step::Written { done, total } => {
                j.percent = 90.0 * *done as f32 / (*total).max(1) as f32;
            }
            Step::Streamed => {
                j.percent = 90.0;
                j.message = "Reading the new slot back".into();
                let _ = milestone.send(Milestone::Streamed);
            }
            Step::Verified => j.percent = 95.0,
            Step::TrailerWritten => {
                j.percent = 97.0;
                j.message = "Keeping a snapshot of the settings".into();
            }
            Step::SettingsKept => {
                j.percent = 98.0;
                j.message = "Trying the new firmware's settings migrations on a copy".into();
            }
            Step::MigrationsPreviewed => {
                j.percent = 99.0;
                j.message = "Making the new slot bootable".into();
            }
            Step::SlotDisabled | Step::TrailerZeroed | Step::Activated => {}
        }
        true
    };
    let result = install::install(
        &fw.layout,
        fw.settings.as_ref(),
        &volumes,
        &mut input,
        options,
        &mut on_step,
    );
    if let Err(e) = &result {
        log::warn!("firmware install failed: {e}");
    } else {
        log::info!("firmware install done: {result:?}");
    }
    result
}

/// The slots, the pending update and the last update's outcome.
pub(crate) async fn status(app: &App) -> Result<install::status::FirmwareView, Error> {
    let Some(fw) = app.firmware.clone() else {
        return Err(RequestError::FirmwareUnavailable.into());
    };
    super::blocking(move || Ok::<_, Error>(install::status::status(&fw.layout))).await
}

/// A firmware job by id, if it is one.
pub(crate) fn job(app: &App, id: &str) -> Option<FirmwareJob> {
    id.starts_with(JOB_PREFIX)
        .then(|| app.firmware_jobs.get(id))
        .flatten()
}

/// How long an update check waits for its source.
const CHECK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// The file holding the update source's URL, on the settings partition.
fn source_file(fw: &Firmware) -> std::path::PathBuf {
    fw.layout.firmware_dir.join("update-source")
}

/// The configured update source, if any.
pub(crate) fn update_source(app: &App) -> Option<String> {
    let fw = app.firmware.as_ref()?;
    std::fs::read_to_string(source_file(fw))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Sets (or with an empty `url`, clears) the update source. Only http:// and https:// URLs are kept.
pub(crate) async fn set_update_source(app: &App, url: String) -> Result<(), Error> {
    let Some(fw) = app.firmware.clone() else {
        return Err(RequestError::FirmwareUnavailable.into());
    };
    let url = url.trim().to_string();
    if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://"))
        || url.len() > 2048
        || url.chars().any(char::is_whitespace)
    {
        return Err(RequestError::InvalidBody(
            "The update source is an http:// or https:// URL of a signed update index.".into(),
        )
        .into());
    }
    super::blocking(move || {
        install::write_durably(&source_file(&fw), url.as_bytes()).map_err(Error::from)
    })
    .await
}

/// Reads the signed update index at the configured source and compares it with the running version. Writes
/// nothing: without a network the answer says so and the box stays as it is.
pub(crate) async fn check(app: &App) -> Result<serde_json::Value, Error> {
    let Some(fw) = app.firmware.clone() else {
        return Err(RequestError::FirmwareUnavailable.into());
    };
    let Some(url) = update_source(app) else {
        return Err(RequestError::NoUpdateSource.into());
    };
    let bytes = crate::fetch::get(&url, CHECK_DEADLINE)
        .await
        .map_err(RequestError::UpdateCheck)?;
    let running_identity = app.identity.version.clone();
    let source = url.clone();
    super::blocking(move || {
        let keys = cairn_firmware::TrustedKeys::load_dir(&fw.layout.keys_dir)
            .map_err(|e| RequestError::UpdateCheck(e.to_string()))?;
        let index = install::index::read_index(&bytes, &keys).map_err(|e| {
            RequestError::UpdateCheck(format!("the update index at {source} was refused: {e}"))
        })?;
        let running = fw
            .layout
            .booted()
            .ok()
            .and_then(|slot| install::slot::manifest_of(fw.layout.partition(slot), &keys))
            .map(|m| m.version)
            .or_else(|| running_identity.parse().ok())
            .unwrap_or(cairn_firmware::Version::new(0, 0, 0));
        let found = install::index::compare(&index, &fw.layout.board, running);
        let mut v = serde_json::to_value(found).map_err(Error::internal)?;
        v["source"] = source.into();
        Ok::<_, Error>(v)
    })
    .await
}
