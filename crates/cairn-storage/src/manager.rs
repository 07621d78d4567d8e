//! The storage manager: volumes on md RAID, their jobs and the event log.
//!
//! What a volume *should* be lives in Cairn's store (name, level, md UUID, member disks); how it *is* always
//! comes from the kernel (sysfs `md/*`, /proc/mounts) at the moment of asking, so a daemon restart loses no
//! job and the dashboard shows a failed disk as soon as the kernel knows. Tools run through `cairn-exec`.
//! Exercised end to end by the QEMU storage scenario (tests/tests/storage.rs); the rules are tested on the host.

use crate::contents::{identify, Contents, MdSuperblock, HEAD_BYTES, TAIL_BYTES};
use crate::volumes::{check_create, describe, CreateRequest, DiskSnapshot, Level, VolumeRecord};
use crate::{discover, Disk, DiskRole, StorageError};
use cairn_board::Board;
use cairn_store::{Store, Table};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the kernel's and the box's files are; tests point these at temporary trees.
#[derive(Debug, Clone)]
pub struct Paths {
    pub sys: PathBuf,
    pub dev: PathBuf,
    pub proc: PathBuf,
    /// Volumes are mounted at `<data>/<name>`.
    pub data: PathBuf,
}

impl Paths {
    pub fn on_box() -> Paths {
        Paths {
            sys: "/sys".into(),
            dev: "/dev".into(),
            proc: "/proc".into(),
            data: "/data".into(),
        }
    }
}

