use super::*;
use cairn_accounts::{nt_hash_hex, Access, Credential, PasswordHash, Role};
use std::time::Duration;

fn user(name: &str, uid: u32) -> User {
    User {
        name: name.into(),
        full_name: String::new(),
        email: String::new(),
        role: Role::User,
        enabled: true,
        credential: Credential {
            password: PasswordHash::dummy(1),
            nt_hash_hex: nt_hash_hex("password"),
            changed_s: None,
        },
        uid,
        created_s: 0,
    }
}

fn layout() -> Layout {
    Layout {
        config_dir: "/run/ksmbd".into(),
        etc_dir: "/run/cairn".into(),
        system_volume: "/config/shares".into(),
        volumes: [("media".to_string(), "/data/media".into())].into(),
        base_passwd: "/x".into(),
        base_group: "/y".into(),
    }
}

fn share(name: &str, users: &[(&str, Level)], groups: &[(&str, Level)], guest: bool) -> Share {
    let mut access = Access::default();
    for (u, l) in users {
        access.users.insert(u.to_string(), *l);
    }
    for (g, l) in groups {
        access.groups.insert(g.to_string(), *l);
    }
    Share {
        name: name.into(),
        description: "Anything; even [this]".into(),
        volume: "system".into(),
        path: format!("{name}/files"),
        guest,
        access,
    }
}

#[test]
fn pwddb_carries_the_base64_nt_hash_of_enabled_granted_users() {
    let mut off = user("bob", 10002);
    off.enabled = false;
    let r = render(
        &[user("alice", 10001), off],
        &[],
        &[share(
            "docs",
            &[("alice", Level::Read), ("bob", Level::Write)],
            &[],
            false,
        )],
        &layout(),
        "cairn",
        "root:x:0:0::/root:/bin/sh",
        "root:x:0:",
    )
    .unwrap();
    // NT hash of "password" 8846f7eaee8fb117ad06bdd830b7586c, base64.
    assert_eq!(r.pwddb, "alice:iEb36u6PsRetBr3YMLdYbA==\n");
    assert!(r.passwd.contains("alice:x:10001:10001:"));
    assert!(r.passwd.starts_with("root:x:0:0:"));
}

#[test]
fn access_levels_become_valid_users_and_write_list() {
    let groups = vec![Group {
        name: "family".into(),
        members: vec!["carol".into()],
        gid: 10010,
    }];
    let s = share(
        "photos",
        &[("alice", Level::Write), ("bob", Level::Read)],
        &[("family", Level::Write)],
        false,
    );
    let r = render(
        &[
            user("alice", 1),
            user("bob", 2),
            user("carol", 3),
            user("dave", 4),
        ],
        &groups,
        &[s],
        &layout(),
        "cairn",
        "",
        "",
    )
    .unwrap();
    let section = r.conf.split("[photos]").nth(1).unwrap();
    assert!(
        section.contains("\tpath = /config/shares/photos/files\n"),
        "{section}"
    );
    assert!(
        section.contains("\tvalid users = bob alice carol\n"),
        "{section}"
    );
    assert!(
        section.contains("\twrite list = alice carol\n"),
        "{section}"
    );
    assert!(section.contains("\tread only = yes\n\tguest ok = no\n"));
    assert!(!section.contains("dave"));
    assert!(
        !r.conf.contains("Anything"),
        "descriptions never reach the server's file"
    );
}

#[test]
fn a_share_nobody_may_use_is_closed_not_open() {
    let r = render(
        &[user("alice", 1)],
        &[],
        &[share("empty", &[], &[], false)],
        &layout(),
        "cairn",
        "",
        "",
    )
    .unwrap();
    assert!(r.conf.contains("\tvalid users = -nobody-\n"), "{}", r.conf);
    assert!(r.conf.contains("map to guest = never"));
}

#[test]
fn guests_only_when_a_share_allows_them() {
    let r = render(
        &[],
        &[],
        &[share("public", &[], &[], true)],
        &layout(),
        "cairn",
        "",
        "",
    )
    .unwrap();
    assert!(r.conf.contains("\tguest ok = yes\n"));
    assert!(
        r.conf.contains("\tmap to guest = never\n"),
        "unknown names are refused like wrong passwords, even with a guest share: {}",
        r.conf
    );
    assert!(!r.conf.contains("bad user"));
    let without_guests = render(&[], &[], &[], &layout(), "cairn", "", "").unwrap();
    let global = |conf: &str| conf.split("\n[").next().unwrap().to_string();
    assert_eq!(
        global(&r.conf),
        global(&without_guests.conf),
        "ksmbd reads [global] only at start: it must not depend on the shares"
    );
}

/// The names that have an SMB credential.
fn credentials(r: &Rendered) -> Vec<&str> {
    r.pwddb
        .lines()
        .map(|l| l.split(':').next().unwrap())
        .collect()
}

