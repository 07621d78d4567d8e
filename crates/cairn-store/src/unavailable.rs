//! Why the box has no settings, as init found the config partition and the daemon found the database.
//!
//! Init writes its finding to [`STATE_FILE`] (on `/run`, gone at the next boot); the daemon reads it before it
//! opens anything, and when the settings are unavailable it answers every request with the reason instead of
//! offering first-boot setup to the network. The owner's way back is at the console (repair or format).

use std::path::{Path, PathBuf};

/// Where init leaves what it did with the config partition.
pub const STATE_FILE: &str = "/run/cairn/config-state";

/// Why there are no settings. Each variant is a distinct code in the API's error table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("the boot disk has no partition named config")]
    NoPartition,
    #[error("the settings partition {device} cannot be read: {error}")]
    Unreadable { device: String, error: String },
    #[error("the settings partition {device} holds something that is not Cairn's settings filesystem; it was left untouched")]
    Unrecognised { device: String },
    #[error("the settings partition {device} does not mount, even after a check: {error}")]
    Unmountable { device: String, error: String },
    #[error("the settings database does not open: {error}")]
    CannotOpen { error: String },
    #[error("the settings partition mounts, but the settings database is missing and {device}'s lost+found holds recovered files")]
    Missing { device: String },
}

/// The word the owner types to have the config partition formatted (every setting is erased; data volumes
/// are not touched).
pub const FORMAT_CONFIRM: &str = "erase-settings";

/// Why the owner's repair or format from the console did not bring the settings back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    #[error("there is no settings partition to work on")]
    NoPartition,
    #[error("the settings are available; there is nothing to repair or format")]
    NotNeeded,
    #[error("only the box's console can repair or format the settings partition")]
    ConsoleOnly,
    #[error("formatting erases every setting of this box; type {word:?} to confirm")]
    ConfirmRequired { word: String },
    #[error("the filesystem check could not repair the settings partition: {0}")]
    CheckFailed(String),
    #[error("formatting the settings partition failed: {0}")]
    FormatFailed(String),
    #[error("the settings partition does not mount: {0}")]
    MountFailed(String),
    #[error("the settings partition was repaired, but the settings database was not recovered (what the check saved is in lost+found)")]
    SettingsLost,
    #[error(
        "the settings partition was repaired, but the settings database still does not open: {0}"
    )]
    StillCannotOpen(String),
}

/// What init did with the config partition at this boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigState {
    /// Mounted as it was.
    Mounted { device: String },
    /// Blank at this boot and formatted: a new box.
    Formatted { device: String },
    /// Did not mount, was checked (e2fsck) and then mounted.
    Repaired { device: String },
    /// Not mounted; nothing writable stands in its place.
    Unavailable {
        device: Option<String>,
        why: Unavailable,
    },
}

impl ConfigState {
    /// The partition's device, when one was found.
    pub fn device(&self) -> Option<&str> {
        match self {
            ConfigState::Mounted { device }
            | ConfigState::Formatted { device }
            | ConfigState::Repaired { device } => Some(device),
            ConfigState::Unavailable { device, .. } => device.as_deref(),
        }
    }

    /// The file's text: `key=value` lines, the first naming the state.
    pub fn render(&self) -> String {
        let (state, device) = match self {
            ConfigState::Mounted { device } => ("mounted", Some(device.as_str())),
            ConfigState::Formatted { device } => ("formatted", Some(device.as_str())),
            ConfigState::Repaired { device } => ("repaired", Some(device.as_str())),
            ConfigState::Unavailable { device, .. } => ("unavailable", device.as_deref()),
        };
        let mut out = format!("state={state}\n");
        if let Some(d) = device {
            out += &format!("device={d}\n");
        }
        if let ConfigState::Unavailable { why, .. } = self {
            let (reason, error) = match why {
                Unavailable::NoPartition => ("no_partition", ""),
                Unavailable::Unreadable { error, .. } => ("unreadable", error.as_str()),
                Unavailable::Unrecognised { .. } => ("unrecognised", ""),
                Unavailable::Unmountable { error, .. } => ("unmountable", error.as_str()),
                Unavailable::CannotOpen { error } => ("cannot_open", error.as_str()),
                Unavailable::Missing { .. } => ("missing", ""),
            };
            out += &format!("reason={reason}\nerror={}\n", one_line(error));
        }
        out
    }

