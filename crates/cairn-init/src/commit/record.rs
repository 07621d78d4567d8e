//! The files under `/config/cairn/firmware` that init writes for the install and the dashboard (agreed with the
//! install engine in cairn-firmware, which reads them):
//! - `failed`: versions that failed their trial on this box, one per line; the install refuses them unless the
//!   owner insists. A line starting with `#` is a note (a slot whose version could not be read).
//! - `last-update`: the outcome of the last update, JSON `{"slot","version","outcome","at"}`, `outcome` being
//!   `committed` or `rolled_back`, `at` UTC as RFC 3339; `GET /api/v1/firmware` shows it.
//! - `expected-volumes` (written by the install): md array UUIDs assembled before its reboot, one per line.
//!
//! Every write is whole or not at all: a temporary file, fsync, rename, fsync of the directory.

use cairn_bootenv::Slot;
use serde_json::json;
use std::io;
use std::path::Path;

pub const FAILED: &str = "failed";
pub const LAST_UPDATE: &str = "last-update";
pub const EXPECTED_VOLUMES: &str = "expected-volumes";

/// Records a trial that fell back: its version in `failed` (once, however often this runs) and the outcome.
pub fn rolled_back(dir: &Path, slot: Slot, version: Option<&str>) -> io::Result<()> {
    let line = match version {
        Some(v) => v.to_owned(),
        None => format!("# slot {slot}: version unknown"),
    };
    let path = dir.join(FAILED);
    let old = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    if !old.lines().any(|l| l.trim() == line) {
        let mut text = old;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&line);
        text.push('\n');
        write_durably(&path, text.as_bytes())?;
    }
    last_update(dir, slot, version, "rolled_back")
}

/// Records a trial that committed.
pub fn committed(dir: &Path, slot: Slot, version: Option<&str>) -> io::Result<()> {
    last_update(dir, slot, version, "committed")
}

fn last_update(dir: &Path, slot: Slot, version: Option<&str>, outcome: &str) -> io::Result<()> {
    let at = cairn_system::clock::rfc3339(cairn_system::clock::now_s());
    let body = json!({"slot": slot.letter(), "version": version, "outcome": outcome, "at": at});
    write_durably(&dir.join(LAST_UPDATE), format!("{body}\n").as_bytes())
}

/// Replaces `path` whole: a power cut leaves the old file or the new one, never a mix (the install's own way).
pub use cairn_firmware::install::replace_durably as write_durably;