#[test]
fn only_accounts_a_share_lets_in_get_an_smb_credential() {
    let mut admin = user("owner", 1000);
    admin.role = cairn_accounts::Role::Admin;
    let mut paused = user("paused", 1005);
    paused.enabled = false;
    let groups = vec![
        Group {
            name: "family".into(),
            members: vec!["kid".into(), "paused".into()],
            gid: 2000,
        },
        Group {
            name: "unused".into(),
            members: vec!["lurker".into()],
            gid: 2001,
        },
    ];
    let users = [
        admin,
        user("reader", 1001),
        user("kid", 1002),
        user("lurker", 1003),
        user("nobody-granted", 1004),
        paused,
    ];
    let shares = [
        share("docs", &[("reader", Level::Read)], &[], false),
        share("photos", &[], &[("family", Level::Write)], false),
        share("public", &[], &[], true),
    ];
    let r = render(&users, &groups, &shares, &layout(), "cairn", "", "").unwrap();
    assert_eq!(
        credentials(&r),
        ["reader", "kid"],
        "a direct grant and a group grant give a credential; the administrator, a member of an \
         ungranted group, an ungranted user and a disabled member get none: {}",
        r.pwddb
    );
    assert!(
        r.passwd.contains("owner:x:1000:"),
        "files still map every account"
    );

    // Grants change, credentials follow: the administrator granted read gets one, the group losing its
    // grant takes the kid's away.
    let shares = [
        share(
            "docs",
            &[("reader", Level::Read), ("owner", Level::Read)],
            &[],
            false,
        ),
        share("photos", &[], &[], false),
    ];
    let r = render(&users, &groups, &shares, &layout(), "cairn", "", "").unwrap();
    assert_eq!(credentials(&r), ["owner", "reader"], "{}", r.pwddb);
}

#[test]
fn a_grant_on_a_share_whose_volume_is_missing_gives_no_credential() {
    let mut gone = share("old", &[("ann", Level::Write)], &[], false);
    gone.volume = "gone".into();
    let r = render(
        &[user("ann", 1001)],
        &[],
        &[gone],
        &layout(),
        "cairn",
        "",
        "",
    )
    .unwrap();
    assert_eq!(
        r.pwddb, "",
        "ann can reach no share, so SMB does not know her"
    );
}

#[test]
fn a_request_during_a_render_waits_for_the_next_one() {
    let mut q = Coalescer::default();
    assert_eq!(q.start(), None, "nothing asked, nothing to do");
    let first = q.request();
    let upto = q.start().expect("a render is due");
    assert!(!q.served(first));
    let during = q.request();
    assert_eq!(q.start(), None, "one renderer at a time");
    q.finish(upto);
    assert!(q.served(first));
    assert!(
        !q.served(during),
        "the render that finished read the settings before this request"
    );
    let next = q
        .start()
        .expect("the request made meanwhile gets its own render");
    q.finish(next);
    assert!(q.served(during));
    assert_eq!(q.start(), None);
}

#[test]
fn many_requests_during_a_render_fold_into_one_that_serves_the_newest() {
    let mut q = Coalescer::default();
    q.request();
    let running = q.start().unwrap();
    let tickets: Vec<Ticket> = (0..100).map(|_| q.request()).collect();
    q.finish(running);
    let next = q.start().unwrap();
    assert_eq!(
        next,
        *tickets.last().unwrap(),
        "one render serves all hundred"
    );
    q.finish(next);
    assert!(tickets.iter().all(|t| q.served(*t)));
    assert_eq!(q.start(), None, "and no more renders follow");
}

#[test]
fn concurrent_changes_are_rendered_in_order_and_the_newest_settings_win() {
    use std::sync::{Arc, Mutex};
    // `settings` stands for the accounts store, `files` for what the renders wrote, in order.
    let settings = Arc::new(Mutex::new(0u64));
    let files: Arc<Mutex<Vec<u64>>> = Arc::default();
    let queue = RenderQueue::new();
    {
        let (queue, settings, files) = (queue.clone(), settings.clone(), files.clone());
        std::thread::spawn(move || {
            queue.run(
                || {
                    let read = *settings.lock().unwrap();
                    std::thread::sleep(Duration::from_millis(2));
                    files.lock().unwrap().push(read);
                },
                Duration::from_secs(3600),
            )
        });
    }
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let (queue, settings, files) = (queue.clone(), settings.clone(), files.clone());
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let mine = {
                        let mut s = settings.lock().unwrap();
                        *s += 1;
                        *s
                    };
                    assert!(queue.request_and_wait(Duration::from_secs(30)));
                    let newest = *files.lock().unwrap().last().unwrap();
                    assert!(
                        newest >= mine,
                        "told done, yet the files show {newest} < {mine}"
                    );
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let files = files.lock().unwrap();
    assert_eq!(
        *files.last().unwrap(),
        200,
        "the last render wrote the newest settings"
    );
    assert!(
        files.windows(2).all(|w| w[0] <= w[1]),
        "never older settings after newer ones: {files:?}"
    );
    assert!(
        files.len() < 200,
        "200 requests made only {} renders",
        files.len()
    );
}

