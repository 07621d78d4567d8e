//! Room on the config partition: changes stop, with a typed error, before the filesystem is full, and a
//! login still finds space for its session record.
//!
//! Changes are refused while less than [`Headroom::change_min`] is free, so sled never meets ENOSPC (a failed
//! write would poison the open database until restart). A reserve file of [`Headroom::reserve_file`] bytes is
//! given back when even a session record would not fit (the partition filled to its last block, by root or
//! by a share on the `system` volume): the owner can still log in and be told why changes fail; the next
//! change after space comes back makes the reserve again. The filesystem's root-reserved blocks
//! ([`Headroom::RESERVED_PERCENT`]) hold back ordinary users only: ksmbd writes share data from a kernel
//! thread that keeps CAP_SYS_RESOURCE, so they do not stop a share from filling `config` (the QEMU test shows
//! it); only moving shares off `config` would.

use crate::StoreError;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a write is for, which decides how much room it may use up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A setting the owner changes: refused below [`Headroom::change_min`].
    Change,
    /// A login's session record (and its last-use time): may use the headroom, and the reserve file.
    Session,
}

/// How much room the settings keep.
#[derive(Debug, Clone, Copy)]
pub struct Headroom {
    /// Changes are refused when less than this is free.
    pub change_min: u64,
    /// Below this even a session record releases the reserve file first.
    pub session_min: u64,
    /// Size of the reserve file kept beside the database.
    pub reserve_file: u64,
}

impl Headroom {
    /// The config partition (64 MiB on the reference boards, 1 KiB blocks): a few hundred changes' worth of
    /// room for the settings, a reserve that outlasts many logins.
    pub const CONFIG: Headroom = Headroom {
        change_min: 2 << 20,
        session_min: 128 << 10,
        reserve_file: 1 << 20,
    };

    /// The percentage of `config` init reserves for root when it formats the partition (against processes
    /// of ordinary users; the SMB server's kernel threads are not held back by it).
    pub const RESERVED_PERCENT: u32 = 5;
}

/// Measures free bytes (as root sees them) on the filesystem holding a path.
pub type FreeSpace = Arc<dyn Fn(&Path) -> std::io::Result<u64> + Send + Sync>;

/// The free space root may use: statvfs's free blocks less the clusters ext4 keeps back even from root
/// (`reserved_clusters` in sysfs, 2 % of a small filesystem), which statvfs counts as free.
pub fn statvfs_free(path: &Path) -> std::io::Result<u64> {
    let s = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    #[allow(clippy::unnecessary_cast)] // the field widths differ between targets
    let free = s.blocks_free() as u64 * s.fragment_size() as u64;
    #[allow(clippy::unnecessary_cast)]
    let kept_back = ext4_reserved_clusters(path).unwrap_or(0) * s.fragment_size() as u64;
    Ok(free.saturating_sub(kept_back))
}

/// ext4's `reserved_clusters` for the filesystem holding `path` (1 KiB or 4 KiB clusters: one block each
/// without bigalloc, which Cairn never formats with).
fn ext4_reserved_clusters(path: &Path) -> Option<u64> {
    let dev = nix::sys::stat::stat(path).ok()?.st_dev;
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let block = std::fs::read_link(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    let name = block.file_name()?.to_string_lossy().into_owned();
    std::fs::read_to_string(format!("/sys/fs/ext4/{name}/reserved_clusters"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A filesystem whose free space a test sets (the QEMU scenario fills the real partition): `free` bytes, plus
/// the reserve file's blocks once it is deleted from `dir`, as a real filesystem gives them back.
#[doc(hidden)]
pub fn fake_free_space(dir: &Path, free: Arc<std::sync::atomic::AtomicU64>) -> FreeSpace {
    let reserve = dir.join(RESERVE);
    Arc::new(move |_: &Path| {
        let released = if reserve.exists() { 0 } else { 1 << 20 };
        Ok(free.load(std::sync::atomic::Ordering::SeqCst) + released)
    })
}

/// Checks room before writes; cheap to clone.
#[derive(Clone)]
pub struct Room {
    dir: PathBuf,
    policy: Headroom,
    free: FreeSpace,
}

/// The reserve file's name in the database's folder.
const RESERVE: &str = "headroom.reserve";

impl Room {
    pub(crate) fn new(dir: &Path, policy: Headroom, free: FreeSpace) -> Room {
        Room {
            dir: dir.to_path_buf(),
            policy,
            free,
        }
    }

    /// Free bytes on the settings' partition, if they can be measured.
    pub(crate) fn free_bytes(&self) -> Option<u64> {
        (self.free)(&self.dir).ok()
    }

    /// What the settings must keep free for changes.
    pub(crate) fn change_min(&self) -> u64 {
        self.policy.change_min
    }

    /// Beside the database's folder (sled owns what is inside it).
    fn reserve_path(&self) -> PathBuf {
        self.dir.parent().unwrap_or(&self.dir).join(RESERVE)
    }

    /// Refuses a write for `need` when the partition is too full for it (releasing the reserve file first
    /// for a session). An unmeasurable filesystem does not block writes: the write itself will tell.
    pub fn check(&self, need: Need) -> Result<(), StoreError> {
        let Ok(mut free) = (self.free)(&self.dir) else {
            return Ok(());
        };
        match need {
            Need::Change if free < self.policy.change_min => {
                Err(StoreError::Full { free_bytes: free })
            }
            Need::Change => {
                // Space came back (files deleted): the reserve a login took is made again first.
                if free >= self.policy.change_min + self.policy.reserve_file {
                    self.ensure_reserve();
                }
                Ok(())
            }
            Need::Session => {
                if free < self.policy.session_min && self.release_reserve() {
                    free = (self.free)(&self.dir).unwrap_or(0);
                }
                if free < self.policy.session_min {
                    Err(StoreError::Full { free_bytes: free })
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Gives the reserve file's blocks back to the filesystem; true if there was one.
    fn release_reserve(&self) -> bool {
        match std::fs::remove_file(self.reserve_path()) {
            Ok(()) => {
                log::warn!(
                    "settings partition full: released the {} KiB reserve so logins still work; changes are refused until space is freed",
                    self.policy.reserve_file >> 10
                );
                true
            }
            Err(_) => false,
        }
    }

    /// Makes the reserve file when it is missing and there is room for it beyond the change minimum.
    /// Written with real blocks (zeros, synced), so the space is truly held.
    pub(crate) fn ensure_reserve(&self) {
        let path = self.reserve_path();
        if path.exists() {
            return;
        }
        let Ok(free) = (self.free)(&self.dir) else {
            return;
        };
        if free < self.policy.change_min + self.policy.reserve_file {
            return;
        }
        let write = || -> std::io::Result<()> {
            let tmp = path.with_extension("new");
            let mut f = std::fs::File::create(&tmp)?;
            let block = vec![0u8; 64 << 10];
            let mut left = self.policy.reserve_file;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                f.write_all(&block[..n])?;
                left -= n as u64;
            }
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            log::warn!("settings headroom: cannot make the reserve file: {e}");
        }
    }
}
