//! Jobs as owners follow them: a job's record says what the daemon started, the kernel says how far it got.
//! Judging happens at every look, and the first look that sees a job ended records it (once), so neither a
//! restart nor a missed md event leaves a job running forever.

use super::kernel::MdLive;
use super::records::JobRecord;
use super::{now_s, Storage};
use crate::StorageError;
use serde::Serialize;

/// A job as the API shows it; running jobs are measured from the kernel when asked.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: String,
    pub kind: String,
    pub volume: String,
    /// running, done, failed.
    pub state: String,
    pub percent: f32,
    pub message: String,
    pub speed_kib_s: Option<u64>,
    pub eta_s: Option<u64>,
    pub started_s: u64,
    pub finished_s: Option<u64>,
}

impl Storage {
    /// One job, measured now.
    pub fn job(&self, id: &str) -> Result<JobView, StorageError> {
        if id.is_empty() || id.len() > 20 || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(StorageError::NoSuchJob(id.to_string()));
        }
        let j = self
            .job_record(id)?
            .ok_or_else(|| StorageError::NoSuchJob(id.to_string()))?;
        Ok(self.job_view(&j))
    }

    /// Recent jobs, newest first.
    pub fn jobs(&self, limit: usize) -> Result<Vec<JobView>, StorageError> {
        let all = self.inner.jobs.all::<JobRecord>()?;
        Ok(all
            .iter()
            .rev()
            .take(limit)
            .map(|(_, j)| self.job_view(j))
            .collect())
    }

    pub(super) fn running_job(&self, volume: &str) -> Option<JobRecord> {
        self.inner
            .jobs
            .all::<JobRecord>()
            .ok()?
            .into_iter()
            .rev()
            .map(|(_, j)| j)
            .filter(|j| j.volume == volume && j.state == "running")
            .find(|j| self.judge(j, self.md_live(j.md_minor).as_ref()).0 == "running")
    }

    /// A job's state, measuring kernel work now: (state, percent, message).
    pub(super) fn judge(&self, j: &JobRecord, live: Option<&MdLive>) -> (String, f32, String) {
        if j.state != "running" {
            let pct = if j.state == "done" { 100.0 } else { 0.0 };
            return (j.state.clone(), pct, j.message.clone());
        }
        if j.step != "kernel" {
            return ("running".into(), 0.0, j.message.clone());
        }
        let Some(live) = live else {
            return (
                "failed".into(),
                0.0,
                "The array stopped before the work finished.".into(),
            );
        };
        let idle = live.sync_action == "idle" || live.sync_action.is_empty();
        let percent = live
            .sync
            .map(|(done, total)| {
                if total == 0 {
                    0.0
                } else {
                    (done as f64 * 100.0 / total as f64) as f32
                }
            })
            .unwrap_or(0.0);
        match j.kind.as_str() {
            "scrub" if idle => (
                "done".into(),
                100.0,
                format!("Scrub finished: {} mismatched blocks.", live.mismatch_cnt),
            ),
            "rebuild" => {
                if let Some(disk) = &j.disk {
                    let dev = match &j.device {
                        Some(d) if live.member(d).is_some() => Some(d.clone()),
                        _ => self.device_of(disk),
                    };
                    let gone = match &dev {
                        None => true,
                        Some(d) => live
                            .member(d)
                            .is_none_or(|(_, st, exists)| st.contains("faulty") || !exists),
                    };
                    if gone {
                        return (
                            "failed".into(),
                            percent,
                            "The new disk failed or was removed during the rebuild.".into(),
                        );
                    }
                }
                if idle && live.degraded == 0 {
                    (
                        "done".into(),
                        100.0,
                        "Rebuild finished: every disk is in sync.".into(),
                    )
                } else {
                    (
                        "running".into(),
                        if idle { 0.0 } else { percent },
                        j.message.clone(),
                    )
                }
            }
            _ if idle && live.degraded == 0 => (
                "done".into(),
                100.0,
                "The volume is ready and redundant.".into(),
            ),
            _ if idle && j.kind == "create" && live.degraded > 0 => (
                "failed".into(),
                percent,
                "A disk failed while the volume was being built.".into(),
            ),
            _ => ("running".into(), percent, j.message.clone()),
        }
    }

    pub(super) fn job_view(&self, j: &JobRecord) -> JobView {
        let live = if j.state == "running" {
            self.md_live(j.md_minor)
        } else {
            None
        };
        let (state, percent, message) = self.judge(j, live.as_ref());
        if j.state == "running" && state != "running" {
            self.settle(j, live.as_ref());
        }
        let (speed, eta) = match (&live, state.as_str()) {
            (Some(l), "running") if l.sync_action != "idle" => {
                let eta = match (l.sync, l.speed_kib_s) {
                    (Some((done, total)), Some(speed)) if speed > 0 => {
                        Some((total.saturating_sub(done) / 2) / speed)
                    }
                    _ => None,
                };
                (l.speed_kib_s, eta)
            }
            _ => (None, None),
        };
        JobView {
            id: j.id.clone(),
            kind: j.kind.clone(),
            volume: j.volume.clone(),
            state,
            percent: (percent * 10.0).round() / 10.0,
            message,
            speed_kib_s: speed,
            eta_s: eta,
            started_s: j.started_s,
            finished_s: j.finished_s,
        }
    }

    /// Closes every running job of a volume whose kernel work is over, oldest first.
    pub(super) fn finish_jobs(&self, volume: &str) {
        let Ok(jobs) = self.inner.jobs.all::<JobRecord>() else {
            return;
        };
        for (_, j) in jobs {
            if j.volume == volume && j.state == "running" {
                let live = self.md_live(j.md_minor);
                self.settle(&j, live.as_ref());
            }
        }
    }

    /// Records the end of a job the moment anyone sees it ended (a request or the monitor), once: its state,
    /// the scrub's mismatch count on the volume, and a line in the event log.
    pub(super) fn settle(&self, j: &JobRecord, live: Option<&MdLive>) {
        let (state, _, message) = self.judge(j, live);
        if state == "running" {
            return;
        }
        {
            // Only the look that moves the job out of running goes on. Released before the volume record is
            // touched: a request holding the storage lock may settle a job too, so waiting for that lock while
            // holding this one could deadlock.
            let _once = self
                .inner
                .settling
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let Ok(Some(mut current)) = self.job_record(&j.id) else {
                return;
            };
            if current.state != "running" {
                return;
            }
            current.state = state.clone();
            current.message = message.clone();
            current.finished_s = Some(now_s());
            self.keep_job(&current);
        }
        let mut mismatches = None;
        if j.kind == "scrub" {
            mismatches = live.map(|l| l.mismatch_cnt);
            let kept = self.update_record(&j.volume, |r| {
                r.last_scrub_s = Some(now_s());
                r.last_mismatches = mismatches;
            });
            if let Err(e) = kept {
                log::error!("storage: recording volume {}'s scrub: {e}", j.volume);
            }
        }
        let level = match (state.as_str(), mismatches) {
            ("failed", _) => "error",
            (_, Some(n)) if n > 0 => "warning",
            _ => "info",
        };
        self.event(
            level,
            &j.volume,
            &format!("Volume {}: {message}", j.volume),
            "",
        );
    }
}
