//! Work the daemon itself was doing when the box lost power or the daemon restarted (wiping, creating the
//! array, formatting, mounting) cannot resume; it is closed with a sentence that is true. Before assembly only
//! what the record alone tells is settled: a create whose array never existed is dropped (its disks hold
//! nothing), and an array made but not yet recorded is adopted so its disks stay the volume's. Whether the
//! rest left a volume to use is known only after assembly, the filesystem check and the mount: a volume that
//! mounted is in use and is never called broken; one that did not is to be deleted and created again.
//! Kernel work (sync, rebuild, scrub) simply goes on.

use super::records::JobRecord;
use super::{now_s, Storage};
use crate::tools::HOMEHOST;
use crate::volumes::VolumeRecord;

impl Storage {
    /// Before assembly: closes what the records alone settle, and hands back the interrupted jobs whose
    /// volume must be brought up before they can be judged ([`Storage::judge_interrupted`]).
    pub(super) fn close_interrupted(&self) -> Vec<JobRecord> {
        let Ok(jobs) = self.inner.jobs.all::<JobRecord>() else {
            return vec![];
        };
        let mut later = vec![];
        for (_, j) in jobs {
            if j.state != "running" || j.step == "kernel" {
                continue;
            }
            let record = self
                .inner
                .volumes
                .get::<VolumeRecord>(&j.volume)
                .ok()
                .flatten();
            match record {
                Some(r) if r.uuid.is_empty() => {
                    if self.settle_unmade(&r) {
                        later.push(j);
                    } else {
                        let message = format!(
                            "Creating volume {} was interrupted before its array existed; its disks are free again.",
                            j.volume
                        );
                        self.close(j, "failed", message);
                    }
                }
                Some(_) => later.push(j),
                None => {
                    let message = broken(&j);
                    self.close(j, "failed", message);
                }
            }
        }
        // A record without its array and without a running create (the job's end was recorded, the record's
        // removal was not): settled the same way.
        let creating: Vec<&str> = later.iter().map(|j| j.volume.as_str()).collect();
        for r in self.records().unwrap_or_default() {
            if r.uuid.is_empty() && !creating.contains(&r.name.as_str()) && !self.settle_unmade(&r)
            {
                self.event(
                    "warning",
                    &r.name,
                    &format!(
                        "Volume {} was left half-created by a restart and has been dropped; its disks are free again.",
                        r.name
                    ),
                    "",
                );
            }
        }
        later
    }

    /// A record whose array's UUID was never recorded: adopted when its array exists on its disks (so they
    /// stay the volume's), removed otherwise. Whether it was adopted; a record that cannot be written stays
    /// for the next start.
    fn settle_unmade(&self, r: &VolumeRecord) -> bool {
        match self.made_before_the_cut(r) {
            Some(uuid) => {
                if let Err(e) = self.update_record(&r.name, |r| r.uuid = uuid) {
                    log::error!("storage: adopting volume {}'s array: {e}", r.name);
                }
                true
            }
            None => {
                if let Err(e) = self.forget(&r.name) {
                    log::error!("storage: dropping volume {}'s record: {e}", r.name);
                }
                false
            }
        }
    }

    /// After assembly, checks and mounts: an interrupted create whose volume is mounted (its array assembled,
    /// its filesystem checked and mounted) is in use, and the kernel finishes its redundancy; any other is
    /// to be deleted and created again.
    pub(super) fn judge_interrupted(&self, jobs: Vec<JobRecord>) {
        let mounts = self.mounts();
        for mut j in jobs {
            let record = self
                .inner
                .volumes
                .get::<VolumeRecord>(&j.volume)
                .ok()
                .flatten()
                .filter(|r| self.is_mounted(&mounts, &r.name));
            let Some(r) = record else {
                let message = broken(&j);
                self.close(j, "failed", message);
                continue;
            };
            let made = format!(
                "Creating volume {} was interrupted by a restart after its filesystem was made; it is in use",
                j.volume
            );
            let live = self.live_of(&r);
            let in_sync = live.as_ref().is_some_and(|l| {
                l.degraded == 0 && (l.sync_action.is_empty() || l.sync_action == "idle")
            });
            if in_sync {
                self.close(j, "done", format!("{made} and ready."));
            } else {
                // The kernel's part: the job follows the sync as if the create had handed over itself.
                let message = format!("{made} and the kernel finishes its redundancy.");
                j.md_minor = r.md_minor;
                self.step(&mut j, "kernel", &message);
                self.event("info", &j.volume, &message, "");
            }
        }
    }

    fn close(&self, mut j: JobRecord, state: &str, message: String) {
        j.state = state.into();
        j.message = message.clone();
        j.finished_s = Some(now_s());
        self.keep_job(&j);
        let level = if state == "failed" { "error" } else { "info" };
        self.event(level, &j.volume, &message, "");
    }

    /// The UUID of the array a create made on the volume's disks before the power went, if it got that far
    /// (the record learns the UUID only after mdadm made the array).
    fn made_before_the_cut(&self, r: &VolumeRecord) -> Option<String> {
        let ours = format!("{HOMEHOST}:{}", r.name);
        self.survey()
            .ok()?
            .disks
            .into_iter()
            .filter(|sd| r.disks.iter().any(|m| m.id == sd.disk.id))
            .flat_map(|sd| sd.md)
            .find(|(_, sb)| sb.name == ours)
            .map(|(_, sb)| sb.uuid)
    }
}

/// What an interrupted create that left nothing usable says.
fn broken(j: &JobRecord) -> String {
    format!(
        "Creating volume {} was interrupted while {}; delete the volume and create it again.",
        j.volume,
        if j.step == "formatting" {
            "formatting"
        } else {
            "preparing its disks"
        }
    )
}
