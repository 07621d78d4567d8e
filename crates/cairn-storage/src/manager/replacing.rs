//! Replacing a member, as a write-ahead change: what is about to happen goes on the volume record
//! (`VolumeRecord::replacing`) before any tool touches a disk, and the member swap clears it in the same
//! write. A replace cut off between the two (the power went, a tool failed) leaves the intent behind; it is
//! settled from what the disks say, at start after assembly and whenever the record is read for a new change.
//! A new disk running in the array completes the swap (the owner asked for it, and the array already holds
//! it); one that is not drops the intent: nothing happened to the array, and the new disk, chosen as free or
//! erased with consent, may have been wiped. Either way the new disk is never held by the array unnamed.

use super::changes::member_index;
use super::kernel::{MdLive, Survey};
use super::records::JobRecord;
use super::{norm_uuid, DiskView, JobView, Storage};
use crate::volumes::{unreadable_refusal, unreadable_token, Replacing, VolumeRecord};
use crate::{DiskRole, StorageError};

impl Storage {
    /// Replaces a failed, missing or healthy member with another disk; the rebuild is a job. Asked again while
    /// that rebuild runs (the first answer was lost to a restart or a tool error), it answers with the job.
    pub fn replace(
        &self,
        volume: &str,
        failed: &str,
        with: &str,
        confirm: Option<&str>,
    ) -> Result<JobView, StorageError> {
        let guard = self.guard();
        let mut r = self.record_for_change(volume)?;
        if let Some(j) = self.rebuilding_onto(&r, failed, with) {
            return Ok(self.job_view(&j));
        }
        let idx = member_index(&r, failed)?;
        let live = self.live_of(&r).ok_or_else(|| {
            StorageError::Busy(format!(
                "Volume {volume} is not running; its disks must be in the box to replace one."
            ))
        })?;
        // running_job already measured it against the kernel: only work still going on blocks.
        if let Some(j) = self.running_job(volume) {
            return Err(StorageError::Busy(format!(
                "Volume {volume} is busy with a {} job; wait for it to finish.",
                j.kind
            )));
        }
        self.kick_vanished(&r, &live);
        let live = self.live_of(&r).unwrap_or(live);
        let s = self.survey()?;
        let views = self.disk_views(&s);
        let new = views
            .iter()
            .find(|d| d.disk.id == with)
            .ok_or_else(|| StorageError::NoSuchDisk(with.into()))?;
        if new.disk.role == DiskRole::Boot {
            return Err(StorageError::BootMedium(new.describe()));
        }
        if r.disks.iter().any(|d| d.id == with) && with != failed {
            return Err(StorageError::DiskInUse {
                disk: new.describe(),
                by: format!("volume {volume}"),
            });
        }
        // A member replaced by itself (a disk that dropped out and came back) is in use only by this volume,
        // and only its stale copy is rewritten, provided it is not running in the array right now.
        let itself = with == failed
            && live
                .member_on(&new.disk.device)
                .is_none_or(|(_, st, _)| st.contains("faulty"));
        if let Some(by) = new.in_use.as_ref().filter(|_| !itself) {
            return Err(StorageError::DiskInUse {
                disk: new.describe(),
                by: by.clone(),
            });
        }
        if new.disk.size_bytes / 1024 < live.component_kib {
            return Err(StorageError::DiskTooSmall {
                disk: new.describe(),
                min_mib: live.component_kib / 1024 + 1,
            });
        }
        let own_stale = new.volume.as_deref() == Some(volume);
        if new.disk.role == DiskRole::Unreadable {
            let token = unreadable_token(&[new]);
            if confirm != Some(token.as_str()) {
                return Err(unreadable_refusal(&[new], &[], &token));
            }
        } else if new.disk.role != DiskRole::Free && !own_stale && confirm != Some(volume) {
            return Err(StorageError::ConfirmRequired {
                volume: volume.into(),
                what: format!(
                    "{} holds {}; it will be erased.",
                    new.describe(),
                    new.holds.as_deref().unwrap_or("data")
                ),
            });
        }
        let md = self.md_dev(r.md_minor);
        // The failed member as the array knows it: the disk, or its partition.
        let old_member = s
            .disks
            .iter()
            .find(|sd| sd.disk.id == failed)
            .and_then(|sd| live.member_on(&sd.disk.device))
            .cloned();
        let target = if itself {
            self.own_member_device(&r, &s, new, old_member.as_ref().map(|(d, _, _)| d))?
        } else {
            new.disk.device.clone()
        };
        let new_path = self.dev_path(&target);
        let hot = old_member
            .as_ref()
            .is_some_and(|(_, st, _)| st.contains("in_sync") && !st.contains("faulty"));
        let intent = Replacing {
            failed: failed.into(),
            with: new.snapshot(),
            device: target.clone(),
            hot,
        };
        r.replacing = Some(intent.clone());
        self.save(&r)?;
        let tools = &self.inner.tools;
        // The new disk is checked again right before each write to it: one swapped into its bay since the
        // checks above (the kernel name reused) is never erased or added. The intent left behind is settled
        // like any cut-off replace.
        let same = || self.still_the_disk(&intent.with, &target);
        same()?;
        let _ = tools.zero_superblock(&new_path);
        same()?;
        tools.wipe_ends(&new_path).map_err(|e| match e {
            e @ StorageError::Io(_) => StorageError::io("clearing the new disk", e),
            other => other,
        })?;
        match old_member {
            Some((old, _, _)) if hot => {
                // A healthy disk swapped out: keep redundancy during the copy (md hot replace).
                let old_path = self.dev_path(&old);
                same()?;
                tools.add(&md, &new_path)?;
                tools.hot_replace(&md, &old_path, &new_path)?;
            }
            Some((old, _, _)) => {
                let old_path = self.dev_path(&old);
                let _ = tools.fail(&md, &old_path);
                let _ = tools.remove(&md, &old_path);
                same()?;
                tools.add(&md, &new_path)?;
            }
            None => {
                same()?;
                tools.add(&md, &new_path)?
            }
        }
        let old = r.disks[idx].clone();
        let job = self.finish_replacing(&mut r, &intent, &target)?;
        drop(guard);
        self.event(
            "info",
            volume,
            &format!(
                "Replacing {} with {} in volume {volume}: rebuild started.",
                old.describe(),
                new.describe()
            ),
            "",
        );
        Ok(self.job_view(&job))
    }

