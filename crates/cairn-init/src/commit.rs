//! The health-gated commit and the fallback (docs/updates.md, "What Cairn does"): on every boot through U-Boot,
//! once services run, init reads which slot booted and the boot state; a fallback from a failed trial is recorded
//! (the failed version, the outcome for the dashboard) and the failed slot given up; then the booted slot is
//! marked good as soon as it is healthy. A slot on trial that is not healthy by the deadline reboots through
//! init's clean path, and U-Boot's counters take it from there.
//!
//! Everything that looks at the machine is behind [`Probes`], so the flow is tested on the host with real boot
//! state files in a temporary directory; [`probes::BoxProbes`] is the box's implementation.

pub mod probes;
pub mod record;

#[cfg(test)]
mod tests;

use cairn_bootenv::{BootFiles, Booted, Slot};
use cairn_store::unavailable::ConfigState;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a slot on trial has to become healthy before it reboots: generous enough for the armv7 board under
/// QEMU's software CPU on a loaded host (the dashboard, the late modules and SMB all have to come up).
pub const DEADLINE: Duration = Duration::from_secs(180);
/// The kernel argument that overrides [`DEADLINE`] in seconds (tests shorten it).
pub const DEADLINE_ARG: &str = "cairn.commit_deadline=";
/// How often the checks run while the slot is not healthy yet.
pub const POLL: Duration = Duration::from_secs(2);
/// Where the boot partition is mounted, with the boot state's two copies (init mounts it: [`crate::boot_partition`]).
pub use crate::boot_partition::BOOT_MOUNT;
/// How long a slot that is not on trial and not healthy waits before its checks run again.
pub const RECHECK: Duration = Duration::from_secs(30);
/// Where the install and init keep what the dashboard and the next install need to know about updates.
pub const FIRMWARE_DIR: &str = "/config/cairn/firmware";

/// What the health checks look at. Each method is one look at the machine, returning what it saw.
pub trait Probes {
    /// `GET /api/v1/health` on loopback: the JSON body when it answered 200, otherwise why not.
    fn dashboard(&mut self) -> Result<Value, String>;
    /// What init found on the config partition at this boot (`/run/cairn/config-state`).
    fn config_state(&mut self) -> Option<ConfigState>;
    /// UUIDs of the md arrays assembled now, in any of mdadm's or sysfs's spellings.
    fn assembled_volumes(&mut self) -> Vec<String>;
    /// Whether the SMB server listens on port 445.
    fn smb_listening(&mut self) -> bool;
    /// Whether init feeds the watchdog (or the board has none); why not otherwise.
    fn watchdog_fed(&mut self) -> Result<(), String>;
    /// The version in `slot`'s signed trailer, when it can be read.
    fn slot_version(&mut self, slot: Slot) -> Option<String>;
    /// Waits before the next round of checks.
    fn wait(&mut self, time: Duration);
    /// Asks init for a clean reboot (services stopped, filesystems unmounted).
    fn reboot(&mut self);
}

/// What the commit needs to know about this box.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The boot state's two copies.
    pub files: BootFiles,
    /// Attempts a committed slot gets (the board's `boot.tries`).
    pub tries: u8,
    /// [`FIRMWARE_DIR`], or a test's directory.
    pub firmware_dir: PathBuf,
    /// How long a trial may take to become healthy.
    pub deadline: Duration,
    /// Time between rounds of checks.
    pub poll: Duration,
    /// Why this system can never pass its checks, known before they run (its services start no management
    /// daemon): a trial then reboots at once instead of waiting out the deadline.
    pub never_healthy: Option<String>,
}

/// How one run of the commit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel command line names no slot: not booted through U-Boot, nothing to commit.
    NotBootedBySlot,
    /// The boot state could not be read or written; logged, nothing changed.
    BootStateUnusable,
    /// The booted slot is healthy and marked good (`trial`: it was on trial and that trial is now over).
    Committed { slot: Slot, trial: bool },
    /// A slot on trial was not healthy by the deadline: init was asked to reboot.
    Rebooting { slot: Slot },
    /// A slot not on trial is not healthy by the deadline: nothing is rebooted; the caller checks again later.
    NotHealthy { slot: Slot, problems: Vec<String> },
}

