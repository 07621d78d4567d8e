use super::*;

fn accounts() -> (tempfile::TempDir, Accounts) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut accounts = Accounts::new(store).unwrap();
    // Keep unit tests fast; the production factor is checked separately below.
    accounts.password_policy.iterations = 1_000;
    (dir, accounts)
}

#[test]
fn production_policy_is_owasp_strength() {
    const { assert!(PasswordPolicy::OWASP_2023.iterations >= 600_000) };
}

#[test]
fn setup_creates_one_admin_and_then_refuses() {
    let (_d, a) = accounts();
    assert!(!a.setup_done());
    let admin = a
        .setup("owner", "correct horse", "owner@example.org")
        .unwrap();
    assert_eq!(admin.role, Role::Admin);
    assert!(a.setup_done());
    assert!(matches!(
        a.setup("intruder", "another one", ""),
        Err(AccountError::SetupDone)
    ));
    assert_eq!(a.users().unwrap().len(), 1);
}

#[test]
fn setup_validates_before_writing() {
    let (_d, a) = accounts();
    assert!(matches!(
        a.setup("Root", "correct horse", ""),
        Err(AccountError::Name(_))
    ));
    assert!(matches!(
        a.setup("root", "correct horse", ""),
        Err(AccountError::Name(NameError::Reserved(_)))
    ));
    assert!(matches!(
        a.setup("owner", "short", ""),
        Err(AccountError::PasswordTooShort { .. })
    ));
    assert!(matches!(
        a.setup("owner", "correct horse", "not-an-email"),
        Err(AccountError::InvalidEmail(_))
    ));
    assert!(matches!(
        a.setup("owner", "correct horse", "a@b.c\nBcc: x@y.z"),
        Err(AccountError::InvalidEmail(_))
    ));
    assert!(!a.setup_done(), "a refused setup must leave nothing behind");
}

#[test]
fn login_checks_password_and_session_round_trips() {
    let (_d, a) = accounts();
    a.setup("owner", "correct horse", "").unwrap();
    assert!(matches!(
        a.login("owner", "wrong horse", "test"),
        Err(AccountError::BadCredentials)
    ));
    assert!(matches!(
        a.login("nobody-here", "correct horse", "test"),
        Err(AccountError::BadCredentials)
    ));
    let (session, token, _) = a.login("owner", "correct horse", "test").unwrap();
    let (found, user) = a.session(&token).unwrap();
    assert_eq!(found.id, session.id);
    assert_eq!(user.name, "owner");
    a.logout(&token).unwrap();
    assert!(matches!(a.session(&token), Err(AccountError::NoSession)));
}

#[test]
fn forged_and_malformed_tokens_find_nothing() {
    let (_d, a) = accounts();
    a.setup("owner", "correct horse", "").unwrap();
    let (_, token, _) = a.login("owner", "correct horse", "test").unwrap();
    let mut forged = token.clone();
    forged.replace_range(0..1, if token.starts_with('a') { "b" } else { "a" });
    for bad in [
        forged.as_str(),
        "",
        "../../etc/passwd",
        &token[..10],
        &format!("{token}00"),
    ] {
        assert!(
            matches!(a.session(bad), Err(AccountError::NoSession)),
            "{bad:?}"
        );
    }
}

// Sessions and every other change surviving a restart: tests/durability.rs, across a killed process (a
// dropped store flushes, so reopening in the same process passes without any commit).

#[test]
fn expired_sessions_are_refused_and_removed() {
    let (_d, mut a) = accounts();
    a.setup("owner", "correct horse", "").unwrap();
    let (_, token, _) = a.login("owner", "correct horse", "test").unwrap();
    a.session_policy = SessionPolicy {
        idle_s: 0,
        absolute_s: 0,
        touch_every_s: 0,
    };
    assert!(matches!(a.session(&token), Err(AccountError::NoSession)));
    a.session_policy = SessionPolicy::DASHBOARD;
    assert!(
        matches!(a.session(&token), Err(AccountError::NoSession)),
        "an expired session must be gone for good"
    );
}

#[test]
fn names_follow_the_grammar() {
    for ok in ["alice", "a", "bob_2", "x-y", &"a".repeat(32)] {
        assert_eq!(validate_user_name(ok), Ok(()), "{ok}");
    }
    // Each refusal for its own reason: the API answers reserved names with another code than bad ones.
    for (bad, why) in [
        ("", NameError::Empty),
        ("Alice", NameError::BadStart),
        ("1abc", NameError::BadStart),
        ("-x", NameError::BadStart),
        ("a b", NameError::BadCharacter),
        ("a/b", NameError::BadCharacter),
        ("a\nb", NameError::BadCharacter),
        ("a[b]", NameError::BadCharacter),
        ("a;b", NameError::BadCharacter),
        ("ä", NameError::BadStart),
        ("aä", NameError::BadCharacter),
        (&"a".repeat(33), NameError::TooLong),
        ("root", NameError::Reserved("root".into())),
        ("nobody", NameError::Reserved("nobody".into())),
    ] {
        assert_eq!(validate_user_name(bad), Err(why), "{bad:?}");
    }
}

