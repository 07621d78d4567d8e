//! Schema migrations: forward and backward steps declared by the crates that own the records, run here in order.
//!
//! The store never knows what a record means, so it cannot write a migration; it can make every one safe. A
//! step reads the settings as they are and stages its writes in a [`Step`]; the store then compares every
//! record the step replaces or removes with what it writes: each value of the old records (every JSON leaf)
//! must reappear somewhere in the new ones. A value that does not is a dropped field: it is refused unless the
//! migration declared it with [`Step::drops`], and either way it is listed in the step's [`StepReport`]. A
//! step that passes is applied as ONE sled transaction over every tree it touches together with the schema key,
//! then made durable with [`Store::commit`]: a power cut leaves the settings at the old version or the new one.

use crate::{Store, StoreError, META_TREE, SCHEMA_KEY, SCHEMA_VERSION};
use serde::Serialize;
use serde_json::Value;
use sled::Transactional;
use std::collections::{BTreeMap, BTreeSet};

/// A migration's step: it reads the settings through the [`Step`] and stages its writes there.
pub type StepFn = fn(&mut Step) -> Result<(), StoreError>;

/// A record as a step reads it: key and value bytes.
pub type Record = (Vec<u8>, Vec<u8>);

/// One schema step between `from` and `from + 1`, owned by the crate whose records it changes.
pub struct Migration {
    /// The schema version the forward step starts from.
    pub from: u32,
    /// The crate that owns the records (shown in reports, so a reader knows whom to ask).
    pub owner: &'static str,
    /// What changes, in one sentence an owner can read.
    pub describe: &'static str,
    /// `from` → `from + 1`.
    pub forward: StepFn,
    /// `from + 1` → `from`: what lets a box go back to an older firmware with its settings.
    pub backward: StepFn,
}

/// Every migration of this build in schema order, gathered from the crates that own them by the binary's
/// wiring (the store depends on none of them).
#[derive(Clone, Default)]
pub struct Schema {
    steps: Vec<&'static Migration>,
}

impl Schema {
    /// The schema of a build whose crates declared `sets`; each step from 1 to [`SCHEMA_VERSION`] must be
    /// declared exactly once, so a gap or a clash is found when the binary starts, never on an owner's box.
    pub fn new(sets: &[&'static [Migration]]) -> Result<Schema, StoreError> {
        let mut steps: Vec<&'static Migration> = sets.iter().flat_map(|s| s.iter()).collect();
        steps.sort_by_key(|m| m.from);
        let expected: Vec<u32> = (1..SCHEMA_VERSION).collect();
        let found: Vec<u32> = steps.iter().map(|m| m.from).collect();
        if found != expected {
            return Err(StoreError::BadSchema(format!(
                "the migrations declared start from versions {found:?}; this build's schema {SCHEMA_VERSION} needs exactly {expected:?}"
            )));
        }
        Ok(Schema { steps })
    }

    /// No migrations: a store opened so can only be new or already at [`SCHEMA_VERSION`] (crates' own tests).
    pub fn current_only() -> Schema {
        Schema::default()
    }

    fn step_from(&self, from: u32) -> Result<&'static Migration, StoreError> {
        self.steps
            .iter()
            .copied()
            .find(|m| m.from == from)
            .ok_or(StoreError::NoMigration { from })
    }
}

/// Which way a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Forward,
    Backward,
}

/// What one step did (or, in a dry run, would do) to the settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepReport {
    pub from: u32,
    pub to: u32,
    pub direction: Direction,
    pub owner: String,
    pub describe: String,
    /// Records written or removed, per tree.
    pub records_changed: BTreeMap<String, usize>,
    /// Fields whose values moved, as `tree key-pattern: old.path -> new.path`, with how many records.
    pub fields_moved: BTreeMap<String, usize>,
    /// Values the step does not carry over, as `tree key-pattern: path`, with how many records. Empty for a
    /// good migration; anything here was declared by the migration with its reason in `declared_drops`.
    pub dropped: BTreeMap<String, usize>,
    /// The migration's own reasons for what it drops.
    pub declared_drops: Vec<String>,
}