    /// Reads the file's text; `None` for anything this build did not write.
    pub fn parse(text: &str) -> Option<ConfigState> {
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .map(str::to_string)
        };
        let device = field("device");
        let error = field("error").unwrap_or_default();
        Some(match field("state")?.as_str() {
            "mounted" => ConfigState::Mounted { device: device? },
            "formatted" => ConfigState::Formatted { device: device? },
            "repaired" => ConfigState::Repaired { device: device? },
            "unavailable" => {
                let named = device.clone().unwrap_or_default();
                let why = match field("reason")?.as_str() {
                    "no_partition" => Unavailable::NoPartition,
                    "unreadable" => Unavailable::Unreadable {
                        device: named,
                        error,
                    },
                    "unrecognised" => Unavailable::Unrecognised { device: named },
                    "unmountable" => Unavailable::Unmountable {
                        device: named,
                        error,
                    },
                    "cannot_open" => Unavailable::CannotOpen { error },
                    "missing" => Unavailable::Missing { device: named },
                    _ => return None,
                };
                ConfigState::Unavailable { device, why }
            }
            _ => return None,
        })
    }

    /// Reads [`STATE_FILE`] (or another path); `None` when absent, as on a development host without init.
    pub fn load(path: &Path) -> Option<ConfigState> {
        ConfigState::parse(&std::fs::read_to_string(path).ok()?)
    }

    /// Writes the state where the daemon reads it, replacing the old one whole.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = PathBuf::from(format!("{}.new", path.display()));
        std::fs::write(&tmp, self.render())?;
        std::fs::rename(&tmp, path)
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// True when `config_root` shows the signs of a repair that lost the settings: files recovered into
/// lost+found, and no settings database where it belongs. A new box (nothing there at all) is not that.
pub fn settings_lost(config_root: &Path, database: &Path) -> bool {
    if database.exists() {
        return false;
    }
    std::fs::read_dir(config_root.join("lost+found"))
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_as_written() {
        let dev = || "/dev/vda4".to_string();
        for state in [
            ConfigState::Mounted { device: dev() },
            ConfigState::Formatted { device: dev() },
            ConfigState::Repaired { device: dev() },
            ConfigState::Unavailable {
                device: None,
                why: Unavailable::NoPartition,
            },
            ConfigState::Unavailable {
                device: Some(dev()),
                why: Unavailable::Unreadable {
                    device: dev(),
                    error: "Input/output error\nagain".into(),
                },
            },
            ConfigState::Unavailable {
                device: Some(dev()),
                why: Unavailable::Unrecognised { device: dev() },
            },
            ConfigState::Unavailable {
                device: Some(dev()),
                why: Unavailable::Unmountable {
                    device: dev(),
                    error: "EUCLEAN".into(),
                },
            },
            ConfigState::Unavailable {
                device: Some(dev()),
                why: Unavailable::CannotOpen {
                    error: "corrupted".into(),
                },
            },
            ConfigState::Unavailable {
                device: Some(dev()),
                why: Unavailable::Missing { device: dev() },
            },
        ] {
            let back = ConfigState::parse(&state.render()).unwrap();
            match (&state, &back) {
                (
                    ConfigState::Unavailable {
                        why: Unavailable::Unreadable { .. },
                        ..
                    },
                    ConfigState::Unavailable {
                        why: Unavailable::Unreadable { error, .. },
                        ..
                    },
                ) => assert_eq!(error, "Input/output error again", "one line"),
                _ => assert_eq!(back, state),
            }
        }
        assert_eq!(ConfigState::parse("unavailable: old words"), None);
        assert_eq!(ConfigState::parse("state=unavailable\nreason=new\n"), None);
    }

    #[test]
    fn settings_count_as_lost_only_when_recovered_files_sit_in_lost_and_found() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cairn/settings.db");
        assert!(!settings_lost(dir.path(), &db), "a new box");
        std::fs::create_dir(dir.path().join("lost+found")).unwrap();
        assert!(!settings_lost(dir.path(), &db), "an empty lost+found");
        std::fs::write(dir.path().join("lost+found/#12"), b"x").unwrap();
        assert!(settings_lost(dir.path(), &db));
        std::fs::create_dir_all(&db).unwrap();
        assert!(!settings_lost(dir.path(), &db), "the database is there");
    }
}
