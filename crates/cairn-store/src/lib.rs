//! The settings store: every persistent setting of the box, in one sled database on the config partition.
//!
//! It owns the database file, its schema version and the migrations between versions, so that an update
//! never drops a setting. It never interprets the records it holds: the crates that own users, shares or
//! network settings do that. Every acknowledged change goes through [`Store::commit`], a real barrier: sled's
//! flush, then `fdatasync` of its log and `fsync` of what it created (see `barrier`), so a change the API
//! acknowledged survives a power cut, on a new box too. Every write first checks the
//! partition's room (`headroom`): changes stop with [`StoreError::Full`] while a login still fits, so a full
//! partition never poisons the open database. [`unavailable`] says why there are no settings at all (init's
//! finding about the config partition, or a database that does not open). Tested on the host with
//! temporary directories (a killed writer process in `tests/durability.rs`), under QEMU with power cuts
//! (`tests/tests/powercut.rs`), and with fixture databases for migrations as the schema grows.
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

mod barrier;
mod headroom;
mod migrate;
pub mod snapshot;
pub mod unavailable;

use barrier::Barrier;
pub use headroom::{fake_free_space, statvfs_free, FreeSpace, Headroom, Need, Room};
pub use migrate::{
    dry_run, Direction, DryRun, DryRunError, Migration, Record, Schema, Step, StepFn, StepReport,
};
use serde::{de::DeserializeOwned, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The schema this build reads and writes: the last step of the domains' migrations (see [`Schema`]). The
/// `schema-2-only` feature builds the firmware as it was before schema 3, for the update test's old image.
#[cfg(not(feature = "schema-2-only"))]
pub const SCHEMA_VERSION: u32 = 3;
/// The schema this build reads and writes (built with `schema-2-only`: the firmware before schema 3).
#[cfg(feature = "schema-2-only")]
pub const SCHEMA_VERSION: u32 = 2;

/// sled's cache: its default is sized for servers; a NAS has 256 MiB to 1 GiB for everything.
const CACHE_BYTES: u64 = 4 * 1024 * 1024;

const META_TREE: &str = "meta";
const SCHEMA_KEY: &str = "schema_version";

/// Why the store cannot be used or a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the settings database at {path} cannot be opened: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error(
        "the settings database has schema version {found}, newer than this firmware's {supported}"
    )]
    TooNew { found: u32, supported: u32 },
    #[error("no migration from settings schema version {from}")]
    NoMigration { from: u32 },
    #[error("this build's migrations do not fit together: {0}")]
    BadSchema(String),
    #[error("the migration from schema {from} to {to} would drop {fields:?} without declaring it; nothing was changed")]
    WouldDrop {
        from: u32,
        to: u32,
        fields: Vec<String>,
    },
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error("settings database error: {0}")]
    Db(#[from] sled::Error),
    #[error("the settings in {path} cannot be made durable: {source}")]
    Sync {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("record {key:?} in {tree:?} is damaged: {source}")]
    Corrupt {
        tree: String,
        key: String,
        source: serde_json::Error,
    },
    #[error("record cannot be encoded: {0}")]
    Encode(serde_json::Error),
    #[error("{0}")]
    Conflict(String),
    #[error("the settings partition is full ({free_bytes} bytes free); the change was not made")]
    Full { free_bytes: u64 },
}

/// What opening the settings took, for the log and the health route.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Opening {
    /// The steps run to bring the settings to this firmware's schema.
    pub migrated: Vec<StepReport>,
    /// Set when the settings were newer than this firmware and the booted slot's snapshot replaced them.
    pub restored: Option<Restored>,
}

/// A snapshot restored at start instead of refusing settings newer than the firmware.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Restored {
    /// The schema the settings had (the newer firmware's).
    pub found: u32,
    pub snapshot: snapshot::SnapshotInfo,
}

/// Handle to the settings database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    room: Room,
    /// What makes a commit reach the disk; none for a temporary store, which has no disk.
    barrier: Option<Arc<Barrier>>,
    dir: PathBuf,
}

