//! Owners' scenarios from the field reports, replayed on one shared aarch64 box. The box's network has no
//! route beyond the host (QEMU `restrict=on`): every local operation here runs "with the internet cable pulled".
//! The network changes that take the box off its address (a trial, a power cut during one) run on a second
//! box of their own in QEMU's user network, in parallel with the shared box's turns.

use cairn_e2e::*;
use cairn_qemu::{BootDisk, BootOptions, Machine, Manifest, Network};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

static BOX: OnceLock<Mutex<SharedBox>> = OnceLock::new();

fn the_box() -> std::sync::MutexGuard<'static, SharedBox> {
    shared_box(&BOX, "qemu-aarch64-virt", || {
        let disks_dir = cairn_qemu::workspace_root().join("target/e2e-disks/owners");
        let _ = std::fs::remove_dir_all(&disks_dir);
        let data_disks = cairn_qemu::blank_data_disks(&disks_dir, 2, 256).unwrap();
        BootOptions {
            network: Network::Offline,
            forward: vec![445],
            data_disks,
            ..BootOptions::default()
        }
    })
}

/// SMB end to end: a user with write access writes and reads back; one without any grant has no SMB
/// credential at all, and a guest is refused.
#[test]
fn smb_share_access_is_enforced_for_users_and_guests() {
    let b = the_box();
    let _log = ConsoleOnFailure(b.machine.console_handle(), "smb");
    let admin = &b.admin.clone();
    created(
        admin,
        "/api/v1/users",
        json!({"name": "writer", "password": "writer password"}),
    );
    created(
        admin,
        "/api/v1/users",
        json!({"name": "outsider", "password": "outsider password"}),
    );
    created(
        admin,
        "/api/v1/shares",
        json!({"name": "docs", "description": "Documents", "access": {"users": {"writer": "write"}}}),
    );
    let port = b.machine.host_port(445).unwrap();
    let dir = std::env::temp_dir().join(format!("cairn-smb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let local = dir.join("hello.txt");
    let back = dir.join("back.txt");
    std::fs::write(&local, "written over SMB\n").unwrap();
    // ksmbd.mountd may still be settling on a fresh box: retry the first connection for a while.
    let until = Instant::now() + Duration::from_secs(30);
    let commands = format!(
        "put {} hello.txt; get hello.txt {}",
        local.display(),
        back.display()
    );
    let (ok, out) = loop {
        let (ok, out) = smbclient(port, "docs", Some(("writer", "writer password")), &commands);
        if ok || Instant::now() > until {
            break (ok, out);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(ok, "writer should read and write: {out}");
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        "written over SMB\n"
    );
    let outsider = ("outsider", "outsider password");
    smb_refused(
        port,
        "docs",
        Some(outsider),
        "ls",
        "NT_STATUS_LOGON_FAILURE",
    );
    smb_refused(port, "docs", None, "ls", "NT_STATUS_ACCESS_DENIED");
    let wrong = ("writer", "wrong password");
    smb_refused(port, "docs", Some(wrong), "ls", "NT_STATUS_LOGON_FAILURE");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Creates something through the API (a user, group or share) and expects `201 Created`.
fn created(admin: &cairn_qemu::HttpClient, path: &str, body: Value) -> Value {
    expect(&send(admin, "POST", path, body), 201)
}

/// Runs smbclient until `done` holds for its outcome (a change reaches the server after a reload) or 30 s
/// pass; returns the last outcome.
fn smb_until(
    port: u16,
    share: &str,
    user: Option<(&str, &str)>,
    commands: &str,
    done: impl Fn(bool, &str) -> bool,
) -> (bool, String) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out) = smbclient(port, share, user, commands);
        if done(ok, &out) || Instant::now() > until {
            return (ok, out);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Asserts that `user` (None: a guest) is refused with exactly `status`, waiting for a change to arrive.
fn smb_refused(port: u16, share: &str, user: Option<(&str, &str)>, commands: &str, status: &str) {
    let (ok, out) = smb_until(port, share, user, commands, |ok, out| {
        !ok && out.contains(status)
    });
    assert!(
        !ok && out.contains(status),
        "{user:?} on {share} ({commands}) should be refused with {status}: {out}"
    );
}

/// Asserts that `user` can run `commands` on `share`, waiting for a change to arrive.
fn smb_works(port: u16, share: &str, user: (&str, &str), commands: &str) -> String {
    let (ok, out) = smb_until(port, share, Some(user), commands, |ok, _| ok);
    assert!(ok, "{} on {share} ({commands}) should work: {out}", user.0);
    out
}

/// Share rights as owners give them: through groups (read or write), read-only users whose writes are
/// refused, and access taken away three ways (grant removed, user disabled, user deleted) while the others
/// keep theirs. Real smbclient against the box's ksmbd.
#[test]
fn smb_rights_follow_groups_read_only_grants_and_every_way_access_is_taken_away() {
    let b = the_box();
    let _log = ConsoleOnFailure(b.machine.console_handle(), "smb rights");
    let admin = &b.admin.clone();
    let users = [
        "via-readers",
        "via-editors",
        "viewer",
        "ungranted",
        "paused",
        "leaver",
    ];
    let password = |u: &str| format!("{u} password");
    for u in users {
        created(
            admin,
            "/api/v1/users",
            json!({"name": u, "password": password(u)}),
        );
    }
    for (group, member) in [("readers", "via-readers"), ("editors", "via-editors")] {
        created(
            admin,
            "/api/v1/groups",
            json!({"name": group, "members": [member]}),
        );
    }
    let grants = |users: &[&str]| {
        let mut access = json!({"groups": {"readers": "read", "editors": "write"}, "users": {}});
        for u in users {
            access["users"][*u] = json!(if *u == "ungranted" { "write" } else { "read" });
        }
        access
    };
    created(
        admin,
        "/api/v1/shares",
        json!({"name": "team", "access": grants(&["viewer", "ungranted", "paused", "leaver"])}),
    );
    let port = b.machine.host_port(445).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("plan.txt");
    std::fs::write(&local, "written by a group member\n").unwrap();
    let put = |name: &str| format!("put {} {name}", local.display());
    let passwords: Vec<String> = users.iter().map(|u| password(u)).collect();
    let login = |name: &'static str| {
        let i = users.iter().position(|u| *u == name).unwrap();
        (name, passwords[i].as_str())
    };

    // Write through a group with write; read through a group with read and as a user granted read.
    smb_works(port, "team", login("via-editors"), &put("plan.txt"));
    for reader in ["via-readers", "viewer"] {
        let copy = dir.path().join(format!("{reader}.txt"));
        smb_works(
            port,
            "team",
            login(reader),
            &format!("get plan.txt {}", copy.display()),
        );
        assert_eq!(
            std::fs::read_to_string(&copy).unwrap(),
            "written by a group member\n"
        );
        smb_refused(
            port,
            "team",
            Some(login(reader)),
            &put(&format!("by-{reader}.txt")),
            "NT_STATUS_ACCESS_DENIED",
        );
    }
    let others_keep_access = || {
        smb_works(
            port,
            "team",
            login("via-editors"),
            &format!("{}; ls", put("again.txt")),
        );
        smb_works(port, "team", login("viewer"), "ls");
    };

    // Grant removed from the share.
    smb_works(port, "team", login("ungranted"), &put("ungranted.txt"));
    expect(
        &send(
            admin,
            "PATCH",
            "/api/v1/shares/team",
            json!({"access": grants(&["viewer", "paused", "leaver"])}),
        ),
        200,
    );
    // It was the account's only grant: its SMB credential goes with it, so the logon itself fails.
    let unknown = "NT_STATUS_LOGON_FAILURE";
    smb_refused(port, "team", Some(login("ungranted")), "ls", unknown);
    others_keep_access();

    // User disabled: ksmbd no longer knows the account, so the logon itself fails.
    smb_works(port, "team", login("paused"), "ls");
    expect(
        &send(
            admin,
            "PATCH",
            "/api/v1/users/paused",
            json!({"enabled": false}),
        ),
        200,
    );
    smb_refused(port, "team", Some(login("paused")), "ls", unknown);
    others_keep_access();

    // User deleted.
    smb_works(port, "team", login("leaver"), "ls");
    expect(
        &send(admin, "DELETE", "/api/v1/users/leaver", json!({})),
        200,
    );
    smb_refused(port, "team", Some(login("leaver")), "ls", unknown);
    others_keep_access();
}

/// The NT status an smbclient run ended with (`None` when it worked).
fn smb_status(ok: bool, out: &str) -> Option<String> {
    if ok {
        return None;
    }
    let at = out.find("NT_STATUS_")?;
    let tail = &out[at..];
    let end = tail
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(tail.len());
    Some(tail[..end].to_string())
}

/// SMB is a side door: the administrator, who has no share grant, has no SMB credential, so their password
/// cannot be tried over NTLM; a grant (here through a group) gives one and taking it away takes it back.
/// With a guest share on, a wrong password for a known name, any password for an unknown name and the
/// ungranted administrator's right password all get the same answer, while anonymous guests still read.
#[test]
fn smb_credentials_only_for_granted_accounts_and_no_user_name_oracle() {
    let mut b = the_box();
    let _log = ConsoleOnFailure(b.machine.console_handle(), "smb side door");
    let admin = &b.admin.clone();
    created(
        admin,
        "/api/v1/users",
        json!({"name": "side-user", "password": "side password"}),
    );
    created(
        admin,
        "/api/v1/groups",
        json!({"name": "side-admins", "members": []}),
    );
    created(
        admin,
        "/api/v1/shares",
        json!({"name": "side", "access": {"users": {"side-user": "write"}, "groups": {"side-admins": "read"}}}),
    );
    let port = b.machine.host_port(445).unwrap();
    let granted = ("side-user", "side password");
    let owner = (ADMIN, ADMIN_PASSWORD);
    let no_logon = "NT_STATUS_LOGON_FAILURE";
    smb_works(port, "side", granted, "ls");
    smb_refused(port, "side", Some(owner), "ls", no_logon);
    smb_refused(port, "IPC$", Some(owner), "ls", no_logon);

    // Grants change, the credential follows.
    let members = |m: &[&str]| json!({ "members": m });
    let path = "/api/v1/groups/side-admins";
    expect(&send(admin, "PATCH", path, members(&[ADMIN])), 200);
    smb_works(port, "side", owner, "ls");
    expect(&send(admin, "PATCH", path, members(&[])), 200);
    smb_refused(port, "side", Some(owner), "ls", no_logon);

    // A guest share: no name tells a stranger more than another.
    expect(
        &send(
            admin,
            "PATCH",
            "/api/v1/shares/side",
            json!({"guest": true}),
        ),
        200,
    );
    // ksmbd.mountd reads its global settings only when it starts: restart it as a reboot would, so the
    // guest share's effect on them shows.
    let mark = b.machine.mark();
    b.machine
        .serial("ksmbd.control --shutdown", Duration::from_secs(30))
        .unwrap();
    b.machine
        .wait_console("started smb", mark, Duration::from_secs(60))
        .unwrap();
    let (ok, out) = smb_until(port, "side", None, "ls", |ok, _| ok);
    assert!(ok, "an anonymous guest reads the guest share: {out}");
    let answers: Vec<(&str, Option<String>, String)> = [
        (
            "a known name, wrong password",
            ("side-user", "wrong password"),
        ),
        ("an unknown name", ("no-such-user", "any password")),
        ("the ungranted administrator", owner),
    ]
    .into_iter()
    .map(|(who, user)| {
        let (ok, out) = smbclient(port, "side", Some(user), "ls");
        (who, smb_status(ok, &out), out)
    })
    .collect();
    for (who, status, out) in &answers {
        assert_eq!(
            status.as_deref(),
            Some(no_logon),
            "{who} should be answered like any other failed logon: {out}"
        );
    }
    smb_works(port, "side", granted, "ls");
}

/// Renders asked for concurrently (users enabled and disabled, group grants given and taken, from several
/// threads at once through the API) end with the newest settings in ksmbd's files, read on the box, and in
/// what smbclient can do; a user disabled last is never enabled again by an older render.
#[test]
fn smb_renders_asked_for_in_a_burst_end_with_the_newest_settings() {
    let mut b = the_box();
    let _log = ConsoleOnFailure(b.machine.console_handle(), "smb burst");
    let admin = b.admin.clone();
    const USERS: usize = 3;
    const ROUNDS: usize = 4;
    let name = |i: usize| format!("burst-{i}");
    let group = |i: usize| format!("burst-g{i}");
    let password = |i: usize| format!("burst password {i}");
    // Where each user ends: (enabled, member of its granted group). Each round flips both; the last round
    // lands on these, so every user passes through the other state on the way.
    let last = [(true, true), (false, true), (true, false)];
    let state = |i: usize, round: usize| {
        let flip = (ROUNDS - 1 - round) % 2 == 1;
        (last[i].0 != flip, last[i].1 != flip)
    };
    let mut access = json!({"groups": {}});
    for i in 0..USERS {
        created(
            &admin,
            "/api/v1/users",
            json!({"name": name(i), "password": password(i)}),
        );
        created(
            &admin,
            "/api/v1/groups",
            json!({"name": group(i), "members": []}),
        );
        access["groups"][group(i)] = json!("write");
    }
    created(
        &admin,
        "/api/v1/shares",
        json!({"name": "burst", "access": access}),
    );
    let mut mismatches = vec![];
    for round in 0..ROUNDS {
        let start = std::sync::Barrier::new(USERS);
        std::thread::scope(|s| {
            for i in 0..USERS {
                let (admin, start) = (admin.clone(), &start);
                let (enabled, member) = state(i, round);
                s.spawn(move || {
                    start.wait();
                    let user = format!("/api/v1/users/{}", name(i));
                    expect(
                        &send(&admin, "PATCH", &user, json!({ "enabled": enabled })),
                        200,
                    );
                    let members: Vec<String> = if member { vec![name(i)] } else { vec![] };
                    let path = format!("/api/v1/groups/{}", group(i));
                    expect(
                        &send(&admin, "PATCH", &path, json!({ "members": members })),
                        200,
                    );
                });
            }
        });
        // Every change was acknowledged, so ksmbd's files show them all now: no waiting.
        let expected: Vec<String> = (0..USERS)
            .filter(|i| state(*i, round) == (true, true))
            .map(name)
            .collect();
        let pwddb = b
            .machine
            .serial(
                "cut -d: -f1 /etc/ksmbd/ksmbdpwd.db | grep '^burst-' | sort",
                Duration::from_secs(30),
            )
            .unwrap();
        let in_pwddb: Vec<String> = pwddb.lines().map(|l| l.trim().to_string()).collect();
        let valid = b
            .machine
            .serial(
                "sed -n '/^\\[burst\\]/,/^\\[/p' /etc/ksmbd/ksmbd.conf | grep 'valid users'",
                Duration::from_secs(30),
            )
            .unwrap();
        let in_conf: Vec<String> = valid
            .split('=')
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .filter(|n| n.starts_with("burst-"))
            .map(str::to_string)
            .collect();
        if in_conf != expected {
            mismatches.push(format!(
                "round {round}: valid users {in_conf:?}, expected {expected:?}"
            ));
        }
        if in_pwddb != expected {
            mismatches.push(format!(
                "round {round}: credentials {in_pwddb:?}, expected {expected:?}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "ksmbd's files lag the acknowledged settings:\n{}",
        mismatches.join("\n")
    );
    // And the server does what the files say, at once.
    let port = b.machine.host_port(445).unwrap();
    for (i, (enabled, member)) in last.iter().enumerate() {
        let (ok, out) = smbclient(port, "burst", Some((&name(i), &password(i))), "ls");
        let status = smb_status(ok, &out);
        if *enabled && *member {
            assert_eq!(status, None, "{} should read the share: {out}", name(i));
        } else {
            assert_eq!(
                status.as_deref(),
                Some("NT_STATUS_LOGON_FAILURE"),
                "{} (enabled {enabled}, granted {member}) has no credential: {out}",
                name(i)
            );
        }
    }
}

/// Field report 5: one credential for the dashboard and SMB; a self-service change moves both at once.
#[test]
fn migrated_style_user_logs_in_everywhere() {
    let b = the_box();
    let _log = ConsoleOnFailure(
        b.machine.console_handle(),
        "migrated_style_user_logs_in_everywhere",
    );
    let admin = &b.admin.clone();
    expect(
        &send(
            admin,
            "POST",
            "/api/v1/users",
            json!({"name": "migrated", "password": "first password", "email": "m@example.org"}),
        ),
        201,
    );
    expect(
        &send(
            admin,
            "POST",
            "/api/v1/shares",
            json!({"name": "mine", "access": {"users": {"migrated": "write"}}}),
        ),
        201,
    );
    let port = b.machine.host_port(445).unwrap();
    let smb_ok = |password: &str| {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let (ok, out) = smbclient(port, "mine", Some(("migrated", password)), "ls");
            if ok || Instant::now() > until || out.contains("NT_STATUS_LOGON_FAILURE") {
                return ok;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    let user = b.machine.http().fresh();
    login_api(&user, "migrated", "first password");
    assert!(smb_ok("first password"), "the same password works for SMB");
    let me = expect(&user.get("/api/v1/me").unwrap(), 200);
    assert_eq!(me["email"], "m@example.org");
    assert_eq!(me["shares"]["mine"], "write");
    let r = send(
        &user,
        "PATCH",
        "/api/v1/me",
        json!({"password": "second password", "current_password": "first password"}),
    );
    expect(&r, 200);
    assert!(smb_ok("second password"), "the new password works for SMB");
    assert!(
        !smb_ok("first password"),
        "the old password no longer works for SMB"
    );
    let fresh = b.machine.http().fresh();
    let old = fresh
        .post_json(
            "/api/v1/session",
            &json!({"username": "migrated", "password": "first password"}),
            &[],
        )
        .unwrap();
    assert_eq!(
        old.status, 401,
        "the old password no longer works for the dashboard"
    );
    login_api(&fresh, "migrated", "second password");
}

/// Field report 1: renaming the box keeps every session and right.
#[test]
fn hostname_change_keeps_sessions() {
    let mut b = the_box();
    let _log = ConsoleOnFailure(b.machine.console_handle(), "hostname_change_keeps_sessions");
    let admin = &b.admin.clone();
    let r = expect(
        &send(
            admin,
            "PATCH",
            "/api/v1/system",
            json!({"hostname": "attic-nas"}),
        ),
        200,
    );
    assert_eq!(r["hostname"], "attic-nas");
    let out = b.machine.http().get("/api/v1/system").unwrap();
    assert_eq!(out.status, 401, "a client without a session still has none");
    // The same session keeps every right: add, edit and delete users and shares.
    expect(
        &send(
            admin,
            "POST",
            "/api/v1/users",
            json!({"name": "renamed-1", "password": "some password"}),
        ),
        201,
    );
    expect(
        &send(
            admin,
            "PATCH",
            "/api/v1/users/renamed-1",
            json!({"full_name": "After Rename"}),
        ),
        200,
    );
    expect(
        &send(
            admin,
            "POST",
            "/api/v1/shares",
            json!({"name": "after-rename"}),
        ),
        201,
    );
    expect(
        &send(admin, "DELETE", "/api/v1/shares/after-rename", json!({})),
        200,
    );
    expect(
        &send(admin, "DELETE", "/api/v1/users/renamed-1", json!({})),
        200,
    );
    // The new name is the box's own (Host checks follow it), the old one no longer is.
    let by_name = b
        .machine
        .http()
        .with_host("attic-nas.local")
        .get("/api/v1/health")
        .unwrap();
    assert_eq!(by_name.status, 200);
    let hostname = b
        .machine
        .serial("hostname", Duration::from_secs(20))
        .unwrap();
    assert_eq!(hostname.trim(), "attic-nas");
    expect(
        &send(
            admin,
            "PATCH",
            "/api/v1/system",
            json!({"hostname": "cairn"}),
        ),
        200,
    );
}

/// Field report 5: every field of an account, the administrator's e-mail included, on one record.
#[test]
fn admin_email_editable_in_one_place() {
    let b = the_box();
    let _log = ConsoleOnFailure(
        b.machine.console_handle(),
        "admin_email_editable_in_one_place",
    );
    let admin = &b.admin.clone();
    let r = expect(
        &send(
            admin,
            "PATCH",
            &format!("/api/v1/users/{ADMIN}"),
            json!({"email": "owner@new.example", "full_name": "Box Owner"}),
        ),
        200,
    );
    assert_eq!(r["email"], "owner@new.example");
    let me = expect(&admin.get("/api/v1/me").unwrap(), 200);
    assert_eq!(
        (me["email"].as_str(), me["full_name"].as_str()),
        (Some("owner@new.example"), Some("Box Owner"))
    );
    let page = admin.get(&format!("/users/{ADMIN}")).unwrap();
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("owner@new.example") && page.text().contains("name=\"email\""),
        "the user page edits the e-mail"
    );
}

/// Every error carries a stable code, a message and a hint, through the API and on the pages.
#[test]
fn errors_have_codes_and_hints() {
    let b = the_box();
    let _log = ConsoleOnFailure(b.machine.console_handle(), "errors_have_codes_and_hints");
    let admin = &b.admin.clone();
    let cases = [
        (
            send(
                admin,
                "POST",
                "/api/v1/users",
                json!({"name": "Bad Name", "password": "long enough"}),
            ),
            400,
            "name.invalid",
        ),
        (
            send(
                admin,
                "POST",
                "/api/v1/users",
                json!({"name": "shorty", "password": "short"}),
            ),
            400,
            "user.password_too_short",
        ),
        (
            send(
                admin,
                "DELETE",
                &format!("/api/v1/users/{ADMIN}"),
                json!({}),
            ),
            422,
            "user.last_admin",
        ),
        (
            send(
                admin,
                "POST",
                "/api/v1/shares",
                json!({"name": "escape", "path": "../../etc"}),
            ),
            400,
            "share.path_invalid",
        ),
        (
            send(admin, "GET", "/api/v1/users/nobody-here", json!({})),
            404,
            "user.not_found",
        ),
        (
            admin.post_json("/api/v1/users", &json!({}), &[]).unwrap(),
            403,
            "session.csrf_missing",
        ),
    ];
    for (r, status, code) in cases {
        let body = expect(&r, status);
        assert_eq!(body["error"]["code"], code);
        assert!(
            body["error"]["message"].as_str().unwrap().len() > 10
                && body["error"]["hint"].as_str().unwrap().len() > 10,
            "{body}"
        );
    }
    let page = admin
        .post_form(
            "/users",
            &[
                ("csrf_token", &b.admin_csrf),
                ("name", "Bad Name"),
                ("password", "long enough"),
            ],
        )
        .unwrap();
    assert_eq!(page.status, 400);
    assert!(
        page.text().contains("name.invalid") && page.text().contains("lowercase letter first"),
        "pages show message, hint and code: {}",
        page.text()
    );
}

/// Field report 2: with no route beyond the LAN, every local operation answers promptly.
#[test]
fn local_admin_works_without_internet() {
    let mut b = the_box();
    let _log = ConsoleOnFailure(
        b.machine.console_handle(),
        "local_admin_works_without_internet",
    );
    let admin = &b.admin.clone();
    let timed = |what: &str, f: &dyn Fn() -> cairn_qemu::HttpResponse, status: u16| {
        let started = Instant::now();
        let r = f();
        assert_eq!(r.status, status, "{what}: {}", r.text());
        // Password hashing under TCG takes ~3 s; a network timeout would take far longer.
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{what} took {:?}",
            started.elapsed()
        );
    };
    timed(
        "add user",
        &|| {
            send(
                admin,
                "POST",
                "/api/v1/users",
                json!({"name": "offline", "password": "offline password"}),
            )
        },
        201,
    );
    timed(
        "edit user",
        &|| {
            send(
                admin,
                "PATCH",
                "/api/v1/users/offline",
                json!({"email": "o@example.org"}),
            )
        },
        200,
    );
    timed(
        "add group",
        &|| {
            send(
                admin,
                "POST",
                "/api/v1/groups",
                json!({"name": "offline-group", "members": ["offline"]}),
            )
        },
        201,
    );
    timed(
        "add share",
        &|| {
            send(
                admin,
                "POST",
                "/api/v1/shares",
                json!({"name": "offline-share", "access": {"groups": {"offline-group": "read"}}}),
            )
        },
        201,
    );
    timed(
        "delete share",
        &|| send(admin, "DELETE", "/api/v1/shares/offline-share", json!({})),
        200,
    );
    timed(
        "delete group",
        &|| send(admin, "DELETE", "/api/v1/groups/offline-group", json!({})),
        200,
    );
    timed(
        "delete user",
        &|| send(admin, "DELETE", "/api/v1/users/offline", json!({})),
        200,
    );
    // A listener on the host that the same probe reaches from a box in the user network (see
    // applied_network_change_rolls_back_by_itself_and_a_power_cut_restores_the_confirmed_settings).
    let host = HostListener::start();
    let out = host.probe_from(&mut b.machine);
    assert!(
        !out.contains(&host.token) && out.contains(" nc=1") && host.connections() == 0,
        "the box must really have no route out in this scenario: {out}"
    );
}

/// Field report 1: DHCP to a static address (the same one), confirmed; then the same session adds, edits
/// and deletes users and shares.
#[test]
fn static_ip_change_keeps_admin_working() {
    let mut b = the_box();
    let _log = ConsoleOnFailure(
        b.machine.console_handle(),
        "static_ip_change_keeps_admin_working",
    );
    let admin = b.admin.clone();
    // QEMU's user network: the box has 10.0.2.15/24 by DHCP, the router is 10.0.2.2, DNS 10.0.2.3.
    let r = expect(
        &send(
            &admin,
            "PUT",
            "/api/v1/network",
            json!({"mode": "static", "address": "10.0.2.15", "prefix": 24, "gateway": "10.0.2.2", "dns": ["10.0.2.3"]}),
        ),
        200,
    );
    let confirm_by = r["confirm_by"].as_u64().unwrap();
    assert!(confirm_by > 0);
    let pending = expect(&admin.get("/api/v1/network").unwrap(), 200);
    assert_eq!(pending["pending"]["mode"], "static");
    expect(
        &send(&admin, "POST", "/api/v1/network/confirm", json!({})),
        200,
    );
    let now = expect(&admin.get("/api/v1/network").unwrap(), 200);
    assert_eq!(now["mode"], "static");
    assert!(now.get("pending").is_none());
    let addr = b
        .machine
        .serial(
            "ip -4 addr show dev eth0 | grep -o 'inet [0-9./]*'",
            Duration::from_secs(20),
        )
        .unwrap();
    assert_eq!(addr.trim(), "inet 10.0.2.15/24");
    expect(
        &send(
            &admin,
            "POST",
            "/api/v1/users",
            json!({"name": "after-static", "password": "some password"}),
        ),
        201,
    );
    expect(
        &send(
            &admin,
            "PATCH",
            "/api/v1/users/after-static",
            json!({"email": "s@example.org"}),
        ),
        200,
    );
    expect(
        &send(
            &admin,
            "POST",
            "/api/v1/shares",
            json!({"name": "static-share", "access": {"users": {"after-static": "read"}}}),
        ),
        201,
    );
    expect(
        &send(&admin, "DELETE", "/api/v1/shares/static-share", json!({})),
        200,
    );
    expect(
        &send(&admin, "DELETE", "/api/v1/users/after-static", json!({})),
        200,
    );
    let r = send(&admin, "POST", "/api/v1/network/confirm", json!({}));
    assert_eq!(
        expect(&r, 409)["error"]["code"],
        "network.nothing_to_confirm"
    );
    let bad = send(
        &admin,
        "PUT",
        "/api/v1/network",
        json!({"mode": "static", "address": "10.0.2.15", "prefix": 24, "gateway": "192.168.9.1"}),
    );
    assert_eq!(expect(&bad, 400)["error"]["code"], "network.invalid");
    // Back to DHCP for the other scenarios.
    expect(
        &send(&admin, "PUT", "/api/v1/network", json!({"mode": "dhcp"})),
        200,
    );
    expect(
        &send(&admin, "POST", "/api/v1/network/confirm", json!({})),
        200,
    );
}

/// Disks are listed by bay with their serials; the boot medium is marked and never free.
#[test]
fn disks_are_listed_and_the_boot_medium_is_never_free() {
    let b = the_box();
    let _log = ConsoleOnFailure(b.machine.console_handle(), "disks");
    let disks = expect(&b.admin.get("/api/v1/disks").unwrap(), 200);
    let disks = disks.as_array().unwrap();
    let boot: Vec<_> = disks.iter().filter(|d| d["role"] == "boot").collect();
    assert_eq!(boot.len(), 1, "{disks:?}");
    // With data disks on PCIe the boot medium is probed last and is not vda: found by its device path.
    assert!(boot[0]["device"].as_str().unwrap().starts_with("vd"));
    let free: Vec<_> = disks.iter().filter(|d| d["role"] == "free").collect();
    assert_eq!(free.len(), 2, "{disks:?}");
    assert_eq!(free[0]["serial"], "CAIRN-BAY1");
    assert_eq!(free[1]["id"], "CAIRN-BAY2");
    assert_eq!(free[0]["size_bytes"], 256u64 * 1024 * 1024);
    // The RAID tools the storage manager will drive are in the image and run (libraries included).
    let mut b = b;
    let v = b
        .machine
        .serial(
            "/sbin/mdadm --version 2>&1; modprobe raid1 && grep -c raid1 /proc/mdstat",
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(
        v.contains("mdadm - v4") && v.trim_end().ends_with('1'),
        "{v}"
    );
}

/// A TCP listener on this machine's loopback for one test: in QEMU's user network the box reaches it as
/// 10.0.2.2. Answers each connection with a token the box prints, counts connections, and stops when
/// dropped (or after ten minutes at most).
struct HostListener {
    port: u16,
    token: String,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl HostListener {
    fn start() -> HostListener {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let token = format!("cairn-host-{}-{port}", std::process::id());
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (answer, count, stopped) = (token.clone(), accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(600);
            while !stopped.load(Ordering::SeqCst) && Instant::now() < until {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                        let _ = conn.read(&mut [0u8; 1024]);
                        let _ = write!(
                            conn,
                            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{answer}",
                            answer.len()
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        HostListener {
            port,
            token,
            accepted,
            stop,
        }
    }

    /// Asks the box to fetch from the listener; returns what it printed. (busybox's nc: its wget crashes in
    /// this static build before it connects, which once made an unreachable address look unreachable.)
    fn probe_from(&self, m: &mut Machine) -> String {
        m.serial(
            &format!(
                "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 10.0.2.2 {} 2>&1; echo \" nc=$?\"",
                self.port
            ),
            Duration::from_secs(30),
        )
        .unwrap()
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for HostListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The IPv4 addresses on the box's LAN interface, then the box's clock (seconds since the epoch) read just
/// after them, from the serial console (which works whatever the network does).
fn lan_addresses(m: &mut Machine) -> (Vec<String>, u64) {
    let out = m
        .serial(
            "ip -4 -o addr show dev eth0 | grep -o 'inet [0-9./]*'; date +%s",
            Duration::from_secs(20),
        )
        .unwrap();
    let mut addresses: Vec<String> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("inet "))
        .map(str::to_string)
        .collect();
    addresses.sort();
    let now = out
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no clock in {out:?}"));
    (addresses, now)
}

/// The network settings as the daemon reports them on the console (`cairn ctl --json network`), or None
/// while the daemon does not answer.
fn console_network(m: &mut Machine) -> Option<Value> {
    let out = m
        .serial("cairn ctl --json network 2>&1", Duration::from_secs(30))
        .unwrap();
    let (start, end) = (out.find('{')?, out.rfind('}')?);
    serde_json::from_str(&out[start..=end]).ok()
}

/// Polls the console until the daemon answers; returns its network settings.
fn wait_console_network(m: &mut Machine) -> Value {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(v) = console_network(m) {
            return v;
        }
        assert!(
            Instant::now() < until,
            "the daemon never answered on the console"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Kills only the daemon (init restarts it) and waits until it serves again.
fn restart_daemon(m: &mut Machine) {
    let mark = m.mark();
    m.serial(
        "for p in $(pidof cairn); do [ $p != 1 ] && kill $p; done; true",
        Duration::from_secs(10),
    )
    .unwrap();
    m.wait_console("started daemon", mark, Duration::from_secs(60))
        .unwrap();
}

/// Sends a network change that may take the box off the address the forwarded port reaches: the answer
/// may never come, so the request is bounded and its outcome read on the console instead.
fn put_network_off_address(admin: &cairn_qemu::HttpClient, settings: Value) {
    let token = csrf(admin);
    let r = admin.clone().with_timeout(Duration::from_secs(10)).request(
        "PUT",
        "/api/v1/network",
        &[
            ("content-type", "application/json"),
            ("x-csrf-token", &token),
        ],
        serde_json::to_vec(&settings).unwrap(),
    );
    if let Ok(r) = r {
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

const USER_LAN: &str = "10.0.2.15/24";
const TRIAL_ADDRESS: &str = "10.0.2.16";

fn boot_user_network(board: &str, disk: &BootDisk) -> Machine {
    let started = Instant::now();
    let mut m = Machine::boot(board, disk, &BootOptions::default()).unwrap();
    if let Err(e) = m.wait_healthy(started, Duration::from_secs(180)) {
        panic!("{e}\n{}", m.console_log());
    }
    m
}

/// Field reports 1 and 2 on a box in QEMU's user network (DHCP gives it 10.0.2.15, the host is 10.0.2.2):
/// it reaches a listener on the host; a change to another address is applied (the forwarded port loses the
/// box) and, unconfirmed, rolled back by the box itself when the window ends, even across a daemon restart,
/// after which the same session works again; a trial survives a daemon restart and can be confirmed; and a
/// power cut during a trial brings back the confirmed settings with nothing pending.
#[test]
fn applied_network_change_rolls_back_by_itself_and_a_power_cut_restores_the_confirmed_settings() {
    let board = "qemu-aarch64-virt";
    let (manifest, dir) = Manifest::load(board).unwrap_or_else(|e| panic!("{e}"));
    let disk = BootDisk::flash(&manifest, &dir).unwrap();
    let mut m = boot_user_network(board, &disk);
    let admin = m.http();
    setup_through_form(&admin);

    // With a route out, the box reaches a listener on the host (the offline box must not: see
    // local_admin_works_without_internet).
    let host = HostListener::start();
    let out = host.probe_from(&mut m);
    assert!(
        out.contains(&host.token) && out.contains(" nc=0") && host.connections() > 0,
        "the box should reach the host in the user network: {out}"
    );
    drop(host);

    // A change to another address, not confirmed.
    assert_eq!(lan_addresses(&mut m).0, [USER_LAN], "DHCP's address first");
    put_network_off_address(
        &admin,
        json!({"mode": "static", "address": TRIAL_ADDRESS, "prefix": 24, "gateway": "10.0.2.2"}),
    );
    let trial = wait_console_network(&mut m);
    assert_eq!(trial["mode"], "dhcp", "{trial}");
    assert_eq!(trial["pending"]["address"], TRIAL_ADDRESS, "{trial}");
    let confirm_by = trial["confirm_by"].as_u64().expect("confirm_by");
    let (addresses, now) = lan_addresses(&mut m);
    assert_eq!(
        addresses,
        [format!("{TRIAL_ADDRESS}/24")],
        "the change is applied"
    );
    assert!(now < confirm_by, "{now} {confirm_by}");
    let quick = admin.clone().with_timeout(Duration::from_secs(3));
    assert!(
        quick.get("/api/v1/health").map(|r| r.status).ok() != Some(200),
        "the forwarded port reaches 10.0.2.15 only: the box must have left it"
    );
    // Only the daemon restarts: the trial goes on with the time it had left.
    restart_daemon(&mut m);
    let resumed = wait_console_network(&mut m);
    assert_eq!(resumed["pending"]["address"], TRIAL_ADDRESS, "{resumed}");
    assert_eq!(resumed["confirm_by"], confirm_by, "{resumed}");
    // Unconfirmed, the box goes back on DHCP's address by itself, at the end of the window and not before.
    loop {
        let (addresses, now) = lan_addresses(&mut m);
        if addresses == [format!("{TRIAL_ADDRESS}/24")] {
            // A few seconds of slack, less than the trial had run before the restart: a restarted daemon
            // that started a new window instead of keeping the time left fails here.
            assert!(
                now <= confirm_by + 6,
                "still on the trial address at {now}, the window ended at {confirm_by}"
            );
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        assert!(
            now + 1 >= confirm_by,
            "rolled back at {now}, before the window ended at {confirm_by}: {addresses:?}"
        );
        if addresses == [USER_LAN] {
            break;
        }
        assert!(
            now <= confirm_by + 30,
            "not back on {USER_LAN} alone at {now}: {addresses:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    m.wait_healthy(Instant::now(), Duration::from_secs(30))
        .unwrap();
    let back = expect(&admin.get("/api/v1/network").unwrap(), 200);
    assert_eq!(back["mode"], "dhcp", "the same session works again: {back}");
    assert!(back.get("pending").is_none(), "{back}");

    // A trial that keeps the forwarded address survives a daemon restart and is confirmed by the same session.
    // Its DNS server is one DHCP never gives, so the settings can be told from a lease.
    let confirmed = json!({"mode": "static", "address": "10.0.2.15", "prefix": 24, "gateway": "10.0.2.2", "dns": ["10.0.2.9"]});
    expect(
        &send(&admin, "PUT", "/api/v1/network", confirmed.clone()),
        200,
    );
    restart_daemon(&mut m);
    m.wait_healthy(Instant::now(), Duration::from_secs(60))
        .unwrap();
    let pending = expect(&admin.get("/api/v1/network").unwrap(), 200);
    assert_eq!(pending["pending"]["dns"][0], "10.0.2.9", "{pending}");
    expect(
        &send(&admin, "POST", "/api/v1/network/confirm", json!({})),
        200,
    );

    // Another address on trial, then the power is cut: the next boot drops the trial.
    put_network_off_address(
        &admin,
        json!({"mode": "static", "address": TRIAL_ADDRESS, "prefix": 24, "gateway": "10.0.2.2"}),
    );
    let trial = wait_console_network(&mut m);
    assert_eq!(trial["pending"]["address"], TRIAL_ADDRESS, "{trial}");
    assert_eq!(lan_addresses(&mut m).0, [format!("{TRIAL_ADDRESS}/24")]);
    drop(m); // QEMU killed: no shutdown, no unmount.
    let mut m = Machine::boot(board, &disk, &BootOptions::default()).unwrap();
    m.wait_console("started console", 0, Duration::from_secs(120))
        .unwrap();
    let after = wait_console_network(&mut m);
    assert!(after.get("pending").is_none(), "{after}");
    assert_eq!(
        (&after["mode"], &after["address"], &after["dns"][0]),
        (&json!("static"), &json!("10.0.2.15"), &json!("10.0.2.9")),
        "{after}"
    );
    let until = Instant::now() + Duration::from_secs(30);
    let resolv = loop {
        let resolv = m
            .serial("cat /run/resolv.conf", Duration::from_secs(20))
            .unwrap();
        if resolv.contains("10.0.2.9") || Instant::now() > until {
            break resolv;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        resolv.trim(),
        "nameserver 10.0.2.9",
        "the confirmed static settings are applied at boot"
    );
    assert_eq!(lan_addresses(&mut m).0, [USER_LAN]);
    m.wait_healthy(Instant::now(), Duration::from_secs(60))
        .unwrap();
    let admin = m.http();
    login_api(&admin, ADMIN, ADMIN_PASSWORD);
    let now = expect(&admin.get("/api/v1/network").unwrap(), 200);
    assert!(now.get("pending").is_none(), "{now}");
    assert_eq!(now["address"], "10.0.2.15", "{now}");
}
