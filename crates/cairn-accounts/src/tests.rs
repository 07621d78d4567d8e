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
        ..SessionPolicy::DASHBOARD
    };
    assert!(matches!(a.session(&token), Err(AccountError::NoSession)));
    a.session_policy = SessionPolicy::DASHBOARD;
    assert!(
        matches!(a.session(&token), Err(AccountError::NoSession)),
        "an expired session must be gone for good"
    );
}

/// Every stored session record, live or not (what the settings partition holds).
fn stored_sessions(a: &Accounts) -> Vec<Session> {
    a.records.list::<Session>(Kind::Session).unwrap()
}

#[test]
fn a_login_sweeps_every_expired_session_from_storage() {
    let (_d, mut a) = accounts();
    a.setup("owner", "correct horse", "").unwrap();
    a.create_user(new_user("alice", Role::User)).unwrap();
    for _ in 0..3 {
        a.login("owner", "correct horse", "old browser").unwrap();
    }
    assert_eq!(stored_sessions(&a).len(), 3);
    // Everything stored so far has expired by this policy (nobody touched it, so no lookup removed it).
    a.session_policy = SessionPolicy {
        idle_s: 0,
        absolute_s: 0,
        ..SessionPolicy::DASHBOARD
    };
    a.login("alice", "password one", "new browser").unwrap();
    let left = stored_sessions(&a);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].user, "alice", "only the new session is left");
}