/// A typed view of one tree (table) holding JSON records keyed by name.
#[derive(Clone)]
pub struct Table {
    tree: sled::Tree,
    name: String,
    room: Room,
}

impl Store {
    /// Opens (creating if new) the database in `dir`, which must be new or at [`SCHEMA_VERSION`] (no
    /// migrations: the daemon uses [`Store::open_migrating`] with the schema its crates declare).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, Headroom::CONFIG, Arc::new(statvfs_free))
    }

    /// [`Store::open`] with another headroom policy and free-space measure (tests fill a disk this way).
    pub fn open_with(dir: &Path, policy: Headroom, free: FreeSpace) -> Result<Store, StoreError> {
        let store = Store::open_unmigrated(dir, policy, free)?;
        store.prepare(&Schema::current_only(), None)?;
        Ok(store)
    }

    /// Opens the database in `dir` and brings it to [`SCHEMA_VERSION`] with `schema`'s migrations. Settings
    /// newer than this firmware (it was fallen back to after an update migrated them) are refused, unless
    /// `slot` (the booted one) has a snapshot this firmware can read: then that snapshot is restored.
    pub fn open_migrating(
        dir: &Path,
        schema: &Schema,
        slot: Option<&str>,
    ) -> Result<(Store, Opening), StoreError> {
        let store = Store::open_unmigrated(dir, Headroom::CONFIG, Arc::new(statvfs_free))?;
        let opening = store.prepare(schema, slot)?;
        Ok((store, opening))
    }

    /// The database as it is on disk, at whatever schema: for migrations and dry runs.
    pub fn open_unmigrated(
        dir: &Path,
        policy: Headroom,
        free: FreeSpace,
    ) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .mode(sled::Mode::LowSpace)
            // Every acknowledged change is flushed by `commit`; a background flusher would only add wake-ups.
            .flush_every_ms(None)
            .open()
            .map_err(|source| StoreError::Open {
                path: dir.to_path_buf(),
                source,
            })?;
        let room = Room::new(dir, policy, free);
        room.ensure_reserve();
        let (barrier, _) = Barrier::open(dir).map_err(not_durable(dir))?;
        Ok(Store {
            db,
            room,
            barrier: Some(Arc::new(barrier)),
            dir: dir.to_path_buf(),
        })
    }

    /// An empty store in memory that is gone when the process ends. The daemon stands it in for settings it
    /// cannot open, only so its parts can be built: every request is refused before it reaches them.
    pub fn open_temporary() -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .cache_capacity(CACHE_BYTES)
            .open()?;
        let room = Room::new(
            Path::new("/"),
            Headroom::CONFIG,
            Arc::new(|_: &Path| Ok(u64::MAX)),
        );
        Ok(Store {
            db,
            room,
            barrier: None,
            dir: PathBuf::new(),
        })
    }

    /// New settings get this build's schema; older ones are migrated forward; newer ones are refused or,
    /// with a snapshot for the booted slot, replaced by it.
    fn prepare(&self, schema: &Schema, slot: Option<&str>) -> Result<Opening, StoreError> {
        let meta = self.db.open_tree(META_TREE)?;
        let mut opening = Opening::default();
        let found = match meta.get(SCHEMA_KEY)? {
            Some(v) => parse_version(&v),
            None => {
                meta.insert(SCHEMA_KEY, SCHEMA_VERSION.to_string().as_bytes())?;
                self.commit()?;
                return Ok(opening);
            }
        };
        if found > SCHEMA_VERSION {
            let too_new = StoreError::TooNew {
                found,
                supported: SCHEMA_VERSION,
            };
            let Some(slot) = slot else {
                return Err(too_new);
            };
            match self.restore_snapshot(slot) {
                Ok(info) => {
                    log::warn!("settings: schema {found} is newer than this firmware's {SCHEMA_VERSION} (an update migrated them, then this slot was booted again); restored slot {slot}'s snapshot (schema {}, {} records)", info.schema, info.records);
                    opening.restored = Some(Restored {
                        found,
                        snapshot: info,
                    });
                }
                Err(e) => {
                    log::error!("settings: schema {found} is newer than this firmware's {SCHEMA_VERSION} and slot {slot}'s snapshot cannot be restored: {e}");
                    return Err(too_new);
                }
            }
        }
        opening.migrated = self.migrate_to(schema, SCHEMA_VERSION)?;
        Ok(opening)
    }

    /// The schema version on disk.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let meta = self.db.open_tree(META_TREE)?;
        Ok(meta
            .get(SCHEMA_KEY)?
            .map(|v| parse_version(&v))
            .unwrap_or(0))
    }

    /// A named table of JSON records.
    pub fn table(&self, name: &str) -> Result<Table, StoreError> {
        Ok(Table {
            tree: self.db.open_tree(name)?,
            name: name.to_string(),
            room: self.room.clone(),
        })
    }

    /// Makes every change so far durable, down to the disk: call before acknowledging a change. sled's
    /// flush alone only hands the log to the kernel (see `barrier`).
    pub fn commit(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        if let Some(barrier) = &self.barrier {
            barrier.sync().map_err(not_durable(&self.dir))?;
        }
        Ok(())
    }

    /// The room check every writer runs before it stages a write (sled must never meet a full disk).
    pub fn room(&self) -> &Room {
        &self.room
    }

    /// The underlying database, for multi-table transactions in the crates that own the records.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }
}

