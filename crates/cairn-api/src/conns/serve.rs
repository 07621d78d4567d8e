//! One admitted connection, from its stream to its end: hyper serves the requests while this task watches the
//! connection's deadline and whether it was chosen to make room.

use super::{Expiry, Slot, Ticket, HEAD_BUFFER};
use crate::app::App;
use crate::error::{Error, RequestError};
use crate::http::BodyWatch;
use crate::routes;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// How long a refusal or a 408 may take to write before the connection is simply closed.
const LAST_WORDS: Duration = Duration::from_secs(1);

/// Serves HTTP/1.1 on an admitted connection until it ends, is too slow, idles out or is closed to make room.
/// `stream` yields the byte stream: at once for plain TCP, after the handshake for TLS, so a slow handshake
/// runs under the same head deadline and may be closed to make room like a slow head.
pub async fn serve_accepted<S, F>(ticket: Ticket, app: Arc<App>, peer: SocketAddr, stream: F)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Future<Output = std::io::Result<S>>,
{
    serve_admitted(ticket, app, peer, stream, false).await
}

/// [`serve_accepted`], with `tls` marking every request of the connection as having come over TLS.
pub(crate) async fn serve_admitted<S, F>(
    ticket: Ticket,
    app: Arc<App>,
    peer: SocketAddr,
    stream: F,
    tls: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Future<Output = std::io::Result<S>>,
{
    let slot = ticket.slot().clone();
    let policy = *ticket.conns().policy();
    let Some(stream) = opened(&slot, &policy, stream).await else {
        return;
    };
    let service = {
        let slot = slot.clone();
        service_fn(move |mut req: Request<Incoming>| {
            let (app, slot) = (app.clone(), slot.clone());
            async move {
                slot.request_started(has_body(req.method()));
                let (read, chunk) = (slot.clone(), slot.clone());
                req.extensions_mut().insert(BodyWatch {
                    timeout: policy.body_timeout,
                    on_read: Arc::new(move || read.body_read()),
                    on_chunk: Arc::new(move || chunk.body_progress()),
                });
                if tls {
                    req.extensions_mut().insert(crate::http::OverTls);
                }
                let resp = routes::handle(app, req, peer, false).await;
                slot.answered();
                Ok::<_, std::convert::Infallible>(resp)
            }
        })
    };
    let io = TokioIo::new(Watched {
        inner: stream,
        slot: slot.clone(),
    });
    let mut conn = http1::Builder::new()
        .max_buf_size(HEAD_BUFFER)
        // The deadlines are this task's, per phase (hyper's would also end idle connections as slow heads).
        .header_read_timeout(None)
        .serve_connection(io, service);
    let mut draining = false;
    loop {
        let deadline = slot.deadline(&policy);
        tokio::select! {
            done = &mut conn => {
                if let Err(e) = done {
                    log::debug!("connection from {peer}: {e}");
                }
                return;
            }
            () = until(deadline) => match slot.expiry(&policy, Instant::now()) {
                Expiry::No => {}
                Expiry::Quiet => return,
                Expiry::SlowHead => {
                    ticket.conns().note_timeout();
                    let mut io = conn.into_parts().io.into_inner().inner;
                    last_words(&mut io, &answer(408, "Request Timeout", RequestError::Timeout.into())).await;
                    return;
                }
            },
            () = slot.attention.notified() => {
                if slot.evicted() && !draining {
                    if slot.may_be_cut() {
                        return;
                    }
                    // It started work since it was chosen: finish that request, then close.
                    Pin::new(&mut conn).graceful_shutdown();
                    draining = true;
                }
            }
        }
    }
}

/// The stream once set up, unless it ran out of time or was closed to make room meanwhile.
async fn opened<S, F>(slot: &Slot, policy: &super::ConnPolicy, stream: F) -> Option<S>
where
    F: Future<Output = std::io::Result<S>>,
{
    tokio::pin!(stream);
    loop {
        tokio::select! {
            s = &mut stream => return match s {
                Ok(s) => Some(s),
                Err(e) => {
                    log::debug!("connection not set up: {e}");
                    None
                }
            },
            () = until(slot.deadline(policy)) => return None,
            () = slot.attention.notified() => if slot.evicted() {
                return None;
            },
        }
    }
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Methods whose request the handlers read a body for.
fn has_body(method: &Method) -> bool {
    method != Method::GET && method != Method::HEAD
}

/// A complete HTTP/1.1 answer carrying `e` in the API's error format, for when hyper cannot write one (the
/// head never arrived, or the connection is refused before it is served).
fn answer(status: u16, reason: &str, e: Error) -> Vec<u8> {
    let rendered = e.render();
    let body = serde_json::to_vec(&rendered.body()).unwrap_or_default();
    let retry = rendered
        .retry_after_s
        .map(|s| format!("retry-after: {s}\r\n"))
        .unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\ncache-control: no-store\r\n{retry}connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// The 503 a refused connection gets, written without waiting (see [`crate::serve`]).
pub(crate) fn refusal_answer() -> Vec<u8> {
    answer(
        503,
        "Service Unavailable",
        RequestError::TooManyConnections.into(),
    )
}

/// Writes a final answer, bounded in time (a client that does not read gets nothing), then closes.
async fn last_words<S: AsyncWrite + Unpin>(io: &mut S, bytes: &[u8]) {
    let _ = tokio::time::timeout(LAST_WORDS, async {
        io.write_all(bytes).await?;
        io.shutdown().await
    })
    .await;
}

/// The stream, telling its connection's slot when bytes arrive (the start of a request head) and when all
/// that arrived is read (the server waits for the client).
struct Watched<S> {
    inner: S,
    slot: Arc<Slot>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        match polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => self.slot.bytes_arrived(),
            Poll::Pending => self.slot.read_pending(),
            _ => {}
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
