//! The box's side of firmware installs: its root partitions found by GPT name on the boot medium, and the
//! settings snapshot the install keeps for the running slot.

use cairn_firmware::install::{Layout, Settings, Slot};
use cairn_store::Store;
use std::io;
use std::path::{Path, PathBuf};

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

/// The settings' snapshot: the settings database's directory copied whole, after a commit, to
/// `<config>/cairn/snapshots/<slot>/` (a new copy beside the old one, then swapped).
pub struct StoreSettings {
    pub store: Store,
    /// The settings database's directory (`.../settings.db`).
    pub database: PathBuf,
    /// Where snapshots go, on the same filesystem (`/config/cairn/snapshots`).
    pub snapshots: PathBuf,
}

fn dir_size(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Copies `from` into the new directory `to`, every file flushed.
fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.metadata()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
            std::fs::File::open(&target)?.sync_all()?;
        }
    }
    std::fs::File::open(to)?.sync_all()
}

impl Settings for StoreSettings {
    fn snapshot_size(&self) -> io::Result<u64> {
        dir_size(&self.database)
    }

    fn free_space(&self) -> io::Result<u64> {
        let on = self
            .snapshots
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"));
        cairn_store::statvfs_free(on)
    }

    fn snapshot(&self, slot: Slot) -> io::Result<()> {
        self.store.commit().map_err(io::Error::other)?;
        let done = self.snapshots.join(slot.lower());
        let new = self.snapshots.join(format!("{}.new", slot.lower()));
        let old = self.snapshots.join(format!("{}.old", slot.lower()));
        for leftover in [&new, &old] {
            if leftover.exists() {
                std::fs::remove_dir_all(leftover)?;
            }
        }
        copy_dir(&self.database, &new)?;
        if done.exists() {
            std::fs::rename(&done, &old)?;
        }
        std::fs::rename(&new, &done)?;
        std::fs::File::open(&self.snapshots)?.sync_all()?;
        if old.exists() {
            std::fs::remove_dir_all(&old)?;
        }
        Ok(())
    }
}
