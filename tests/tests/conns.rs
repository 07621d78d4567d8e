//! Connections under attack, on the real image: a thousand slow connections from the host (half trickle a
//! request head, half a body; each one the box closes comes back ten seconds later, as slowloris tools do) while
//! the owner logs in, loads the Users page and asks for health. One boot.
//!
//! Under QEMU's user networking every host connection reaches the guest from 10.0.2.2, so the owner shares
//! the attacker's source address: the box must serve a client that sends its request at once even from a
//! source at its cap. The owner's times are compared with the same steps on the quiet box just before.

use cairn_e2e::*;
use cairn_qemu::{BootDisk, BootOptions, Machine, Manifest};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BOARD: &str = "qemu-aarch64-virt";
const ATTACKERS: usize = 1000;
/// How long a slot waits to connect again after the box closed its connection (slowloris: 15 s). Each new
/// connection makes the box close another, and under emulation the guest kernel's work for each costs the
/// box's only CPU more than it would on a real board.
const COME_BACK: Duration = Duration::from_secs(10);
/// Time between two attackers' first connections.
const PACE: Duration = Duration::from_millis(10);

#[derive(Default)]
struct Tally {
    connected: AtomicU64,
    open: AtomicI64,
    timed_out: AtomicU64,
    refused: AtomicU64,
    closed: AtomicU64,
}

impl Tally {
    fn line(&self) -> String {
        format!(
            "{} open now, {} connections made, {} answered 408, {} answered 503, {} closed",
            self.open.load(Ordering::Relaxed),
            self.connected.load(Ordering::Relaxed),
            self.timed_out.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.closed.load(Ordering::Relaxed)
        )
    }
}

/// One attacking connection slot: opens a request and trickles it, a piece a second, until the box closes the
/// connection; then opens the next one [`COME_BACK`] later.
async fn attacker(i: usize, port: u16, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let body = i % 2 == 1;
    // Paced: QEMU's forwarder takes host connections from a listen queue of one, and connections arriving
    // faster than it takes them wait in the host kernel, never reaching the box.
    tokio::time::sleep(PACE * i as u32).await;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        tally.connected.fetch_add(1, Ordering::Relaxed);
        tally.open.fetch_add(1, Ordering::Relaxed);
        let opening: &[u8] = if body {
            b"POST /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{\"username\":"
        } else {
            b"GET /users HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        };
        let piece: &[u8] = if body { b" " } else { b"X-Slow: 1\r\n" };
        let mut alive = s.write_all(opening).await.is_ok();
        let mut buf = [0u8; 1024];
        let mut first = true;
        while alive && !stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                Err(_) => alive = s.write_all(piece).await.is_ok(),
                Ok(Ok(0)) | Ok(Err(_)) => alive = false,
                Ok(Ok(n)) => {
                    if first {
                        let head = String::from_utf8_lossy(&buf[..n.min(12)]).into_owned();
                        if head.starts_with("HTTP/1.1 408") {
                            tally.timed_out.fetch_add(1, Ordering::Relaxed);
                        } else if head.starts_with("HTTP/1.1 503") {
                            tally.refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    first = false;
                }
            }
        }
        tally.open.fetch_sub(1, Ordering::Relaxed);
        tally.closed.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(COME_BACK).await;
    }
}

/// Runs [`ATTACKERS`] slots on a thread of their own until the returned flag is set.
fn attack(port: u16, tally: Arc<Tally>) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let slots: Vec<_> = (0..ATTACKERS)
                .map(|i| tokio::spawn(attacker(i, port, flag.clone(), tally.clone())))
                .collect();
            for s in slots {
                let _ = s.await;
            }
        });
    });
    (stop, handle)
}

/// Open descriptors of the daemon, read in the guest over the serial console (the network is the attacker's).
fn daemon_descriptors(m: &mut Machine) -> usize {
    let out = m
        .serial(
            "for p in $(pidof cairn); do echo fds $p $(ls /proc/$p/fd 2>/dev/null | wc -l); done",
            Duration::from_secs(60),
        )
        .expect("serial console");
    let fds = out
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                ["fds", pid, n] if *pid != "1" => n.parse::<usize>().ok(),
                _ => None,
            }
        })
        .max()
        .unwrap_or_else(|| panic!("no descriptor count for the daemon in {out:?}"));
    eprintln!("the daemon holds {fds} descriptors");
    fds
}

/// Prints the Cairn processes' memory, for the record (the memory figure itself is `make bench`'s).
fn print_memory(m: &mut Machine, when: &str) {
    let read = m
        .serial(measure::MEMORY_COMMAND, Duration::from_secs(60))
        .map_err(|e| e.to_string())
        .and_then(|out| measure::parse_memory(&out));
    match read {
        Ok(mem) => eprintln!("memory {when}: {}", mem.lines.join("; ")),
        Err(e) => eprintln!("memory {when} not read: {e}"),
    }
}

