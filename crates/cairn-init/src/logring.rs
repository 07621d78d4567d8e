//! The system log: every line to the console and to a bounded file pair in RAM (`/run/log`).
//!
//! Two files rotate at a fixed size, so the log is a ring that never fills the tmpfs.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Size at which the current file becomes `.0` and a new one starts.
pub const ROTATE_BYTES: u64 = 256 * 1024;

pub struct LogRing {
    path: PathBuf,
    inner: Mutex<Option<(File, u64)>>,
    console: bool,
}

impl LogRing {
    /// A ring at `path` (and `path.0`); `console` also copies every line to stderr.
    pub fn new(path: &Path, console: bool) -> LogRing {
        LogRing {
            path: path.to_path_buf(),
            inner: Mutex::new(None),
            console,
        }
    }

    /// Appends one line.
    pub fn line(&self, source: &str, text: &str) {
        let line = format!("[{source}] {}\n", text.trim_end());
        if self.console {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        let Ok(mut guard) = self.inner.lock() else {
            return;
        };
        if guard.is_none() {
            if let Ok(f) = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
            {
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                *guard = Some((f, len));
            }
        }
        let rotate = match guard.as_mut() {
            Some((f, len)) => {
                let _ = f.write_all(line.as_bytes());
                *len += line.len() as u64;
                *len >= ROTATE_BYTES
            }
            None => false,
        };
        if rotate {
            *guard = None;
            let _ = std::fs::rename(&self.path, self.path.with_extension("log.0"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_never_grows_past_two_files() {
        let dir = tempfile::tempdir().unwrap();
        let ring = LogRing::new(&dir.path().join("cairn.log"), false);
        let text = "x".repeat(1000);
        for _ in 0..(3 * ROTATE_BYTES / 1000) {
            ring.line("test", &text);
        }
        let total: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(total <= 2 * ROTATE_BYTES + 2000, "{total}");
        assert!(dir.path().join("cairn.log.0").exists());
    }
}
