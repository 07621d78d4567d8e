//! Everything an owner asks to change: create (and the build that follows), fail, scrub, delete (replace has
//! its own module, `replacing`).
//! Each change is checked and recorded under the lock, so two requests cannot pick the same disks, and every
//! refusal comes before any disk is touched.

use super::kernel::MdLive;
use super::records::JobRecord;
use super::{now_s, read_trim, split_tool, JobView, Storage, VolumeView};
use crate::volumes::{check_create, CreateRequest, Level, VolumeRecord, MD_CORE_MODULE};
use crate::StorageError;
use std::path::PathBuf;

impl Storage {
    /// Loads md and the level's driver where the board builds them as modules (a kernel with them built in
    /// lists none as on demand).
    pub(super) fn load_modules(&self, level: Level) {
        let on_demand = &self.inner.board.modules.on_demand;
        for m in [MD_CORE_MODULE, level.module()] {
            if on_demand.iter().any(|o| o == m) {
                if let Err(e) = self.inner.tools.load_module(m) {
                    log::warn!("{e}");
                }
            }
        }
    }

    /// Checks a new volume against the disks as they are, records it and starts building it: the job's id.
    pub fn create(&self, req: CreateRequest) -> Result<JobView, StorageError> {
        let guard = self.guard();
        let s = self.survey()?;
        let views = self.disk_views(&s);
        let mut taken: Vec<String> = s.records.iter().map(|r| r.name.clone()).collect();
        taken.extend(
            self.found(&s, &views)
                .into_iter()
                .map(|(v, _, _, _)| v.name),
        );
        let plan = check_create(&req, &views, &taken)?;
        let minor = self.free_minor(&s.records);
        let record = VolumeRecord {
            name: plan.name.clone(),
            level: plan.level,
            uuid: String::new(),
            md_minor: minor,
            disks: plan.disks.iter().map(|d| d.snapshot()).collect(),
            created_s: now_s(),
            last_scrub_s: None,
            last_mismatches: None,
            last_state: "creating".into(),
            replacing: None,
            deleting: false,
        };
        self.inner.volumes.put(&record.name, &record)?;
        let job = self.new_job(
            "create",
            &plan.name,
            minor,
            "preparing",
            "Preparing the disks.",
            None,
        )?;
        drop(guard);
        self.event(
            "info",
            &plan.name,
            &format!(
                "Creating {} volume {} on {}.",
                plan.level.name(),
                plan.name,
                plan.disks
                    .iter()
                    .map(|d| d.describe())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "",
        );
        let me = self.clone();
        let j = job.clone();
        std::thread::spawn(move || me.build(record, plan.disks, j));
        Ok(self.job_view(&job))
    }

    /// The create job's work after the checks: wipe, mdadm --create, mkfs, mount; the kernel then syncs.
    pub(super) fn build(
        &self,
        mut record: VolumeRecord,
        disks: Vec<crate::DiskView>,
        mut job: JobRecord,
    ) {
        self.load_modules(record.level);
        let tools = &self.inner.tools;
        let devs: Vec<PathBuf> = disks
            .iter()
            .map(|d| self.dev_path(&d.disk.device))
            .collect();
        // Each disk is checked again right before each write that erases: a bay's disk swapped since the
        // request was checked (its kernel name reused) is never written to.
        let same = |d: &crate::DiskView| self.still_the_disk(&d.snapshot(), &d.disk.device);
        for (d, dev) in disks.iter().zip(&devs) {
            if let Err(e) = same(d) {
                return self.abandon(&record, job, e.to_string(), "");
            }
            let _ = tools.zero_superblock(dev);
            if let Err(e) = same(d).and_then(|_| tools.wipe_ends(dev)) {
                let dev = dev.display();
                return self.abandon(&record, job, format!("Could not clear {dev}: {e}"), "");
            }
        }
        let md = self.md_dev(record.md_minor);
        if let Err(e) = disks
            .iter()
            .try_for_each(same)
            .and_then(|_| tools.create_array(&md, &record.name, record.level, &devs))
        {
            let (msg, detail) = split_tool(e);
            for (d, dev) in disks.iter().zip(&devs) {
                if same(d).is_ok() {
                    let _ = tools.zero_superblock(dev);
                }
            }
            return self.abandon(&record, job, msg, &detail);
        }
        match tools.array_uuid(&md) {
            Ok(uuid) => record.uuid = uuid,
            Err(e) => log::warn!("{e}"),
        }
        if record.uuid.is_empty() {
            record.uuid = read_trim(&self.md_dir(record.md_minor).join("uuid"));
        }
        let uuid = record.uuid.clone();
        if let Err(e) = self.update_record(&record.name, |r| r.uuid = uuid) {
            // Not fatal: the next start adopts an array made for a record without a UUID by its name.
            log::error!("storage: recording volume {}'s array: {e}", record.name);
        }
        self.step(&mut job, "formatting", "Creating the filesystem.");
        // md holds its members by device, not by name, but a member swapped out meanwhile means the array
        // is not what was asked for: no filesystem is made on it.
        if let Err(e) = disks
            .iter()
            .try_for_each(same)
            .and_then(|_| tools.mkfs_ext4(&md, &record.name))
        {
            let (msg, detail) = split_tool(e);
            return self.fail_job(job, msg, &detail);
        }
        if let Err(e) = self.mount(&record) {
            return self.fail_job(job, e.to_string(), "");
        }
        self.step(
            &mut job,
            "kernel",
            "Building redundancy: the volume is usable meanwhile.",
        );
        self.event(
            "info",
            &record.name,
            &format!(
                "Volume {} is mounted at {}; the kernel now builds its redundancy.",
                record.name,
                self.mount_point(&record.name).display()
            ),
            "",
        );
    }

    /// A create that failed before any data could exist: the record goes, the disks are left blank.
    pub(super) fn abandon(
        &self,
        record: &VolumeRecord,
        job: JobRecord,
        message: String,
        detail: &str,
    ) {
        let message = match self.forget(&record.name) {
            Ok(()) => message,
            Err(e) => {
                log::error!("storage: dropping volume {}'s record: {e}", record.name);
                format!(
                    "{message} Its record could not be removed ({e}); the next start removes it."
                )
            }
        };
        self.fail_job(job, message, detail);
    }

    pub(super) fn mount(&self, r: &VolumeRecord) -> Result<(), StorageError> {
        let mp = self.mount_point(&r.name);
        if self.is_mounted(&self.mounts(), &r.name) {
            return Ok(());
        }
        self.inner
            .tools
            .mount(&self.md_dev(r.md_minor), &mp)
            .map_err(|e| match e {
                StorageError::Tool { detail, .. } => StorageError::Refused(format!(
                    "The volume's filesystem could not be mounted ({detail})."
                )),
                other => other,
            })
    }

    /// Marks a member failed and takes it out of the array (the owner wants to pull it, or tests a failure).
    pub fn fail(&self, volume: &str, disk_id: &str, by: &str) -> Result<VolumeView, StorageError> {
        let _guard = self.guard();
        let r = self.record_for_change(volume)?;
        let m = &r.disks[member_index(&r, disk_id)?];
        let live = self
            .live_of(&r)
            .ok_or_else(|| StorageError::Busy(format!("Volume {volume} is not running.")))?;
        // The member as the array knows it: the disk itself, or its partition for imported arrays.
        let dev = self
            .device_of(disk_id)
            .and_then(|d| live.member_on(&d).map(|(name, _, _)| name.clone()))
            .ok_or_else(|| {
                StorageError::Refused(format!("{} is already out of the array.", m.describe()))
            })?;
        if live.degraded as usize >= r.level.redundancy(r.disks.len()) {
            return Err(StorageError::Refused(format!(
                "Volume {volume} has no redundancy left: failing {} would stop it and make its data unreachable.",
                m.describe()
            )));
        }
        let md = self.md_dev(r.md_minor);
        let path = self.dev_path(&dev);
        self.inner.tools.fail(&md, &path)?;
        let _ = self.inner.tools.remove(&md, &path);
        drop(_guard);
        self.event(
            "warning",
            volume,
            &format!(
                "{} was marked failed by {by} and taken out of volume {volume}.",
                m.describe()
            ),
            "",
        );
        self.volume(volume)
    }

    /// Starts a scrub (md `check`): every block is read and parity compared; mismatches are counted.
    pub fn scrub(&self, volume: &str) -> Result<JobView, StorageError> {
        let _guard = self.guard();
        let r = self.record_for_change(volume)?;
        let live = self
            .live_of(&r)
            .ok_or_else(|| StorageError::Busy(format!("Volume {volume} is not running.")))?;
        if live.degraded > 0 || (live.sync_action != "idle" && !live.sync_action.is_empty()) {
            return Err(StorageError::Busy(format!(
                "Volume {volume} is {}; a scrub can run once it is clean and idle.",
                if live.degraded > 0 {
                    "degraded"
                } else {
                    "busy"
                }
            )));
        }
        if r.level == Level::Raid0 {
            return Err(StorageError::Refused(
                "RAID 0 has no redundancy to compare: there is nothing to scrub.".into(),
            ));
        }
        self.inner.tools.start_check(&self.md_dev(r.md_minor))?;
        let job = self.new_job(
            "scrub",
            volume,
            r.md_minor,
            "kernel",
            "Reading every block and comparing redundancy.",
            None,
        )?;
        self.event(
            "info",
            volume,
            &format!("Scrub of volume {volume} started."),
            "",
        );
        Ok(self.job_view(&job))
    }

    /// Deletes a volume: unmounts, stops the array and clears its disks. Needs the name as confirmation and
    /// no share left on it.
    pub fn delete(
        &self,
        volume: &str,
        confirm: Option<&str>,
        shares: &[String],
    ) -> Result<(), StorageError> {
        let _guard = self.guard();
        // No replace left behind needs settling: the record goes, and every disk running in the array is cleared.
        let r = self.record(volume)?;
        if !shares.is_empty() {
            return Err(StorageError::HasShares {
                volume: volume.into(),
                shares: shares.join(", "),
            });
        }
        if confirm != Some(volume) {
            return Err(StorageError::ConfirmRequired {
                volume: volume.into(),
                what: format!(
                    "Deleting volume {volume} erases all of its data on {}.",
                    r.disks
                        .iter()
                        .map(|d| d.describe())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        if let Some(j) = self.running_job(volume) {
            if j.kind == "create" && j.step != "kernel" {
                return Err(StorageError::Busy(format!(
                    "Volume {volume} is still being created; wait for it."
                )));
            }
        }
        self.not_checking(volume)?;
        // Write-ahead: from here a restart finishes the delete ([`Storage::finish_deletes`]).
        self.update_record(volume, |r| r.deleting = true)?;
        let undo = |e: StorageError| {
            if let Err(u) = self.update_record(volume, |r| r.deleting = false) {
                log::error!("storage: volume {volume} stays marked for deletion: {u}");
            }
            e
        };
        let mp = self.mount_point(volume);
        if self.is_mounted(&self.mounts(), volume) {
            self.inner.tools.unmount(&mp).map_err(|e| {
                let e = match e {
                    StorageError::Tool { detail, .. } => detail,
                    other => other.to_string(),
                };
                undo(StorageError::Busy(format!("Volume {volume} is in use and could not be unmounted ({e}); close files on it and try again.")))
            })?;
        }
        let live = self.live_of(&r);
        let members = live.as_ref().map(present_members).unwrap_or_default();
        if live.is_some() {
            let md = self.md_dev(r.md_minor);
            if let Err(e) = self.inner.tools.stop(&md) {
                let _ = self.mount(&r);
                return Err(undo(e));
            }
        }
        self.clear_and_forget(&r, members)?;
        drop(_guard);
        self.event(
            "info",
            volume,
            &format!("Volume {volume} was deleted and its disks are free."),
            "",
        );
        Ok(())
    }

    /// The end of a delete, once the array is stopped: clears `members` (devices that ran in it) and forgets
    /// the volume. Only a disk that is still one of the volume's, checked right before each write, is
    /// cleared: one swapped into a member's bay since the array stopped keeps its bytes.
    pub(super) fn clear_and_forget(
        &self,
        r: &VolumeRecord,
        members: Vec<String>,
    ) -> Result<(), StorageError> {
        let volume = &r.name;
        let ours = |dev: &str| r.disks.iter().any(|d| self.still_the_disk(d, dev).is_ok());
        let mut left = vec![];
        for dev in members {
            let path = self.dev_path(&dev);
            if !ours(&dev) {
                left.push(dev);
                continue;
            }
            let _ = self.inner.tools.zero_superblock(&path);
            if ours(&dev) {
                let _ = self.inner.tools.wipe_ends(&path);
            }
        }
        if !left.is_empty() {
            self.event(
                "warning",
                volume,
                &format!(
                    "/dev/{} no longer held one of volume {volume}'s disks when it was to be cleared (a disk was swapped); it was left as it is.",
                    left.join(", /dev/")
                ),
                "",
            );
        }
        self.forget(volume)?;
        let _ = self
            .inner
            .tools
            .remove_mount_point(&self.mount_point(volume));
        Ok(())
    }

    /// Refuses a change to a volume whose filesystem is being checked right now.
    pub(super) fn not_checking(&self, volume: &str) -> Result<(), StorageError> {
        if self.is_checking(volume) {
            return Err(StorageError::Busy(format!(
                "Volume {volume}'s filesystem is being checked; wait for the check to finish."
            )));
        }
        Ok(())
    }
}

/// The devices running in an array whose device still exists (the disks a delete clears).
pub(super) fn present_members(live: &MdLive) -> Vec<String> {
    live.members
        .iter()
        .filter(|(_, _, e)| *e)
        .map(|(d, _, _)| d.clone())
        .collect()
}

/// Where a disk sits in a volume's member list; the API's `volume.disk_not_member` when it is not there.
pub(super) fn member_index(r: &VolumeRecord, disk_id: &str) -> Result<usize, StorageError> {
    r.disks
        .iter()
        .position(|d| d.id == disk_id)
        .ok_or_else(|| StorageError::NotMember {
            disk: disk_id.into(),
            volume: r.name.clone(),
        })
}
