//! The migration runner and the per-slot snapshots, with migrations written for the test (the real ones,
//! owned by the domain crates, are tested on the settings fixtures in `crates/cairn/tests/fixtures.rs`).

use cairn_store::snapshot::SnapshotError;
use cairn_store::{
    fake_free_space, Direction, Headroom, Migration, Schema, Step, Store, StoreError,
    SCHEMA_VERSION,
};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Step k renames the field `v{k}` of every record in "things" to `v{k+1}`, and back.
fn rename(step: &mut Step, from: &str, to: &str) -> Result<(), StoreError> {
    for (key, value) in step.records("things", b"")? {
        let mut record: Value = serde_json::from_slice(&value).unwrap();
        if let Some(v) = record.as_object_mut().unwrap().remove(from) {
            record[to] = v;
        }
        step.put("things", &key, serde_json::to_vec(&record).unwrap());
    }
    Ok(())
}

fn f1(s: &mut Step) -> Result<(), StoreError> {
    rename(s, "v1", "v2")
}
fn b1(s: &mut Step) -> Result<(), StoreError> {
    rename(s, "v2", "v1")
}
fn f2(s: &mut Step) -> Result<(), StoreError> {
    rename(s, "v2", "v3")
}
fn b2(s: &mut Step) -> Result<(), StoreError> {
    rename(s, "v3", "v2")
}

static STEPS: &[Migration] = &[
    Migration {
        from: 1,
        owner: "test",
        describe: "v1 becomes v2",
        forward: f1,
        backward: b1,
    },
    Migration {
        from: 2,
        owner: "test",
        describe: "v2 becomes v3",
        forward: f2,
        backward: b2,
    },
];

fn schema() -> Schema {
    Schema::new(&[&STEPS[..SCHEMA_VERSION as usize - 1]]).unwrap()
}

/// A database at schema 1 with two records in "things" and one in a tree no migration knows.
fn v1_database(dir: &Path) {
    let db = sled::open(dir).unwrap();
    db.open_tree("meta")
        .unwrap()
        .insert("schema_version", b"1")
        .unwrap();
    let things = db.open_tree("things").unwrap();
    things
        .insert("a", br#"{"v1":"alpha","keep":[1,2]}"#.to_vec())
        .unwrap();
    things.insert("b", br#"{"v1":"beta"}"#.to_vec()).unwrap();
    db.open_tree("other")
        .unwrap()
        .insert("x", b"not json".to_vec())
        .unwrap();
    db.flush().unwrap();
}

fn record(store: &Store, tree: &str, key: &str) -> Value {
    let bytes = store
        .db()
        .open_tree(tree)
        .unwrap()
        .get(key)
        .unwrap()
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn unmigrated(dir: &Path) -> Store {
    Store::open_unmigrated(
        dir,
        Headroom::CONFIG,
        fake_free_space(dir, Arc::new(AtomicU64::new(100 << 20))),
    )
    .unwrap()
}

#[test]
fn settings_go_forward_to_the_current_schema_and_back_with_every_value() {
    let dir = tempfile::tempdir().unwrap();
    v1_database(dir.path());
    let store = unmigrated(dir.path());
    let up = store.migrate_to(&schema(), SCHEMA_VERSION).unwrap();
    assert_eq!(up.len(), SCHEMA_VERSION as usize - 1);
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let top = format!("v{SCHEMA_VERSION}");
    assert_eq!(
        record(&store, "things", "a"),
        json!({top.clone(): "alpha", "keep": [1, 2]})
    );
    assert_eq!(up[0].direction, Direction::Forward);
    assert_eq!(up[0].records_changed["things"], 2);
    assert_eq!(up[0].fields_moved["things *: v1 -> v2"], 2);
    assert!(up.iter().all(|r| r.dropped.is_empty()), "{up:?}");

    let down = store.migrate_to(&schema(), 1).unwrap();
    assert_eq!(down.len(), SCHEMA_VERSION as usize - 1);
    assert!(down.iter().all(|r| r.direction == Direction::Backward));
    assert_eq!(store.schema_version().unwrap(), 1);
    assert_eq!(
        record(&store, "things", "a"),
        json!({"v1": "alpha", "keep": [1, 2]})
    );
    assert_eq!(record(&store, "things", "b"), json!({"v1": "beta"}));
    let other = store.db().open_tree("other").unwrap();
    assert_eq!(other.get("x").unwrap().unwrap().as_ref(), b"not json");
}

fn dropping(step: &mut Step) -> Result<(), StoreError> {
    for (key, value) in step.records("things", b"")? {
        let mut record: Value = serde_json::from_slice(&value).unwrap();
        record.as_object_mut().unwrap().remove("v1");
        record["v2"] = json!("");
        step.put("things", &key, serde_json::to_vec(&record).unwrap());
    }
    Ok(())
}

fn dropping_declared(step: &mut Step) -> Result<(), StoreError> {
    step.drops("things *: v1", "the test says so");
    dropping(step)
}

fn with_first_step(forward: fn(&mut Step) -> Result<(), StoreError>) -> Schema {
    let first: &'static [Migration] = Box::leak(Box::new([Migration {
        from: 1,
        owner: "test",
        describe: "loses v1",
        forward,
        backward: b1,
    }]));
    Schema::new(&[first, &STEPS[1..SCHEMA_VERSION as usize - 1]]).unwrap()
}

