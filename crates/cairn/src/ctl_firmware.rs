//! `cairn ctl firmware install FILE`: the bundle streamed from the file to the daemon (never read whole), then
//! its job followed to the end.

use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, SizeHint};
use serde_json::{json, Value};
use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Bytes read from the file per chunk.
const CHUNK: usize = 64 * 1024;

/// A file as a request body, read a chunk at a time as the connection takes it.
struct FileBody {
    file: std::fs::File,
    left: u64,
    sent: u64,
    shown: u64,
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let mut buf = vec![0u8; CHUNK.min(self.left as usize)];
        let n = match self.file.read(&mut buf) {
            Ok(0) => {
                return Poll::Ready(Some(Err(std::io::ErrorKind::UnexpectedEof.into())));
            }
            Ok(n) => n,
            Err(e) => return Poll::Ready(Some(Err(e))),
        };
        buf.truncate(n);
        self.left -= n as u64;
        self.sent += n as u64;
        if self.sent - self.shown >= 8 << 20 || self.left == 0 {
            self.shown = self.sent;
            eprint!("\rsent {} MiB", self.sent >> 20);
            if self.left == 0 {
                eprintln!();
            }
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// The bundle at `source` (a file, or an http(s):// URL downloaded as it is sent on) as a request body.
pub async fn bundle_body(source: &str) -> Result<BoxBody<Bytes, std::io::Error>, String> {
    if source.starts_with("https://") || source.starts_with("http://") {
        let answer = cairn_api::fetch::open(source).await?;
        eprintln!("downloading {source}");
        return Ok(answer.into_body().map_err(std::io::Error::other).boxed());
    }
    file_body(source)
}

/// The bundle at `path` as a request body of its exact length.
fn file_body(path: &str) -> Result<BoxBody<Bytes, std::io::Error>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let left = file.metadata().map_err(|e| format!("{path}: {e}"))?.len();
    Ok(FileBody {
        file,
        left,
        sent: 0,
        shown: 0,
    }
    .boxed())
}

/// Follows the install job of a 202 answer until it ends, showing its progress; answers the job as it ended
/// (a failed job as its error).
pub async fn follow(socket: &str, answer: &Value) -> Result<(u16, Value), String> {
    let Some(id) = answer["job"]["id"].as_str() else {
        return Ok((202, answer.clone()));
    };
    let path = format!("/api/v1/jobs/{id}");
    let mut last = String::new();
    loop {
        let (status, job) = crate::ctl::get(socket, &path).await?;
        if status != 200 {
            return Ok((status, job));
        }
        let line = format!(
            "{:>3.0}% {}",
            job["percent"].as_f64().unwrap_or(0.0),
            job["message"].as_str().unwrap_or("")
        );
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        match job["state"].as_str() {
            Some("running") => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
            Some("failed") => return Ok((500, json!({"error": job["error"]}))),
            _ => return Ok((200, job)),
        }
    }
}
