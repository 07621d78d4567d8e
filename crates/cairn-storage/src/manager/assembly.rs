//! Bringing volumes up: at boot every recorded volume is assembled by its UUID from whichever disks carry
//! it (names change between boots) and mounted after a check, around the closing of work the power cut off
//! (`interrupted`, `replacing`); a found array is imported with its data.

use super::{norm_uuid, now_s, read_trim, split_tool, Storage, VolumeView};
use crate::tools::Fsck;
use crate::volumes::{Level, VolumeRecord};
use crate::StorageError;
use std::path::PathBuf;
use std::time::Instant;

impl Storage {
    /// At boot: assembles every recorded volume by its UUID from the disks that carry it, and mounts it.
    /// A volume without its disks is left as `missing`, never re-created. Work the power cut off is closed
    /// around it: what the records alone settle first, a create only once its volume did or did not mount.
    pub fn start(&self) {
        let started = Instant::now();
        self.finish_deletes();
        let interrupted = self.close_interrupted();
        self.assemble_all(started);
        self.judge_interrupted(interrupted);
    }

    fn assemble_all(&self, started: Instant) {
        let Ok(records) = self.records() else { return };
        if records.is_empty() {
            return;
        }
        let guard = self.guard();
        let survey_started = Instant::now();
        let survey = match self.survey() {
            Ok(s) => s,
            Err(e) => return log::error!("storage survey failed: {e}"),
        };
        // Time spent finding members and assembling, without module loading and filesystem checks:
        // the figure comparable with `mdadm --assemble --scan`.
        let mut assembling = survey_started.elapsed();
        let mut up = vec![];
        for mut r in records {
            if r.uuid.is_empty() {
                // A create interrupted by a power cut before the array existed: nothing to assemble.
                continue;
            }
            if self.live_of(&r).is_none() {
                let devs: Vec<PathBuf> = survey
                    .disks
                    .iter()
                    .flat_map(|sd| sd.md.iter())
                    .filter(|(_, sb)| norm_uuid(&sb.uuid) == norm_uuid(&r.uuid))
                    .map(|(dev, _)| self.dev_path(dev))
                    .collect();
                if devs.is_empty() {
                    self.event(
                        "error",
                        &r.name,
                        &format!(
                            "None of volume {}'s disks are in the box: it is missing.",
                            r.name
                        ),
                        "",
                    );
                    continue;
                }
                if !read_trim(&self.md_dir(r.md_minor).join("array_state")).is_empty() {
                    r.md_minor = self.free_minor(&survey.records);
                    if let Err(e) = self.save(&r) {
                        // Assembled under the new number all the same: every start picks a free one.
                        log::error!("storage: recording volume {}'s md number: {e}", r.name);
                    }
                }
                self.load_modules(r.level);
                let t = Instant::now();
                let assembled = self.assemble(&r, &devs);
                assembling += t.elapsed();
                if let Err(e) = assembled {
                    let (msg, detail) = split_tool(e);
                    self.event(
                        "error",
                        &r.name,
                        &format!("Volume {} could not be started: {msg}", r.name),
                        &detail,
                    );
                    continue;
                }
            }
            up.push(r);
        }
        // Filesystem checks can take hours on big volumes: they run without the lock, so the monitor and
        // requests go on meanwhile (a delete of the volume being checked waits; see `not_checking`).
        drop(guard);
        for r in up {
            if let Err(e) = self.check_and_mount(&r) {
                let (msg, detail) = split_tool(e);
                self.event(
                    "error",
                    &r.name,
                    &format!("Volume {} was not mounted: {msg}", r.name),
                    &detail,
                );
            }
            // Only now do the disks say how far a replace cut off by the restart got.
            self.under_lock(|| {
                if let Ok(fresh) = self.record(&r.name) {
                    self.settle_replacing(fresh);
                }
            });
        }
        let ms = started.elapsed().as_millis();
        let asm = assembling.as_millis();
        self.inner
            .tools
            .note_assembly_time(assembling, started.elapsed());
        self.event(
            "info",
            "",
            &format!(
                "Volumes assembled in {asm} ms ({ms} ms with driver loading, checks and mounts)."
            ),
            "",
        );
    }

    pub(super) fn assemble(&self, r: &VolumeRecord, devs: &[PathBuf]) -> Result<(), StorageError> {
        self.inner
            .tools
            .assemble(&self.md_dev(r.md_minor), &r.uuid, devs)
    }

    /// Checks and mounts an assembled array's filesystem; a check that finds damage it cannot fix stops here.
    /// Called without the storage lock, which is taken for the mount only: the check may run for hours.
    pub(super) fn check_and_mount(&self, r: &VolumeRecord) -> Result<(), StorageError> {
        self.check(r)?;
        self.under_lock(|| self.mount(r))
    }

    /// Checks (and repairs what can be repaired in) an assembled array's filesystem, marked as checking.
    fn check(&self, r: &VolumeRecord) -> Result<(), StorageError> {
        let md = self.md_dev(r.md_minor);
        let checked = {
            let _marked = Checking::mark(self, &r.name);
            self.inner.tools.fsck(&md)
        };
        match checked? {
            Fsck::Clean => {}
            Fsck::Repaired => self.event(
                "warning",
                &r.name,
                &format!("The filesystem check repaired volume {}.", r.name),
                "",
            ),
        }
        Ok(())
    }