/// Starts the commit on the box, on its own thread (the checks wait for services; init's main loop must not):
/// reads the booted slot and the deadline from `/proc/cmdline` and runs until the slot is committed, rebooted
/// or found not booted by U-Boot. `log` writes a line to the console and the log.
pub fn start(
    board: &cairn_board::Board,
    feed: std::sync::Arc<probes::Feed>,
    never_healthy: Option<String>,
    log: impl Fn(String) + Send + 'static,
) {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let booted = Booted::from_cmdline(&cmdline);
    let commit = Commit {
        files: BootFiles::new(std::path::Path::new(BOOT_MOUNT), &board.boot),
        tries: board.boot.tries,
        firmware_dir: FIRMWARE_DIR.into(),
        deadline: deadline_from_cmdline(&cmdline),
        poll: POLL,
        never_healthy,
    };
    let board = board.clone();
    std::thread::spawn(move || {
        let mut probes = probes::BoxProbes::new(
            feed,
            Box::new(move |slot| probes::trailer_version(&board, slot)),
        );
        let mut log = |line: String| log(line);
        while let Outcome::NotHealthy { .. } = commit.run(booted, &mut probes, &mut log) {
            std::thread::sleep(RECHECK);
        }
    });
}

/// Reads the deadline from the kernel command line (`cairn.commit_deadline=<seconds>`), else [`DEADLINE`].
pub fn deadline_from_cmdline(cmdline: &str) -> Duration {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(DEADLINE_ARG)?.parse().ok())
        .map_or(DEADLINE, Duration::from_secs)
}

impl Commit {
    /// One run: fallback bookkeeping, then checks until healthy (commit) or the deadline (reboot a trial).
    pub fn run(
        &self,
        booted: Option<Booted>,
        probes: &mut dyn Probes,
        log: &mut dyn FnMut(String),
    ) -> Outcome {
        let Some(booted) = booted else {
            log("commit: no cairn.slot= on the kernel command line (not booted by U-Boot): boot state left alone".into());
            return Outcome::NotBootedBySlot;
        };
        let slot = booted.slot;
        let current = match self.files.load() {
            Ok(current) => current,
            Err(e) => {
                log(format!("commit: ERROR {e}; slot {slot} is not marked good, U-Boot's counters decide the next boot"));
                return Outcome::BootStateUnusable;
            }
        };
        if let Some(bad) = &current.other_bad {
            log(format!("commit: one copy of the boot state is unusable ({bad}); the next write replaces it"));
        }
        if let Some(failed) = current.state.failed_trial(slot) {
            if !self.record_fallback(slot, failed, probes, log) {
                return Outcome::BootStateUnusable;
            }
        }
        let trial = booted.trial || current.state.trial == Some(slot);
        let started = Instant::now();
        if let (true, Some(why)) = (trial, &self.never_healthy) {
            log(format!("commit: slot {slot} on trial can never become healthy ({why}): rebooting now; U-Boot falls back when its tries are used up"));
            probes.reboot();
            return Outcome::Rebooting { slot };
        }
        loop {
            let problems = health_problems(probes, trial.then(|| self.expected_volumes()));
            if problems.is_empty() {
                return self.commit(slot, trial, started.elapsed(), probes, log);
            }
            if started.elapsed() >= self.deadline {
                let list = problems.join("; ");
                let secs = started.elapsed().as_secs();
                if trial {
                    log(format!("commit: slot {slot} on trial is not healthy after {secs} s ({list}): rebooting; U-Boot falls back when its tries are used up"));
                    probes.reboot();
                    return Outcome::Rebooting { slot };
                }
                log(format!("commit: slot {slot} is not healthy after {secs} s ({list}); not marked good yet, still checking"));
                return Outcome::NotHealthy { slot, problems };
            }
            probes.wait(self.poll);
        }
    }

