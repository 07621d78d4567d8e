//! Per-slot settings snapshots and the settings' export format.
//!
//! Before an update activates the other slot, the install keeps a copy of the settings for the running slot
//! (`<config>/cairn/snapshots/<slot>/settings.export`). If the new firmware migrates the settings and then fails,
//! U-Boot falls back to the old slot, whose firmware finds a schema newer than it knows: instead of refusing,
//! it restores its own slot's snapshot. The space is checked ([`Store::snapshot_room`]) before anything is
//! written, so an install never fills the settings' partition.
//!
//! The export format is JSON lines, also used for `tests/fixtures/`: a header with the schema version and the
//! record count, one line per record (tree, key, value as text, or hex for bytes that are not UTF-8), and an
//! end line with the count again, so a cut file is never taken for a whole one. It is independent of sled's
//! on-disk format (a fixture outlives a sled upgrade), small, and readable in a review. A snapshot is written
//! to a temporary file, synced, renamed over the old one and its folder synced: a power cut leaves the old
//! snapshot or the new one.

use crate::{Store, StoreError, META_TREE, SCHEMA_KEY, SCHEMA_VERSION};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// The snapshot file in a slot's folder.
pub const FILE: &str = "settings.export";
const FORMAT: &str = "cairn-settings-export";
/// Slack for the file's last block and the folder entry.
const BLOCK_SLACK: u64 = 8192;

/// Why a snapshot was not taken or not restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{0:?} is not a slot name (a to z, 0 to 9, at most 8)")]
    BadSlot(String),
    #[error("there is no settings snapshot for slot {0}")]
    Missing(String),
    #[error("the settings snapshot needs {need} bytes and the settings partition has {free} free (keeping {keep} for changes); free space on the config partition and try again")]
    NoRoom { need: u64, free: u64, keep: u64 },
    #[error("the settings export {path} is damaged: {why}")]
    Damaged { path: PathBuf, why: String },
    #[error("the settings export has schema {found}, newer than this firmware's {supported}")]
    TooNew { found: u32, supported: u32 },
    #[error("the settings kept changing while being copied; try again")]
    Busy,
    #[error("cannot write the settings snapshot {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a snapshot holds, for logs and the health route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub slot: String,
    pub schema: u32,
    pub records: u64,
    pub bytes: u64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    schema: u32,
    records: u64,
}

#[derive(Serialize, Deserialize, Default)]
struct Line {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tree: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_hex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value_hex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end: Option<u64>,
}

/// The settings as an export holds them: (tree, key, value), trees in name order, keys in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub schema: u32,
    pub records: Vec<(String, Vec<u8>, Vec<u8>)>,
}

/// Lowercase hex of `bytes` (exports, and the other settings files that carry bytes as text).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a hex string; none when it is not one.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn text_or_hex(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (Some(s.to_string()), None),
        Err(_) => (None, Some(hex(bytes))),
    }
}

impl Export {
    /// Every record of every tree of `db`, which nothing else writes (a database opened only for this).
    pub fn read_db(db: &sled::Db) -> Result<Export, StoreError> {
        Export::read(db)
    }

    /// Every record of every tree of `db` (one pass; see [`Store::export`] for a consistent one).
    fn read(db: &sled::Db) -> Result<Export, StoreError> {
        let mut names = db.tree_names();
        names.sort();
        let mut records = Vec::new();
        let mut schema = 0;
        for name in names {
            let tree = db.open_tree(&name)?;
            let name = String::from_utf8_lossy(&name).into_owned();
            for item in tree.iter() {
                let (k, v) = item?;
                if name == META_TREE && k.as_ref() == SCHEMA_KEY.as_bytes() {
                    schema = crate::parse_version(&v);
                }
                records.push((name.clone(), k.to_vec(), v.to_vec()));
            }
        }
        Ok(Export { schema, records })
    }