#[test]
fn password_hash_verifies_only_its_password() {
    let h = PasswordHash::new("hunter22", 1000).unwrap();
    assert!(h.verify("hunter22"));
    assert!(!h.verify("hunter23"));
    assert!(!PasswordHash::dummy(1000).verify(""));
    let mut tampered = h.clone();
    tampered.iterations = 999;
    assert!(!tampered.verify("hunter22"));
}

fn with_admin() -> (tempfile::TempDir, Accounts) {
    let (d, a) = accounts();
    a.setup("owner", "correct horse", "").unwrap();
    (d, a)
}

fn new_user(name: &str, role: Role) -> NewUser {
    NewUser {
        name: name.into(),
        full_name: String::new(),
        email: String::new(),
        role,
        enabled: true,
        password: "password one".into(),
    }
}

#[test]
fn nt_hash_matches_the_known_vector() {
    // The NT hash of "password" from the NTLM documentation.
    assert_eq!(nt_hash_hex("password"), "8846f7eaee8fb117ad06bdd830b7586c");
}

#[test]
fn one_record_carries_both_hashes_and_a_password_change_updates_both() {
    let (_d, a) = with_admin();
    let u = a.create_user(new_user("alice", Role::User)).unwrap();
    assert_eq!(u.nt_hash_hex, nt_hash_hex("password one"));
    assert!(u.uid >= FIRST_UID);
    let u = a
        .update_user(
            "alice",
            UserPatch {
                password: Some("password two".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(u.nt_hash_hex, nt_hash_hex("password two"));
    assert!(u.password.verify("password two") && !u.password.verify("password one"));
}

#[test]
fn the_last_enabled_admin_cannot_be_removed_disabled_or_demoted() {
    let (_d, a) = with_admin();
    assert!(matches!(
        a.delete_user("owner"),
        Err(AccountError::LastAdmin(_))
    ));
    assert!(matches!(
        a.update_user(
            "owner",
            UserPatch {
                enabled: Some(false),
                ..Default::default()
            }
        ),
        Err(AccountError::LastAdmin(_))
    ));
    assert!(matches!(
        a.update_user(
            "owner",
            UserPatch {
                role: Some(Role::User),
                ..Default::default()
            }
        ),
        Err(AccountError::LastAdmin(_))
    ));
    a.create_user(new_user("second", Role::Admin)).unwrap();
    a.update_user(
        "owner",
        UserPatch {
            role: Some(Role::User),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(
        a.delete_user("second"),
        Err(AccountError::LastAdmin(_))
    ));
    // A disabled administrator does not count.
    a.update_user(
        "owner",
        UserPatch {
            role: Some(Role::Admin),
            enabled: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(
        a.delete_user("second"),
        Err(AccountError::LastAdmin(_))
    ));
}

#[test]
fn deleting_a_user_drops_memberships_access_and_sessions_at_once() {
    let (_d, a) = with_admin();
    a.create_user(new_user("alice", Role::User)).unwrap();
    a.create_group("family", &["alice".into(), "owner".into()])
        .unwrap();
    let mut access = Access::default();
    access.users.insert("alice".into(), Level::Write);
    access.groups.insert("family".into(), Level::Read);
    a.create_share(NewShare {
        name: "photos".into(),
        description: String::new(),
        volume: None,
        path: None,
        guest: false,
        access,
    })
    .unwrap();
    let (_, token, _) = a.login("alice", "password one", "test").unwrap();
    a.delete_user("alice").unwrap();
    assert!(a.user("alice").unwrap().is_none());
    assert_eq!(
        a.group("family").unwrap().unwrap().members,
        vec!["owner".to_string()]
    );
    let share = a.share("photos").unwrap().unwrap();
    assert!(share.access.users.is_empty());
    assert_eq!(share.access.groups.len(), 1);
    assert!(matches!(a.session(&token), Err(AccountError::NoSession)));
}

#[test]
fn share_access_names_only_existing_users_and_groups() {
    let (_d, a) = with_admin();
    let mut access = Access::default();
    access.users.insert("ghost".into(), Level::Read);
    let r = a.create_share(NewShare {
        name: "docs".into(),
        description: String::new(),
        volume: None,
        path: None,
        guest: false,
        access,
    });
    assert!(matches!(r, Err(AccountError::NoSuchUser(_))));
    assert!(
        a.shares().unwrap().is_empty(),
        "a refused share leaves nothing behind"
    );
}

#[test]
fn hostile_share_fields_are_refused() {
    let (_d, a) = with_admin();
    let share = |name: &str, path: Option<&str>, description: &str| NewShare {
        name: name.into(),
        description: description.into(),
        volume: None,
        path: path.map(str::to_string),
        guest: false,
        access: Access::default(),
    };
    for bad in [
        "docs]\n[global",
        "a;b",
        "a#b",
        "a/b",
        "../x",
        "global",
        "homes",
        "-x",
        "",
        "Docs",
    ] {
        let r = a.create_share(share(bad, None, ""));
        assert!(
            matches!(r, Err(AccountError::Name(_))),
            "name {bad:?}: {r:?}"
        );
    }
    for bad in [
        "/etc",
        "../../etc",
        "a/../b",
        "-rf",
        ".ssh",
        "a\nb",
        "a//b",
        "x/./y",
        "a;b",
    ] {
        let r = a.create_share(share("docs", Some(bad), ""));
        assert!(
            matches!(r, Err(AccountError::InvalidSharePath(_))),
            "path {bad:?}: {r:?}"
        );
    }
    let r = a.create_share(share("docs", None, "line\n[global]"));
    assert!(
        matches!(r, Err(AccountError::InvalidDescription(_))),
        "{r:?}"
    );
    assert!(a.shares().unwrap().is_empty());
    a.create_share(share(
        "docs",
        Some("Family Photos/2024"),
        "Our photos; all of them",
    ))
    .unwrap();
}

#[test]
fn users_and_groups_share_one_namespace() {
    let (_d, a) = with_admin();
    a.create_group("family", &[]).unwrap();
    assert!(matches!(
        a.create_user(new_user("family", Role::User)),
        Err(AccountError::GroupExists(_))
    ));
    assert!(matches!(
        a.create_group("owner", &[]),
        Err(AccountError::UserExists(_))
    ));
    assert!(matches!(
        a.create_group("kids", &["nobody-here".into()]),
        Err(AccountError::NoSuchUser(_))
    ));
}

#[test]
fn access_through_groups_takes_the_stronger_level() {
    let (_d, a) = with_admin();
    a.create_user(new_user("alice", Role::User)).unwrap();
    a.create_group("family", &["alice".into()]).unwrap();
    let mut access = Access::default();
    access.users.insert("alice".into(), Level::Read);
    access.groups.insert("family".into(), Level::Write);
    a.create_share(NewShare {
        name: "photos".into(),
        description: String::new(),
        volume: None,
        path: None,
        guest: false,
        access,
    })
    .unwrap();
    assert_eq!(
        a.access_of("alice").unwrap().get("photos"),
        Some(&Level::Write)
    );
    assert_eq!(a.access_of("owner").unwrap().get("photos"), None);
}

#[test]
fn own_password_change_needs_the_current_one_and_ends_other_sessions() {
    let (_d, a) = with_admin();
    a.create_user(new_user("alice", Role::User)).unwrap();
    let (mine, my_token, _) = a.login("alice", "password one", "laptop").unwrap();
    let (_, other_token, _) = a.login("alice", "password one", "phone").unwrap();
    assert!(matches!(
        a.change_own_password("alice", "wrong", "password two", &mine.id),
        Err(AccountError::WrongCurrentPassword)
    ));
    a.change_own_password("alice", "password one", "password two", &mine.id)
        .unwrap();
    assert_eq!(a.session(&my_token).unwrap().0.id, mine.id);
    assert!(matches!(
        a.session(&other_token),
        Err(AccountError::NoSession)
    ));
    assert!(a.login("alice", "password two", "x").is_ok());
    assert!(matches!(
        a.login("alice", "password one", "x"),
        Err(AccountError::BadCredentials)
    ));
}

#[test]
fn sessions_are_listed_and_revoked_only_by_their_owner() {
    let (_d, a) = with_admin();
    a.create_user(new_user("alice", Role::User)).unwrap();
    let (s, token, _) = a.login("alice", "password one", "laptop").unwrap();
    assert_eq!(a.sessions_of("alice").unwrap().len(), 1);
    assert!(
        !a.revoke_session("owner", &s.id).unwrap(),
        "another user cannot revoke it"
    );
    assert_eq!(a.session(&token).unwrap().0.id, s.id);
    assert!(a.revoke_session("alice", &s.id).unwrap());
    assert!(matches!(a.session(&token), Err(AccountError::NoSession)));
}

#[test]
fn disabling_a_user_ends_their_sessions_and_logins() {
    let (_d, a) = with_admin();
    a.create_user(new_user("alice", Role::User)).unwrap();
    let (_, token, _) = a.login("alice", "password one", "x").unwrap();
    a.update_user(
        "alice",
        UserPatch {
            enabled: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(a.session(&token), Err(AccountError::NoSession)));
    assert!(matches!(
        a.login("alice", "password one", "x"),
        Err(AccountError::BadCredentials)
    ));
}
