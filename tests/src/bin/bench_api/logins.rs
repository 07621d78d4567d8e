//! The owner's login latency while a flood of wrong passwords runs against another account, against quiet
//! (goal: within 2x). The flood comes from other loopback addresses (127.0.0.2, ...), as LAN hosts would;
//! the owner logs in from 127.0.0.1. The daemon hashes at its production strength.

use super::{daemon, free_port};
use cairn_e2e::measure::unmeasured;
use cairn_qemu::HttpClient;
use serde_json::json;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OWNER_PASSWORD: &str = "correct horse battery";

/// One login POST from `from` (a loopback address); the answer's status, or None if there was none.
fn login_from(from: Ipv4Addr, port: u16, user: &str, password: &str) -> Option<u16> {
    let body = json!({"username": user, "password": password}).to_string();
    let request = format!(
        "POST /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket.bind(SocketAddr::from((from, 0))).ok()?;
        let mut stream = socket
            .connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .ok()?;
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        let head = String::from_utf8_lossy(&answer);
        head.split_whitespace().nth(1)?.parse().ok()
    })
}

/// The median time of the owner's successful logins (none if all were refused), and the refusals' statuses.
type OwnerLogins = (Option<f64>, Vec<Option<u16>>);

/// The owner's median login time from 127.0.0.1 over `runs` logins, and the statuses of those refused.
fn owner_logins(port: u16, runs: usize) -> OwnerLogins {
    let mut refused = vec![];
    let mut times: Vec<f64> = vec![];
    for _ in 0..runs {
        let t = Instant::now();
        let status = login_from(Ipv4Addr::LOCALHOST, port, "owner", OWNER_PASSWORD);
        let took = t.elapsed().as_secs_f64() * 1000.0;
        if status == Some(200) {
            times.push(took);
        } else {
            refused.push(status);
        }
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (times.get(times.len() / 2).copied(), refused)
}

/// The quiet median, which must be measured: every quiet login succeeds.
fn owner_login_ms(port: u16, runs: usize) -> f64 {
    match owner_logins(port, runs) {
        (Some(ms), refused) if refused.is_empty() => ms,
        (_, refused) => unmeasured(
            "owner login latency",
            format!("quiet owner logins were refused: {refused:?}"),
        ),
    }
}

/// Floods `target` with wrong passwords from `sources` (each with `per_source` connections in a loop) while
/// the owner logs in; returns the owner's median and the flood's answers by status.
fn under_flood(
    port: u16,
    sources: &[Ipv4Addr],
    per_source: usize,
) -> (OwnerLogins, Vec<(u16, usize)>) {
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, usize>::new()));
    let flood: Vec<_> = sources
        .iter()
        .flat_map(|s| std::iter::repeat_n(*s, per_source))
        .map(|from| {
            let (stop, answers) = (stop.clone(), answers.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let status = login_from(from, port, "target", "a wrong guess").unwrap_or(0);
                    *answers.lock().unwrap().entry(status).or_default() += 1;
                }
            })
        })
        .collect();
    // The flood is under way (its first answers are in) before the owner tries.
    let until = Instant::now() + Duration::from_secs(30);
    while answers.lock().unwrap().values().sum::<usize>() < sources.len() {
        if Instant::now() > until {
            unmeasured("login flood", "the flood got no answers within 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let during = owner_logins(port, 5);
    stop.store(true, Ordering::SeqCst);
    for t in flood {
        let _ = t.join();
    }
    let answers = answers.lock().unwrap().clone().into_iter().collect();
    (during, answers)
}

pub fn figures() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _d = daemon(dir.path(), port);
    let c = HttpClient::new(port).with_timeout(Duration::from_secs(60));
    let r = c
        .post_json(
            "/api/v1/setup",
            &json!({"username": "owner", "password": OWNER_PASSWORD}),
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let csrf = r.json().unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .post_json(
            "/api/v1/users",
            &json!({"name": "target", "password": "target password"}),
            &[("x-csrf-token", &csrf)],
        )
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());

    let quiet = owner_login_ms(port, 5);
    let one_host = [Ipv4Addr::new(127, 0, 0, 2)];
    let (from_one, one_answers) = under_flood(port, &one_host, 8);
    let many: Vec<Ipv4Addr> = (0..32).map(|i| Ipv4Addr::new(127, 0, 1, i + 1)).collect();
    let (from_many, many_answers) = under_flood(port, &many, 1);
    let quiet_after = owner_login_ms(port, 5);
    let quiet = quiet.max(quiet_after);
    println!();
    println!("## Owner login under a flood of wrong passwords against another account (host build, production hash; goal <= 2x quiet)");
    println!("quiet:                                   {quiet:7.0} ms (median of 5, the slower of before and after)");
    for (what, ((median, refused), answers)) in [
        (
            "flood from one host, 8 connections:",
            (from_one, one_answers),
        ),
        (
            "flood from 32 addresses, 1 each:   ",
            (from_many, many_answers),
        ),
    ] {
        let figure = match median {
            Some(ms) => format!("{ms:7.0} ms  {:.2}x", ms / quiet),
            None => "   none logged in".to_string(),
        };
        println!(
            "{what}     {figure}   owner refused {}/5 {refused:?}   flood answers by status {answers:?}",
            refused.len()
        );
    }
}
