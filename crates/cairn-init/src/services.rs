//! The services init supervises: their description file and the restart policy.

use serde::Deserialize;
use std::time::Duration;

/// Where the image lists its services.
pub const SERVICES_FILE: &str = "/etc/cairn/services.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicesFile {
    #[serde(rename = "service")]
    pub services: Vec<ServiceSpec>,
}

/// One supervised program.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    /// Program and arguments; `{interface}` is replaced by the board's LAN interface.
    pub argv: Vec<String>,
    /// Runs on the console with it as stdin/stdout (the rescue shell); otherwise output goes to the log.
    #[serde(default)]
    pub console: bool,
    /// Environment variables, `NAME=value`.
    #[serde(default)]
    pub env: Vec<String>,
    /// Started before the config partition is mounted (it must not need it): DHCP overlaps the mount.
    #[serde(default)]
    pub early: bool,
}

/// Why the services file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    #[error("services file is not valid: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("services file has problems: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl ServicesFile {
    pub fn parse(text: &str) -> Result<ServicesFile, ServicesError> {
        let file: ServicesFile = toml::from_str(text)?;
        let mut problems = Vec::new();
        for (i, s) in file.services.iter().enumerate() {
            if s.name.is_empty()
                || !s
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                problems.push(format!("service {i} has a bad name {:?}", s.name));
            }
            if file.services[..i].iter().any(|o| o.name == s.name) {
                problems.push(format!("service name {:?} appears twice", s.name));
            }
            if s.argv.first().is_none_or(|p| !p.starts_with('/')) {
                problems.push(format!("service {:?} must start an absolute path", s.name));
            }
            if s.env.iter().any(|e| !e.contains('=')) {
                problems.push(format!("service {:?} has an env entry without '='", s.name));
            }
        }
        if problems.is_empty() {
            Ok(file)
        } else {
            Err(ServicesError::Invalid(problems))
        }
    }
}

/// How quickly a crashing service is restarted.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    /// A run this long counts as healthy and resets the delay.
    pub healthy_after: Duration,
}

impl Backoff {
    /// Services: retry fast once, then slow down to twice a minute so a broken one cannot hog the CPU.
    pub const SERVICE: Backoff = Backoff {
        first: Duration::from_millis(500),
        max: Duration::from_secs(30),
        healthy_after: Duration::from_secs(60),
    };

    /// Delay before the next start, given the previous delay and how long the last run lasted.
    pub fn next(&self, previous: Option<Duration>, ran_for: Duration) -> Duration {
        match previous {
            _ if ran_for >= self.healthy_after => self.first,
            None => self.first,
            Some(d) => (d * 2).min(self.max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_ceiling_and_resets_after_a_healthy_run() {
        let b = Backoff::SERVICE;
        let mut d = b.next(None, Duration::ZERO);
        assert_eq!(d, Duration::from_millis(500));
        for _ in 0..10 {
            d = b.next(Some(d), Duration::from_secs(1));
        }
        assert_eq!(d, Duration::from_secs(30));
        assert_eq!(
            b.next(Some(d), Duration::from_secs(120)),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn the_image_services_file_is_valid() {
        let text = include_str!("../../../rootfs/files/etc/cairn/services.toml");
        let file = ServicesFile::parse(text).unwrap();
        assert!(file.services.iter().any(|s| s.name == "daemon"));
    }

    #[test]
    fn bad_services_are_all_reported() {
        let text = "[[service]]\nname = \"a b\"\nargv = [\"sh\"]\n[[service]]\nname = \"x\"\nargv = []\nenv = [\"NOPE\"]\n";
        match ServicesFile::parse(text) {
            Err(ServicesError::Invalid(p)) => assert_eq!(p.len(), 4, "{p:?}"),
            other => panic!("{other:?}"),
        }
    }
}
