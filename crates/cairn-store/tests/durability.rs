//! Durability across a process that is killed, not dropped: dropping a sled database flushes it, so a test
//! that writes, drops and reopens passes whether or not `Store::commit` works. Here a child process (this
//! test binary again, running the ignored `child` test) writes and commits, says what it committed on
//! stdout, and is killed with SIGKILL; the parent then opens the store and checks every acknowledged record.
// The parent must run its own test binary as the child process it kills.
#![allow(clippy::disallowed_methods)]

use cairn_store::{Store, StoreError, SCHEMA_VERSION};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

/// Environment variables that turn the ignored `child` test into a child process.
const MODE: &str = "CAIRN_STORE_CHILD_MODE";
const DIR: &str = "CAIRN_STORE_CHILD_DIR";
/// Set it to rerun the random test with the seed a failed run printed.
const SEED: &str = "CAIRN_STORE_TEST_SEED";

/// The record the writer stores under key `i`: sizes vary so some records span more than one write.
fn record(i: u64) -> Value {
    let len = (i * 7919 % 5000) as usize;
    let body: String = (0..len)
        .map(|k| (b'a' + ((i as usize + k) % 26) as u8) as char)
        .collect();
    json!({"i": i, "len": len, "body": body})
}

fn key(i: u64) -> String {
    format!("{i:08}")
}

/// What the child does, chosen by `CAIRN_STORE_CHILD_MODE`. It never returns normally: it writes, commits,
/// acknowledges on stdout and then waits to be killed.
#[test]
#[ignore = "a child process of the durability tests, not a test of its own"]
fn child() {
    let (Ok(mode), Ok(dir)) = (std::env::var(MODE), std::env::var(DIR)) else {
        return;
    };
    let store = Store::open(Path::new(&dir)).unwrap();
    match mode.as_str() {
        "writer" => {
            let t = store.table("acked").unwrap();
            let from = t.len() as u64;
            for i in from..from + 100_000 {
                t.put(&key(i), &record(i)).unwrap();
                store.commit().unwrap();
                println!("acked {i}");
            }
        }
        "one" => {
            store
                .table("things")
                .unwrap()
                .put("a", &vec![1, 2, 3])
                .unwrap();
            store.commit().unwrap();
            println!("acked a");
        }
        "schema99" => {
            store
                .db()
                .open_tree("meta")
                .unwrap()
                .insert("schema_version", b"99")
                .unwrap();
            store.commit().unwrap();
            println!("acked schema");
        }
        other => panic!("unknown child mode {other}"),
    }
    // Killed here at the latest; the store is never dropped. Should the parent be gone, give up after a while.
    std::thread::sleep(PATIENCE);
    std::process::abort();
}

/// How long the parent waits for a child's next acknowledgement, and a child for its kill.
const PATIENCE: Duration = Duration::from_secs(60);

/// A child process and its acknowledgements, read from its stdout by a thread of their own.
struct Running {
    child: Child,
    acks: Receiver<String>,
}

fn spawn(mode: &str, dir: &Path) -> Running {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MODE, mode)
        .env(DIR, dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, acks) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            // The harness prints "test child ... " before the test's own output, on the same line.
            if let Some((_, ack)) = line.unwrap().split_once("acked ") {
                if tx.send(ack.to_string()).is_err() {
                    return;
                }
            }
        }
    });
    Running { child, acks }
}

impl Running {
    /// The next acknowledgement the child printed.
    fn next_ack(&mut self) -> String {
        match self.acks.recv_timeout(PATIENCE) {
            Ok(ack) => ack,
            Err(e) => panic!("no acknowledgement from the child: {e}"),
        }
    }

    /// SIGKILL: no destructor, no flush, no exit handler runs. Returns the acknowledgements it printed
    /// before it died that were not read yet.
    fn kill(mut self) -> Vec<String> {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert!(
            !status.success(),
            "the child must die of the signal: {status}"
        );
        // The reader thread ends at the pipe's end, which closes the channel.
        self.acks.iter().collect()
    }
}

impl Drop for Running {
    /// A failed assertion must not leave the child running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// splitmix64: enough randomness for kill points, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn every_acknowledged_record_survives_a_kill_at_a_random_point() {
    let seed = std::env::var(SEED)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("seed {seed} (rerun with {SEED}={seed})");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Option<u64> = None;
    // Several kills in a row: each child resumes from what the last one left, as the daemon after a power cut.
    for round in 0..4 {
        let mut child = spawn("writer", dir.path());
        let wait_for = 1 + rng.below(60);
        for _ in 0..wait_for {
            acked = Some(child.next_ack().parse().unwrap());
        }
        // Somewhere inside the next write or commit, or between them.
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
        for ack in child.kill() {
            acked = Some(ack.parse().unwrap());
        }
        let last = acked.unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t = store.table("acked").unwrap();
        for i in 0..=last {
            assert_eq!(
                t.get::<Value>(&key(i)).unwrap(),
                Some(record(i)),
                "seed {seed}, round {round}: record {i} was acknowledged (last {last}) but is not there whole"
            );
        }
        // The one write in flight when the kill came may be there too, but only whole; nothing beyond it.
        let all = t.all::<Value>().unwrap();
        assert!(
            all.len() as u64 <= last + 2,
            "seed {seed}, round {round}: {} records after {last} acknowledged",
            all.len()
        );
        for (k, v) in all {
            let i: u64 = k.parse().unwrap();
            assert_eq!(
                v,
                record(i),
                "seed {seed}, round {round}: record {k} is half-written"
            );
        }
    }
}

/// The first value committed before the kill is there after it.
#[test]
fn a_committed_record_survives_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn("one", dir.path());
    assert_eq!(child.next_ack(), "a");
    child.kill();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let t = store.table("things").unwrap();
    assert_eq!(t.get::<Vec<i32>>("a").unwrap(), Some(vec![1, 2, 3]));
}

/// A database a newer firmware wrote (here: its schema version, committed and then killed) is refused,
/// not overwritten.
#[test]
fn a_newer_schema_is_refused_after_a_kill_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn("schema99", dir.path());
    assert_eq!(child.next_ack(), "schema");
    child.kill();
    for _ in 0..2 {
        match Store::open(dir.path()) {
            Err(StoreError::TooNew {
                found: 99,
                supported: SCHEMA_VERSION,
            }) => {}
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a newer schema must not open"),
        }
    }
}
