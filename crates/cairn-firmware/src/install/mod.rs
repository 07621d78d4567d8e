//! The install engine: a signed bundle streamed into the slot that is not running (docs/updates.md, "What
//! Cairn does" → Install).
//!
//! Steps, in order; only the last makes the new slot bootable, so a power cut anywhere before it leaves the
//! box booting the running slot, and the half-written one out of the boot order:
//! 1. refuse or go on: signature and key (the bundle reader), board, the running firmware's floor, versions
//!    that failed on this box (unless the owner insists), space for the settings snapshot;
//! 2. take the inactive slot out of the boot order; 3. zero its trailer;
//! 4. stream the root payload into the inactive root partition and the boot payloads to temporary names in
//!    `slot-<x>/`, through one fixed buffer, hashing;
//! 5. flush, read everything back and compare digests, rename the boot files into place;
//! 6. write the trailer; 7. snapshot the settings and record the assembled volumes, then dry-run the
//!    migrations between the settings and the new slot's schema on a copy (a step that would fail or drop
//!    something unlisted refuses the install; the report is kept for the owner to read with the pending update);
//! 8. activate (new slot first in the boot order, on trial).
//!
//! Everything that touches the machine is behind [`Layout`] (paths, the boot state's copies) and [`Settings`]
//! (the snapshot), so host tests run the whole install against temporary files and real boot state files.

mod checks;
pub mod index;
pub mod slot;
pub mod status;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

use crate::error::FirmwareError;
use crate::keys::TrustedKeys;
use crate::manifest::{PayloadEntry, Target};
use crate::reader::BundleReader;
use crate::version::Version;
use cairn_bootenv::BootFiles;
pub use cairn_bootenv::Slot;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Where the engine reads and writes: the box's paths, or a test's temporary files.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The kernel command line (`/proc/cmdline`), for `cairn.slot=`.
    pub cmdline: PathBuf,
    /// The root partitions of the boot medium (found by GPT name `root-a`, `root-b`).
    pub root_a: PathBuf,
    pub root_b: PathBuf,
    /// The boot partition's mount point (`/boot`), holding `slot-a/` and `slot-b/`.
    pub boot_dir: PathBuf,
    /// `/config/cairn/firmware`: `failed`, `expected-volumes`, `last-update`.
    pub firmware_dir: PathBuf,
    /// `/etc/cairn/keys`: the public keys this image trusts.
    pub keys_dir: PathBuf,
    /// This box's board name (board.toml).
    pub board: String,
    /// The boot state's two copies on the boot partition.
    pub boot: BootFiles,
    /// Boot attempts a newly installed slot gets (board.toml `boot.tries`).
    pub tries: u8,
}

impl Layout {
    /// The paths on a box; `root_a`/`root_b` are the partitions the caller found by GPT name.
    pub fn on_box(board: &cairn_board::Board, root_a: PathBuf, root_b: PathBuf) -> Layout {
        let boot_dir = PathBuf::from("/boot");
        Layout {
            cmdline: "/proc/cmdline".into(),
            root_a,
            root_b,
            boot: BootFiles::new(&boot_dir, &board.boot),
            boot_dir,
            firmware_dir: "/config/cairn/firmware".into(),
            keys_dir: crate::IMAGE_KEYS_DIR.into(),
            board: board.name.clone(),
            tries: board.boot.tries,
        }
    }

    pub fn partition(&self, slot: Slot) -> &Path {
        match slot {
            Slot::A => &self.root_a,
            Slot::B => &self.root_b,
        }
    }

    pub fn slot_boot_dir(&self, slot: Slot) -> PathBuf {
        self.boot_dir.join(format!("slot-{}", slot.lower()))
    }

    pub fn failed_file(&self) -> PathBuf {
        self.firmware_dir.join("failed")
    }

    pub fn expected_volumes_file(&self) -> PathBuf {
        self.firmware_dir.join("expected-volumes")
    }

    pub fn last_update_file(&self) -> PathBuf {
        self.firmware_dir.join("last-update")
    }

    /// The migration report of the installed update waiting for its reboot (JSON, `cairn migrate`'s).
    pub fn pending_migration_file(&self) -> PathBuf {
        self.firmware_dir.join("pending-migration")
    }

    /// The slot that runs now, from the kernel command line.
    pub fn booted(&self) -> Result<Slot, InstallError> {
        let cmdline =
            std::fs::read_to_string(&self.cmdline).map_err(|e| io("read", &self.cmdline, e))?;
        slot::booted(&cmdline).ok_or(InstallError::UnknownSlot)
    }
}