    /// Where a member replacing itself goes back in: the device its array lives on, the whole disk or (for
    /// arrays made on partitions) the member partition, which is all that is cleared; the rest of the disk
    /// (its partition table, other partitions) is never touched. Told by the array's superblock on the disk,
    /// else by the member the array still lists; a partitioned disk where neither says is refused.
    fn own_member_device(
        &self,
        r: &VolumeRecord,
        s: &Survey,
        disk: &DiskView,
        listed: Option<&String>,
    ) -> Result<String, StorageError> {
        let carrying = s
            .disks
            .iter()
            .find(|sd| sd.disk.id == disk.disk.id)
            .and_then(|sd| {
                sd.md
                    .iter()
                    .find(|(_, sb)| norm_uuid(&sb.uuid) == norm_uuid(&r.uuid))
            })
            .map(|(dev, _)| dev.clone());
        if let Some(dev) = carrying.or_else(|| listed.cloned()) {
            return Ok(dev);
        }
        let dir = self.inner.paths.sys.join("block").join(&disk.disk.device);
        if crate::partitions(&dir).is_empty() {
            return Ok(disk.disk.device.clone());
        }
        Err(StorageError::Refused(format!(
            "{} has partitions and none of them carries volume {}'s label any more, so it cannot tell which one to put back; replace it with a free disk instead.",
            disk.describe(),
            r.name
        )))
    }

    /// A volume's record for a new change, with a replace left behind settled first.
    pub(super) fn record_for_change(&self, name: &str) -> Result<VolumeRecord, StorageError> {
        let r = self.record(name)?;
        Ok(self.settle_replacing(r))
    }

    /// Completes or undoes a replace left behind on `r`, from what the array says; the record as it is after.
    /// Until the array runs nothing can be told, and the intent waits.
    pub(super) fn settle_replacing(&self, mut r: VolumeRecord) -> VolumeRecord {
        let Some(intent) = r.replacing.clone() else {
            return r;
        };
        let Some(live) = self.live_of(&r) else {
            return r;
        };
        let old = r
            .disks
            .iter()
            .find(|d| d.id == intent.failed)
            .map(|d| d.describe())
            .unwrap_or_else(|| format!("disk {}", intent.failed));
        let new = intent.with.describe();
        let joined = self
            .device_of(&intent.with.id)
            .and_then(|d| live.member_on(&d).cloned())
            .filter(|(_, st, exists)| *exists && !st.contains("faulty"));
        let Some((member, state, _)) = joined else {
            r.replacing = None;
            if let Err(e) = self.save(&r) {
                log::warn!(
                    "storage: dropping the replace left on volume {}: {e}",
                    r.name
                );
                return r;
            }
            self.event(
                "warning",
                &r.name,
                &format!(
                    "Replacing {old} with {new} in volume {} was cut off before the new disk joined the array; nothing changed. Replace the disk again.",
                    r.name
                ),
                "",
            );
            return r;
        };
        if intent.hot && state.contains("spare") && !busy(&live) {
            // Added, but the copy never started: start it, as the replace would have.
            if let Err(e) = self.start_copy(&r, &live, &intent, &member) {
                self.back_out(&mut r, &member, &old, &new, e);
                return r;
            }
        }
        match self.finish_replacing(&mut r, &intent, &member) {
            Ok(_) => self.event(
                "warning",
                &r.name,
                &format!(
                    "Replacing {old} with {new} in volume {} was cut off after the new disk joined the array; the replace was completed from there.",
                    r.name
                ),
                "",
            ),
            Err(e) => log::warn!("storage: finishing the replace left on volume {}: {e}", r.name),
        }
        r
    }

