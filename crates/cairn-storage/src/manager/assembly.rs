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
        let interrupted = self.close_interrupted();
        self.assemble_all(started);
        self.judge_interrupted(interrupted);
    }

    fn assemble_all(&self, started: Instant) {
        let Ok(records) = self.records() else { return };
        if records.is_empty() {
            return;
        }
        let _guard = self.guard();
        let survey_started = Instant::now();
        let survey = match self.survey() {
            Ok(s) => s,
            Err(e) => return log::error!("storage survey failed: {e}"),
        };
        // Time spent finding members and assembling, without module loading and filesystem checks:
        // the figure comparable with `mdadm --assemble --scan`.
        let mut assembling = survey_started.elapsed();
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
                    let _ = self.save(&r);
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
            self.settle_replacing(r);
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
    pub(super) fn check_and_mount(&self, r: &VolumeRecord) -> Result<(), StorageError> {
        let md = self.md_dev(r.md_minor);
        match self.inner.tools.fsck(&md)? {
            Fsck::Clean => {}
            Fsck::Repaired => self.event(
                "warning",
                &r.name,
                &format!("The filesystem check repaired volume {}.", r.name),
                "",
            ),
        }
        self.mount(r)
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
        };
        self.load_modules(level);
        let devs: Vec<PathBuf> = devices.iter().map(|d| self.dev_path(d)).collect();
        self.assemble(&record, &devs)?;
        if let Err(e) = self.check_and_mount(&record) {
            let _ = self.inner.tools.stop(&self.md_dev(record.md_minor));
            return Err(e);
        }
        self.save(&record)?;
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
