//! What owners see: every disk with its role and what holds it, every volume with its members' states and the
//! problem in a sentence, and arrays found on disks from elsewhere. Built from a survey and the records, so the
//! same rules name a disk on the disks page, in a refusal and in the event log.

use super::kernel::{is_partition_of, Survey};
use super::{norm_uuid, JobView, Storage};
use crate::contents::{Contents, MdSuperblock};
use crate::tools::HOMEHOST;
use crate::volumes::{describe, DiskSnapshot, VolumeRecord};
use crate::{Disk, DiskRole, StorageError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A disk with what Cairn knows about it beyond sysfs.
#[derive(Debug, Clone, Serialize)]
pub struct DiskView {
    #[serde(flatten)]
    pub disk: Disk,
    /// The volume (or found array) the disk belongs to.
    pub volume: Option<String>,
    /// What is on the disk, in words, when it is not blank.
    pub holds: Option<String>,
    /// Why the disk cannot be used right now (part of a running volume, mounted, the boot medium).
    pub in_use: Option<String>,
    /// SMART health: "not available" where the disk (or the image) cannot tell.
    pub smart: String,
    /// Why the disk's first or last blocks could not be read, for an `unreadable` disk.
    pub read_error: Option<String>,
}

impl DiskView {
    pub fn describe(&self) -> String {
        describe(
            self.disk.slot,
            &self.disk.model,
            &self.disk.serial,
            &self.disk.id,
        )
    }

    pub(super) fn snapshot(&self) -> DiskSnapshot {
        DiskSnapshot {
            id: self.disk.id.clone(),
            serial: self.disk.serial.clone(),
            model: self.disk.model.clone(),
            size_bytes: self.disk.size_bytes,
            slot: self.disk.slot,
        }
    }
}

/// One member of a volume as it is now.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub id: String,
    pub serial: String,
    pub model: String,
    pub slot: Option<u32>,
    pub size_bytes: u64,
    /// Kernel name while present.
    pub device: Option<String>,
    /// in_sync, rebuilding, spare, faulty, removed (in the box, out of the array), missing (not in the box).
    pub state: &'static str,
    /// "bay 2 (Virtual disk, serial CAIRN-BAY2)".
    pub description: String,
}

/// A volume as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeView {
    pub name: String,
    pub level: String,
    pub disks: Vec<String>,
    /// creating, clean, degraded, rebuilding, failed, missing, found.
    pub state: &'static str,
    pub size_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub mounted: bool,
    pub path: String,
    pub uuid: String,
    pub members: Vec<MemberView>,
    /// The running job, if any.
    pub job: Option<JobView>,
    /// What is wrong, in a sentence, when the state is not clean.
    pub problem: Option<String>,
    pub last_scrub_s: Option<u64>,
    pub last_mismatches: Option<u64>,
    /// For found arrays: `cairn` (made by a Cairn box) or `linux` (any other md array).
    pub origin: Option<&'static str>,
}

/// What a found array is called: its own name when that is a valid, free volume name.
pub(super) fn found_name(sb: &MdSuperblock, taken: &[String]) -> String {
    let short = sb.short_name().to_ascii_lowercase();
    if cairn_accounts::validate_user_name(&short).is_ok()
        && short != cairn_accounts::SYSTEM_VOLUME
        && !taken.contains(&short)
    {
        short
    } else {
        format!("found-{}", &norm_uuid(&sb.uuid)[..8])
    }
}

impl Storage {
    /// Every disk in a bay, with its role and what it holds; the boot medium is marked `boot`.
    pub fn disks(&self) -> Result<Vec<DiskView>, StorageError> {
        let s = self.survey()?;
        Ok(self.disk_views(&s))
    }

    /// Names for the arrays found on disks that belong to no volume of this box, by UUID.
    pub(super) fn found_names(&self, s: &Survey) -> BTreeMap<String, String> {
        let mut taken: Vec<String> = s.records.iter().map(|r| r.name.clone()).collect();
        let mut names = BTreeMap::new();
        for sd in &s.disks {
            for (_, sb) in &sd.md {
                let uuid = norm_uuid(&sb.uuid);
                if names.contains_key(&uuid) || s.records.iter().any(|r| norm_uuid(&r.uuid) == uuid)
                {
                    continue;
                }
                let name = found_name(sb, &taken);
                taken.push(name.clone());
                names.insert(uuid, name);
            }
        }
        names
    }

