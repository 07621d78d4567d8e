//! Account changes are durable when they return, across a process that is killed rather than dropped (a
//! dropped store flushes anyway, so a reopen in the same process would pass without any commit). A child
//! process (this test binary again, running the ignored `child` test) makes each change, says so on stdout
//! and waits; the parent kills it with SIGKILL and opens the same store.
// The parent must run its own test binary as the child process it kills.
#![allow(clippy::disallowed_methods)]

use cairn_accounts::{AccountError, Accounts, NewUser, Role};
use cairn_store::Store;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const DIR: &str = "CAIRN_ACCOUNTS_CHILD_DIR";

fn open(dir: &Path) -> Accounts {
    let mut a = Accounts::new(Store::open(dir).unwrap()).unwrap();
    a.set_kdf_iterations_for_seeding(1_000);
    a
}

/// Makes one change after another, printing `done <what> <detail>` once each has returned, then waits to be
/// killed (the accounts are never dropped).
#[test]
#[ignore = "a child process of the durability test, not a test of its own"]
fn child() {
    let Ok(dir) = std::env::var(DIR) else {
        return;
    };
    let a = open(Path::new(&dir));
    a.setup("owner", "correct horse", "").unwrap();
    println!("done setup");
    a.create_user(NewUser {
        name: "alice".into(),
        full_name: "Alice".into(),
        email: String::new(),
        role: Role::User,
        enabled: true,
        password: "password one".into(),
    })
    .unwrap();
    println!("done user");
    let (kept, kept_token, _) = a.login("alice", "password one", "laptop").unwrap();
    let (_, revoked_token, _) = a.login("alice", "password one", "phone").unwrap();
    let (revoked, _) = a.session(&revoked_token).unwrap();
    assert!(a.revoke_session("alice", &revoked.id).unwrap());
    println!("done revoke {revoked_token}");
    a.change_own_password("alice", "password one", "password two", &kept.id)
        .unwrap();
    println!("done password {kept_token}");
    // The last change before the kill, so no later commit flushes it by the way.
    let (_, last_token, _) = a.login("alice", "password two", "tablet").unwrap();
    println!("done login {last_token}");
    std::thread::sleep(Duration::from_secs(60));
    std::process::abort();
}

#[test]
fn account_changes_survive_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut done = vec![];
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        // The harness prints "test child ... " before the test's own output, on the same line.
        if let Some((_, what)) = line.unwrap().split_once("done ") {
            done.push(what.to_string());
            if what.starts_with("login") {
                break;
            }
        }
    }
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());
    let detail = |what: &str| {
        done.iter()
            .find_map(|d| d.strip_prefix(&format!("{what} ")))
            .unwrap_or_else(|| panic!("the child never reported {what}: {done:?}"))
            .to_string()
    };
    let (revoked_token, kept_token, last_token) =
        (detail("revoke"), detail("password"), detail("login"));

    let a = open(dir.path());
    assert!(a.setup_done());
    assert!(a.login("owner", "correct horse", "test").is_ok());
    assert_eq!(a.user("alice").unwrap().unwrap().full_name, "Alice");
    assert_eq!(a.session(&kept_token).unwrap().1.name, "alice");
    assert_eq!(a.session(&last_token).unwrap().1.name, "alice");
    assert!(matches!(
        a.session(&revoked_token),
        Err(AccountError::NoSession)
    ));
    assert!(matches!(
        a.login("alice", "password one", "test"),
        Err(AccountError::BadCredentials)
    ));
    assert!(a.login("alice", "password two", "test").is_ok());
}
