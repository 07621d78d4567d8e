//! The seam between the storage manager and everything that changes the machine: every process it spawns
//! (mdadm, mke2fs, e2fsck, modprobe) and every write to a disk, a mount or an md sysfs attribute goes through
//! [`Tools`]. Reading does not: the manager reads sysfs, /proc/mounts and disk heads itself, so a fake that
//! changes a fixture tree the way the kernel would is read back exactly as the box is.
//!
//! [`system::System`] is the real one (run by the QEMU scenario); `fake::Fake` (cargo feature `fake`) is a
//! small md simulator for host tests that can also cut the power between any two calls.

#[cfg(feature = "fake")]
pub mod fake;
pub mod system;

use crate::volumes::Level;
use crate::StorageError;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The homehost written into every array Cairn creates (`cairn:<volume>`): how a Cairn array is told from
/// one made elsewhere.
pub const HOMEHOST: &str = "cairn";

/// What a filesystem check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsck {
    Clean,
    /// Damage was found and repaired; the filesystem may be mounted.
    Repaired,
}

/// Changes to the machine at the level the manager thinks in. `md` is an md device (`/dev/md0`), `dev` a disk
/// or partition (`/dev/vdb`). Failures are [`StorageError::Tool`] with the step in words (they reach the event
/// log) and the tool's own words, or [`StorageError::Io`] for writes the manager makes itself.
pub trait Tools: Send + Sync {
    /// Loads a kernel module (an md personality) the board builds as a module.
    fn load_module(&self, name: &str) -> Result<(), StorageError>;
    /// Removes an md superblock from a disk that is not running in an array.
    fn zero_superblock(&self, dev: &Path) -> Result<(), StorageError>;
    /// Zeros the first and last MiB of a disk, so nothing old on it is recognised again.
    fn wipe_ends(&self, dev: &Path) -> Result<(), StorageError>;
    /// Creates and starts an array named `<HOMEHOST>:<name>` over `devices` (metadata 1.2).
    fn create_array(
        &self,
        md: &Path,
        name: &str,
        level: Level,
        devices: &[PathBuf],
    ) -> Result<(), StorageError>;
    /// The running array's UUID, as mdadm spells it.
    fn array_uuid(&self, md: &Path) -> Result<String, StorageError>;
    /// Starts the array with that UUID from `devices` (degraded if need be).
    fn assemble(&self, md: &Path, uuid: &str, devices: &[PathBuf]) -> Result<(), StorageError>;
    /// Marks a member faulty.
    fn fail(&self, md: &Path, dev: &Path) -> Result<(), StorageError>;
    /// Takes a faulty or spare member out of the array.
    fn remove(&self, md: &Path, dev: &Path) -> Result<(), StorageError>;
    /// Adds a disk to the array: a spare, rebuilt onto when the array is degraded.
    fn add(&self, md: &Path, dev: &Path) -> Result<(), StorageError>;
    /// Copies a healthy member onto a spare while it stays in service (md hot replace).
    fn hot_replace(&self, md: &Path, old: &Path, new: &Path) -> Result<(), StorageError>;
    /// Stops the array.
    fn stop(&self, md: &Path) -> Result<(), StorageError>;
    /// Fails and removes a member whose device is gone (`member` is its kernel name), as udev would.
    fn fail_detached(&self, md: &Path, member: &str) -> Result<(), StorageError>;
    /// Makes an ext4 filesystem on the array.
    fn mkfs_ext4(&self, md: &Path, label: &str) -> Result<(), StorageError>;
    /// Checks (and repairs what can be repaired in) the array's filesystem.
    fn fsck(&self, md: &Path) -> Result<Fsck, StorageError>;
    /// Makes the mount point if need be and mounts the array's filesystem there.
    fn mount(&self, md: &Path, dir: &Path) -> Result<(), StorageError>;
    fn unmount(&self, dir: &Path) -> Result<(), StorageError>;
    /// Removes an (empty) mount point that no longer serves a volume.
    fn remove_mount_point(&self, dir: &Path) -> Result<(), StorageError>;
    /// Starts a scrub: md reads every block and counts mismatches (`sync_action` = `check`).
    fn start_check(&self, md: &Path) -> Result<(), StorageError>;
    /// Leaves how long start-up assembly took (finding members and assembling; everything) where the
    /// storage benchmark reads it.
    fn note_assembly_time(&self, assembling: Duration, total: Duration);
}