#[test]
fn sessions_per_user_are_capped_and_the_oldest_goes_first() {
    let (_d, mut a) = accounts();
    a.setup("owner", "correct horse", "").unwrap();
    a.create_user(new_user("alice", Role::User)).unwrap();
    a.session_policy = SessionPolicy {
        max_per_user: 3,
        ..SessionPolicy::DASHBOARD
    };
    let (_, alices, _) = a.login("alice", "password one", "alice").unwrap();
    let mut tokens = vec![];
    for i in 0..5 {
        let (s, token, _) = a.login("owner", "correct horse", &format!("b{i}")).unwrap();
        tokens.push(token);
        // Sessions made in the same second are ordered by creation time, then id: make the order certain.
        let mut stored: Session = a.records.get(Kind::Session, &s.id).unwrap().unwrap();
        stored.created_s -= 10 - i;
        a.records
            .change(|tx| tx.put(Kind::Session, &stored.id, &stored))
            .unwrap();
    }
    let live: Vec<bool> = tokens.iter().map(|t| a.session(t).is_ok()).collect();
    assert_eq!(
        live,
        [false, false, true, true, true],
        "the two oldest ended"
    );
    assert_eq!(a.sessions_of("owner").unwrap().len(), 3);
    assert!(
        a.session(&alices).is_ok(),
        "another user's session is not theirs to end"
    );
    assert_eq!(stored_sessions(&a).len(), 4);
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
    assert_eq!(u.credential.nt_hash_hex, nt_hash_hex("password one"));
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
    assert_eq!(u.credential.nt_hash_hex, nt_hash_hex("password two"));
    assert!(
        u.credential.password.verify("password two")
            && !u.credential.password.verify("password one")
    );
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

fn share_named(name: &str) -> NewShare {
    NewShare {
        name: name.into(),
        description: String::new(),
        volume: None,
        path: None,
        guest: false,
        access: Access::default(),
    }
}

fn disable(a: &Accounts, name: &str) {
    a.update_user(
        name,
        UserPatch {
            enabled: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
}

#[test]
fn a_new_user_is_enabled_unless_the_request_says_otherwise() {
    let new: NewUser =
        serde_json::from_str(r#"{"name":"alice","password":"password one"}"#).unwrap();
    assert!(new.enabled);
    assert_eq!(new.role, Role::User);
}

#[test]
fn stored_times_are_seconds_since_the_epoch() {
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let now = now_s();
    assert!(now >= before && now <= before + 5, "{before} {now}");
    let (_d, a) = with_admin();
    let created = a.require_user("owner").unwrap().created_s;
    assert!(created >= before && created <= before + 5, "{created}");
}

#[test]
fn a_full_name_may_be_as_long_as_the_limit_in_characters_and_no_longer() {
    let (_d, a) = with_admin();
    let mut u = new_user("alice", Role::User);
    // Counted in characters, not bytes: 128 two-byte characters are fine.
    u.full_name = "é".repeat(FULL_NAME_MAX);
    assert_eq!(a.create_user(u).unwrap().full_name.chars().count(), 128);
    let too_long = UserPatch {
        full_name: Some("a".repeat(FULL_NAME_MAX + 1)),
        ..Default::default()
    };
    assert!(matches!(
        a.update_user("alice", too_long),
        Err(AccountError::InvalidFullName(_))
    ));
    assert_eq!(
        validate_text(&"a".repeat(FULL_NAME_MAX), FULL_NAME_MAX),
        Ok(())
    );
}

#[test]
fn the_seeding_work_factor_is_the_one_new_hashes_use() {
    let (_d, mut a) = with_admin();
    a.set_kdf_iterations_for_seeding(1_234);
    let u = a.create_user(new_user("alice", Role::User)).unwrap();
    assert_eq!(u.credential.password.iterations, 1_234);
    assert!(u.credential.password.verify("password one"));
}

#[test]
fn unix_ids_start_at_the_first_uid_and_are_distinct() {
    let (_d, a) = with_admin();
    let alice = a.create_user(new_user("alice", Role::User)).unwrap();
    let bob = a.create_user(new_user("bob", Role::User)).unwrap();
    let family = a.create_group("family", &[]).unwrap();
    let ids = [
        a.require_user("owner").unwrap().uid,
        alice.uid,
        bob.uid,
        family.gid,
    ];
    for id in ids {
        assert!((FIRST_UID..FIRST_UID + 1_000_000).contains(&id), "{ids:?}");
    }
    let mut unique = ids.to_vec();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
}

#[test]
fn setup_never_runs_again_once_its_lock_key_is_written_even_without_accounts() {
    let (_d, a) = with_admin();
    // Only a race (or a damaged store) gets past the first check; the key written with the first admin stops it.
    a.records
        .change(|tx| {
            tx.remove(Kind::User, "owner");
            Ok(())
        })
        .unwrap();
    assert!(!a.setup_done());
    assert!(matches!(
        a.setup("intruder", "correct horse", ""),
        Err(AccountError::SetupDone)
    ));
    assert!(a.users().unwrap().is_empty());
}

#[test]
fn a_disabled_then_reenabled_user_must_log_in_again() {
    let (_d, a) = with_admin();
    a.create_user(new_user("alice", Role::User)).unwrap();
    let (_, token, _) = a.login("alice", "password one", "x").unwrap();
    disable(&a, "alice");
    a.update_user(
        "alice",
        UserPatch {
            enabled: Some(true),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(a.session(&token), Err(AccountError::NoSession)));
    assert!(a.sessions_of("alice").unwrap().is_empty());
}

#[test]
fn an_admin_password_reset_ends_the_users_sessions_and_other_edits_keep_them() {
    let (_d, a) = with_admin();
    a.create_user(new_user("alice", Role::User)).unwrap();
    let (_, token, _) = a.login("alice", "password one", "x").unwrap();
    a.update_user(
        "alice",
        UserPatch {
            full_name: Some("Alice".into()),
            email: Some("alice@example.org".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(a.session(&token).unwrap().1.full_name, "Alice");
    a.update_user(
        "alice",
        UserPatch {
            password: Some("password two".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(a.session(&token), Err(AccountError::NoSession)));
}

#[test]
fn a_session_of_a_disabled_user_opens_nothing() {
    let (_d, a) = with_admin();
    a.create_user(new_user("alice", Role::User)).unwrap();
    disable(&a, "alice");
    // A session that exists anyway (opened in a race with the disabling) is refused while the account is off.
    let (_, token) = a.open_session("alice", "x").unwrap();
    assert!(matches!(a.session(&token), Err(AccountError::NoSession)));
}

#[test]
fn an_admin_may_be_deleted_while_another_enabled_admin_remains() {
    let (_d, a) = with_admin();
    a.create_user(new_user("second", Role::Admin)).unwrap();
    a.delete_user("second").unwrap();
    assert!(a.user("second").unwrap().is_none());
}

#[test]
fn a_disabled_admin_may_be_deleted() {
    let (_d, a) = with_admin();
    a.create_user(new_user("second", Role::Admin)).unwrap();
    disable(&a, "second");
    a.delete_user("second").unwrap();
    assert!(a.user("second").unwrap().is_none());
}

#[test]
fn deleting_a_groups_only_member_leaves_the_group_empty() {
    let (_d, a) = with_admin();
    a.create_user(new_user("alice", Role::User)).unwrap();
    a.create_group("kids", &["alice".into()]).unwrap();
    a.delete_user("alice").unwrap();
    assert!(a.require_group("kids").unwrap().members.is_empty());
}

#[test]
fn a_groups_members_can_be_replaced_by_existing_users_only() {
    let (_d, a) = with_admin();
    a.create_user(new_user("alice", Role::User)).unwrap();
    a.create_group("family", &[]).unwrap();
    let g = a
        .update_group("family", &["owner".into(), "alice".into(), "alice".into()])
        .unwrap();
    assert_eq!(g.members, vec!["alice".to_string(), "owner".to_string()]);
    assert!(matches!(
        a.update_group("family", &["ghost".into()]),
        Err(AccountError::NoSuchUser(_))
    ));
    assert_eq!(a.require_group("family").unwrap().members.len(), 2);
}

#[test]
fn deleting_a_group_removes_it_and_its_share_access() {
    let (_d, a) = with_admin();
    a.create_group("family", &[]).unwrap();
    let mut share = share_named("photos");
    share.access.groups.insert("family".into(), Level::Read);
    share.access.users.insert("owner".into(), Level::Write);
    a.create_share(share).unwrap();
    a.delete_group("family").unwrap();
    assert!(a.group("family").unwrap().is_none());
    let share = a.require_share("photos").unwrap();
    assert!(share.access.groups.is_empty());
    assert_eq!(share.access.users.len(), 1);
    assert!(matches!(
        a.delete_group("family"),
        Err(AccountError::NoSuchGroup(_))
    ));
}

#[test]
fn a_password_of_exactly_the_minimum_length_is_accepted_and_one_less_refused() {
    let (_d, a) = with_admin();
    let min = PasswordPolicy::OWASP_2023.min_chars;
    let max = PasswordPolicy::OWASP_2023.max_bytes;
    let with = |name: &str, password: String| NewUser {
        password,
        ..new_user(name, Role::User)
    };
    // Characters, not bytes, for the minimum.
    a.create_user(with("alice", "é".repeat(min))).unwrap();
    assert!(matches!(
        a.create_user(with("bob", "é".repeat(min - 1))),
        Err(AccountError::PasswordTooShort { min: 8 })
    ));
    // Bytes for the maximum.
    a.create_user(with("carol", "a".repeat(max))).unwrap();
    assert!(matches!(
        a.create_user(with("dave", "a".repeat(max + 1))),
        Err(AccountError::PasswordTooLong { max: 1024 })
    ));
    assert!(a.user("bob").unwrap().is_none() && a.user("dave").unwrap().is_none());
}

#[test]
fn a_change_lists_what_it_staged() {
    let (_d, a) = with_admin();
    a.create_group("family", &[]).unwrap();
    a.records
        .change(|tx| {
            let group = |name: &str| Group {
                name: name.into(),
                members: vec![],
                gid: 1,
            };
            tx.put(Kind::Group, "kids", &group("kids"))?;
            tx.remove(Kind::Group, "family");
            tx.put(Kind::Session, "zz", &"not a group")?;
            let names: Vec<String> = tx
                .list::<Group>(Kind::Group)?
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            assert_eq!(names, vec!["kids".to_string()]);
            Ok(())
        })
        .unwrap();
}

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

fn session_at(created_s: u64, last_used_s: u64) -> Session {
    Session {
        id: String::new(),
        user: "alice".into(),
        csrf_token: String::new(),
        created_s,
        last_used_s,
        client: String::new(),
    }
}

#[test]
fn an_idle_session_expires_after_twelve_hours_unused() {
    let p = SessionPolicy::DASHBOARD;
    let t = 1_700_000_000;
    let s = session_at(t, t);
    assert!(!s.expired(p, t + 12 * HOUR - 1));
    assert!(s.expired(p, t + 12 * HOUR));
    // Used an hour ago, so not idle, but two weeks old: gone anyway.
    let used = session_at(t, t + 14 * DAY - HOUR);
    assert!(!used.expired(p, t + 14 * DAY - 1));
    assert!(used.expired(p, t + 14 * DAY));
}

#[test]
fn the_cookie_lives_until_the_absolute_expiry() {
    let p = SessionPolicy::DASHBOARD;
    let now = now_s();
    let fresh = session_at(now, now).max_age_s(p);
    assert!((14 * DAY - 5..=14 * DAY).contains(&fresh), "{fresh}");
    let day_old = session_at(now - DAY, now).max_age_s(p);
    assert!((13 * DAY - 5..=13 * DAY).contains(&day_old), "{day_old}");
    assert_eq!(session_at(now - 15 * DAY, now).max_age_s(p), 0);
}

fn backdate(a: &Accounts, session: &Session, last_used_s: u64) {
    let mut s = session.clone();
    s.last_used_s = last_used_s;
    a.records
        .change(|tx| tx.put(Kind::Session, &s.id, &s))
        .unwrap();
}

fn stored_last_use(a: &Accounts, id: &str) -> u64 {
    a.records
        .get::<Session>(Kind::Session, id)
        .unwrap()
        .unwrap()
        .last_used_s
}

#[test]
fn using_a_session_restarts_its_idle_clock_at_most_once_a_minute() {
    let (_d, a) = with_admin();
    let (s, token, _) = a.login("owner", "correct horse", "x").unwrap();
    let now = now_s();
    backdate(&a, &s, now - 10);
    a.session(&token).unwrap();
    assert_eq!(
        stored_last_use(&a, &s.id),
        now - 10,
        "used 10 s ago: not rewritten"
    );
    backdate(&a, &s, now - 11 * HOUR);
    a.session(&token).unwrap();
    assert!(
        stored_last_use(&a, &s.id) >= now,
        "used 11 h ago: the idle clock restarts"
    );
}

#[test]
fn share_paths_have_bounded_depth_and_folder_length() {
    assert_eq!(validate_share_path(&["a"; 8].join("/")), Ok(()));
    assert!(validate_share_path(&["a"; 9].join("/")).is_err());
    assert_eq!(validate_share_path(&"a".repeat(64)), Ok(()));
    assert!(validate_share_path(&"a".repeat(65)).is_err());
}

#[test]
fn share_access_with_a_malformed_name_is_refused_as_a_bad_name() {
    let (_d, a) = with_admin();
    let mut share = share_named("docs");
    share.access.users.insert("Bad Name".into(), Level::Read);
    assert!(matches!(a.create_share(share), Err(AccountError::Name(_))));
    a.create_share(share_named("docs")).unwrap();
    let mut access = Access::default();
    access.groups.insert("../x".into(), Level::Read);
    let r = a.update_share(
        "docs",
        SharePatch {
            access: Some(access),
            ..Default::default()
        },
    );
    assert!(matches!(r, Err(AccountError::Name(_))), "{r:?}");
}

#[test]
fn a_share_patch_changes_what_it_names_and_refuses_hostile_descriptions() {
    let (_d, a) = with_admin();
    a.create_share(share_named("docs")).unwrap();
    let mut access = Access::default();
    access.users.insert("owner".into(), Level::Write);
    let s = a
        .update_share(
            "docs",
            SharePatch {
                description: Some("Papers".into()),
                guest: Some(true),
                access: Some(access.clone()),
            },
        )
        .unwrap();
    assert_eq!(
        (s.description.as_str(), s.guest, &s.access),
        ("Papers", true, &access)
    );
    assert_eq!(a.require_share("docs").unwrap(), s);
    let r = a.update_share(
        "docs",
        SharePatch {
            description: Some("line\n[global]".into()),
            ..Default::default()
        },
    );
    assert!(
        matches!(r, Err(AccountError::InvalidDescription(_))),
        "{r:?}"
    );
    assert_eq!(a.require_share("docs").unwrap().description, "Papers");
}

#[test]
fn a_network_reset_clears_only_the_administrators_and_setup_sets_a_new_password() {
    let (_d, a) = accounts();
    a.setup("owner", "correct horse", "owner@example.org")
        .unwrap();
    a.create_user(new_user("bob", Role::User)).unwrap();
    a.create_user(new_user("carol", Role::Admin)).unwrap();
    let (_, bob_token, _) = a.login("bob", "password one", "lan").unwrap();
    let (_, owner_token, _) = a.login("owner", "correct horse", "lan").unwrap();
    let mut export = a.store.export().unwrap();
    let admins = clear_admin_passwords(&mut export, 7).unwrap();
    assert_eq!(admins, vec!["carol".to_string(), "owner".to_string()]);
    a.store.import(&export).unwrap();

    assert!(!a.setup_done(), "setup is offered again");
    assert!(a.admin_password_reset());
    for (name, password) in [("owner", "correct horse"), ("carol", "password one")] {
        assert!(matches!(
            a.login(name, password, "lan"),
            Err(AccountError::BadCredentials)
        ));
        assert!(a
            .user(name)
            .unwrap()
            .unwrap()
            .credential
            .nt_hash_hex
            .is_empty());
    }
    assert!(
        a.session(&owner_token).is_err(),
        "an administrator's session ends"
    );
    assert_eq!(
        a.session(&bob_token).unwrap().1.name,
        "bob",
        "a user's session stays"
    );
    a.login("bob", "password one", "lan").unwrap();

    // Setup cannot hand a user's account administrator rights, and changes nothing when it refuses.
    assert!(matches!(
        a.setup("bob", "new password", ""),
        Err(AccountError::SetupNotAdmin(_))
    ));
    assert!(a.admin_password_reset());
    let owner = a.setup("owner", "new owner password", "").unwrap();
    assert_eq!(
        owner.email, "owner@example.org",
        "the administrator keeps the rest of the record"
    );
    assert!(a.setup_done());
    a.login("owner", "new owner password", "lan").unwrap();
    assert!(matches!(
        a.setup("intruder", "another one", ""),
        Err(AccountError::SetupDone)
    ));
    assert_eq!(a.users().unwrap().len(), 3);
}