/// How often a scrub runs by itself on a healthy volume.
pub const SCRUB_EVERY_S: u64 = 30 * 24 * 3600;
/// Events kept in the log (oldest dropped first).
const EVENTS_KEPT: usize = 500;
const MDADM_TIMEOUT: Duration = Duration::from_secs(120);
const MKFS_TIMEOUT: Duration = Duration::from_secs(1800);
const FSCK_TIMEOUT: Duration = Duration::from_secs(3600);

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

    fn snapshot(&self) -> DiskSnapshot {
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

#[derive(Debug, Clone, Serialize, Deserialize)]
struct JobRecord {
    id: String,
    /// create, rebuild, scrub.
    kind: String,
    volume: String,
    md_minor: u32,
    started_s: u64,
    /// running, done, failed.
    state: String,
    /// preparing, formatting, kernel (the kernel does the rest).
    step: String,
    message: String,
    finished_s: Option<u64>,
    /// The disk a rebuild writes to.
    disk: Option<String>,
    /// Its kernel name when the job started (checked against the array; names change across boots).
    #[serde(default)]
    device: Option<String>,
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

/// The kernel's view of one md array.
#[derive(Debug, Clone, Default)]
struct MdLive {
    sync_action: String,
    degraded: u32,
    size_bytes: u64,
    component_kib: u64,
    sync: Option<(u64, u64)>,
    speed_kib_s: Option<u64>,
    mismatch_cnt: u64,
    /// (kernel name, state words from dev-*/state, device still exists).
    members: Vec<(String, String, bool)>,
}

impl MdLive {
    fn member(&self, device: &str) -> Option<&(String, String, bool)> {
        self.members.iter().find(|(d, _, _)| d == device)
    }

    /// The member on a disk: the whole disk or one of its partitions.
    fn member_on(&self, disk: &str) -> Option<&(String, String, bool)> {
        self.members
            .iter()
            .find(|(d, _, _)| d == disk || is_partition_of(d, disk))
    }
}

/// Everything read in one pass over the disks.
struct Survey {
    disks: Vec<Surveyed>,
    records: Vec<VolumeRecord>,
    mounts: Vec<(String, String)>,
}

/// One disk as read: what its start holds, which md array runs on it, and the md superblocks on it (on the
/// whole disk, or on its partitions: arrays made by other systems often live on partitions, several per disk).
struct Surveyed {
    disk: Disk,
    contents: Contents,
    holder: Option<String>,
    /// (device carrying the superblock: the disk or one of its partitions, the superblock).
    md: Vec<(String, MdSuperblock)>,
}

/// Whether kernel name `part` is a partition of disk `disk` (`vdb1` of `vdb`, `nvme0n1p2` of `nvme0n1`).
fn is_partition_of(part: &str, disk: &str) -> bool {
    part.strip_prefix(disk).is_some_and(|rest| {
        let digits = rest.strip_prefix('p').unwrap_or(rest);
        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
    })
}

/// The storage manager. Cheap to clone; one storage change runs at a time.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

struct Inner {
    board: Board,
    paths: Paths,
    store: Store,
    volumes: Table,
    jobs: Table,
    events: Table,
    /// Held while a change is checked and recorded, so two requests cannot pick the same disks.
    lock: Mutex<()>,
    /// Held while a finished job is recorded, so it is recorded (and logged) once.
    settling: Mutex<()>,
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn read_trim(path: &Path) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn norm_uuid(u: &str) -> String {
    u.chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The first of the usual system folders holding `name`: tools are run by absolute path, never via a shell.
fn tool(name: &str) -> String {
    for dir in ["/sbin", "/usr/sbin", "/bin", "/usr/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p.to_string_lossy().into_owned();
        }
    }
    name.to_string()
}

fn run(
    step: &str,
    program: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<String, StorageError> {
    cairn_exec::run(&tool(program), args, timeout)
        .map(|o| o.stdout)
        .map_err(|e| StorageError::tool(step, e))
}

/// What a found array is called: its own name when that is a valid, free volume name.
fn found_name(sb: &MdSuperblock, taken: &[String]) -> String {
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
    /// Opens the storage records in `store`. Nothing is assembled until [`Storage::start`].
    pub fn new(board: Board, paths: Paths, store: Store) -> Result<Storage, StorageError> {
        Ok(Storage {
            inner: Arc::new(Inner {
                volumes: store.table("volumes")?,
                jobs: store.table("jobs")?,
                events: store.table("storage_events")?,
                board,
                paths,
                store,
                lock: Mutex::new(()),
                settling: Mutex::new(()),
            }),
        })
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn records(&self) -> Result<Vec<VolumeRecord>, StorageError> {
        Ok(self
            .inner
            .volumes
            .all::<VolumeRecord>()?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    fn record(&self, name: &str) -> Result<VolumeRecord, StorageError> {
        self.inner
            .volumes
            .get::<VolumeRecord>(name)?
            .ok_or_else(|| StorageError::NoSuchVolume(name.to_string()))
    }

    fn save(&self, r: &VolumeRecord) -> Result<(), StorageError> {
        self.inner.volumes.put(&r.name, r)?;
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
        let _ = self.inner.events.put(&format!("{seq:020}"), &e);
        while self.inner.events.len() > EVENTS_KEPT {
            match self.inner.events.tree().pop_min() {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        let _ = self.inner.store.commit();
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

    // ---------------------------------------------------------------- reading the kernel

    fn md_dir(&self, minor: u32) -> PathBuf {
        self.inner.paths.sys.join(format!("block/md{minor}/md"))
    }

    /// `/dev/<name>` as a string for a tool's argument vector.
    fn dev_path(&self, device: impl AsRef<Path>) -> String {
        self.inner
            .paths
            .dev
            .join(device)
            .to_string_lossy()
            .into_owned()
    }

    fn md_dev(&self, minor: u32) -> String {
        self.dev_path(format!("md{minor}"))
    }

    fn md_live(&self, minor: u32) -> Option<MdLive> {
        let dir = self.md_dir(minor);
        let state = read_trim(&dir.join("array_state"));
        if state.is_empty() || state == "clear" || state == "inactive" {
            return None;
        }
        let mut members = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(dev) = name.strip_prefix("dev-") {
                    // /sys/class/block lists partitions too (members of arrays made on partitions).
                    let exists = self.inner.paths.sys.join("class/block").join(dev).exists()
                        || self.inner.paths.sys.join("block").join(dev).exists();
                    members.push((dev.to_string(), read_trim(&e.path().join("state")), exists));
                }
            }
        }
        members.sort();
        let speed = read_trim(&dir.join("sync_speed")).parse().ok();
        Some(MdLive {
            sync_action: read_trim(&dir.join("sync_action")),
            degraded: read_trim(&dir.join("degraded")).parse().unwrap_or(0),
            size_bytes: read_trim(&self.inner.paths.sys.join(format!("block/md{minor}/size")))
                .parse::<u64>()
                .unwrap_or(0)
                * 512,
            component_kib: read_trim(&dir.join("component_size")).parse().unwrap_or(0),
            sync: crate::md::parse_sync_completed(&read_trim(&dir.join("sync_completed"))),
            speed_kib_s: speed,
            mismatch_cnt: read_trim(&dir.join("mismatch_cnt")).parse().unwrap_or(0),
            members,
        })
    }

    /// The running array for a record: by its md number, checked against the UUID.
    fn live_of(&self, r: &VolumeRecord) -> Option<MdLive> {
        if r.uuid.is_empty() {
            return self.md_live(r.md_minor);
        }
        let uuid = read_trim(&self.md_dir(r.md_minor).join("uuid"));
        if !uuid.is_empty() && norm_uuid(&uuid) != norm_uuid(&r.uuid) {
            return None;
        }
        self.md_live(r.md_minor)
    }

    fn mounts(&self) -> Vec<(String, String)> {
        read_trim(&self.inner.paths.proc.join("mounts"))
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((w.next()?.to_string(), w.next()?.replace("\\040", " ")))
            })
            .collect()
    }

    fn mount_point(&self, name: &str) -> PathBuf {
        self.inner.paths.data.join(name)
    }

    fn is_mounted(&self, mounts: &[(String, String)], name: &str) -> bool {
        let mp = self.mount_point(name).to_string_lossy().into_owned();
        mounts.iter().any(|(_, m)| *m == mp)
    }

    /// Reads the start and end of a disk past the page cache (md writes superblocks around it).
    fn read_contents(&self, device: &str) -> Contents {
        let path = self.inner.paths.dev.join(device);
        let Ok(mut f) = std::fs::File::open(&path) else {
            return Contents::Blank;
        };
        let _ = nix::fcntl::posix_fadvise(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        );
        let mut head = vec![0u8; HEAD_BYTES];
        let n = read_full(&mut f, &mut head);
        head.truncate(n);
        let size = f.seek(SeekFrom::End(0)).unwrap_or(0);
        let sectors = size / 512;
        let mut tail = vec![0u8; TAIL_BYTES];
        if sectors > 16 {
            let at = ((sectors - 16) & !7) * 512;
            if f.seek(SeekFrom::Start(at)).is_ok() {
                let n = read_full(&mut f, &mut tail);
                tail.truncate(n);
            }
        } else {
            tail.clear();
        }
        identify(&head, &tail)
    }

    fn survey(&self) -> Result<Survey, StorageError> {
        let found = discover(&self.inner.paths.sys, &self.inner.board);
        let disks = found
            .into_iter()
            .map(|d| {
                if d.role == DiskRole::Boot {
                    return Surveyed {
                        disk: d,
                        contents: Contents::Blank,
                        holder: None,
                        md: vec![],
                    };
                }
                let dir = self.inner.paths.sys.join("block").join(&d.device);
                let contents = self.read_contents(&d.device);
                let mut holder = crate::first_holder(&dir);
                let mut md = vec![];
                match &contents {
                    Contents::Md(sb) => md.push((d.device.clone(), sb.clone())),
                    Contents::Data { .. } => {
                        for part in crate::partitions(&dir) {
                            if let Contents::Md(sb) = self.read_contents(&part) {
                                holder = holder.or_else(|| crate::first_holder(&dir.join(&part)));
                                md.push((part, sb));
                            }
                        }
                    }
                    Contents::Blank => {}
                }
                Surveyed {
                    disk: d,
                    contents,
                    holder,
                    md,
                }
            })
            .collect();
        Ok(Survey {
            disks,
            records: self.records()?,
            mounts: self.mounts(),
        })
    }

    /// Names for the arrays found on disks that belong to no volume of this box, by UUID.
    fn found_names(&self, s: &Survey) -> BTreeMap<String, String> {
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

    /// The survey without reading any disk: enough to tell which member disks are present (the monitor's
    /// once-a-second pass must cost next to nothing).
    fn survey_light(&self) -> Result<Survey, StorageError> {
        Ok(Survey {
            disks: discover(&self.inner.paths.sys, &self.inner.board)
                .into_iter()
                .map(|d| Surveyed {
                    disk: d,
                    contents: Contents::Blank,
                    holder: None,
                    md: vec![],
                })
                .collect(),
            records: self.records()?,
            mounts: self.mounts(),
        })
    }

    fn disk_views(&self, s: &Survey) -> Vec<DiskView> {
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

    /// Every disk in a bay, with its role and what it holds; the boot medium is marked `boot`.
    pub fn disks(&self) -> Result<Vec<DiskView>, StorageError> {
        let s = self.survey()?;
        Ok(self.disk_views(&s))
    }

    // ---------------------------------------------------------------- views

    fn job_record(&self, id: &str) -> Result<Option<JobRecord>, StorageError> {
        Ok(self.inner.jobs.get(&format!("{:0>20}", id))?)
    }

    fn save_job(&self, j: &JobRecord) -> Result<(), StorageError> {
        self.inner.jobs.put(&format!("{:0>20}", j.id), j)?;
        self.inner.store.commit()?;
        Ok(())
    }

    fn running_job(&self, volume: &str) -> Option<JobRecord> {
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
    fn judge(&self, j: &JobRecord, live: Option<&MdLive>) -> (String, f32, String) {
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

    fn job_view(&self, j: &JobRecord) -> JobView {
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

    fn device_of(&self, disk_id: &str) -> Option<String> {
        discover(&self.inner.paths.sys, &self.inner.board)
            .into_iter()
            .find(|d| d.id == disk_id)
            .map(|d| d.device)
    }

    fn volume_view(&self, r: &VolumeRecord, s: &Survey) -> VolumeView {
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
    fn found(
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
                    origin: Some(if sb.name.starts_with("cairn:") { "cairn" } else { "linux" }),
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

    /// Whether a volume of this box has that name (shares may only be placed on those).
    pub fn exists(&self, name: &str) -> bool {
        matches!(self.inner.volumes.get::<VolumeRecord>(name), Ok(Some(_)))
    }

    // ---------------------------------------------------------------- changes

    fn free_minor(&self, records: &[VolumeRecord]) -> u32 {
        (0..)
            .find(|n| {
                !records.iter().any(|r| r.md_minor == *n)
                    && read_trim(&self.md_dir(*n).join("array_state")).is_empty()
            })
            .unwrap_or(0)
    }

    fn new_job(
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

    fn load_modules(&self, level: Level) {
        for m in ["md_mod", level.module()] {
            if let Err(e) = run(
                "loading the RAID driver",
                "modprobe",
                &[m],
                Duration::from_secs(60),
            ) {
                log::warn!("{e}");
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

    fn fail_job(&self, mut j: JobRecord, message: String, detail: &str) {
        j.state = "failed".into();
        j.message = message.clone();
        j.finished_s = Some(now_s());
        let _ = self.save_job(&j);
        self.event("error", &j.volume, &message, detail);
    }

    fn step(&self, j: &mut JobRecord, step: &str, message: &str) {
        j.step = step.into();
        j.message = message.into();
        let _ = self.save_job(j);
    }

    /// The create job's work after the checks: wipe, mdadm --create, mkfs, mount; the kernel then syncs.
    fn build(&self, mut record: VolumeRecord, disks: Vec<crate::DiskView>, mut job: JobRecord) {
        self.load_modules(record.level);
        let devs: Vec<String> = disks
            .iter()
            .map(|d| self.dev_path(&d.disk.device))
            .collect();
        for dev in &devs {
            let _ = run(
                "clearing old RAID labels",
                "mdadm",
                &["--zero-superblock", "--force", dev],
                MDADM_TIMEOUT,
            );
            if let Err(e) = zero_ends(Path::new(dev)) {
                return self.abandon(&record, job, format!("Could not clear {dev}: {e}"), "");
            }
        }
        let md = self.md_dev(record.md_minor);
        let n = devs.len().to_string();
        let level = format!("--level={}", record.level.md_level());
        let name = format!("--name={}", record.name);
        let count = format!("--raid-devices={n}");
        let mut args: Vec<&str> = vec![
            "--create",
            &md,
            "--config=none",
            "--run",
            "--metadata=1.2",
            "--homehost=cairn",
            &name,
            &level,
            &count,
        ];
        if record.level == Level::Single {
            args.push("--force");
        }
        args.extend(devs.iter().map(|s| s.as_str()));
        if let Err(e) = run("creating the RAID array", "mdadm", &args, MDADM_TIMEOUT) {
            let (msg, detail) = split_tool(e);
            for dev in &devs {
                let _ = run(
                    "clearing",
                    "mdadm",
                    &["--zero-superblock", "--force", dev],
                    MDADM_TIMEOUT,
                );
            }
            return self.abandon(&record, job, msg, &detail);
        }
        match run(
            "reading the new array",
            "mdadm",
            &["--detail", "--export", &md],
            MDADM_TIMEOUT,
        ) {
            Ok(out) => record.uuid = crate::md::parse_detail_export(&out).uuid,
            Err(e) => log::warn!("{e}"),
        }
        if record.uuid.is_empty() {
            record.uuid = read_trim(&self.md_dir(record.md_minor).join("uuid"));
        }
        let _ = self.save(&record);
        self.step(&mut job, "formatting", "Creating the filesystem.");
        let label = record.name.clone();
        if let Err(e) = run(
            "creating the filesystem",
            "mke2fs",
            &[
                "-t",
                "ext4",
                "-F",
                "-q",
                "-L",
                &label,
                "-m",
                "1",
                "-E",
                "lazy_itable_init=1,lazy_journal_init=1",
                &md,
            ],
            MKFS_TIMEOUT,
        ) {
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
    fn abandon(&self, record: &VolumeRecord, job: JobRecord, message: String, detail: &str) {
        let _ = self.inner.volumes.remove(&record.name);
        let _ = self.inner.store.commit();
        self.fail_job(job, message, detail);
    }

    fn mount(&self, r: &VolumeRecord) -> Result<(), StorageError> {
        let mp = self.mount_point(&r.name);
        if self.is_mounted(&self.mounts(), &r.name) {
            return Ok(());
        }
        std::fs::create_dir_all(&mp).map_err(|e| StorageError::io("making the mount point", e))?;
        nix::mount::mount(
            Some(Path::new(&self.md_dev(r.md_minor))),
            &mp,
            Some("ext4"),
            nix::mount::MsFlags::MS_NOATIME
                | nix::mount::MsFlags::MS_NODEV
                | nix::mount::MsFlags::MS_NOSUID,
            None::<&str>,
        )
        .map_err(|e| {
            StorageError::Refused(format!(
                "The volume's filesystem could not be mounted ({e})."
            ))
        })
    }

    /// Checks and mounts an assembled array's filesystem; a check that finds damage it cannot fix stops here.
    fn check_and_mount(&self, r: &VolumeRecord) -> Result<(), StorageError> {
        let md = self.md_dev(r.md_minor);
        match cairn_exec::run(&tool("e2fsck"), &["-p", &md], FSCK_TIMEOUT) {
            Ok(_) => {}
            Err(cairn_exec::ExecError::Failed {
                code: Some(1 | 2), ..
            }) => self.event(
                "warning",
                &r.name,
                &format!("The filesystem check repaired volume {}.", r.name),
                "",
            ),
            Err(e) => return Err(StorageError::tool("checking the filesystem", e)),
        }
        self.mount(r)
    }

    /// At boot: assembles every recorded volume by its UUID from the disks that carry it, and mounts it.
    /// A volume without its disks is left as `missing`, never re-created.
    pub fn start(&self) {
        let started = Instant::now();
        self.close_interrupted();
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
                let devs: Vec<String> = survey
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
        }
        let ms = started.elapsed().as_millis();
        let asm = assembling.as_millis();
        let _ = std::fs::write("/run/cairn/assembly-ms", format!("{asm} {ms}\n"));
        self.event(
            "info",
            "",
            &format!(
                "Volumes assembled in {asm} ms ({ms} ms with driver loading, checks and mounts)."
            ),
            "",
        );
    }

    /// Work the daemon itself was doing when the box lost power or the daemon restarted (wiping, creating the
    /// array, formatting) cannot resume: it is closed as failed and said so. A volume whose array was never
    /// created is dropped (its disks hold nothing); kernel work (sync, rebuild, scrub) simply goes on.
    fn close_interrupted(&self) {
        let Ok(jobs) = self.inner.jobs.all::<JobRecord>() else {
            return;
        };
        for (_, mut j) in jobs {
            if j.state != "running" || j.step == "kernel" {
                continue;
            }
            let record = self
                .inner
                .volumes
                .get::<VolumeRecord>(&j.volume)
                .ok()
                .flatten();
            let message = match &record {
                Some(r) if r.uuid.is_empty() => {
                    let _ = self.inner.volumes.remove(&r.name);
                    format!(
                        "Creating volume {} was interrupted before its array existed; its disks are free again.",
                        j.volume
                    )
                }
                _ => format!(
                    "Creating volume {} was interrupted while {}; delete the volume and create it again.",
                    j.volume,
                    if j.step == "formatting" { "formatting" } else { "preparing its disks" }
                ),
            };
            j.state = "failed".into();
            j.message = message.clone();
            j.finished_s = Some(now_s());
            let _ = self.save_job(&j);
            self.event("error", &j.volume, &message, "");
        }
    }

    fn assemble(&self, r: &VolumeRecord, devs: &[String]) -> Result<(), StorageError> {
        let md = self.md_dev(r.md_minor);
        let uuid = format!("--uuid={}", r.uuid);
        let mut args: Vec<&str> = vec!["--assemble", &md, "--config=none", "--run", &uuid];
        args.extend(devs.iter().map(|s| s.as_str()));
        run("assembling the RAID array", "mdadm", &args, MDADM_TIMEOUT).map(|_| ())
    }

    /// Marks a member failed and takes it out of the array (the owner wants to pull it, or tests a failure).
    pub fn fail(&self, volume: &str, disk_id: &str, by: &str) -> Result<VolumeView, StorageError> {
        let _guard = self.guard();
        let r = self.record(volume)?;
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
        run(
            "marking the disk failed",
            "mdadm",
            &[&md, "--fail", &path],
            MDADM_TIMEOUT,
        )?;
        let _ = run(
            "removing the disk from the array",
            "mdadm",
            &[&md, "--remove", &path],
            MDADM_TIMEOUT,
        );
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

    /// Replaces a failed, missing or healthy member with another disk; the rebuild is a job.
    pub fn replace(
        &self,
        volume: &str,
        failed: &str,
        with: &str,
        confirm: Option<&str>,
    ) -> Result<JobView, StorageError> {
        let guard = self.guard();
        let mut r = self.record(volume)?;
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
        if new.disk.role != DiskRole::Free && !own_stale && confirm != Some(volume) {
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
        let new_path = self.dev_path(&new.disk.device);
        // The failed member as the array knows it: the disk, or its partition.
        let old_member = s
            .disks
            .iter()
            .find(|sd| sd.disk.id == failed)
            .and_then(|sd| live.member_on(&sd.disk.device))
            .cloned();
        let old_dev = old_member.as_ref().map(|(d, _, _)| d.clone());
        let old_state = old_member.map(|(_, st, _)| st);
        let _ = run(
            "clearing old RAID labels",
            "mdadm",
            &["--zero-superblock", "--force", &new_path],
            MDADM_TIMEOUT,
        );
        zero_ends(Path::new(&new_path))
            .map_err(|e| StorageError::io("clearing the new disk", e))?;
        match (&old_dev, &old_state) {
            (Some(old), Some(st)) if st.contains("in_sync") && !st.contains("faulty") => {
                // A healthy disk swapped out: keep redundancy during the copy (md hot replace).
                let old_path = self.dev_path(old);
                run(
                    "adding the new disk",
                    "mdadm",
                    &[&md, "--add", &new_path],
                    MDADM_TIMEOUT,
                )?;
                run(
                    "replacing the disk",
                    "mdadm",
                    &[&md, "--replace", &old_path, "--with", &new_path],
                    MDADM_TIMEOUT,
                )?;
            }
            (Some(old), Some(_)) => {
                let old_path = self.dev_path(old);
                let _ = run(
                    "removing the failed disk",
                    "mdadm",
                    &[&md, "--fail", &old_path],
                    MDADM_TIMEOUT,
                );
                let _ = run(
                    "removing the failed disk",
                    "mdadm",
                    &[&md, "--remove", &old_path],
                    MDADM_TIMEOUT,
                );
                run(
                    "adding the new disk",
                    "mdadm",
                    &[&md, "--add", &new_path],
                    MDADM_TIMEOUT,
                )?;
            }
            _ => {
                run(
                    "adding the new disk",
                    "mdadm",
                    &[&md, "--add", &new_path],
                    MDADM_TIMEOUT,
                )?;
            }
        }
        let old = r.disks[idx].clone();
        r.disks[idx] = new.snapshot();
        self.save(&r)?;
        let mut job = self.new_job(
            "rebuild",
            volume,
            r.md_minor,
            "kernel",
            "Rebuilding onto the new disk.",
            Some(with.into()),
        )?;
        job.device = Some(new.disk.device.clone());
        self.save_job(&job)?;
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

    /// Starts a scrub (md `check`): every block is read and parity compared; mismatches are counted.
    pub fn scrub(&self, volume: &str) -> Result<JobView, StorageError> {
        let _guard = self.guard();
        let r = self.record(volume)?;
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
        std::fs::write(self.md_dir(r.md_minor).join("sync_action"), "check")
            .map_err(|e| StorageError::io("starting the scrub", e))?;
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
        let mp = self.mount_point(volume);
        if self.is_mounted(&self.mounts(), volume) {
            nix::mount::umount(&mp).map_err(|e| StorageError::Busy(format!("Volume {volume} is in use and could not be unmounted ({e}); close files on it and try again.")))?;
        }
        let live = self.live_of(&r);
        let members: Vec<String> = live
            .as_ref()
            .map(|l| {
                l.members
                    .iter()
                    .filter(|(_, _, e)| *e)
                    .map(|(d, _, _)| d.clone())
                    .collect()
            })
            .unwrap_or_default();
        if live.is_some() {
            let md = self.md_dev(r.md_minor);
            if let Err(e) = run(
                "stopping the RAID array",
                "mdadm",
                &["--stop", &md],
                MDADM_TIMEOUT,
            ) {
                let _ = self.mount(&r);
                return Err(e);
            }
        }
        for dev in members {
            let path = self.dev_path(&dev);
            let _ = run(
                "clearing RAID labels",
                "mdadm",
                &["--zero-superblock", "--force", &path],
                MDADM_TIMEOUT,
            );
            let _ = zero_ends(Path::new(&path));
        }
        self.inner.volumes.remove(volume)?;
        self.inner.store.commit()?;
        let _ = std::fs::remove_dir(&mp);
        drop(_guard);
        self.event(
            "info",
            volume,
            &format!("Volume {volume} was deleted and its disks are free."),
            "",
        );
        Ok(())
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
        };
        self.load_modules(level);
        let devs: Vec<String> = devices.iter().map(|d| self.dev_path(d)).collect();
        self.assemble(&record, &devs)?;
        if let Err(e) = self.check_and_mount(&record) {
            let _ = run(
                "stopping the RAID array",
                "mdadm",
                &["--stop", &self.md_dev(record.md_minor)],
                MDADM_TIMEOUT,
            );
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

    /// A member whose disk vanished (pulled, dead controller) is failed out at once, as udev would do.
    fn kick_vanished(&self, r: &VolumeRecord, live: &MdLive) {
        for (dev, state, exists) in &live.members {
            if !exists && !state.contains("faulty") {
                let md = self.md_dev(r.md_minor);
                let _ = run(
                    "failing a removed disk",
                    "mdadm",
                    &["--incremental", "--fail", dev, "--config=none"],
                    MDADM_TIMEOUT,
                )
                .or_else(|_| {
                    run(
                        "failing a removed disk",
                        "mdadm",
                        &[&md, "--fail", "detached", "--remove", "detached"],
                        MDADM_TIMEOUT,
                    )
                });
                let who = r
                    .disks
                    .iter()
                    .find(|m| self.device_of(&m.id).is_none())
                    .map(|m| m.describe())
                    .unwrap_or_else(|| format!("disk {dev}"));
                self.event(
                    "warning",
                    &r.name,
                    &format!(
                        "{who} was removed from the box while part of volume {}.",
                        r.name
                    ),
                    "",
                );
            }
        }
    }

    /// Closes every running job of a volume whose kernel work is over, oldest first.
    fn finish_jobs(&self, volume: &str) {
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
    fn settle(&self, j: &JobRecord, live: Option<&MdLive>) {
        let (state, _, message) = self.judge(j, live);
        if state == "running" {
            return;
        }
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
        let _ = self.save_job(&current);
        let mut mismatches = None;
        if j.kind == "scrub" {
            if let Ok(Some(mut r)) = self.inner.volumes.get::<VolumeRecord>(&j.volume) {
                r.last_scrub_s = Some(now_s());
                r.last_mismatches = live.map(|l| l.mismatch_cnt);
                mismatches = r.last_mismatches;
                let _ = self.save(&r);
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

    /// The monitor, forever: a pass ([`Storage::tick`]) whenever the kernel reports an md event (a disk
    /// failed or was added, a sync started or ended: /proc/mdstat polls with POLLPRI, as `mdadm --monitor`
    /// uses it) and at least every `at_most`. Progress alone wakes nothing, so a rebuild costs nothing to
    /// watch; the pages read the kernel live, so nothing waits on this loop to show a failure.
    pub fn run_monitor(&self, at_most: Duration) -> ! {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let ms = u16::try_from(at_most.as_millis()).unwrap_or(u16::MAX);
        let mut mdstat: Option<std::fs::File> = None;
        loop {
            if mdstat.is_none() {
                // md_mod is loaded on demand: /proc/mdstat appears with the first volume.
                mdstat = std::fs::File::open(self.inner.paths.proc.join("mdstat")).ok();
            }
            // Read before the pass: an event during the pass then wakes the poll at once.
            if let Some(f) = mdstat.as_mut() {
                let mut sink = String::new();
                let _ = f
                    .seek(SeekFrom::Start(0))
                    .and_then(|_| f.read_to_string(&mut sink));
            }
            self.tick();
            match &mdstat {
                Some(f) => {
                    let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLPRI)];
                    let _ = poll(&mut fds, PollTimeout::from(ms));
                }
                None => std::thread::sleep(at_most),
            }
        }
    }

    /// One pass of the monitor: vanished disks failed out, state changes logged, finished jobs closed,
    /// scrubs started when due. Cheap (sysfs reads); run every second.
    pub fn tick(&self) {
        let Ok(records) = self.records() else { return };
        // Which disks are present and what is mounted: read once for every volume of this pass.
        let Ok(s) = self.survey_light() else { return };
        for mut r in records {
            let live = self.live_of(&r);
            if let Some(l) = &live {
                if l.members
                    .iter()
                    .any(|(_, st, e)| !e && !st.contains("faulty"))
                {
                    let _g = self.guard();
                    self.kick_vanished(&r, l);
                }
            }
            self.finish_jobs(&r.name);
            // Settling a scrub updated the record: read it again.
            if let Ok(Some(fresh)) = self.inner.volumes.get::<VolumeRecord>(&r.name) {
                r = fresh;
            }
            let view = self.volume_view(&r, &s);
            if view.state != r.last_state {
                let level = match view.state {
                    "clean" | "creating" | "rebuilding" => "info",
                    "degraded" => "warning",
                    _ => "error",
                };
                let msg = match &view.problem {
                    Some(p) => format!("Volume {} is {}: {p}", r.name, view.state),
                    None => format!("Volume {} is {}.", r.name, view.state),
                };
                self.event(level, &r.name, &msg, "");
                r.last_state = view.state.to_string();
            }
            if view.state == "clean" && view.job.is_none() && r.level != Level::Raid0 {
                let since = r.last_scrub_s.unwrap_or(r.created_s);
                if now_s().saturating_sub(since) > SCRUB_EVERY_S {
                    if let Err(e) = self.scrub(&r.name) {
                        log::warn!("scheduled scrub of {}: {e}", r.name);
                    }
                    continue;
                }
            }
            if let Ok(Some(current)) = self.inner.volumes.get::<VolumeRecord>(&r.name) {
                if current.last_state != r.last_state {
                    let mut c = current;
                    c.last_state = r.last_state.clone();
                    let _ = self.save(&c);
                }
            }
        }
    }
}

/// Where a disk sits in a volume's member list; the API's `volume.disk_not_member` when it is not there.
fn member_index(r: &VolumeRecord, disk_id: &str) -> Result<usize, StorageError> {
    r.disks
        .iter()
        .position(|d| d.id == disk_id)
        .ok_or_else(|| StorageError::NotMember {
            disk: disk_id.into(),
            volume: r.name.clone(),
        })
}

fn split_tool(e: StorageError) -> (String, String) {
    match e {
        StorageError::Tool { step, detail } => (format!("{} failed.", capital(&step)), detail),
        other => (other.to_string(), String::new()),
    }
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

/// Zeros the first and last MiB of a disk so nothing old is recognised on it again.
fn zero_ends(dev: &Path) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(dev)?;
    let size = f.seek(SeekFrom::End(0))?;
    let chunk = vec![0u8; 1024 * 1024];
    let len = (chunk.len() as u64).min(size);
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&chunk[..len as usize])?;
    if size > len {
        f.seek(SeekFrom::Start(size - len))?;
        f.write_all(&chunk[..len as usize])?;
    }
    f.sync_all()
}

/// (size, used, free) bytes of a mounted filesystem.
// statvfs's field types are u32 on some 32-bit targets and u64 on others: the casts are not no-ops everywhere.
#[allow(clippy::unnecessary_cast)]
fn fs_space(path: &Path) -> (u64, u64, u64) {
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
    fn uuids_compare_across_mdadm_and_sysfs_spellings() {
        assert_eq!(
            norm_uuid("92cef75c:3273207a:3e100ad7:3714c3ca"),
            norm_uuid("92cef75c-3273-207a-3e10-0ad73714c3ca")
        );
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
