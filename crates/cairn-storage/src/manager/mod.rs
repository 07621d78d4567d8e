//! The storage manager: volumes on md RAID, their jobs and the event log.
//!
//! What a volume *should* be lives in Cairn's store (name, level, md UUID, member disks); how it *is* always
//! comes from the kernel (sysfs `md/*`, /proc/mounts) at the moment of asking, so a daemon restart loses no
//! job and the dashboard shows a failed disk as soon as the kernel knows. Every change to the machine goes
//! through [`Tools`] (real: mdadm and friends through `cairn-exec`; in host tests: a simulator).
//! Exercised end to end by the QEMU storage scenario (tests/tests/storage.rs); the rules are tested on the host.
//!
//! This module holds the handle and the one lock; each sibling owns one part of the work: `records` (the
//! store), `kernel` (reading the machine), `views` (what owners see), `jobs` (following work), `changes` (what
//! owners ask for), `replacing` (a member swapped, as a write-ahead change), `assembly` (bringing volumes up),
//! `interrupted` (closing truthfully what a restart cut off) and `monitor` (watching unasked).

mod assembly;
mod changes;
mod interrupted;
mod jobs;
mod kernel;
mod monitor;
mod records;
mod replacing;
mod views;

pub use jobs::JobView;
pub use records::Event;
pub use views::{used_bytes, DiskView, MemberView, VolumeView};

use crate::tools::{system::System, Tools};
use crate::StorageError;
use cairn_board::Board;
use cairn_store::{Store, Table};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

/// The storage manager. Cheap to clone; one storage change runs at a time.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

struct Inner {
    board: Board,
    tools: Arc<dyn Tools>,
    paths: Paths,
    store: Store,
    volumes: Table,
    jobs: Table,
    events: Table,
    /// Held while a change is checked and recorded, so two requests cannot pick the same disks, and around
    /// every read-modify-write of a volume record, so the monitor and requests never overwrite each other's
    /// updates. Never held across a filesystem check.
    lock: Mutex<()>,
    /// Volumes whose filesystem is being checked (without the lock): changes to them wait.
    checking: Mutex<BTreeSet<String>>,
    /// Held while a finished job is recorded, so it is recorded (and logged) once.
    settling: Mutex<()>,
}

impl Storage {
    /// Opens the storage records in `store`. Nothing is assembled until [`Storage::start`].
    pub fn new(board: Board, paths: Paths, store: Store) -> Result<Storage, StorageError> {
        let tools = Arc::new(System::new(&paths.sys));
        Storage::with_tools(board, paths, store, tools)
    }

    /// As [`Storage::new`], changing the machine through `tools` (a fake, in host tests).
    pub fn with_tools(
        board: Board,
        paths: Paths,
        store: Store,
        tools: Arc<dyn Tools>,
    ) -> Result<Storage, StorageError> {
        Ok(Storage {
            inner: Arc::new(Inner {
                volumes: store.table("volumes")?,
                jobs: store.table("jobs")?,
                events: store.table("storage_events")?,
                board,
                tools,
                paths,
                store,
                lock: Mutex::new(()),
                checking: Mutex::new(BTreeSet::new()),
                settling: Mutex::new(()),
            }),
        })
    }

    fn guard(&self) -> Held<'_> {
        let guard = self.inner.lock.lock().unwrap_or_else(|p| p.into_inner());
        HOLDING.with(|h| h.set(true));
        Held { _guard: guard }
    }

    /// Runs `f` holding the lock, or as it is when this thread holds it already (a request that settles a
    /// job or a replace on its way).
    fn under_lock<T>(&self, f: impl FnOnce() -> T) -> T {
        if HOLDING.with(|h| h.get()) {
            f()
        } else {
            let _held = self.guard();
            f()
        }
    }
}

thread_local! {
    /// Whether this thread holds the storage lock (std's mutex is not re-entrant).
    static HOLDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The storage lock, held by this thread until dropped.
struct Held<'a> {
    _guard: std::sync::MutexGuard<'a, ()>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        HOLDING.with(|h| h.set(false));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_compare_across_mdadm_and_sysfs_spellings() {
        assert_eq!(
            norm_uuid("92cef75c:3273207a:3e100ad7:3714c3ca"),
            norm_uuid("92cef75c-3273-207a-3e10-0ad73714c3ca")
        );
    }
}