fn not_durable(dir: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Sync {
        path: dir.to_path_buf(),
        source,
    }
}

/// A multi-tree transaction that did not go through (nothing of it was written).
fn transaction_failed(e: sled::transaction::TransactionError<()>, what: &str) -> StoreError {
    match e {
        sled::transaction::TransactionError::Storage(e) => StoreError::Db(e),
        sled::transaction::TransactionError::Abort(()) => {
            StoreError::Conflict(format!("{what} transaction aborted"))
        }
    }
}

fn parse_version(bytes: &[u8]) -> u32 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl Table {
    /// Reads one record.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        match self.tree.get(key)? {
            Some(bytes) => Ok(Some(self.decode(key, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Writes one record (not yet durable: see [`Store::commit`]).
    pub fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        self.room.check(Need::Change)?;
        self.tree.insert(key, encode(value)?)?;
        Ok(())
    }

    /// Writes a record only if none has that key; false if one existed.
    pub fn insert_new<T: Serialize>(&self, key: &str, value: &T) -> Result<bool, StoreError> {
        self.room.check(Need::Change)?;
        let outcome =
            self.tree
                .compare_and_swap(key, None as Option<&[u8]>, Some(encode(value)?))?;
        Ok(outcome.is_ok())
    }

    /// Removes one record; true if it existed.
    pub fn remove(&self, key: &str) -> Result<bool, StoreError> {
        self.room.check(Need::Change)?;
        Ok(self.tree.remove(key)?.is_some())
    }

    /// Every record, in key order.
    pub fn all<T: DeserializeOwned>(&self) -> Result<Vec<(String, T)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.iter() {
            let (k, v) = item?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let value = self.decode(&key, &v)?;
            out.push((key, value));
        }
        Ok(out)
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// True when the table holds no record.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// The underlying sled tree, for transactions spanning tables.
    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    fn decode<T: DeserializeOwned>(&self, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
            tree: self.name.clone(),
            key: key.to_string(),
            source,
        })
    }
}

