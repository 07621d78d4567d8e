//! The box's side of firmware installs: its root partitions found by GPT name on the boot medium, the
//! settings snapshot the install keeps for the running slot, and the dry run of the new firmware's settings
//! migrations on a copy of that snapshot.

use cairn_firmware::install::{Layout, Settings, Slot};
use cairn_store::Store;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the new root slot is mounted (read-only) while its binary dry-runs the migrations.
const NEXT_SLOT_MOUNT: &str = "/run/cairn/next-slot";
/// The firmware binary inside a root slot.
const SLOT_BINARY: &str = "usr/bin/cairn";
/// A dry run copies and migrates the settings: seconds on the slowest board, bounded in case it hangs.
const DRY_RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// The install's layout on this box, when both root partitions are on the boot medium (a box booted the old
/// way, or a development host, has none: the API then says installs are not available).
pub fn layout(board: &cairn_board::Board) -> Option<Layout> {
    let is_boot = |path: &str| board.is_boot_device(path);
    let class = Path::new("/sys/class/block");
    let find = |name| cairn_init::config_partition::find_by_partname(class, &is_boot, name);
    match (find("root-a"), find("root-b")) {
        (Some(a), Some(b)) => Some(Layout::on_box(board, a, b)),
        _ => {
            log::warn!("no root-a/root-b partitions on the boot medium: firmware installs are not available");
            None
        }
    }
}

/// The firmware version this box runs: the booted slot's signed trailer says it (an update bundle's version is
/// set when it is made, not compiled in); `None` off a box booted from a slot.
pub fn running_version(layout: &Layout) -> Option<String> {
    let booted = layout.booted().ok()?;
    let keys = cairn_firmware::TrustedKeys::load_dir(&layout.keys_dir).ok()?;
    cairn_firmware::install::slot::manifest_of(layout.partition(booted), &keys)
        .map(|m| m.version.to_string())
}

/// The settings' snapshot for the running slot, kept by the store (`Store::snapshot_for_slot`): a consistent
/// export of every tree at `<config>/cairn/snapshots/<slot>/settings.export`, which the slot's firmware restores
/// when it finds settings newer than it knows after a fallback (docs/updates.md, "Settings across versions").
pub struct StoreSettings {
    pub store: Store,
    /// Where snapshots go, on the same filesystem (`/config/cairn/snapshots`).
    pub snapshots: PathBuf,
}

impl Settings for StoreSettings {
    fn snapshot_size(&self) -> io::Result<u64> {
        self.store.snapshot_budget().map_err(io::Error::other)
    }

    /// What a snapshot may use: the free space less the room the settings keep for changes.
    fn free_space(&self) -> io::Result<u64> {
        let on = self
            .snapshots
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"));
        let free = cairn_store::statvfs_free(on)?;
        Ok(free.saturating_sub(cairn_store::Headroom::CONFIG.change_min))
    }

    fn snapshot(&self, slot: Slot) -> io::Result<()> {
        self.store.commit().map_err(io::Error::other)?;
        self.store
            .snapshot_for_slot(slot.lower())
            .map(drop)
            .map_err(io::Error::other)
    }

    fn preview_migrations(
        &self,
        running: Slot,
        new_root: &Path,
        schema: u32,
    ) -> io::Result<serde_json::Value> {
        preview_on_box(&self.snapshot_dir(running), new_root, schema)
    }
}

impl StoreSettings {
    /// The snapshot folder of `slot` (`/config/cairn/snapshots/<slot>`).
    fn snapshot_dir(&self, slot: Slot) -> PathBuf {
        self.snapshots.join(slot.lower())
    }
}

/// The new root slot mounted read-only for as long as this lives.
struct Mounted(PathBuf);

impl Mounted {
    fn squashfs(device: &Path, at: &Path) -> io::Result<Mounted> {
        use nix::mount::{mount, MsFlags};
        std::fs::create_dir_all(at)?;
        // A mount left by a daemon that stopped halfway through an earlier dry run.
        let _ = nix::mount::umount2(at, nix::mount::MntFlags::MNT_DETACH);
        mount(
            Some(device),
            at,
            Some("squashfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
            None::<&str>,
        )
        .map_err(io::Error::from)?;
        Ok(Mounted(at.to_path_buf()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH) {
            log::warn!("could not unmount {}: {e}", self.0.display());
        }
    }
}

/// Runs `cairn migrate --dry-run` from `binary`: its JSON report, whether it passed or not.
fn migrate_dry_run(binary: &Path, state: &Path, to: u32) -> io::Result<serde_json::Value> {
    let binary = binary.to_string_lossy();
    let state = state.to_string_lossy();
    let to = to.to_string();
    let args = ["migrate", "--dry-run", "--state", &*state, "--to", &*to];
    let stdout = match cairn_exec::run(&binary, &args, DRY_RUN_TIMEOUT) {
        Ok(out) => out.stdout,
        // Exit status 1 is a report that did not pass: still a report.
        Err(cairn_exec::ExecError::Failed {
            code: Some(1),
            stdout,
            ..
        }) => stdout,
        Err(e) => return Err(io::Error::other(e)),
    };
    serde_json::from_str(&stdout).map_err(|e| {
        io::Error::other(format!(
            "{binary} migrate printed no report ({e}): {stdout:.200}"
        ))
    })
}

/// The dry run on a box: forward steps are the new firmware's to know, so its own binary (from the new slot,
/// mounted read-only) runs them; backward steps are the running firmware's, which knows the newer schema.
pub fn preview_on_box(
    snapshot: &Path,
    new_root: &Path,
    schema: u32,
) -> io::Result<serde_json::Value> {
    if schema < cairn_store::SCHEMA_VERSION {
        let running = std::env::current_exe()?;
        return migrate_dry_run(&running, snapshot, schema);
    }
    let mounted = Mounted::squashfs(new_root, Path::new(NEXT_SLOT_MOUNT))?;
    let report = migrate_dry_run(&mounted.0.join(SLOT_BINARY), snapshot, schema);
    drop(mounted);
    report
}
