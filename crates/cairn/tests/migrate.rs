//! `cairn migrate` as the install runs it: the new firmware's binary on the running slot's settings snapshot.
// A test runs the built binary itself, as the install engine does through cairn-exec.
#![allow(clippy::disallowed_methods)]

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn fixture(schema: u32) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../tests/fixtures/settings-v{schema}.export"))
}

fn migrate(args: &[&str]) -> (bool, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("migrate")
        .args(args)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.success(), report)
}

#[test]
fn a_dry_run_reports_every_step_on_a_copy_and_leaves_the_snapshot_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("snapshots/a");
    std::fs::create_dir_all(&snapshot).unwrap();
    let file = snapshot.join("settings.export");
    std::fs::copy(fixture(1), &file).unwrap();
    let before = std::fs::read(&file).unwrap();
    let (ok, report) = migrate(&["--dry-run", "--state", snapshot.to_str().unwrap()]);
    assert!(ok, "{report:#}");
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["from"], 1);
    assert_eq!(report["to"], cairn_store::SCHEMA_VERSION);
    assert_eq!(report["dropped"], 0);
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len() as u32, cairn_store::SCHEMA_VERSION - 1);
    for step in steps {
        assert_eq!(step["owner"], "cairn-accounts");
        assert_eq!(step["dropped"], serde_json::json!({}));
        assert!(
            step["records_changed"]["accounts"].as_u64().unwrap() > 0,
            "{step:#}"
        );
    }
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "only a copy is migrated"
    );
    assert_eq!(std::fs::read_dir(&snapshot).unwrap().count(), 1);
}

#[test]
fn a_dry_run_on_settings_newer_than_the_binary_fails_with_a_code() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture(cairn_store::SCHEMA_VERSION)).unwrap();
    let newer = text
        .replacen(
            &format!("\"schema\":{}", cairn_store::SCHEMA_VERSION),
            "\"schema\":99",
            1,
        )
        .replace(
            &format!(
                "\"key\":\"schema_version\",\"value\":\"{}\"",
                cairn_store::SCHEMA_VERSION
            ),
            "\"key\":\"schema_version\",\"value\":\"99\"",
        );
    std::fs::write(dir.path().join("settings.export"), newer).unwrap();
    let (ok, report) = migrate(&["--dry-run", "--state", dir.path().to_str().unwrap()]);
    assert!(!ok);
    assert_eq!(report["error"]["code"], "migration.too_new", "{report:#}");
    let (ok, report) = migrate(&["--dry-run", "--state", "/nonexistent"]);
    assert!(!ok);
    assert!(report["error"]["code"].is_string(), "{report:#}");
}