    /// Whether the volume's filesystem is being checked right now.
    pub(super) fn is_checking(&self, volume: &str) -> bool {
        self.inner
            .checking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(volume)
    }

    /// At start, before anything else: finishes the deletes a restart cut off (the owner confirmed them and
    /// part of the volume may be erased already): the array stopped, the disks that still carry it
    /// cleared, the record gone.
    fn finish_deletes(&self) {
        let Ok(records) = self.records() else { return };
        for r in records.into_iter().filter(|r| r.deleting) {
            let _guard = self.guard();
            let mut members = vec![];
            if let Some(live) = self.live_of(&r) {
                if self.is_mounted(&self.mounts(), &r.name) {
                    if let Err(e) = self.inner.tools.unmount(&self.mount_point(&r.name)) {
                        log::error!("storage: finishing the delete of {}: {e}", r.name);
                        continue;
                    }
                }
                members = super::changes::present_members(&live);
                if let Err(e) = self.inner.tools.stop(&self.md_dev(r.md_minor)) {
                    log::error!("storage: finishing the delete of {}: {e}", r.name);
                    continue;
                }
            }
            if let Ok(s) = self.survey() {
                members.extend(
                    s.disks
                        .into_iter()
                        .flat_map(|sd| sd.md)
                        .filter(|(dev, sb)| {
                            !r.uuid.is_empty()
                                && norm_uuid(&sb.uuid) == norm_uuid(&r.uuid)
                                && !members.contains(dev)
                        })
                        .map(|(dev, _)| dev)
                        .collect::<Vec<_>>(),
                );
            }
            match self.clear_and_forget(&r, members) {
                Ok(()) => self.event(
                    "warning",
                    &r.name,
                    &format!(
                        "Deleting volume {} was cut off by a restart; the delete was finished and its disks are free.",
                        r.name
                    ),
                    "",
                ),
                Err(e) => log::error!("storage: finishing the delete of {}: {e}", r.name),
            }
        }
    }

    /// Imports a found array with its data: assembles it, checks and mounts its filesystem, records it.
    pub fn import(&self, found: &str, as_name: Option<&str>) -> Result<VolumeView, StorageError> {
        let guard = self.guard();
        let s = self.survey()?;
        let views = self.disk_views(&s);
        let (view, sb, disks, devices) = self
            .found(&s, &views)
            .into_iter()
            .find(|(v, _, _, _)| v.name == found)
            .ok_or_else(|| StorageError::NoSuchVolume(found.into()))?;
        let name = as_name.unwrap_or(&view.name).to_string();
        cairn_accounts::validate_user_name(&name)
            .map_err(|e| StorageError::InvalidName(e.to_string()))?;
        if name == cairn_accounts::SYSTEM_VOLUME || s.records.iter().any(|r| r.name == name) {
            return Err(StorageError::VolumeExists(name));
        }
        let level = Level::parse(&sb.level_name()).ok_or_else(|| {
            StorageError::Refused(format!(
                "The found array is {}, which Cairn does not manage.",
                sb.level_name()
            ))
        })?;
        if let Some(d) = disks.iter().find(|d| d.in_use.is_some()) {
            return Err(StorageError::DiskInUse {
                disk: d.describe(),
                by: d.in_use.clone().unwrap_or_default(),
            });
        }
        let record = VolumeRecord {
            name: name.clone(),
            level,
            uuid: sb.uuid.clone(),
            md_minor: self.free_minor(&s.records),
            disks: disks.iter().map(|d| d.snapshot()).collect(),
            created_s: now_s(),
            last_scrub_s: None,
            last_mismatches: None,
            last_state: String::new(),
            replacing: None,
            deleting: false,
        };
        self.load_modules(level);
        let devs: Vec<PathBuf> = devices.iter().map(|d| self.dev_path(d)).collect();
        self.assemble(&record, &devs)?;
        drop(guard);
        let checked = self.check(&record);
        let guard = self.guard();
        // The check ran without the lock: the name may have been taken meanwhile.
        let mounted = checked.and_then(|_| match self.exists(&name) {
            true => Err(StorageError::VolumeExists(name.clone())),
            false => self.mount(&record),
        });
        if let Err(e) = mounted.and_then(|_| self.save(&record)) {
            if self.live_of(&record).is_some() && !self.exists(&name) {
                let _ = self.inner.tools.unmount(&self.mount_point(&name));
            }
            let _ = self.inner.tools.stop(&self.md_dev(record.md_minor));
            return Err(e);
        }
        drop(guard);
        self.event(
            "info",
            &name,
            &format!(
                "Imported the {} array \"{}\" as volume {name} with its data.",
                sb.level_name(),
                sb.name
            ),
            "",
        );
        self.volume(&name)
    }
}

/// A volume marked as being checked, until dropped.
struct Checking<'a> {
    storage: &'a Storage,
    volume: String,
}

impl<'a> Checking<'a> {
    fn mark(storage: &'a Storage, volume: &str) -> Checking<'a> {
        storage
            .inner
            .checking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(volume.to_string());
        Checking {
            storage,
            volume: volume.to_string(),
        }
    }
}

impl Drop for Checking<'_> {
    fn drop(&mut self) {
        self.storage
            .inner
            .checking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.volume);
    }
}
