//! The one way Cairn runs external tools (`mke2fs`, `mdadm`, `ip`, ...): an argument vector, never a shell.
//!
//! Owns spawning, time bounds and turning exit statuses into typed errors that keep the tool's stderr for
//! the event log. It knows nothing about any particular tool. Tested on the host with coreutils.
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A finished tool run.
#[derive(Debug, Clone)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

/// Why a tool run did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not finish within {seconds} s and was stopped")]
    Timeout { program: String, seconds: u64 },
    #[error("{program} failed with exit status {code:?}: {stderr}")]
    Failed {
        program: String,
        code: Option<i32>,
        stdout: String,
        stderr: String,
    },
}

/// Runs `program` with `args`, bounded by `timeout`; success only on exit status 0.
pub fn run(program: &str, args: &[&str], timeout: Duration) -> Result<Output, ExecError> {
    log::info!("run: {program} {}", args.join(" "));
    #[allow(clippy::disallowed_methods)] // The one place tools are started.
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ExecError::Spawn {
            program: program.to_string(),
            source,
        })?;
    // Drain both pipes on threads so a chatty tool cannot block on a full pipe while we wait.
    let mut out_pipe = child.stdout.take().expect("piped");
    let mut err_pipe = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out_pipe.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err_pipe.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ExecError::Timeout {
                    program: program.to_string(),
                    seconds: timeout.as_secs(),
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(source) => {
                return Err(ExecError::Spawn {
                    program: program.to_string(),
                    source,
                })
            }
        }
    };
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    if status.success() {
        Ok(Output { stdout, stderr })
    } else {
        Err(ExecError::Failed {
            program: program.to_string(),
            code: status.code(),
            stdout,
            stderr: stderr.trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_never_interpreted_by_a_shell() {
        let out = run(
            "/bin/echo",
            &["$(touch /tmp/cairn-pwned)", ";", "|"],
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(out.stdout.trim(), "$(touch /tmp/cairn-pwned) ; |");
        assert!(!std::path::Path::new("/tmp/cairn-pwned").exists());
    }

    #[test]
    fn failure_keeps_stderr_and_code() {
        match run("/bin/ls", &["/definitely/not/here"], Duration::from_secs(5)) {
            Err(ExecError::Failed {
                code: Some(c),
                stderr,
                ..
            }) => {
                assert_ne!(c, 0);
                assert!(stderr.contains("/definitely/not/here"), "{stderr}");
            }
            other => panic!("expected failure, got {other:?}"),
        }
    }

    #[test]
    fn slow_tools_are_stopped_at_the_deadline() {
        let started = Instant::now();
        assert!(matches!(
            run("/bin/sleep", &["30"], Duration::from_millis(200)),
            Err(ExecError::Timeout { .. })
        ));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        assert!(matches!(
            run("/no/such/tool", &[], Duration::from_secs(1)),
            Err(ExecError::Spawn { .. })
        ));
    }
}