    pub(super) fn disk_views(&self, s: &Survey) -> Vec<DiskView> {
        let names = self.found_names(s);
        s.disks
            .iter()
            .map(|sd| {
                let d = &sd.disk;
                let mut v = DiskView {
                    disk: d.clone(),
                    volume: None,
                    holds: None,
                    in_use: None,
                    smart: "not available".into(),
                    read_error: None,
                };
                if d.role == DiskRole::Boot {
                    v.in_use = Some("the system".into());
                    return v;
                }
                let ours = s.records.iter().find(|r| {
                    !r.uuid.is_empty()
                        && sd
                            .md
                            .iter()
                            .any(|(_, sb)| norm_uuid(&sb.uuid) == norm_uuid(&r.uuid))
                });
                let reserved = s
                    .records
                    .iter()
                    .find(|r| r.uuid.is_empty() && r.disks.iter().any(|m| m.id == d.id));
                if let Some(r) = ours {
                    v.disk.role = DiskRole::Member;
                    v.volume = Some(r.name.clone());
                    v.holds = Some(format!("a member of volume {}", r.name));
                } else if !sd.md.is_empty() {
                    v.disk.role = DiskRole::Member;
                    v.volume = names.get(&norm_uuid(&sd.md[0].1.uuid)).cloned();
                    let arrays: Vec<String> = sd
                        .md
                        .iter()
                        .map(|(dev, sb)| {
                            let on = if *dev == d.device {
                                String::new()
                            } else {
                                format!(" (on {dev})")
                            };
                            format!(
                                "a member of the {} array \"{}\"{on}",
                                sb.level_name(),
                                sb.name
                            )
                        })
                        .collect();
                    v.holds = Some(arrays.join("; "));
                } else if let Contents::Data { what } = &sd.contents {
                    v.disk.role = DiskRole::Foreign;
                    v.holds = Some(what.clone());
                } else if let Contents::Unreadable { error } = &sd.contents {
                    v.disk.role = DiskRole::Unreadable;
                    v.holds = Some(format!("contents that could not be read ({error})"));
                    v.read_error = Some(error.clone());
                }
                if let Some(r) = reserved {
                    v.in_use = Some(format!("volume {} (being created)", r.name));
                    v.volume = Some(r.name.clone());
                } else if let Some(h) = &sd.holder {
                    v.in_use = Some(match ours {
                        Some(r) => format!("volume {}", r.name),
                        None => format!("the running md array {h}"),
                    });
                } else if let Some(r) = ours.filter(|r| r.disks.iter().any(|m| m.id == d.id)) {
                    // A member of a volume, even when not running in its array (missing disks, dropped out): its data.
                    v.in_use = Some(format!("volume {}", r.name));
                } else if s.mounts.iter().any(|(dev, _)| {
                    dev.strip_prefix("/dev/")
                        .is_some_and(|n| n == d.device || is_partition_of(n, &d.device))
                }) {
                    v.in_use = Some("a mounted filesystem".into());
                }
                v
            })
            .collect()
    }

