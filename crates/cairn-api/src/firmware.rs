//! The firmware install's state the app keeps: where the slots are, the install jobs (one at a time), and the
//! upload a streamed request hands its handler. The work is `controller::firmware`'s.

use crate::error::{Error, RequestError};
use cairn_firmware::install::{Layout, Settings};
use hyper::body::Incoming;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Finished install jobs kept for `GET /api/v1/jobs/{id}`.
const JOBS_KEPT: usize = 8;
/// Prefix of firmware job ids (storage jobs are numbers).
pub(crate) const JOB_PREFIX: &str = "fw-";
/// The box's side of installs: where the slots are and how the boot state and settings are reached.
pub struct Firmware {
    pub layout: Layout,
    /// The settings snapshot before an install.
    pub settings: Arc<dyn Settings + Send + Sync>,
}

/// One install, as `GET /api/v1/jobs/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FirmwareJob {
    pub id: String,
    pub kind: &'static str,
    /// running, done, failed.
    pub state: &'static str,
    pub percent: f32,
    pub message: String,
    pub version: Option<String>,
    pub slot: Option<String>,
    /// The refusal or failure, as the API answers errors.
    pub error: Option<serde_json::Value>,
}

/// The install jobs and the one-at-a-time rule.
#[derive(Default)]
pub(crate) struct FirmwareJobs {
    busy: AtomicBool,
    next: AtomicU64,
    jobs: Mutex<VecDeque<Arc<Mutex<FirmwareJob>>>>,
}

impl FirmwareJobs {
    pub(crate) fn start(&self) -> Result<Arc<Mutex<FirmwareJob>>, Error> {
        if self.busy.swap(true, Ordering::SeqCst) {
            return Err(RequestError::FirmwareBusy.into());
        }
        let id = format!(
            "{JOB_PREFIX}{}",
            self.next.fetch_add(1, Ordering::SeqCst) + 1
        );
        let job = Arc::new(Mutex::new(FirmwareJob {
            id,
            kind: "firmware_install",
            state: "running",
            percent: 0.0,
            message: "Checking the bundle".into(),
            version: None,
            slot: None,
            error: None,
        }));
        let mut jobs = lock(&self.jobs);
        jobs.push_back(job.clone());
        while jobs.len() > JOBS_KEPT {
            jobs.pop_front();
        }
        Ok(job)
    }

    pub(crate) fn finish(&self) {
        self.busy.store(false, Ordering::SeqCst);
    }

    pub(crate) fn get(&self, id: &str) -> Option<FirmwareJob> {
        lock(&self.jobs)
            .iter()
            .map(|j| lock(j).clone())
            .find(|j| j.id == id)
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How the request's body reaches the engine: the body, the time allowed for each chunk, and whom to tell
/// that a chunk arrived (the connection's deadline moves with it) and that the body is read.
pub(crate) struct Upload {
    pub body: Incoming,
    pub chunk_deadline: Duration,
    pub on_chunk: Option<Arc<dyn Fn() + Send + Sync>>,
    pub on_read: Option<Arc<dyn Fn() + Send + Sync>>,
}