    /// The export file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let header = Header {
            format: FORMAT.into(),
            version: 1,
            schema: self.schema,
            records: self.records.len() as u64,
        };
        // These types always serialise: plain strings and numbers.
        let mut line = |json: serde_json::Result<String>| {
            out.extend_from_slice(json.unwrap_or_default().as_bytes());
            out.push(b'\n');
        };
        line(serde_json::to_string(&header));
        for (tree, k, v) in &self.records {
            let (key, key_hex) = text_or_hex(k);
            let (value, value_hex) = text_or_hex(v);
            line(serde_json::to_string(&Line {
                tree: Some(tree.clone()),
                key,
                key_hex,
                value,
                value_hex,
                end: None,
            }));
        }
        line(serde_json::to_string(&Line {
            end: Some(self.records.len() as u64),
            ..Line::default()
        }));
        out
    }

    /// Reads an export file, refusing a cut or damaged one.
    pub fn load(path: &Path) -> Result<Export, SnapshotError> {
        let damaged = |why: String| SnapshotError::Damaged {
            path: path.to_path_buf(),
            why,
        };
        let bytes = std::fs::read(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => damaged("missing".into()),
            _ => SnapshotError::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
        Export::from_bytes(&bytes).map_err(damaged)
    }

    /// An export with no records but the schema version: what a factory reset leaves.
    pub fn empty(schema: u32) -> Export {
        Export {
            schema,
            records: vec![(
                META_TREE.to_string(),
                SCHEMA_KEY.as_bytes().to_vec(),
                schema.to_string().into_bytes(),
            )],
        }
    }

    /// Parses an export's bytes (a file, or a backup once decrypted), refusing a cut or damaged one with the
    /// reason.
    pub fn from_bytes(bytes: &[u8]) -> Result<Export, String> {
        let damaged = |why: String| why;
        let mut lines = bytes.lines();
        let mut next = || -> Result<String, String> {
            lines
                .next()
                .ok_or_else(|| damaged("cut short".into()))?
                .map_err(|e| damaged(e.to_string()))
        };
        let header: Header =
            serde_json::from_str(&next()?).map_err(|e| damaged(format!("header: {e}")))?;
        if header.format != FORMAT || header.version != 1 {
            return Err(damaged(format!(
                "not a version 1 {FORMAT} ({} {})",
                header.format, header.version
            )));
        }
        let mut records = Vec::new();
        loop {
            let line: Line =
                serde_json::from_str(&next()?).map_err(|e| damaged(format!("record: {e}")))?;
            if let Some(end) = line.end {
                if end != header.records || records.len() as u64 != end {
                    return Err(damaged(format!(
                        "{} records, header says {}, end says {end}",
                        records.len(),
                        header.records
                    )));
                }
                break;
            }
            let bytes = |text: Option<String>, hex: Option<String>, what: &str| match (text, hex) {
                (Some(t), None) => Ok(t.into_bytes()),
                (None, Some(h)) => unhex(&h).ok_or_else(|| damaged(format!("bad hex in {what}"))),
                _ => Err(damaged(format!("a record without its {what}"))),
            };
            let tree = line
                .tree
                .ok_or_else(|| damaged("a record without tree".into()))?;
            let key = bytes(line.key, line.key_hex, "key")?;
            let value = bytes(line.value, line.value_hex, "value")?;
            records.push((tree, key, value));
        }
        Ok(Export {
            schema: header.schema,
            records,
        })
    }

    /// This export brought to this firmware's schema with `schema`'s migrations (run on a temporary store, so
    /// nothing on the box changes): how a backup from an older firmware is restored. Newer exports are refused.
    pub fn migrated(&self, schema: &crate::Schema) -> Result<Export, StoreError> {
        if self.schema > SCHEMA_VERSION {
            return Err(SnapshotError::TooNew {
                found: self.schema,
                supported: SCHEMA_VERSION,
            }
            .into());
        }
        if self.schema == SCHEMA_VERSION {
            return Ok(self.clone());
        }
        let scratch = Store::open_temporary()?;
        scratch.import(self)?;
        scratch.migrate_to(schema, SCHEMA_VERSION)?;
        scratch.export()
    }

    /// The value of one record, if the export holds it.
    pub fn get(&self, tree: &str, key: &[u8]) -> Option<&[u8]> {
        self.records
            .iter()
            .find(|(t, k, _)| t == tree && k == key)
            .map(|(_, _, v)| v.as_slice())
    }

    /// Sets one record (kept in tree and key order).
    pub fn put(&mut self, tree: &str, key: &[u8], value: Vec<u8>) {
        match self
            .records
            .iter_mut()
            .find(|(t, k, _)| t == tree && k == key)
        {
            Some(record) => record.2 = value,
            None => {
                self.records.push((tree.to_string(), key.to_vec(), value));
                self.records.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            }
        }
    }

    /// Keeps only the records `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &[u8], &[u8]) -> bool) {
        self.records.retain(|(t, k, v)| keep(t, k, v));
    }

    /// Replaces everything in `db` with this export, in one transaction over every tree either holds.
    pub(crate) fn restore_into(&self, db: &sled::Db) -> Result<(), StoreError> {
        let mut names: Vec<String> = db
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .chain(self.records.iter().map(|(t, _, _)| t.clone()))
            .collect();
        names.sort();
        names.dedup();
        let trees = names
            .iter()
            .map(|n| db.open_tree(n))
            .collect::<Result<Vec<sled::Tree>, _>>()?;
        let mut stale = Vec::new();
        for (i, tree) in trees.iter().enumerate() {
            for item in tree.iter().keys() {
                stale.push((i, item?));
            }
        }
        trees[..]
            .transaction(|txs| {
                for (i, key) in &stale {
                    txs[*i].remove(key)?;
                }
                for (tree, k, v) in &self.records {
                    let i = names.iter().position(|n| n == tree).unwrap_or(0);
                    txs[i].insert(k.as_slice(), v.as_slice())?;
                }
                Ok(())
            })
            .map_err(|e| crate::transaction_failed(e, "restore"))?;
        Ok(())
    }
}