    pub(super) fn volume_view(&self, r: &VolumeRecord, s: &Survey) -> VolumeView {
        let live = self.live_of(r);
        let job = self.running_job(&r.name);
        let job_view = job.as_ref().map(|j| self.job_view(j));
        let members: Vec<MemberView> = r
            .disks
            .iter()
            .map(|m| {
                let present = s
                    .disks
                    .iter()
                    .find(|sd| sd.disk.id == m.id)
                    .map(|sd| &sd.disk);
                let device = present.map(|d| d.device.clone());
                // A disk moved to another bay is named by the bay it is in now.
                let m = &DiskSnapshot {
                    slot: present.map(|d| d.slot).unwrap_or(m.slot),
                    ..m.clone()
                };
                let state = match (&live, &device) {
                    (_, None) => "missing",
                    (None, Some(_)) => "missing",
                    (Some(l), Some(dev)) => match l.member_on(dev) {
                        None => "removed",
                        Some((_, _, false)) => "missing",
                        Some((_, st, _)) if st.contains("faulty") => "faulty",
                        Some((_, st, _)) if st.contains("in_sync") => "in_sync",
                        Some((_, st, _)) if st.contains("spare") && l.sync_action == "recover" => {
                            "rebuilding"
                        }
                        Some((_, st, _)) if st.contains("spare") => "spare",
                        Some(_) => "rebuilding",
                    },
                };
                MemberView {
                    id: m.id.clone(),
                    serial: m.serial.clone(),
                    model: m.model.clone(),
                    slot: m.slot,
                    size_bytes: m.size_bytes,
                    device,
                    state,
                    description: m.describe(),
                }
            })
            .collect();
        let lost: Vec<&MemberView> = members
            .iter()
            .filter(|m| matches!(m.state, "missing" | "faulty" | "removed"))
            .collect();
        let creating = job_view
            .as_ref()
            .is_some_and(|j| j.kind == "create" && j.state == "running");
        let state: &'static str = match &live {
            _ if creating => "creating",
            None => "missing",
            Some(l) if (l.degraded as usize) > r.level.redundancy(r.disks.len()) => "failed",
            Some(l) if l.sync_action == "recover" => "rebuilding",
            Some(l) if l.degraded > 0 || !lost.is_empty() => "degraded",
            Some(_) => "clean",
        };
        let describe_lost = || {
            lost.iter()
                .map(|m| {
                    let how = match m.state {
                        "missing" => "missing from the box",
                        "removed" => "out of the array",
                        other => other,
                    };
                    format!("{} is {how}", m.description)
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let problem = match state {
            "missing" => Some(format!(
                "The volume's disks are not all here, so it is not running: {}. Put the disks back and restart the box; it is never re-created by itself.",
                if lost.is_empty() { "the array did not start".to_string() } else { describe_lost() }
            )),
            "failed" => Some(format!("More disks failed than the volume can survive: {}.", describe_lost())),
            "degraded" => Some(format!(
                "The volume runs without redundancy: {}. Replace the disk with a free one.",
                describe_lost()
            )),
            "rebuilding" => Some("A new disk is being filled; redundancy returns when the rebuild finishes.".into()),
            _ => None,
        };
        let mounted = self.is_mounted(&s.mounts, &r.name);
        let problem = match problem {
            None if !mounted && matches!(state, "clean" | "degraded" | "rebuilding") => Some(
                "The filesystem is not mounted: it is being checked, or the check failed (see the events).".to_string(),
            ),
            p => p,
        };
        let (size, used, free) = if mounted {
            fs_space(&self.mount_point(&r.name))
        } else {
            (live.as_ref().map(|l| l.size_bytes).unwrap_or(0), 0, 0)
        };
        VolumeView {
            name: r.name.clone(),
            level: r.level.name().into(),
            disks: r.disks.iter().map(|d| d.id.clone()).collect(),
            state,
            size_bytes: size,
            used_bytes: used,
            free_bytes: free,
            mounted,
            path: self.mount_point(&r.name).to_string_lossy().into_owned(),
            uuid: r.uuid.clone(),
            members,
            job: job_view,
            problem,
            last_scrub_s: r.last_scrub_s,
            last_mismatches: r.last_mismatches,
            origin: None,
        }
    }

    /// Found arrays: md members on disks that belong to no volume of this box, grouped by array, with the
    /// devices (disks or partitions) that carry them.
    #[allow(clippy::type_complexity)]
    pub(super) fn found(
        &self,
        s: &Survey,
        views: &[DiskView],
    ) -> Vec<(VolumeView, MdSuperblock, Vec<DiskView>, Vec<String>)> {
        let names = self.found_names(s);
        let mut groups: BTreeMap<String, (MdSuperblock, Vec<DiskView>, Vec<String>)> =
            BTreeMap::new();
        for (v, sd) in views.iter().zip(&s.disks) {
            for (dev, sb) in &sd.md {
                let uuid = norm_uuid(&sb.uuid);
                if !names.contains_key(&uuid) {
                    continue;
                }
                let entry = groups
                    .entry(uuid)
                    .or_insert_with(|| (sb.clone(), vec![], vec![]));
                if sb.events > entry.0.events {
                    entry.0 = sb.clone();
                }
                if !entry.1.iter().any(|d| d.disk.id == v.disk.id) {
                    entry.1.push(v.clone());
                }
                entry.2.push(dev.clone());
            }
        }
        groups
            .into_iter()
            .map(|(uuid, (sb, disks, devices))| {
                let name = names.get(&uuid).cloned().unwrap_or_default();
                let view = VolumeView {
                    name,
                    level: sb.level_name(),
                    disks: disks.iter().map(|d| d.disk.id.clone()).collect(),
                    state: "found",
                    size_bytes: 0,
                    used_bytes: 0,
                    free_bytes: 0,
                    mounted: false,
                    path: String::new(),
                    uuid: sb.uuid.clone(),
                    members: disks
                        .iter()
                        .map(|d| MemberView {
                            id: d.disk.id.clone(),
                            serial: d.disk.serial.clone(),
                            model: d.disk.model.clone(),
                            slot: d.disk.slot,
                            size_bytes: d.disk.size_bytes,
                            device: Some(d.disk.device.clone()),
                            state: "found",
                            description: d.describe(),
                        })
                        .collect(),
                    job: None,
                    problem: Some(format!(
                        "Found {} of {} disks of this array. Import it to use its data; it is never formatted unless you delete it.",
                        disks.len(),
                        sb.raid_disks
                    )),
                    last_scrub_s: None,
                    last_mismatches: None,
                    origin: Some(if sb.name.split_once(':').is_some_and(|(host, _)| host == HOMEHOST) { "cairn" } else { "linux" }),
                };
                (view, sb, disks, devices)
            })
            .collect()
    }

    /// Every volume of this box, then arrays found on disks from elsewhere.
    pub fn volumes(&self) -> Result<Vec<VolumeView>, StorageError> {
        let s = self.survey()?;
        let views = self.disk_views(&s);
        let mut out: Vec<VolumeView> = s.records.iter().map(|r| self.volume_view(r, &s)).collect();
        out.extend(self.found(&s, &views).into_iter().map(|(v, _, _, _)| v));
        Ok(out)
    }

    pub fn volume(&self, name: &str) -> Result<VolumeView, StorageError> {
        self.volumes()?
            .into_iter()
            .find(|v| v.name == name)
            .ok_or_else(|| StorageError::NoSuchVolume(name.to_string()))
    }

    /// Mounted volumes and their roots, for the share servers.
    pub fn mounted_roots(&self) -> BTreeMap<String, PathBuf> {
        let mounts = self.mounts();
        self.records()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| self.is_mounted(&mounts, &r.name))
            .map(|r| (r.name.clone(), self.mount_point(&r.name)))
            .collect()
    }
}

/// (size, used, free) bytes of a mounted filesystem.
// statvfs's field types are u32 on some 32-bit targets and u64 on others: the casts are not no-ops everywhere.
#[allow(clippy::unnecessary_cast)]
pub(super) fn fs_space(path: &Path) -> (u64, u64, u64) {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => {
            let frag = s.fragment_size() as u64;
            let size = s.blocks() as u64 * frag;
            let free = s.blocks_available() as u64 * frag;
            let used = size.saturating_sub(s.blocks_free() as u64 * frag);
            (size, used, free)
        }
        Err(_) => (0, 0, 0),
    }
}