/// Encodes a record the way every table stores it.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(StoreError::Encode)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reopening after a commit is tested across a killed process in tests/durability.rs: dropping a store
    // flushes it, so a reopen in the same process would pass without `commit`.
    #[test]
    fn a_table_holds_what_was_put_in_key_order_and_forgets_what_was_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t = store.table("things").unwrap();
        assert!(t.is_empty());
        t.put("b", &2u32).unwrap();
        t.put("a", &1u32).unwrap();
        assert!(!t.is_empty());
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.all::<u32>().unwrap(),
            vec![("a".to_string(), 1), ("b".to_string(), 2)]
        );
        assert!(!t.insert_new("a", &9u32).unwrap(), "a exists");
        assert!(t.insert_new("c", &3u32).unwrap());
        assert_eq!(t.get::<u32>("a").unwrap(), Some(1));
        assert!(t.remove("a").unwrap(), "a existed");
        assert!(!t.remove("a").unwrap(), "a is gone");
        assert_eq!(t.get::<u32>("a").unwrap(), None);
        assert_eq!(t.len(), 2);
        // Another table of the same store is another namespace.
        assert!(store.table("others").unwrap().is_empty());
    }

    #[test]
    fn new_store_gets_current_schema() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn insert_new_does_not_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t = store.table("t").unwrap();
        assert!(t.insert_new("k", &1).unwrap());
        assert!(!t.insert_new("k", &2).unwrap());
        assert_eq!(t.get::<i32>("k").unwrap(), Some(1));
    }

    /// A disk whose free space the test sets.
    fn store_on_a_filling_disk(dir: &Path) -> (Store, Arc<std::sync::atomic::AtomicU64>) {
        let free = Arc::new(std::sync::atomic::AtomicU64::new(10 << 20));
        let measure = fake_free_space(dir, free.clone());
        let store = Store::open_with(&dir.join("settings.db"), Headroom::CONFIG, measure).unwrap();
        (store, free)
    }

    const RESERVE_NAME_FOR_TESTS: &str = "headroom.reserve";

    #[test]
    fn a_full_partition_refuses_changes_with_a_typed_error_and_keeps_what_was_there() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let (store, free) = store_on_a_filling_disk(dir.path());
        assert!(
            dir.path().join(RESERVE_NAME_FOR_TESTS).exists(),
            "the reserve is made while there is room"
        );
        let t = store.table("system").unwrap();
        t.put("hostname", &"cairn").unwrap();
        free.store(0, Ordering::SeqCst);
        match t.put("hostname", &"renamed") {
            Err(StoreError::Full { .. }) => {}
            other => panic!("expected full, got {other:?}"),
        }
        assert!(matches!(t.remove("hostname"), Err(StoreError::Full { .. })));
        assert!(matches!(
            t.insert_new("other", &1),
            Err(StoreError::Full { .. })
        ));
        assert_eq!(
            t.get::<String>("hostname").unwrap().as_deref(),
            Some("cairn")
        );
        assert!(
            dir.path().join(RESERVE_NAME_FOR_TESTS).exists(),
            "a change never takes the reserve"
        );
    }

    #[test]
    fn a_session_write_on_a_full_partition_takes_the_reserve_and_changes_stay_refused() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let (store, free) = store_on_a_filling_disk(dir.path());
        free.store(0, Ordering::SeqCst);
        store.room().check(Need::Session).unwrap();
        assert!(
            !dir.path().join(RESERVE_NAME_FOR_TESTS).exists(),
            "released"
        );
        assert!(matches!(
            store.room().check(Need::Change),
            Err(StoreError::Full { .. })
        ));
        // Space freed (files deleted): the next change makes the reserve again for the next login.
        free.store(10 << 20, Ordering::SeqCst);
        store
            .table("system")
            .unwrap()
            .put("hostname", &"x")
            .unwrap();
        assert!(
            dir.path().join(RESERVE_NAME_FOR_TESTS).exists(),
            "made again"
        );
        free.store(0, Ordering::SeqCst);
        store.room().check(Need::Session).unwrap();
        assert!(!dir.path().join(RESERVE_NAME_FOR_TESTS).exists());
        // The session record itself is written (the login goes on).
        let sessions = store.db().open_tree("accounts").unwrap();
        sessions.insert("x/1", b"{}".to_vec()).unwrap();
        store.commit().unwrap();
        // A reopen with the disk still full does not take the space back for a new reserve.
        drop(sessions);
        drop(store);
        let policy = Headroom::CONFIG;
        assert!(
            policy.change_min > policy.reserve_file,
            "a released reserve never re-opens changes"
        );
    }

    #[test]
    fn damaged_record_is_reported_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t = store.table("t").unwrap();
        t.tree().insert("bad", b"{not json".to_vec()).unwrap();
        match t.get::<i32>("bad") {
            Err(StoreError::Corrupt { key, .. }) => assert_eq!(key, "bad"),
            other => panic!("expected corrupt, got {other:?}"),
        }
    }
}
