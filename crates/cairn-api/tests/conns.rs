//! Connections under attack, against the real server on loopback: caps per source and in all, the owner's
//! requests answered while an attacker holds its cap, and the deadlines for a head, a body and an idle
//! connection. Sources are told apart by binding clients to 127.0.0.x (all of 127/8 is loopback on Linux).
//! The policy is the box's with smaller numbers, so each test takes a few seconds.

mod common;

use cairn_api::{ConnPolicy, Connections};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const HEAD_S: u64 = 1;
const BODY_S: u64 = 1;
const IDLE_S: u64 = 1;

fn policy(max_total: usize, max_per_source: usize, grace: Duration) -> ConnPolicy {
    ConnPolicy {
        max_total,
        max_per_source,
        head_timeout: Duration::from_secs(HEAD_S),
        body_timeout: Duration::from_secs(BODY_S),
        idle_timeout: Duration::from_secs(IDLE_S),
        grace,
    }
}

/// Caps with deadlines long enough that the held connections only go when the caps say so.
fn caps(max_total: usize, max_per_source: usize, grace: Duration) -> ConnPolicy {
    ConnPolicy {
        head_timeout: Duration::from_secs(60),
        ..policy(max_total, max_per_source, grace)
    }
}

/// The real server under `policy`; returns its address and the registry (to count open connections).
fn serve(policy: ConnPolicy) -> (SocketAddr, Arc<Connections>, tempfile::TempDir) {
    serve_app(policy, |app| app)
}

/// The real server under `policy` over the app `build` makes.
fn serve_app(
    policy: ConnPolicy,
    build: impl FnOnce(cairn_api::App) -> cairn_api::App,
) -> (SocketAddr, Arc<Connections>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = cairn_store::Store::open(&dir.path().join("settings.db")).unwrap();
    let app = Arc::new(build(common::app_on(store)));
    let conns = Connections::new(policy);
    let serving = conns.clone();
    let addr = common::spawn_server(move |listener| cairn_api::serve_with(listener, app, serving));
    (addr, conns, dir)
}

/// A connection from `from` (127.0.0.x).
async fn connect(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// Everything the server sends until it closes (or `within` passes: then what came so far).
async fn read_all(s: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let until = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

/// A whole request from `from`, answered and closed.
async fn request(from: &str, to: SocketAddr, path: &str) -> String {
    let mut s = connect(from, to).await;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let (answer, closed) = read_all(&mut s, Duration::from_secs(10)).await;
    assert!(closed, "no complete answer to GET {path}: {answer:?}");
    answer
}

/// A connection that started a request head and goes on slowly.
async fn slow_head(from: &str, to: SocketAddr) -> TcpStream {
    let mut s = connect(from, to).await;
    s.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    s
}

/// Whether the server closed `s` (within a moment).
async fn closed(s: &mut TcpStream) -> bool {
    read_all(s, Duration::from_millis(300)).await.1
}

fn assert_error_answer(answer: &str, status: &str, code: &str) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status}")),
        "expected {status}: {answer:?}"
    );
    assert!(
        answer.contains(&format!("\"code\":\"{code}\"")),
        "expected {code}: {answer:?}"
    );
}

#[tokio::test]
async fn a_slow_head_gets_408_with_a_code_within_its_deadline() {
    let (addr, _conns, _dir) = serve(policy(64, 16, Duration::ZERO));
    let started = Instant::now();
    let mut s = slow_head("127.0.0.1", addr).await;
    // One header line every 300 ms: each arrives long before any per-read timeout would fire.
    let answer = trickle(&mut s, |i| format!("X-Slow-{i}: 1\r\n")).await;
    let took = started.elapsed();
    assert_error_answer(&answer, "408", "request.timeout");
    assert!(
        took < Duration::from_millis(HEAD_S * 1000 + 800),
        "closed after {took:?}"
    );
}

/// Sends `piece(i)` every 300 ms until the server closes; returns what it answered.
async fn trickle(s: &mut TcpStream, piece: impl Fn(usize) -> String) -> String {
    let mut answer = String::new();
    for i in 0..20 {
        if s.write_all(piece(i).as_bytes()).await.is_err() {
            break;
        }
        let (got, closed) = read_all(s, Duration::from_millis(300)).await;
        answer.push_str(&got);
        if closed {
            break;
        }
    }
    answer
}

#[tokio::test]
async fn a_slow_body_gets_408_with_a_code_within_its_deadline() {
    let (addr, _conns, _dir) = serve(policy(64, 16, Duration::ZERO));
    let mut s = connect("127.0.0.1", addr).await;
    s.write_all(b"POST /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user")
        .await
        .unwrap();
    let started = Instant::now();
    let answer = trickle(&mut s, |_| " ".to_string()).await;
    let took = started.elapsed();
    assert_error_answer(&answer, "408", "request.timeout");
    assert!(
        took < Duration::from_millis(BODY_S * 1000 + 800),
        "closed after {took:?}"
    );
}

