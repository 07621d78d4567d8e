//! A minimal QMP client: JSON lines over QEMU's Unix socket.

use crate::{HarnessError, Result};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    pub fn connect(path: &Path) -> Result<Qmp> {
        let until = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    return Err(HarnessError::Qmp(format!(
                        "connect {}: {e}",
                        path.display()
                    )))
                }
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        };
        qmp.read_message()?; // greeting
        qmp.execute("qmp_capabilities", serde_json::json!({}))?;
        Ok(qmp)
    }

    fn read_message(&mut self) -> Result<serde_json::Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(HarnessError::Qmp("connection closed".into()));
        }
        serde_json::from_str(&line)
            .map_err(|e| HarnessError::Qmp(format!("bad message {line:?}: {e}")))
    }

    /// Runs one command and returns its `return` value (events in between are skipped).
    pub fn execute(
        &mut self,
        command: &str,
        arguments: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let msg = serde_json::json!({"execute": command, "arguments": arguments});
        self.writer.write_all(format!("{msg}\n").as_bytes())?;
        loop {
            let reply = self.read_message()?;
            if let Some(r) = reply.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = reply.get("error") {
                return Err(HarnessError::Qmp(format!("{command}: {e}")));
            }
        }
    }
}