    /// The last writes of a replace, once the new disk is in the array: the rebuild job first (so a cut between
    /// the two still finds the intent, and settling it finds the job), then the member swap and the intent's
    /// end in one record write.
    pub(super) fn finish_replacing(
        &self,
        r: &mut VolumeRecord,
        intent: &Replacing,
        device: &str,
    ) -> Result<JobRecord, StorageError> {
        let job = match self
            .running_job(&r.name)
            .filter(|j| onto(j, &intent.with.id))
        {
            Some(j) => j,
            None => {
                let mut job = self.new_job(
                    "rebuild",
                    &r.name,
                    r.md_minor,
                    "kernel",
                    "Rebuilding onto the new disk.",
                    Some(intent.with.id.clone()),
                )?;
                job.device = Some(device.into());
                self.save_job(&job)?;
                job
            }
        };
        if let Some(i) = r.disks.iter().position(|d| d.id == intent.failed) {
            r.disks[i] = intent.with.clone();
        }
        r.replacing = None;
        self.save(r)?;
        Ok(job)
    }

    /// The running rebuild of a replace of `failed` by `with` that already happened: asking again answers with it.
    fn rebuilding_onto(&self, r: &VolumeRecord, failed: &str, with: &str) -> Option<JobRecord> {
        let named = |id: &str| r.disks.iter().any(|d| d.id == id);
        if !named(with) || (with != failed && named(failed)) {
            return None;
        }
        self.running_job(&r.name).filter(|j| onto(j, with))
    }

    /// Hot-replaces the healthy member the new disk (a spare now) takes over from.
    fn start_copy(
        &self,
        r: &VolumeRecord,
        live: &MdLive,
        intent: &Replacing,
        new: &str,
    ) -> Result<(), StorageError> {
        let old = self
            .device_of(&intent.failed)
            .and_then(|d| live.member_on(&d).cloned())
            .filter(|(_, st, _)| st.contains("in_sync") && !st.contains("faulty"));
        // The old member left the array meanwhile: md rebuilds onto the spare by itself.
        let Some((old, _, _)) = old else {
            return Ok(());
        };
        self.inner.tools.hot_replace(
            &self.md_dev(r.md_minor),
            &self.dev_path(old),
            &self.dev_path(new),
        )
    }

    /// The copy cannot start: the new disk leaves the array blank and the intent goes, so the owner can try
    /// again (or another disk) with the volume as it was.
    fn back_out(&self, r: &mut VolumeRecord, member: &str, old: &str, new: &str, e: StorageError) {
        let path = self.dev_path(member);
        let _ = self.inner.tools.remove(&self.md_dev(r.md_minor), &path);
        if let Some(intent) = &r.replacing {
            if self.still_the_disk(&intent.with, member).is_ok() {
                let _ = self.inner.tools.zero_superblock(&path);
            }
        }
        r.replacing = None;
        if let Err(e) = self.save(r) {
            // The intent stays, and is settled again at the next look: the new disk is out of the array now.
            log::error!(
                "storage: dropping the replace left on volume {}: {e}",
                r.name
            );
        }
        let (msg, detail) = super::split_tool(e);
        self.event(
            "error",
            &r.name,
            &format!(
                "Replacing {old} with {new} in volume {} was cut off before the copy started, and it could not be started again ({msg}); the new disk was taken out. Replace the disk again.",
                r.name
            ),
            &detail,
        );
    }
}

fn onto(j: &JobRecord, disk: &str) -> bool {
    j.kind == "rebuild" && j.disk.as_deref() == Some(disk)
}

fn busy(live: &MdLive) -> bool {
    !(live.sync_action.is_empty() || live.sync_action == "idle")
}
