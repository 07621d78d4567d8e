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
}