#[test]
fn a_migration_that_would_drop_a_field_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    v1_database(dir.path());
    let store = unmigrated(dir.path());
    match store.migrate_to(&with_first_step(dropping), SCHEMA_VERSION) {
        Err(StoreError::WouldDrop {
            from: 1,
            to: 2,
            fields,
        }) => {
            assert_eq!(fields, vec!["things *: v1".to_string()])
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(store.schema_version().unwrap(), 1);
    assert_eq!(record(&store, "things", "b"), json!({"v1": "beta"}));
    // The same step also refuses at open: the daemon never starts on half-kept settings.
    drop(store);
    match Store::open_migrating(dir.path(), &with_first_step(dropping), None) {
        Err(StoreError::WouldDrop { .. }) => {}
        other => panic!("expected a refusal at open, got {:?}", other.err()),
    }
}

#[test]
fn a_declared_drop_is_applied_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    v1_database(dir.path());
    let store = unmigrated(dir.path());
    let reports = store
        .migrate_to(&with_first_step(dropping_declared), 2)
        .unwrap();
    assert_eq!(reports[0].dropped["things *: v1"], 2);
    assert_eq!(
        reports[0].declared_drops,
        vec!["things *: v1: the test says so"]
    );
}

#[test]
fn migrations_must_cover_every_step_once() {
    if SCHEMA_VERSION < 3 {
        return;
    }
    assert!(matches!(
        Schema::new(&[&STEPS[1..]]),
        Err(StoreError::BadSchema(_))
    ));
    assert!(matches!(
        Schema::new(&[STEPS, &STEPS[..1]]),
        Err(StoreError::BadSchema(_))
    ));
    // Without migrations, an old database is refused, not opened half-understood.
    let dir = tempfile::tempdir().unwrap();
    v1_database(dir.path());
    assert!(matches!(
        Store::open(dir.path()),
        Err(StoreError::NoMigration { from: 1 })
    ));
}

#[test]
fn a_slot_snapshot_restores_every_tree_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("settings.db");
    let store = Store::open(&db).unwrap();
    let t = store.table("things").unwrap();
    t.put("a", &json!({"name": "alpha"})).unwrap();
    store
        .db()
        .open_tree("raw")
        .unwrap()
        .insert(b"\xff\x00".as_slice(), b"\x80bytes".as_slice())
        .unwrap();
    store.commit().unwrap();
    let budget = store.snapshot_budget().unwrap();
    let info = store.snapshot_for_slot("a").unwrap();
    assert_eq!(info.schema, SCHEMA_VERSION);
    assert!(info.bytes <= budget, "{info:?} within {budget}");
    let file = dir.path().join("snapshots/a/settings.export");
    assert!(file.exists());
    assert!(!dir.path().join("snapshots/a/settings.tmp").exists());

    t.put("a", &json!({"name": "changed"})).unwrap();
    t.put("new", &1).unwrap();
    store.db().drop_tree("raw").unwrap();
    store.restore_snapshot("a").unwrap();
    assert_eq!(t.get::<Value>("a").unwrap(), Some(json!({"name": "alpha"})));
    assert_eq!(t.get::<Value>("new").unwrap(), None);
    let raw = store.db().open_tree("raw").unwrap();
    assert_eq!(
        raw.get(b"\xff\x00").unwrap().unwrap().as_ref(),
        b"\x80bytes"
    );

    assert!(matches!(
        store.snapshot_for_slot("../x"),
        Err(StoreError::Snapshot(SnapshotError::BadSlot(_)))
    ));
    assert!(matches!(
        store.restore_snapshot("b"),
        Err(StoreError::Snapshot(SnapshotError::Missing(_)))
    ));
}

#[test]
fn a_snapshot_without_room_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let free = Arc::new(AtomicU64::new(10 << 20));
    let db = dir.path().join("settings.db");
    let store = Store::open_with(
        &db,
        Headroom::CONFIG,
        fake_free_space(dir.path(), free.clone()),
    )
    .unwrap();
    store
        .table("things")
        .unwrap()
        .put("a", &"x".repeat(4000))
        .unwrap();
    let need = store.snapshot_budget().unwrap();
    free.store(
        Headroom::CONFIG.change_min + need - 1,
        std::sync::atomic::Ordering::SeqCst,
    );
    match store.snapshot_for_slot("b") {
        Err(StoreError::Snapshot(SnapshotError::NoRoom { need: n, .. })) => assert_eq!(n, need),
        other => panic!("expected no room, got {other:?}"),
    }
    assert!(!dir.path().join("snapshots/b").exists());
}

#[test]
fn a_newer_schema_is_replaced_by_the_booted_slots_snapshot_and_refused_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("settings.db");
    {
        let store = Store::open(&db).unwrap();
        store.table("things").unwrap().put("kept", &1).unwrap();
        store.snapshot_for_slot("a").unwrap();
        // The newer firmware (slot b) migrated the settings and changed them; then U-Boot fell back to a.
        let meta = store.db().open_tree("meta").unwrap();
        meta.insert("schema_version", b"99").unwrap();
        store.table("things").unwrap().put("newer", &2).unwrap();
        store.commit().unwrap();
    }
    match Store::open_migrating(&db, &Schema::current_only(), Some("b")) {
        Err(StoreError::TooNew { found: 99, .. }) => {}
        other => panic!(
            "no snapshot for b: expected a refusal, got {:?}",
            other.err()
        ),
    }
    let (store, opening) = Store::open_migrating(&db, &Schema::current_only(), Some("a")).unwrap();
    let restored = opening.restored.expect("restored");
    assert_eq!(
        (restored.found, restored.snapshot.schema),
        (99, SCHEMA_VERSION)
    );
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let things = store.table("things").unwrap();
    assert_eq!(things.get::<i32>("kept").unwrap(), Some(1));
    assert_eq!(things.get::<i32>("newer").unwrap(), None);
}