/// The settings' side of an install: their snapshot for the running slot.
pub trait Settings {
    /// Bytes the snapshot will take.
    fn snapshot_size(&self) -> std::io::Result<u64>;
    /// Bytes free where the snapshot goes.
    fn free_space(&self) -> std::io::Result<u64>;
    /// Keeps a snapshot of the settings for `slot` (flushed first, written whole or not at all).
    fn snapshot(&self, slot: Slot) -> std::io::Result<()>;
    /// Dry-runs, on a copy of the snapshot just kept for `running`, the migrations from the settings' schema
    /// to `schema`, the schema of the firmware written (and read back) into `new_root`; the report is
    /// `cairn migrate --dry-run`'s JSON, whose `ok` says every step ran and nothing was dropped.
    fn preview_migrations(
        &self,
        running: Slot,
        new_root: &Path,
        schema: u32,
    ) -> std::io::Result<serde_json::Value>;
}

/// The owner's choices.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Install a version that failed on this box before.
    pub insist: bool,
}

/// Where an install is, for a job's progress (and the points a power-cut test stops at).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Every check passed: `version` goes into `slot`; `total` payload bytes follow.
    Accepted {
        version: String,
        slot: Slot,
        total: u64,
    },
    /// The slot is out of the boot order.
    SlotDisabled,
    /// The slot's trailer is zeroed.
    TrailerZeroed,
    /// `done` of `total` payload bytes are written.
    Written { done: u64, total: u64 },
    /// The whole bundle is read (its digests matched); nothing more is read from the input.
    Streamed,
    /// Everything written was read back and matched; boot files renamed into place.
    Verified,
    /// The trailer is written: the slot is complete but not yet bootable.
    TrailerWritten,
    /// The settings snapshot and the expected volumes are kept.
    SettingsKept,
    /// The new slot's migrations ran on a copy of the settings and may run for real.
    MigrationsPreviewed,
    /// The new slot is in the boot order, on trial.
    Activated,
}

/// What a finished install reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub slot: Slot,
    pub version: String,
    pub bytes: u64,
}