/// Bytes used below `path`, walking at most `limit` entries: (bytes, complete).
pub fn used_bytes(path: &Path, limit: usize) -> (u64, bool) {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut seen = 0usize;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > limit {
                return (total, false);
            }
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            total += md.blocks() * 512;
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (total, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contents::MdSuperblock;

    #[test]
    fn found_arrays_keep_their_name_when_it_is_valid_and_free() {
        let sb = |name: &str| MdSuperblock {
            uuid: "92cef75c:3273207a:3e100ad7:3714c3ca".into(),
            name: name.into(),
            level: 5,
            raid_disks: 4,
            role: crate::contents::MemberRole::Active(0),
            events: 1,
            metadata: "1.2",
            member_data_bytes: 0,
        };
        assert_eq!(found_name(&sb("cairn:vol1"), &[]), "vol1");
        assert_eq!(found_name(&sb("debian:Data"), &[]), "data");
        assert_eq!(
            found_name(&sb("cairn:vol1"), &["vol1".into()]),
            "found-92cef75c"
        );
        assert_eq!(found_name(&sb("nas:0"), &[]), "found-92cef75c");
        assert_eq!(found_name(&sb("x:system"), &[]), "found-92cef75c");
        assert_eq!(found_name(&sb("x:../../etc"), &[]), "found-92cef75c");
    }

    #[test]
    fn used_bytes_counts_and_stops_at_the_limit() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("a")).unwrap();
        std::fs::write(d.path().join("a/f"), vec![1u8; 100_000]).unwrap();
        let (bytes, complete) = used_bytes(d.path(), 100);
        assert!(complete && bytes >= 100_000, "{bytes}");
        assert!(!used_bytes(d.path(), 1).1);
    }
}