/// A step in progress: reads see the settings before the step, writes are staged until the step is checked.
pub struct Step<'a> {
    db: &'a sled::Db,
    writes: BTreeMap<(String, Vec<u8>), Option<Vec<u8>>>,
    declared: Vec<(String, String)>,
}

impl<'a> Step<'a> {
    fn new(db: &'a sled::Db) -> Step<'a> {
        Step {
            db,
            writes: BTreeMap::new(),
            declared: Vec::new(),
        }
    }

    /// Every record of `tree` whose key starts with `prefix`, as it was before the step.
    pub fn records(&self, tree: &str, prefix: &[u8]) -> Result<Vec<Record>, StoreError> {
        if !self
            .db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == tree.as_bytes())
        {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for item in self.db.open_tree(tree)?.scan_prefix(prefix) {
            let (k, v) = item?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Stages a record write.
    pub fn put(&mut self, tree: &str, key: &[u8], value: Vec<u8>) {
        self.writes
            .insert((tree.to_string(), key.to_vec()), Some(value));
    }

    /// Stages a record removal (its values must reappear in what the step writes, or be declared dropped).
    pub fn remove(&mut self, tree: &str, key: &[u8]) {
        self.writes.insert((tree.to_string(), key.to_vec()), None);
    }

    /// Declares that the step drops `field` (as the report names it: `tree key-pattern: path`) and why.
    pub fn drops(&mut self, field: &str, why: &str) {
        self.declared.push((field.to_string(), why.to_string()));
    }

    fn old(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if !self
            .db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == tree.as_bytes())
        {
            return Ok(None);
        }
        Ok(self.db.open_tree(tree)?.get(key)?.map(|v| v.to_vec()))
    }

    /// Compares what the step replaces with what it writes.
    fn report(
        &self,
        m: &Migration,
        direction: Direction,
        from: u32,
        to: u32,
    ) -> Result<StepReport, StoreError> {
        let mut records_changed = BTreeMap::new();
        let mut old_leaves = Vec::new();
        let mut new_leaves: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for ((tree, key), value) in &self.writes {
            let old = self.old(tree, key)?;
            if old.as_deref() == value.as_deref() {
                continue;
            }
            *records_changed.entry(tree.clone()).or_insert(0) += 1;
            let place = format!("{tree} {}", key_pattern(key));
            if let Some(old) = old {
                leaves(&decode(&old), String::new(), &mut |path, v| {
                    old_leaves.push((place.clone(), path, v))
                });
            }
            if let Some(new) = value {
                leaves(&decode(new), String::new(), &mut |path, v| {
                    new_leaves
                        .entry(v)
                        .or_default()
                        .push(format!("{place}: {path}"))
                });
            }
        }
        let mut fields_moved = BTreeMap::new();
        let mut dropped = BTreeMap::new();
        // First every value that stayed in its field, then the rest wherever the value went: so a moved or
        // dropped value is named by its own field, not by another that happens to hold the same value.
        let mut unmatched = Vec::new();
        for (place, path, value) in old_leaves {
            let from_field = format!("{place}: {path}");
            let paths = new_leaves.get_mut(&value);
            match paths.and_then(|p| p.iter().position(|f| *f == from_field).map(|i| (p, i))) {
                Some((p, i)) => {
                    p.swap_remove(i);
                }
                None => unmatched.push((from_field, value)),
            }
        }
        for (from_field, value) in unmatched {
            match new_leaves.get_mut(&value).and_then(|p| p.pop()) {
                Some(to_field) => {
                    *fields_moved
                        .entry(format!("{from_field} -> {}", after_colon(&to_field)))
                        .or_insert(0) += 1
                }
                None => *dropped.entry(from_field).or_insert(0) += 1,
            }
        }
        let declared: BTreeSet<&str> = self.declared.iter().map(|(f, _)| f.as_str()).collect();
        let undeclared: Vec<String> = dropped
            .keys()
            .filter(|f| !declared.contains(f.as_str()))
            .cloned()
            .collect();
        if !undeclared.is_empty() {
            return Err(StoreError::WouldDrop {
                from,
                to,
                fields: undeclared,
            });
        }
        Ok(StepReport {
            from,
            to,
            direction,
            owner: m.owner.to_string(),
            describe: m.describe.to_string(),
            records_changed,
            fields_moved,
            dropped,
            declared_drops: self
                .declared
                .iter()
                .map(|(f, why)| format!("{f}: {why}"))
                .collect(),
        })
    }

    /// The staged writes and the new schema version, as one transaction over every tree involved.
    fn apply(&self, to: u32) -> Result<(), StoreError> {
        let mut names: Vec<String> = self.writes.keys().map(|(t, _)| t.clone()).collect();
        names.push(META_TREE.to_string());
        names.sort();
        names.dedup();
        let trees = names
            .iter()
            .map(|n| self.db.open_tree(n))
            .collect::<Result<Vec<sled::Tree>, _>>()?;
        let index = |name: &str| names.iter().position(|n| n == name).unwrap_or(0);
        trees[..]
            .transaction(|txs| {
                for ((tree, key), value) in &self.writes {
                    let tx = &txs[index(tree)];
                    match value {
                        Some(v) => tx.insert(key.as_slice(), v.as_slice())?,
                        None => tx.remove(key.as_slice())?,
                    };
                }
                txs[index(META_TREE)].insert(SCHEMA_KEY, to.to_string().as_bytes())?;
                Ok(())
            })
            .map_err(|e| crate::transaction_failed(e, "migration"))?;
        Ok(())
    }

    /// Trees the step emptied (a move between trees) go once the step is durable; a power cut before
    /// leaves an empty tree, which holds nothing.
    fn drop_emptied_trees(&self) -> Result<(), StoreError> {
        let touched: BTreeSet<&String> = self.writes.keys().map(|(t, _)| t).collect();
        for tree in touched {
            if self.db.open_tree(tree)?.is_empty() {
                self.db.drop_tree(tree)?;
            }
        }
        Ok(())
    }
}

fn decode(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// `u/alice` → `u/*`; a key without a kind prefix → `*`: reports speak of kinds of records, not of people.
fn key_pattern(key: &[u8]) -> String {
    let key = String::from_utf8_lossy(key);
    match key.split_once('/') {
        Some((kind, _)) => format!("{kind}/*"),
        None => "*".to_string(),
    }
}

fn after_colon(field: &str) -> &str {
    field.split_once(": ").map(|(_, p)| p).unwrap_or(field)
}

/// Calls `f(path, canonical value)` for every scalar that carries data (null and empty containers carry none).
fn leaves(v: &Value, path: String, f: &mut dyn FnMut(String, String)) {
    match v {
        Value::Null => {}
        Value::Object(map) => {
            for (k, v) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(v, p, f);
            }
        }
        Value::Array(items) => {
            for v in items {
                leaves(v, format!("{path}[]"), f);
            }
        }
        scalar => f(path, scalar.to_string()),
    }
}

impl Store {
    /// Runs the steps between the settings' version and `target`, forward or backward, each one checked,
    /// applied atomically with the schema key and made durable before the next; returns what each did.
    pub fn migrate_to(&self, schema: &Schema, target: u32) -> Result<Vec<StepReport>, StoreError> {
        if target == 0 || target > SCHEMA_VERSION {
            return Err(StoreError::NoMigration { from: target });
        }
        let mut version = self.schema_version()?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        let mut reports = Vec::new();
        while version != target {
            let (m, direction, to) = if version < target {
                (schema.step_from(version)?, Direction::Forward, version + 1)
            } else {
                (
                    schema.step_from(version - 1)?,
                    Direction::Backward,
                    version - 1,
                )
            };
            log::info!(
                "settings: migrating schema {version} -> {to} ({}): {}",
                m.owner,
                m.describe
            );
            let mut step = Step::new(self.db());
            match direction {
                Direction::Forward => (m.forward)(&mut step)?,
                Direction::Backward => (m.backward)(&mut step)?,
            }
            let report = step.report(m, direction, version, to)?;
            step.apply(to)?;
            self.commit()?;
            step.drop_emptied_trees()?;
            for field in report.dropped.keys() {
                log::warn!("settings: schema {version} -> {to} drops {field} (declared)");
            }
            reports.push(report);
            version = to;
        }
        Ok(reports)
    }
}

/// What `cairn migrate --dry-run` prints: the steps a firmware would run on these settings, and whether they
/// keep everything. The install shows it with the pending update.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    /// Always true: the settings themselves were not touched, a copy was migrated.
    pub dry_run: bool,
    /// The schema of the firmware that ran the dry run.
    pub firmware_schema: u32,
    /// The settings' schema before.
    pub from: u32,
    /// The schema asked for.
    pub to: u32,
    /// True when every step ran and none dropped a value.
    pub ok: bool,
    /// Every step that ran, in order.
    pub steps: Vec<StepReport>,
    /// Values dropped over all steps (declared ones; an undeclared drop stops the run with an error).
    pub dropped: usize,
    /// Why the run stopped, if it did.
    pub error: Option<DryRunError>,
}

/// A stable code and the sentence, for a dry run that stopped.
#[derive(Debug, Clone, Serialize)]
pub struct DryRunError {
    pub code: &'static str,
    pub message: String,
}

impl StoreError {
    /// The stable code a migration failure is reported with.
    pub fn migration_code(&self) -> &'static str {
        match self {
            StoreError::WouldDrop { .. } => "migration.would_drop",
            StoreError::TooNew { .. } => "migration.too_new",
            StoreError::NoMigration { .. } => "migration.no_step",
            StoreError::BadSchema(_) => "migration.bad_schema",
            StoreError::Snapshot(_) => "migration.bad_settings",
            _ => "migration.failed",
        }
    }
}