    /// The trial in `failed` fell back to `booted`: record it first (idempotent: a power cut before the boot state
    /// is written records it again, once), then give the slot up. False when the boot state could not be written.
    fn record_fallback(
        &self,
        booted: Slot,
        failed: Slot,
        probes: &mut dyn Probes,
        log: &mut dyn FnMut(String),
    ) -> bool {
        let version = probes.slot_version(failed);
        let shown = version.as_deref().unwrap_or("of unknown version");
        if let Err(e) = record::rolled_back(&self.firmware_dir, failed, version.as_deref()) {
            log(format!("commit: ERROR slot {failed} ({shown}) failed its trial but cannot be recorded in {}: {e}; recorded at a later boot", self.firmware_dir.display()));
            return true;
        }
        let given_up = self.files.update(|state| {
            if state.failed_trial(booted) == Some(failed) {
                state.give_up(failed);
            }
        });
        match given_up {
            Ok(_) => {
                log(format!("commit: the update in slot {failed} ({shown}) failed its trial and U-Boot fell back to slot {booted}; slot {failed} is out of the boot order and its version recorded as failed"));
                true
            }
            Err(e) => {
                log(format!(
                    "commit: ERROR {e}; the failed trial of slot {failed} stays in the boot state"
                ));
                false
            }
        }
    }

    /// Marks the healthy slot good; a trial's outcome is recorded first, so a power cut before the boot state is
    /// written leaves the trial to commit (and be recorded) again at the next boot.
    fn commit(
        &self,
        slot: Slot,
        trial: bool,
        took: Duration,
        probes: &mut dyn Probes,
        log: &mut dyn FnMut(String),
    ) -> Outcome {
        let ends_trial = self.files.load().is_ok_and(|c| c.state.trial == Some(slot));
        if ends_trial {
            let version = probes.slot_version(slot);
            if let Err(e) = record::committed(&self.firmware_dir, slot, version.as_deref()) {
                log(format!(
                    "commit: cannot record the committed update in {}: {e}",
                    self.firmware_dir.display()
                ));
            }
        }
        if let Err(e) = self.files.update(|state| state.mark_good(slot, self.tries)) {
            log(format!("commit: ERROR slot {slot} is healthy but {e}"));
            return Outcome::BootStateUnusable;
        }
        log(format!(
            "commit: slot {slot} healthy after {} ms; marked good ({} tries{})",
            took.as_millis(),
            self.tries,
            if ends_trial {
                "; trial over: update committed"
            } else {
                ""
            }
        ));
        Outcome::Committed { slot, trial }
    }

    /// The md arrays the install saw assembled before its reboot; none when it wrote no list.
    fn expected_volumes(&self) -> Vec<String> {
        std::fs::read_to_string(self.firmware_dir.join(record::EXPECTED_VOLUMES))
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// Every reason the booted slot is not healthy, in words for the console; empty when it is.
/// `expected_volumes` is checked on a trial only: the list is the install's, taken before its reboot.
pub fn health_problems(
    probes: &mut dyn Probes,
    expected_volumes: Option<Vec<String>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    match probes.dashboard() {
        Err(e) => problems.push(format!("the dashboard does not answer: {e}")),
        Ok(health) => {
            if health["settings"]["available"] != Value::Bool(true) {
                problems.push(format!(
                    "the daemon has no settings: {}",
                    health["settings"]["message"]
                        .as_str()
                        .unwrap_or("no settings object in its health answer")
                ));
            }
        }
    }
    match probes.config_state() {
        None => problems.push("init recorded no state of the config partition".into()),
        Some(ConfigState::Unavailable { why, .. }) => {
            problems.push(format!("the config partition is unavailable: {why}"))
        }
        Some(_) => {}
    }
    if let Some(expected) = expected_volumes {
        let assembled: Vec<String> = probes
            .assembled_volumes()
            .iter()
            .map(|u| uuid_key(u))
            .collect();
        let missing: Vec<&String> = expected
            .iter()
            .filter(|u| !assembled.contains(&uuid_key(u)))
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "data volumes assembled before the update are not assembled: {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if !probes.smb_listening() {
        problems.push("the SMB server does not listen on port 445".into());
    }
    if let Err(e) = probes.watchdog_fed() {
        problems.push(e);
    }
    problems
}

/// An md UUID reduced to its 32 hex digits, lower case: mdadm writes `a:b:c:d`, sysfs `8-4-4-4-12`, same bytes.
pub fn uuid_key(uuid: &str) -> String {
    uuid.chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}