#[test]
fn unsafe_names_never_reach_the_files() {
    for bad in ["a]\n[global", "x;y", "a#b", "A", "a/b", ""] {
        let s = Share {
            name: bad.into(),
            ..share("ok", &[], &[], false)
        };
        assert!(
            render(&[], &[], &[s], &layout(), "cairn", "", "").is_err(),
            "{bad:?}"
        );
        assert!(
            render(&[user(bad, 1)], &[], &[], &layout(), "cairn", "", "").is_err(),
            "{bad:?}"
        );
    }
    let s = Share {
        path: "../../etc".into(),
        ..share("ok", &[], &[], false)
    };
    assert!(render(&[], &[], &[s], &layout(), "cairn", "", "").is_err());
}

#[test]
fn atomic_write_replaces_whole_files_and_reports_changes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ksmbd.conf");
    assert!(write_atomic(&p, "one\n", 0o644).unwrap());
    assert!(
        !write_atomic(&p, "one\n", 0o644).unwrap(),
        "unchanged content is not rewritten"
    );
    assert!(write_atomic(&p, "two\n", 0o644).unwrap());
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "two\n");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["ksmbd.conf"], "no temporary file stays behind");
}

#[test]
fn writers_racing_on_one_file_never_mix_their_contents() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ksmbdpwd.db");
    let contents: Vec<String> = (0..4).map(|i| format!("{i}\n").repeat(20_000)).collect();
    std::thread::scope(|s| {
        for c in &contents {
            let p = &p;
            s.spawn(move || {
                for _ in 0..20 {
                    write_atomic(p, c, 0o600).unwrap();
                }
            });
        }
    });
    let last = std::fs::read_to_string(&p).unwrap();
    assert!(
        contents.contains(&last),
        "the file is one writer's whole content"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn shares_on_data_volumes_use_the_volume_root_and_missing_volumes_are_left_out() {
    let users = vec![];
    let mut on_media = share("films", &[], &[], true);
    on_media.volume = "media".into();
    let mut on_gone = share("old", &[], &[], true);
    on_gone.volume = "gone".into();
    let r = render(&users, &[], &[on_media, on_gone], &layout(), "nas", "", "").unwrap();
    assert!(r.conf.contains("path = /data/media/films"), "{}", r.conf);
    assert!(!r.conf.contains("[old]"), "{}", r.conf);
}

#[test]
fn names_with_digits_underscores_and_dashes_are_served() {
    let s = share("team_docs-2", &[("ann_b-1", Level::Write)], &[], false);
    let r = render(
        &[user("ann_b-1", 1001)],
        &[],
        &[s],
        &layout(),
        "cairn",
        "",
        "",
    )
    .unwrap();
    assert!(r.conf.contains("[team_docs-2]"), "{}", r.conf);
    assert!(r.pwddb.contains("ann_b-1:"), "{}", r.pwddb);
}

#[test]
fn apply_writes_every_file_once_makes_share_folders_and_reports_changes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let layout = Layout {
        config_dir: root.join("ksmbd"),
        etc_dir: root.join("etc"),
        system_volume: root.join("shares"),
        volumes: [("media".to_string(), root.join("media"))].into(),
        base_passwd: root.join("x"),
        base_group: root.join("y"),
    };
    let on_system = share("docs", &[("ann", Level::Read)], &[], false);
    let mut on_gone = share("old", &[], &[], false);
    on_gone.volume = "gone".into();
    let shares = vec![on_system, on_gone];
    let users = vec![user("ann", 1001)];
    let rendered = render(&users, &[], &shares, &layout, "cairn", "", "").unwrap();
    assert!(
        apply(&rendered, &shares, &layout).unwrap(),
        "a first apply changes everything"
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        std::fs::read_to_string(root.join("etc/passwd")).unwrap(),
        rendered.passwd
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/group")).unwrap(),
        rendered.group
    );
    assert_eq!(
        std::fs::read_to_string(root.join("ksmbd/ksmbd.conf")).unwrap(),
        rendered.conf
    );
    assert_eq!(
        std::fs::read_to_string(root.join("ksmbd/ksmbdpwd.db")).unwrap(),
        rendered.pwddb
    );
    assert_eq!(
        mode(&root.join("ksmbd/ksmbdpwd.db")),
        0o600,
        "password hashes are root's only"
    );
    assert_eq!(mode(&root.join("ksmbd/ksmbd.conf")), 0o644);
    assert!(
        root.join("shares/docs/files").is_dir(),
        "the share's folder is made"
    );
    assert!(!root.join("gone").exists() && !root.join("shares/old").exists());
    assert!(
        !apply(&rendered, &shares, &layout).unwrap(),
        "nothing changed the second time"
    );
    // Each file on its own counts as a change.
    for file in [
        "etc/passwd",
        "etc/group",
        "ksmbd/ksmbdpwd.db",
        "ksmbd/ksmbd.conf",
    ] {
        std::fs::write(root.join(file), "stale\n").unwrap();
        assert!(
            apply(&rendered, &shares, &layout).unwrap(),
            "{file} rewritten"
        );
        assert!(!apply(&rendered, &shares, &layout).unwrap());
    }
}
