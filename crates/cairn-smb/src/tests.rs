use super::*;
use cairn_accounts::{nt_hash_hex, Access, PasswordHash, Role};

fn user(name: &str, uid: u32) -> User {
    User {
        name: name.into(),
        full_name: String::new(),
        email: String::new(),
        role: Role::User,
        enabled: true,
        password: PasswordHash::dummy(1),
        nt_hash_hex: nt_hash_hex("password"),
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
fn pwddb_carries_the_base64_nt_hash_of_enabled_users() {
    let mut off = user("bob", 10002);
    off.enabled = false;
    let r = render(
        &[user("alice", 10001), off],
        &[],
        &[],
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
    assert!(r.conf.contains("map to guest = bad user"));
    assert!(r.conf.contains("\tguest ok = yes\n"));
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
    assert!(!p.with_extension("cairn-new").exists());
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