#[tokio::test]
async fn idle_and_silent_connections_are_closed_without_an_answer() {
    let (addr, conns, _dir) = serve(policy(64, 16, Duration::ZERO));
    let mut idle = connect("127.0.0.1", addr).await;
    idle.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_all(&mut idle, Duration::from_millis(500)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(!closed, "kept alive after the answer");
    let mut silent = connect("127.0.0.1", addr).await;
    let started = Instant::now();
    let (after, closed) = read_all(&mut idle, Duration::from_secs(IDLE_S + 2)).await;
    assert!(closed && after.is_empty(), "idle close: {after:?}");
    let (nothing, closed) = read_all(&mut silent, Duration::from_secs(HEAD_S + 2)).await;
    assert!(closed && nothing.is_empty(), "silent close: {nothing:?}");
    assert!(started.elapsed() < Duration::from_millis(HEAD_S.max(IDLE_S) * 1000 + 800));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(conns.open(), 0);
}

/// Sends a whole request with `extra` headers and `body` from `from`; the connection stays open for the answer.
async fn send(
    from: &str,
    to: SocketAddr,
    method: &str,
    path: &str,
    extra: &str,
    body: &str,
) -> TcpStream {
    let mut s = connect(from, to).await;
    s.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    s
}

#[tokio::test]
async fn requests_at_work_are_never_cut_and_a_newcomer_over_the_cap_is_refused_with_a_code() {
    // Every change takes 3 s after it is stored (the SMB render on a slow box): its connection is at work.
    let (addr, conns, _dir) = serve_app(caps(64, 4, Duration::from_secs(60)), |app| {
        app.with_change_hook(Box::new(|_| std::thread::sleep(Duration::from_secs(3))))
    });
    let body = format!(
        "{{\"username\":\"owner\",\"password\":\"{}\"}}",
        common::PASSWORD
    );
    let mut s = send("127.0.0.1", addr, "POST", "/api/v1/setup", "", &body).await;
    let (answer, _) = read_all(&mut s, Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let cookie = answer
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();
    let token = answer.split("\"csrf_token\":\"").nth(1).unwrap()[..64].to_string();
    let session = format!("Cookie: {cookie}\r\nX-CSRF-Token: {token}\r\n");
    let mut working = vec![];
    for i in 0..4 {
        let group = format!("{{\"name\":\"g{i}\"}}");
        working.push(
            send(
                "127.0.0.1",
                addr,
                "POST",
                "/api/v1/groups",
                &session,
                &group,
            )
            .await,
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(conns.open(), 4);
    let answer = request("127.0.0.1", addr, "/api/v1/health").await;
    assert_error_answer(&answer, "503", "request.too_many_connections");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    // Another address is not held back by this one's cap.
    let answer = request("127.0.0.2", addr, "/api/v1/health").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for s in &mut working {
        let (answer, _) = read_all(s, Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    }
}

#[tokio::test]
async fn the_owner_is_served_from_a_source_at_its_cap_and_the_oldest_slow_connection_goes() {
    let (addr, conns, _dir) = serve(caps(64, 8, Duration::from_millis(200)));
    let mut held = vec![];
    for _ in 0..8 {
        held.push(slow_head("127.0.0.1", addr).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for round in 0..3 {
        let answer = request("127.0.0.1", addr, "/api/v1/health").await;
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "round {round}: {answer}"
        );
    }
    // The first request took the oldest one's place; the source then had room for the next ones.
    for (i, s) in held.iter_mut().enumerate() {
        assert_eq!(closed(s).await, i == 0, "connection {i}");
    }
    assert!(conns.open() <= 8);
}

#[tokio::test]
async fn the_global_cap_takes_from_the_busiest_source_and_the_owner_gets_in() {
    let (addr, conns, _dir) = serve(caps(8, 6, Duration::from_millis(200)));
    let mut busy = vec![];
    for _ in 0..6 {
        busy.push(slow_head("127.0.0.1", addr).await);
    }
    let mut other = vec![];
    for _ in 0..2 {
        other.push(slow_head("127.0.0.2", addr).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(conns.open(), 8);
    let answer = request("127.0.0.3", addr, "/api/v1/health").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        closed(&mut busy[0]).await,
        "the busiest source's oldest went"
    );
    for s in busy[1..].iter_mut().chain(other.iter_mut()) {
        assert!(!closed(s).await, "one was enough");
    }
}

#[tokio::test]
async fn a_thousand_slow_connections_from_one_host_leave_the_owner_served_on_the_box_policy() {
    let (addr, conns, _dir) = serve(ConnPolicy::LAN);
    let mut held = vec![];
    for _ in 0..1000 {
        let mut s = slow_head("127.0.0.1", addr).await;
        let _ = s.write_all(b"X-A: b\r\n").await;
        held.push(s);
    }
    assert!(
        conns.open() <= ConnPolicy::LAN.max_per_source,
        "{} open",
        conns.open()
    );
    tokio::time::sleep(ConnPolicy::LAN.grace).await;
    let started = Instant::now();
    let answer = request("127.0.0.1", addr, "/api/v1/health").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = request("127.0.0.2", addr, "/api/v1/health").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}