/// The owner's visit: log in (a new browser), load the Users page, ask for health. Returns each step's time.
fn visit(m: &Machine) -> [Duration; 3] {
    let port = m.host_port(80).expect("the owner's own forward");
    let owner = cairn_qemu::HttpClient::new(port).with_timeout(Duration::from_secs(120));
    let t = Instant::now();
    login_api(&owner, ADMIN, ADMIN_PASSWORD);
    let login = t.elapsed();
    let t = Instant::now();
    let users = owner.get("/users").expect("GET /users");
    assert_eq!(users.status, 200, "{}", users.text());
    assert!(users.text().contains("alice"), "{}", users.text());
    let page = t.elapsed();
    let t = Instant::now();
    let health = owner.get("/api/v1/health").expect("GET /api/v1/health");
    assert_eq!(health.status, 200, "{}", health.text());
    [login, page, t.elapsed()]
}

#[test]
fn a_thousand_slow_connections_leave_the_owner_served_promptly() {
    let (manifest, dir) = Manifest::load(BOARD).unwrap_or_else(|e| panic!("{e}"));
    let disk = BootDisk::flash(&manifest, &dir).unwrap();
    let started = Instant::now();
    // A second forward of the box's port 80 for the owner. It still reaches the box from 10.0.2.2, the
    // attacker's address, but through its own listening socket on the host: QEMU's forwarder takes each
    // socket's connections from a listen queue of one, which the attacker's reconnects keep full, and a
    // connection waiting there is only retried after the host kernel's SYN-ACK back-off (1, 3, 7, 15 s...),
    // a delay of the test bench, not of the box.
    let options = BootOptions {
        forward: vec![80],
        ..BootOptions::default()
    };
    let mut m = Machine::boot(BOARD, &disk, &options).unwrap();
    m.wait_healthy(started, Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("{e}\n{}", m.console_log()));
    let _console = ConsoleOnFailure(m.console_handle(), "conns");
    let admin = m.http();
    setup_through_form(&admin);
    let r = send(
        &admin,
        "POST",
        "/api/v1/users",
        serde_json::json!({"name": "alice", "password": "alice's long password", "role": "user"}),
    );
    expect(&r, 201);

    print_memory(&mut m, "before the attack");
    // The quiet baseline: the slower of two visits (a login's hashing time varies under emulation).
    let (one, two) = (visit(&m), visit(&m));
    let quiet = [0, 1, 2].map(|i| one[i].max(two[i]));
    eprintln!(
        "quiet box: login {:?}, Users page {:?}, health {:?}",
        quiet[0], quiet[1], quiet[2]
    );

    let tally = Arc::new(Tally::default());
    let (stop, attack) = attack(m.http_port, tally.clone());
    // The attack is on once every slot has connected once and the box had a few seconds of it.
    let until = Instant::now() + Duration::from_secs(120);
    while tally.connected.load(Ordering::Relaxed) < ATTACKERS as u64 {
        assert!(
            Instant::now() < until,
            "the attack never got going: {}",
            tally.line()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Long enough for slow bodies to pile up where nothing ends them, and for heads to run out of time.
    std::thread::sleep(Duration::from_secs(15));
    eprintln!("under attack: {}", tally.line());
    let held = daemon_descriptors(&mut m);
    print_memory(&mut m, "under attack");
    let attacked = visit(&m);
    eprintln!(
        "under attack: login {:?}, Users page {:?}, health {:?}; {}",
        attacked[0],
        attacked[1],
        attacked[2],
        tally.line()
    );
    let attacked_again = visit(&m);
    eprintln!(
        "under attack, again: login {:?}, Users page {:?}, health {:?}; {}",
        attacked_again[0],
        attacked_again[1],
        attacked_again[2],
        tally.line()
    );
    let held_after = daemon_descriptors(&mut m);
    stop.store(true, Ordering::Relaxed);
    attack.join().unwrap();

    // The box holds at most its per-source cap of the attacker's connections (plus its own few files).
    for (when, fds) in [("before the visits", held), ("after them", held_after)] {
        assert!(
            fds <= 64 + 40,
            "the daemon held {fds} descriptors {when}: the attacker's connections are not capped"
        );
    }

    // Promptly: the Users page and health within twice the quiet time plus a second. The login's password hash
    // is seconds of CPU under emulation, and here the attacker, QEMU's user-mode network stack (1000 host
    // connections) and the guest's one emulated CPU share the host's two cores, so it gets a looser bound:
    // 3.9x quiet was seen in CI with nothing else running; the old code held 785 descriptors and its login
    // failed outright once they ran out. On a real box the attacker's CPU is not the box's.
    for (i, step) in ["login", "Users page", "health"].iter().enumerate() {
        for (run, times) in [("first", attacked), ("second", attacked_again)] {
            let limit = if i == 0 {
                quiet[i] * 5 + Duration::from_secs(5)
            } else {
                quiet[i] * 2 + Duration::from_secs(1)
            };
            assert!(
                times[i] <= limit,
                "{step} under attack ({run} visit) took {:?}, quiet {:?}",
                times[i],
                quiet[i]
            );
        }
    }
    assert!(
        tally.timed_out.load(Ordering::Relaxed) + tally.closed.load(Ordering::Relaxed) > 0,
        "the box never closed a slow connection: {}",
        tally.line()
    );
}