/// Migrates a COPY of the settings in `source` (a snapshot folder holding `settings.export`, or a sled
/// folder that no process has open) to `target` in `scratch`, which is removed afterwards; the settings in
/// `source` are only read.
pub fn dry_run(
    source: &std::path::Path,
    schema: &Schema,
    target: u32,
    scratch: &std::path::Path,
) -> Result<DryRun, StoreError> {
    let copy = scratch.join("settings.db");
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).map_err(|source| StoreError::Sync {
        path: scratch.to_path_buf(),
        source,
    })?;
    let outcome = (|| {
        let export_file = source.join(crate::snapshot::FILE);
        let store = Store::open_unmigrated(
            &copy,
            crate::Headroom::CONFIG,
            std::sync::Arc::new(crate::statvfs_free),
        )?;
        let export = if export_file.exists() {
            crate::snapshot::Export::load(&export_file)?
        } else {
            // sled writes while it opens (recovery), so even reading happens on a copy of its files.
            let original = scratch.join("original.db");
            copy_tree(source, &original).map_err(|e| StoreError::Sync {
                path: source.to_path_buf(),
                source: e,
            })?;
            let db = sled::Config::new()
                .path(&original)
                .open()
                .map_err(|e| StoreError::Open {
                    path: source.to_path_buf(),
                    source: e,
                })?;
            crate::snapshot::Export::read_db(&db)?
        };
        store.import(&export)?;
        let from = store.schema_version()?;
        let mut run = DryRun {
            dry_run: true,
            firmware_schema: SCHEMA_VERSION,
            from,
            to: target,
            ok: false,
            steps: Vec::new(),
            dropped: 0,
            error: None,
        };
        match store.migrate_to(schema, target) {
            Ok(steps) => {
                run.dropped = steps
                    .iter()
                    .map(|s| s.dropped.values().sum::<usize>())
                    .sum();
                run.ok = run.dropped == 0;
                run.steps = steps;
            }
            Err(e) => {
                run.error = Some(DryRunError {
                    code: e.migration_code(),
                    message: e.to_string(),
                })
            }
        }
        Ok(run)
    })();
    let _ = std::fs::remove_dir_all(scratch);
    outcome
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