/// Why an install was refused or failed. Refusals (the first group) happen before anything is written.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Bundle(#[from] FirmwareError),
    #[error("this bundle is for the board {bundle}, and this box is a {board}")]
    WrongBoard { bundle: String, board: String },
    #[error("version {version} is older than {floor}, the oldest version this firmware allows")]
    BelowFloor { version: Version, floor: Version },
    #[error("version {0} was installed on this box before and failed its health check")]
    FailedBefore(Version),
    #[error(
        "the settings snapshot needs {needed} bytes and the settings partition has {free} free"
    )]
    NoSpace { needed: u64, free: u64 },
    #[error("the boot partition has {free} bytes free and the new boot files need {needed}")]
    BootFull { needed: u64, free: u64 },
    #[error("the bundle's root payload ({needed} bytes) does not fit the slot ({room} bytes)")]
    TooLarge { needed: u64, room: u64 },
    #[error("the bundle's manifest is not usable: {0}")]
    BadManifest(String),
    #[error("the running slot is not named on the kernel command line (cairn.slot=)")]
    UnknownSlot,
    #[error("refusing to write {0}: it is the running slot or in use")]
    TargetInUse(PathBuf),
    #[error("the slot read back differs from what was written ({0})")]
    ReadBack(String),
    #[error("the new firmware's settings migrations would not run on these settings: {0}")]
    Migration(String),
    #[error("the boot state could not be changed: {0}")]
    BootState(String),
    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The caller stopped the install (a power-cut test, or the daemon shutting down).
    #[error("the install was stopped")]
    Stopped,
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> InstallError {
    InstallError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The running firmware's floor, from the booted slot's trailer (none on a slot without one).
pub fn running_floor(layout: &Layout, keys: &TrustedKeys, booted: Slot) -> Option<Version> {
    slot::manifest_of(layout.partition(booted), keys).map(|m| m.floor)
}

/// Installs the bundle read from `input` into the slot that is not running. `volumes` are the UUIDs of
/// the data arrays assembled now (init's commit check expects them again). `step` hears every step and may
/// stop the install by returning false (nothing after that step happens).
pub fn install(
    layout: &Layout,
    settings: &dyn Settings,
    volumes: &[String],
    input: &mut dyn Read,
    options: Options,
    step: &mut dyn FnMut(&Step) -> bool,
) -> Result<Installed, InstallError> {
    let mut go = |s: Step| {
        if step(&s) {
            Ok(())
        } else {
            Err(InstallError::Stopped)
        }
    };
    // 1. Refuse or go on.
    let keys = TrustedKeys::load_dir(&layout.keys_dir)?;
    let booted = layout.booted()?;
    let target = booted.other();
    let mut bundle = BundleReader::open(input, &keys)?;
    let manifest = bundle.manifest().clone();
    let signed = bundle.signed().clone();
    let floor = running_floor(layout, &keys, booted);
    checks::check_manifest(
        &manifest,
        &layout.board,
        floor,
        &checks::failed_versions(&layout.failed_file()),
        options.insist,
    )?;
    let part = layout.partition(target).to_path_buf();
    assert_writable(layout, &part, booted)?;
    let room = slot::size_of(&part).map_err(|e| io("measure", &part, e))?;
    let root_size = manifest
        .payloads
        .iter()
        .find(|p| p.target == Target::Slot)
        .map_or(0, |p| p.size);
    let trailer_at = crate::trailer_offset(room)?;
    if root_size > trailer_at {
        return Err(InstallError::TooLarge {
            needed: root_size,
            room: trailer_at,
        });
    }
    let needed = settings
        .snapshot_size()
        .map_err(|e| io("measure", &layout.firmware_dir, e))?;
    let free = settings
        .free_space()
        .map_err(|e| io("measure", &layout.firmware_dir, e))?;
    checks::check_space(needed, free)?;
    let total: u64 = manifest.payloads.iter().map(|p| p.size).sum();
    go(Step::Accepted {
        version: manifest.version.to_string(),
        slot: target,
        total,
    })?;

    // 2. Out of the boot order before the first byte.
    // Under the boot state's lock, on the state as it is now (init's commit writes it too).
    layout
        .boot
        .update(|s| s.begin_install(target))
        .map_err(|e| InstallError::BootState(e.to_string()))?;
    go(Step::SlotDisabled)?;
    // 3. A slot without a valid trailer is never mounted (the initramfs checks it).
    let mut device = slot::open_for_write(&part).map_err(|e| io("open", &part, e))?;
    crate::clear_trailer(&mut device, room)?;
    device.sync_all().map_err(|e| io("flush", &part, e))?;
    go(Step::TrailerZeroed)?;

    // 4. Stream every payload. The slot's old boot files (and what a cut install left) go first: the slot is
    // out of the boot order, and the boot partition holds two slots' files, not three.
    let boot_dir = layout.slot_boot_dir(target);
    std::fs::create_dir_all(&boot_dir).map_err(|e| io("create", &boot_dir, e))?;
    empty_dir(&boot_dir)?;
    let boot_bytes: u64 = manifest
        .payloads
        .iter()
        .filter(|p| p.target == Target::Boot)
        .map(|p| p.size)
        .sum();
    let boot_free =
        cairn_store::statvfs_free(&boot_dir).map_err(|e| io("measure", &boot_dir, e))?;
    if boot_free < boot_bytes + BOOT_MARGIN {
        return Err(InstallError::BootFull {
            needed: boot_bytes + BOOT_MARGIN,
            free: boot_free,
        });
    }
    let mut buf = vec![0u8; slot::CHUNK];
    let mut done = 0u64;
    let mut written: Vec<(PayloadEntry, PathBuf)> = Vec::new();
    while let Some(mut payload) = bundle.next_payload()? {
        let p = payload.entry().clone();
        let dest = match p.target {
            Target::Slot => part.clone(),
            Target::Boot => boot_dir.join(format!(".{}.new", p.name)),
        };
        let mut out = match p.target {
            Target::Slot => device.try_clone(),
            Target::Boot => std::fs::File::create(&dest),
        }
        .map_err(|e| io("open", &dest, e))?;
        out.seek(SeekFrom::Start(0))
            .map_err(|e| io("seek", &dest, e))?;
        loop {
            let n = payload.read(&mut buf).map_err(FirmwareError::from)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .map_err(|e| io("write", &dest, e))?;
            done += n as u64;
            go(Step::Written { done, total })?;
        }
        // 5 (flush). The bytes must be on the medium before they are read back.
        out.sync_all().map_err(|e| io("flush", &dest, e))?;
        written.push((p, dest));
    }
    bundle.finish()?;
    go(Step::Streamed)?;

    // 5. Read back through the same fixed buffer and compare.
    for (p, path) in &written {
        let got = slot::digest_range(path, 0, p.size).map_err(|e| io("read back", path, e))?;
        if got != p.sha256.to_string() {
            return Err(InstallError::ReadBack(format!(
                "{} at {}",
                p.name,
                path.display()
            )));
        }
    }
    for (p, path) in written.iter().filter(|(p, _)| p.target == Target::Boot) {
        let final_path = boot_dir.join(p.name.as_str());
        std::fs::rename(path, &final_path).map_err(|e| io("rename into", &final_path, e))?;
    }
    sync_dir(&boot_dir)?;
    go(Step::Verified)?;

    // 6. The trailer last (the header the bundle reader checked): only a complete slot describes itself.
    crate::write_trailer(&mut device, room, &signed)?;
    device.sync_all().map_err(|e| io("flush", &part, e))?;
    go(Step::TrailerWritten)?;

    // 7. The settings as they are now, for a fallback to this slot; the volumes init expects again.
    settings
        .snapshot(booted)
        .map_err(|e| io("snapshot the settings to", &layout.firmware_dir, e))?;
    write_durably(
        &layout.expected_volumes_file(),
        volumes.join("\n").as_bytes(),
    )?;
    go(Step::SettingsKept)?;
    let report = settings
        .preview_migrations(booted, &part, manifest.schema_version)
        .map_err(|e| io("dry-run the settings migrations of", &part, e))?;
    write_durably(
        &layout.pending_migration_file(),
        &serde_json::to_vec_pretty(&report).unwrap_or_default(),
    )?;
    if report["ok"] != serde_json::Value::Bool(true) {
        return Err(InstallError::Migration(migration_failure(&report)));
    }
    go(Step::MigrationsPreviewed)?;

    // 8. The one step that makes the new slot bootable.
    layout
        .boot
        .update(|s| s.activate(target, layout.tries))
        .map_err(|e| InstallError::BootState(e.to_string()))?;
    go(Step::Activated)?;
    Ok(Installed {
        slot: target,
        version: manifest.version.to_string(),
        bytes: total,
    })
}

/// The owner's sentence for a dry run that did not pass: its error, or the fields it would drop.
fn migration_failure(report: &serde_json::Value) -> String {
    if let Some(message) = report["error"]["message"].as_str() {
        return message.to_string();
    }
    match report["dropped"].as_u64() {
        Some(n) if n > 0 => format!("{n} setting(s) would be dropped"),
        _ => "the dry run did not report success".to_string(),
    }
}

/// Refuses a target that is the running slot's partition, or held by anything (device mapper, md, a
/// mount): the engine writes the inactive root partition and nothing else.
fn assert_writable(layout: &Layout, target: &Path, booted: Slot) -> Result<(), InstallError> {
    use std::os::unix::fs::MetadataExt;
    let running = layout.partition(booted);
    let same = match (std::fs::metadata(target), std::fs::metadata(running)) {
        (Ok(t), Ok(r)) => {
            (t.rdev() != 0 && t.rdev() == r.rdev()) || (t.dev() == r.dev() && t.ino() == r.ino())
        }
        _ => false,
    };
    if same || target == running {
        return Err(InstallError::TargetInUse(target.to_path_buf()));
    }
    if let Ok(dev) = target.strip_prefix("/dev") {
        let holders = Path::new("/sys/class/block").join(dev).join("holders");
        let held = std::fs::read_dir(&holders)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        let mounted = std::fs::read_to_string("/proc/mounts")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split_whitespace().next() == Some(&*target.to_string_lossy()));
        if held || mounted {
            return Err(InstallError::TargetInUse(target.to_path_buf()));
        }
    }
    Ok(())
}

/// Room kept free on the boot partition beyond the new boot files (directory entries, the boot state).
const BOOT_MARGIN: u64 = 1 << 20;

/// Removes the files in `dir` (a slot's boot files; it holds no folders) and makes that durable.
fn empty_dir(dir: &Path) -> Result<(), InstallError> {
    let entries = std::fs::read_dir(dir).map_err(|e| io("list", dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| io("list", dir, e))?.path();
        if path.is_file() {
            std::fs::remove_file(&path).map_err(|e| io("remove", &path, e))?;
        }
    }
    sync_dir(dir)
}

/// Makes renames and new files in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), InstallError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("flush", dir, e))
}

/// Replaces `path` whole, so a power cut leaves the old file or the new one: a temporary file, flushed,
/// renamed over it, the directory flushed. The install's files and init's update records (`commit::record`)
/// are all written this way.
pub fn replace_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("new");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// [`replace_durably`], its failure as an install error naming the file.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    replace_durably(path, bytes).map_err(|e| io("write", path, e))
}