fn valid_slot(slot: &str) -> Result<(), SnapshotError> {
    let ok = !slot.is_empty()
        && slot.len() <= 8
        && slot
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(SnapshotError::BadSlot(slot.to_string()))
    }
}

/// `<folder of the database>/snapshots/<slot>/settings.export` (on the box `/config/cairn/snapshots/<slot>/`).
pub fn snapshot_path(database: &Path, slot: &str) -> Result<PathBuf, SnapshotError> {
    valid_slot(slot)?;
    let parent = database.parent().unwrap_or(database);
    Ok(parent.join("snapshots").join(slot).join(FILE))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` so that a power cut leaves the old file or the new one: temporary file, fsync,
/// rename, fsync of the folder.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    let folder = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder).map_err(io(folder))?;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary).map_err(io(&temporary))?;
    file.write_all(bytes).map_err(io(&temporary))?;
    file.sync_all().map_err(io(&temporary))?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(io(path))?;
    std::fs::File::open(folder)
        .and_then(|d| d.sync_all())
        .map_err(io(folder))?;
    if let Some(snapshots) = folder.parent() {
        std::fs::File::open(snapshots)
            .and_then(|d| d.sync_all())
            .map_err(io(snapshots))?;
    }
    Ok(())
}

impl Store {
    /// A consistent export of every tree: taken between two checksums of the whole database (each holds sled's
    /// locks over all trees while it reads), retried when a write landed in between.
    pub fn export(&self) -> Result<Export, StoreError> {
        for _ in 0..5 {
            let before = self.db().checksum()?;
            let export = Export::read(self.db())?;
            if self.db().checksum()? == before {
                return Ok(export);
            }
        }
        Err(SnapshotError::Busy.into())
    }

    /// Bytes a snapshot needs on the settings' partition now (the new file is written beside the old one).
    pub fn snapshot_budget(&self) -> Result<u64, StoreError> {
        Ok(self.export()?.to_bytes().len() as u64 + BLOCK_SLACK)
    }

    /// Refuses, before anything is written, a snapshot that would not leave the settings their room for
    /// changes; returns the budget when it fits. An install calls this before it touches the other slot.
    pub fn snapshot_room(&self) -> Result<u64, StoreError> {
        let need = self.snapshot_budget()?;
        if let Some(free) = self.room().free_bytes() {
            let keep = self.room().change_min();
            if free < need.saturating_add(keep) {
                return Err(SnapshotError::NoRoom { need, free, keep }.into());
            }
        }
        Ok(need)
    }

    /// Keeps a consistent copy of the settings for `slot`, replacing its previous one atomically.
    pub fn snapshot_for_slot(&self, slot: &str) -> Result<SnapshotInfo, StoreError> {
        let path = snapshot_path(&self.dir, slot)?;
        self.snapshot_room()?;
        let export = self.export()?;
        let bytes = export.to_bytes();
        write_atomically(&path, &bytes)?;
        log::info!(
            "settings: snapshot for slot {slot} kept ({} records, schema {}, {} bytes)",
            export.records.len(),
            export.schema,
            bytes.len()
        );
        Ok(SnapshotInfo {
            slot: slot.to_string(),
            schema: export.schema,
            records: export.records.len() as u64,
            bytes: bytes.len() as u64,
        })
    }

    /// What the snapshot of `slot` holds, without restoring it.
    pub fn snapshot_info(&self, slot: &str) -> Result<SnapshotInfo, StoreError> {
        let path = snapshot_path(&self.dir, slot)?;
        if !path.exists() {
            return Err(SnapshotError::Missing(slot.to_string()).into());
        }
        let export = Export::load(&path)?;
        Ok(SnapshotInfo {
            slot: slot.to_string(),
            schema: export.schema,
            records: export.records.len() as u64,
            bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        })
    }

    /// Puts the settings of `slot`'s snapshot back, in one transaction, made durable. The snapshot stays.
    pub fn restore_snapshot(&self, slot: &str) -> Result<SnapshotInfo, StoreError> {
        let path = snapshot_path(&self.dir, slot)?;
        if !path.exists() {
            return Err(SnapshotError::Missing(slot.to_string()).into());
        }
        let export = Export::load(&path)?;
        if export.schema > SCHEMA_VERSION {
            return Err(SnapshotError::TooNew {
                found: export.schema,
                supported: SCHEMA_VERSION,
            }
            .into());
        }
        export.restore_into(self.db())?;
        self.commit()?;
        Ok(SnapshotInfo {
            slot: slot.to_string(),
            schema: export.schema,
            records: export.records.len() as u64,
            bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        })
    }

    /// Loads an export (a snapshot or a fixture) into this store, replacing what it holds.
    pub fn import(&self, export: &Export) -> Result<(), StoreError> {
        export.restore_into(self.db())?;
        self.commit()
    }
}
