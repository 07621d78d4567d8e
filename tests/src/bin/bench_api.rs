//! `make bench` (API part): authenticated API throughput and p99 at 64 connections against a bare hyper
//! hello-world in the same run, the same over HTTPS against HTTP (one daemon, one run), list/render
//! times with 1,000 and 10,000 users, and the owner's login latency under a flood of wrong passwords against
//! another account (`bench_api/logins.rs`).
//!
//! Servers are measured once they answer (never after a fixed sleep); a figure wrk or a request cannot give
//! stops the run with a sentence naming it (`measure::unmeasured`), never a 0 or NaN that reads as a pass.

use cairn_accounts::{Access, Accounts, Level, NewShare, NewUser, Role};
use cairn_e2e::measure::{self, unmeasured};
use cairn_qemu::{workspace_root, HttpClient};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "bench_api/logins.rs"]
mod logins;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `GET path` on `port` until it answers 200; `what` names the server in the failure.
fn wait_answering(port: u16, path: &str, what: &str, deadline: Duration) {
    let c = HttpClient::new(port).with_timeout(Duration::from_secs(2));
    let until = Instant::now() + deadline;
    loop {
        match c.get(path) {
            Ok(r) if r.status == 200 => return,
            Ok(r) if Instant::now() >= until => panic!(
                "{what} on 127.0.0.1:{port} answered GET {path} with {} for {} s",
                r.status,
                deadline.as_secs()
            ),
            Err(e) if Instant::now() >= until => panic!(
                "{what} on 127.0.0.1:{port} did not answer GET {path} within {} s: {e}",
                deadline.as_secs()
            ),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The reference: hyper serving a fixed answer, nothing else. Returns its port once it answers.
fn hello_server() -> u16 {
    // Bound here, before the thread starts, so the port is ours and listening when this returns.
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = std_listener.local_addr().unwrap().port();
    std_listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(hyper::body::Bytes::from_static(
                                b"{\"hello\":\"world\"}",
                            )),
                        ))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    wait_answering(port, "/", "the hyper hello-world", Duration::from_secs(10));
    port
}

/// Runs wrk for 8 s at 64 connections; `figure` names what it measures if it cannot.
fn wrk(figure: &str, port: u16, path: &str, cookie: Option<&str>) -> measure::WrkFigures {
    wrk_url(figure, &format!("http://127.0.0.1:{port}{path}"), cookie)
}

/// [`wrk`] on a whole URL (`https://` too: wrk speaks TLS and checks no certificate).
fn wrk_url(figure: &str, url: &str, cookie: Option<&str>) -> measure::WrkFigures {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t", "2", "-c", "64", "-d", "8s", "--latency"]);
    if let Some(c) = cookie {
        cmd.args(["-H", &format!("Cookie: cairn_session={c}")]);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("wrk (scripts/bootstrap installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        unmeasured(
            figure,
            format!("wrk on {url} exited {}: {text}", out.status),
        );
    }
    measure::parse_wrk(&text)
        .unwrap_or_else(|e| unmeasured(figure, format!("{e} on {url}: {text}")))
}

struct Daemon(Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn daemon(state: &std::path::Path, port: u16) -> Daemon {
    daemon_with_tls(state, port, None)
}

/// The daemon, also serving HTTPS on `tls_port` when given.
fn daemon_with_tls(state: &std::path::Path, port: u16, tls_port: Option<u16>) -> Daemon {
    let bin = workspace_root().join("target/release/cairn");
    assert!(
        bin.exists(),
        "build the host daemon first: cargo build --release -p cairn"
    );
    let log = state.join("daemon.log");
    // setpriv --pdeathsig: the daemon dies with this process, even when a failed figure aborts it.
    let mut child = Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--"])
        .arg(bin)
        .args([
            "daemon",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--power",
            "none",
            "--smb",
            "off",
        ])
        .args(
            tls_port
                .map(|p| vec!["--listen-tls".to_string(), format!("127.0.0.1:{p}")])
                .unwrap_or_default(),
        )
        .arg("--state")
        .arg(state)
        .arg("--ctl")
        .arg(state.join("ctl.sock"))
        .arg("--board")
        .arg(workspace_root().join("board/qemu-aarch64-virt/board.toml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("setpriv (util-linux) runs the daemon");
    let c = HttpClient::new(port).with_timeout(Duration::from_secs(2));
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        match c.get("/api/v1/health") {
            Ok(r) if r.status == 200 => break,
            _ if Instant::now() >= until => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the daemon on 127.0.0.1:{port} did not answer GET /api/v1/health 200 within 20 s:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            }
            _ => {}
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the daemon exited ({status}) before answering GET /api/v1/health:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Daemon(child)
}

/// Seeds `users` accounts and `shares` shares (each shared with 5 users and a group) straight into a store.
fn seed(state: &std::path::Path, users: usize, shares: usize) {
    let store = cairn_store::Store::open(&state.join("settings.db")).unwrap();
    let mut a = Accounts::new(store).unwrap();
    a.setup("owner", "correct horse battery", "").unwrap();
    a.set_kdf_iterations_for_seeding(1);
    for i in 0..users {
        a.create_user(NewUser {
            name: format!("user{i:05}"),
            full_name: format!("User {i}"),
            email: format!("u{i}@example.org"),
            role: Role::User,
            enabled: true,
            password: "seeded password".into(),
        })
        .unwrap();
    }
    a.create_group(
        "everyone-else",
        &(0..users.min(50))
            .map(|i| format!("user{i:05}"))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    for s in 0..shares {
        let mut access = Access::default();
        for k in 0..5 {
            access.users.insert(
                format!("user{:05}", (s * 7 + k) % users),
                if k % 2 == 0 {
                    Level::Write
                } else {
                    Level::Read
                },
            );
        }
        access.groups.insert("everyone-else".into(), Level::Read);
        a.create_share(NewShare {
            name: format!("share{s:04}"),
            description: String::new(),
            volume: None,
            path: None,
            guest: false,
            access,
        })
        .unwrap();
    }
}

/// Rss and Pss of a process in kB, from its smaps_rollup.
fn memory_kb(pid: u32, figure: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_else(|e| unmeasured(figure, format!("/proc/{pid}/smaps_rollup: {e}")));
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or_else(|| unmeasured(figure, format!("no {name} in {text}")))
    };
    (field("Rss:"), field("Pss:"))
}

/// Open descriptors of a process.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Opens `count` connections to `port` from 127.0.0.1 to 127.0.0.`sources`, each sending one health request
/// and reading its answer, then left idle (kept alive); returns them with how many were answered 200.
fn idle_connections(
    rt: &tokio::runtime::Runtime,
    port: u16,
    count: usize,
    sources: usize,
) -> (Vec<tokio::net::TcpStream>, usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    rt.block_on(async {
        let mut open = vec![];
        let mut answered = 0;
        for i in 0..count {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            let from = std::net::Ipv4Addr::new(127, 0, 0, 1 + (i % sources) as u8);
            socket.bind((from, 0).into()).unwrap();
            let Ok(mut s) = socket.connect(([127, 0, 0, 1], port).into()).await else {
                continue;
            };
            if s.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .await
                .is_err()
            {
                continue;
            }
            let mut buf = [0u8; 2048];
            if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await
            {
                if buf[..n].starts_with(b"HTTP/1.1 200") {
                    answered += 1;
                }
            }
            open.push(s);
        }
        (open, answered)
    })
}

fn median_ms(mut f: impl FnMut() -> Duration, runs: usize) -> f64 {
    let mut v: Vec<f64> = (0..runs).map(|_| f().as_secs_f64() * 1000.0).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    println!("# Cairn API benchmark (make bench: cargo run --release -p cairn-e2e --bin cairn-bench-api)");
    let hello_port = hello_server();
    let hello = wrk("bare hyper hello-world", hello_port, "/", None);

    let dir = tempfile::tempdir().unwrap();
    let (port, tls_port) = (free_port(), free_port());
    let d = daemon_with_tls(dir.path(), port, Some(tls_port));
    let c = HttpClient::new(port);
    assert_eq!(
        c.post_json(
            "/api/v1/setup",
            &serde_json::json!({"username": "owner", "password": "correct horse battery"}),
            &[]
        )
        .unwrap()
        .status,
        201
    );
    let cookie = c.cookie("cairn_session").unwrap();
    // The session must be good, or wrk would measure refusals (parse_wrk refuses non-2xx answers too).
    assert_eq!(
        c.get("/api/v1/session").unwrap().status,
        200,
        "the benchmark's session is not logged in"
    );
    let api = wrk(
        "Cairn GET /api/v1/session (auth)",
        port,
        "/api/v1/session",
        Some(&cookie),
    );
    let fingerprint = c.get("/api/v1/system/certificate").unwrap().json().unwrap()
        ["fingerprint_sha256"]
        .as_str()
        .unwrap_or_else(|| unmeasured("HTTPS", "the daemon reports no certificate"))
        .to_string();
    let tls = HttpClient::https(tls_port, &fingerprint);
    tls.set_cookie("cairn_session", &cookie);
    if tls.get("/api/v1/session").map(|r| r.status).ok() != Some(200) {
        unmeasured(
            "HTTPS",
            "the session does not answer over TLS with the reported certificate",
        );
    }
    let api_tls = wrk_url(
        "Cairn GET /api/v1/session (auth) over HTTPS",
        &format!("https://127.0.0.1:{tls_port}/api/v1/session"),
        Some(&cookie),
    );
    // A new connection for every request (this client's way): the handshake's cost, one at a time.
    let per_request = |client: &HttpClient| {
        median_ms(
            || {
                let t = Instant::now();
                let r = client.get("/api/v1/session").unwrap();
                if r.status != 200 {
                    unmeasured("new-connection request", format!("answered {}", r.status));
                }
                t.elapsed()
            },
            201,
        )
    };
    let plain = HttpClient::new(port);
    plain.set_cookie("cairn_session", &cookie);
    let (connect_http_ms, connect_tls_ms) = (per_request(&plain), per_request(&tls));
    drop(d);
    println!();
    println!("## Throughput, 64 connections, 8 s, wrk -t2 -c64 (host build)");
    println!(
        "bare hyper hello-world:            {:>9.0} req/s   p99 {:.2} ms",
        hello.requests_per_s, hello.p99_ms
    );
    println!(
        "Cairn GET /api/v1/session (auth):  {:>9.0} req/s   p99 {:.2} ms",
        api.requests_per_s, api.p99_ms
    );
    println!(
        "ratio (goal >= 50 %): {:.0} %   p99 goal <= 5 ms",
        100.0 * api.requests_per_s / hello.requests_per_s
    );

    idle_connections_figure();

    println!();
    println!("## HTTPS against HTTP, same daemon and session, same run (host build)");
    println!(
        "HTTP  GET /api/v1/session, keep-alive:    {:>9.0} req/s   p99 {:.2} ms",
        api.requests_per_s, api.p99_ms
    );
    println!(
        "HTTPS GET /api/v1/session, keep-alive:    {:>9.0} req/s   p99 {:.2} ms   ({:.0} % of HTTP)",
        api_tls.requests_per_s,
        api_tls.p99_ms,
        100.0 * api_tls.requests_per_s / api.requests_per_s
    );
    println!(
        "new connection per request, median of 201: HTTP {connect_http_ms:.2} ms | HTTPS (full handshake, ECDSA P-256) {connect_tls_ms:.2} ms"
    );

    println!();
    println!("## Scale: list and render time (median of 5; goal < 100 ms each at 10,000 users / 1,000 shares)");
    for (users, shares) in [(1_000, 100), (10_000, 1_000)] {
        let dir = tempfile::tempdir().unwrap();
        let seeded = Instant::now();
        seed(dir.path(), users, shares);
        let seeding = seeded.elapsed();
        let port = free_port();
        let _d = daemon(dir.path(), port);
        let c = HttpClient::new(port).with_timeout(Duration::from_secs(60));
        assert_eq!(
            c.post_json(
                "/api/v1/session",
                &serde_json::json!({"username": "owner", "password": "correct horse battery"}),
                &[]
            )
            .unwrap()
            .status,
            200
        );
        // Each answer must hold every seeded user (the owner too), or the time is not the list's.
        let last = format!("user{:05}", users - 1);
        let api_ms = median_ms(
            || {
                let t = Instant::now();
                let r = c.get("/api/v1/users").unwrap();
                let took = t.elapsed();
                let listed = r.json().ok().and_then(|v| v.as_array().map(|a| a.len()));
                if r.status != 200 || listed != Some(users + 1) {
                    unmeasured(
                        "GET /api/v1/users",
                        format!(
                            "answered {} listing {listed:?} users, not {}",
                            r.status,
                            users + 1
                        ),
                    );
                }
                took
            },
            5,
        );
        let page_ms = median_ms(
            || {
                let t = Instant::now();
                let r = c.get("/users").unwrap();
                let took = t.elapsed();
                let rows = r.text().matches("<tr><td><a href=\"/users/").count();
                if r.status != 200 || rows != users + 1 || !r.text().contains(&last) {
                    unmeasured(
                        "GET /users page",
                        format!(
                            "answered {} with {rows} user rows, not {}",
                            r.status,
                            users + 1
                        ),
                    );
                }
                took
            },
            5,
        );
        drop(_d);
        let store = cairn_store::Store::open(&dir.path().join("settings.db")).unwrap();
        let a = Accounts::new(store).unwrap();
        let (u, g, s) = (a.users().unwrap(), a.groups().unwrap(), a.shares().unwrap());
        if (u.len(), s.len()) != (users + 1, shares) {
            unmeasured(
                "render ksmbd files",
                format!("the store holds {} users and {} shares", u.len(), s.len()),
            );
        }
        let out = tempfile::tempdir().unwrap();
        let layout = cairn_smb::Layout {
            config_dir: out.path().join("ksmbd"),
            etc_dir: out.path().join("etc"),
            system_volume: out.path().join("shares"),
            volumes: Default::default(),
            base_passwd: out.path().join("none"),
            base_group: out.path().join("none"),
        };
        let render_ms = median_ms(
            || {
                let t = Instant::now();
                let r = cairn_smb::render(
                    &u,
                    &g,
                    &s,
                    &layout,
                    "cairn",
                    "root:x:0:0::/root:/bin/sh",
                    "root:x:0:",
                )
                .unwrap();
                std::hint::black_box(&r);
                t.elapsed()
            },
            5,
        );
        let rendered = cairn_smb::render(&u, &g, &s, &layout, "cairn", "", "").unwrap();
        let sections = rendered.conf.matches("\n[share").count();
        if sections != shares {
            unmeasured(
                "render ksmbd files",
                format!("ksmbd.conf has {sections} share sections, not {shares}"),
            );
        }
        let write_ms = median_ms(
            || {
                let _ = std::fs::remove_dir_all(&layout.config_dir);
                let t = Instant::now();
                for (name, text) in [
                    ("ksmbd.conf", &rendered.conf),
                    ("ksmbdpwd.db", &rendered.pwddb),
                ] {
                    cairn_smb::write_atomic(&layout.config_dir.join(name), text, 0o600).unwrap();
                }
                t.elapsed()
            },
            5,
        );
        println!(
            "{users:>6} users, {shares:>5} shares: GET /api/v1/users {api_ms:6.1} ms | GET /users page {page_ms:6.1} ms | render ksmbd files {render_ms:6.1} ms + atomic write {write_ms:5.1} ms  (seeded in {:.1} s)",
            seeding.as_secs_f64()
        );
    }

    logins::figures();
}

/// Daemon memory with a thousand idle connections against the same daemon idle (host build).
fn idle_connections_figure() {
    const FIGURE: &str = "daemon memory with a thousand idle connections";
    const ATTEMPTED: usize = 1000;
    const SOURCES: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = daemon(dir.path(), port);
    let pid = d.0.id();
    let c = HttpClient::new(port);
    let _ = c.get("/api/v1/health").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (idle_fds, (idle_rss, idle_pss)) = (descriptors(pid), memory_kb(pid, FIGURE));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let (open, answered) = idle_connections(&rt, port, ATTEMPTED, SOURCES);
    std::thread::sleep(Duration::from_millis(500));
    let held = descriptors(pid).saturating_sub(idle_fds);
    let (rss, pss) = memory_kb(pid, FIGURE);
    if started.elapsed() > Duration::from_secs(25) {
        unmeasured(
            FIGURE,
            "opening the connections took longer than the daemon keeps idle ones (30 s)",
        );
    }
    if held == 0 || answered == 0 {
        unmeasured(
            FIGURE,
            format!("{answered} connections answered, {held} held"),
        );
    }
    let per_kb = pss.saturating_sub(idle_pss) as f64 / held as f64;
    drop(open);
    drop(d);
    println!();
    println!("## {FIGURE} (host build; goal <= 8 MiB above idle)");
    println!(
        "{ATTEMPTED} connections from {SOURCES} addresses, each answered once ({answered} got 200) then idle: the daemon holds {held} (its caps: 256 in all, 64 per address)"
    );
    println!(
        "daemon idle: Pss {:.2} MiB (Rss {:.2} MiB); with them: Pss {:.2} MiB (Rss {:.2} MiB); above idle: Pss {:+.2} MiB (Rss {:+.2} MiB)",
        idle_pss as f64 / 1024.0,
        idle_rss as f64 / 1024.0,
        pss as f64 / 1024.0,
        rss as f64 / 1024.0,
        (pss as f64 - idle_pss as f64) / 1024.0,
        (rss as f64 - idle_rss as f64) / 1024.0,
    );
    println!(
        "per held connection: {per_kb:.1} KiB Pss; a thousand held (were the caps that high) would take {:.2} MiB",
        per_kb * 1000.0 / 1024.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "did not answer GET / within 1 s")]
    fn readiness_on_a_port_nobody_listens_on_fails_within_its_deadline() {
        wait_answering(free_port(), "/", "nobody", Duration::from_secs(1));
    }

    #[test]
    #[should_panic(expected = "benchmark figure \"nobody\" could not be measured")]
    fn wrk_against_a_port_nobody_listens_on_is_no_figure() {
        wrk("nobody", free_port(), "/", None);
    }

    #[test]
    fn the_hello_world_answers_when_it_is_handed_out() {
        let port = hello_server();
        assert_eq!(HttpClient::new(port).get("/").unwrap().status, 200);
    }
}
