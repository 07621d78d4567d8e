//! What Cairn remembers in its store: volume records (what each volume should be), job records (what the
//! daemon started, so a restart loses none) and the storage event log owners read. Only this module writes the
//! three tables; everything else asks it.

use super::{now_s, Storage, EVENTS_KEPT};
use crate::volumes::VolumeRecord;
use crate::StorageError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct JobRecord {
    pub(super) id: String,
    /// create, rebuild, scrub.
    pub(super) kind: String,
    pub(super) volume: String,
    pub(super) md_minor: u32,
    pub(super) started_s: u64,
    /// running, done, failed.
    pub(super) state: String,
    /// preparing, formatting, kernel (the kernel does the rest).
    pub(super) step: String,
    pub(super) message: String,
    pub(super) finished_s: Option<u64>,
    /// The disk a rebuild writes to.
    pub(super) disk: Option<String>,
    /// Its kernel name when the job started (checked against the array; names change across boots).
    #[serde(default)]
    pub(super) device: Option<String>,
}

/// One line of the storage event log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub time_s: u64,
    /// info, warning, error.
    pub level: String,
    pub volume: String,
    pub message: String,
    /// The tool's own words (stderr), when a tool failed.
    pub detail: String,
}

impl Storage {
    pub(super) fn records(&self) -> Result<Vec<VolumeRecord>, StorageError> {
        Ok(self
            .inner
            .volumes
            .all::<VolumeRecord>()?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    pub(super) fn record(&self, name: &str) -> Result<VolumeRecord, StorageError> {
        self.inner
            .volumes
            .get::<VolumeRecord>(name)?
            .ok_or_else(|| StorageError::NoSuchVolume(name.to_string()))
    }

    pub(super) fn save(&self, r: &VolumeRecord) -> Result<(), StorageError> {
        self.inner.volumes.put(&r.name, r)?;
        self.inner.store.commit()?;
        Ok(())
    }

    /// Changes a volume's record as it is now, under the storage lock, so an update made meanwhile (by a
    /// request or the monitor) is never overwritten by an older copy: the record after, or `None` when the
    /// volume is gone.
    pub(super) fn update_record(
        &self,
        name: &str,
        change: impl FnOnce(&mut VolumeRecord),
    ) -> Result<Option<VolumeRecord>, StorageError> {
        self.under_lock(|| {
            let Some(mut r) = self.inner.volumes.get::<VolumeRecord>(name)? else {
                return Ok(None);
            };
            change(&mut r);
            self.save(&r)?;
            Ok(Some(r))
        })
    }

    /// Removes a volume's record, durably.
    pub(super) fn forget(&self, name: &str) -> Result<(), StorageError> {
        self.inner.volumes.remove(name)?;
        self.inner.store.commit()?;
        Ok(())
    }

    /// Adds a line to the event log (and the system log).
    pub fn event(&self, level: &str, volume: &str, message: &str, detail: &str) {
        match level {
            "error" => log::error!("storage: {message} {detail}"),
            "warning" => log::warn!("storage: {message} {detail}"),
            _ => log::info!("storage: {message}"),
        }
        let seq = self.inner.store.db().generate_id().unwrap_or(0);
        let e = Event {
            seq,
            time_s: now_s(),
            level: level.into(),
            volume: volume.into(),
            message: message.into(),
            detail: detail.into(),
        };
        // The event log is what owners read afterwards; failing to keep a line must not fail the work it
        // describes, but it is never silent: the system log has it, with why it was not kept.
        let kept = self
            .inner
            .events
            .put(&format!("{seq:020}"), &e)
            .and_then(|_| {
                while self.inner.events.len() > EVENTS_KEPT {
                    if self.inner.events.tree().pop_min()?.is_none() {
                        break;
                    }
                }
                self.inner.store.commit()
            });
        if let Err(err) = kept {
            log::error!("storage: the event log did not keep \"{message}\": {err}");
        }
    }

    /// The newest events first.
    pub fn events(&self, limit: usize) -> Result<Vec<Event>, StorageError> {
        let mut all: Vec<Event> = self
            .inner
            .events
            .all::<Event>()?
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        all.reverse();
        all.truncate(limit);
        Ok(all)
    }

    /// Whether a volume of this box has that name (shares may only be placed on those).
    pub fn exists(&self, name: &str) -> bool {
        matches!(self.inner.volumes.get::<VolumeRecord>(name), Ok(Some(_)))
    }

    pub(super) fn job_record(&self, id: &str) -> Result<Option<JobRecord>, StorageError> {
        Ok(self.inner.jobs.get(&format!("{:0>20}", id))?)
    }

    pub(super) fn save_job(&self, j: &JobRecord) -> Result<(), StorageError> {
        self.inner.jobs.put(&format!("{:0>20}", j.id), j)?;
        self.inner.store.commit()?;
        Ok(())
    }

    pub(super) fn new_job(
        &self,
        kind: &str,
        volume: &str,
        minor: u32,
        step: &str,
        message: &str,
        disk: Option<String>,
    ) -> Result<JobRecord, StorageError> {
        let id = self
            .inner
            .store
            .db()
            .generate_id()
            .map_err(|e| StorageError::Io(e.to_string()))?;
        let j = JobRecord {
            id: id.to_string(),
            kind: kind.into(),
            volume: volume.into(),
            md_minor: minor,
            started_s: now_s(),
            state: "running".into(),
            step: step.into(),
            message: message.into(),
            finished_s: None,
            disk,
            device: None,
        };
        self.save_job(&j)?;
        // Keep the newest jobs; finished ones older than that are only history.
        while self.inner.jobs.len() > 100 {
            match self.inner.jobs.tree().pop_min() {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        Ok(j)
    }

    pub(super) fn fail_job(&self, mut j: JobRecord, message: String, detail: &str) {
        j.state = "failed".into();
        j.message = message.clone();
        j.finished_s = Some(now_s());
        self.keep_job(&j);
        self.event("error", &j.volume, &message, detail);
    }

    pub(super) fn step(&self, j: &mut JobRecord, step: &str, message: &str) {
        j.step = step.into();
        j.message = message.into();
        self.keep_job(j);
    }

    /// Saves a job's progress where the work goes on whatever happens to its record: a failure is logged,
    /// and the job is judged again from the kernel (or closed at the next start) as if the write never came.
    pub(super) fn keep_job(&self, j: &JobRecord) {
        if let Err(e) = self.save_job(j) {
            log::error!("storage: recording job {} ({}): {e}", j.id, j.message);
        }
    }
}
