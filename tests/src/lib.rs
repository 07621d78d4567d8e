//! Shared steps of the end-to-end scenarios: the things an owner does, as functions.

use cairn_qemu::{BootDisk, HttpClient, Machine};
use std::path::Path;
use std::process::Command;

/// The first administrator every scenario creates, through the setup page like a person would.
pub const ADMIN: &str = "owner";
pub const ADMIN_PASSWORD: &str = "correct horse battery";

/// Fills in the setup form; returns the redirect target.
pub fn setup_through_form(client: &HttpClient) -> String {
    let r = client
        .post_form(
            "/setup",
            &[
                ("username", ADMIN),
                ("email", "owner@example.org"),
                ("password", ADMIN_PASSWORD),
                ("password_again", ADMIN_PASSWORD),
            ],
        )
        .expect("POST /setup");
    assert_eq!(
        r.status,
        303,
        "setup should redirect to the dashboard: {}",
        r.text()
    );
    assert!(
        client.cookie("cairn_session").is_some(),
        "setup should log the new administrator in"
    );
    r.header("location").unwrap_or("").to_string()
}

/// Logs in through the API; returns the CSRF token.
pub fn login_api(client: &HttpClient, user: &str, password: &str) -> String {
    let r = client
        .post_json(
            "/api/v1/session",
            &serde_json::json!({"username": user, "password": password}),
            &[],
        )
        .expect("POST /api/v1/session");
    assert_eq!(r.status, 200, "login as {user}: {}", r.text());
    r.json().unwrap()["csrf_token"]
        .as_str()
        .expect("csrf_token")
        .to_string()
}

/// Checks a filesystem image offline: e2fsck must find nothing to fix and the superblock must say clean.
pub fn assert_ext4_clean(image: &Path) {
    let fsck = Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(image)
        .output()
        .expect("run e2fsck");
    assert!(
        fsck.status.success(),
        "e2fsck found problems:\n{}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    let dump = Command::new("dumpe2fs")
        .arg("-h")
        .arg(image)
        .output()
        .expect("run dumpe2fs");
    let text = String::from_utf8_lossy(&dump.stdout);
    let state = text
        .lines()
        .find(|l| l.starts_with("Filesystem state:"))
        .unwrap_or("");
    assert!(
        state.ends_with(" clean"),
        "config filesystem state: {state:?}"
    );
    let features = text
        .lines()
        .find(|l| l.starts_with("Filesystem features:"))
        .unwrap_or("");
    assert!(
        !features.contains("needs_recovery"),
        "journal still needs recovery: {features}"
    );
}

/// Copies the config partition out of a powered-off box's disk.
pub fn extract_config_partition(machine: &Machine, disk: &BootDisk, to: &Path) {
    let mut offset = 1u64;
    for p in &machine.board.partitions {
        if p.name == "config" {
            disk.extract(offset, u64::from(p.size_mib), to)
                .expect("extract config partition");
            return;
        }
        offset += u64::from(p.size_mib);
    }
    panic!("board has no config partition");
}
