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
    assert!(PasswordPolicy::OWASP_2023.iterations >= 600_000);
}

#[test]
fn setup_creates_one_admin_and_then_refuses() {
    let (_d, a) = accounts();
    assert!(!a.setup_done());
    let admin = a.setup("owner", "correct horse", "owner@example.org").unwrap();
    assert_eq!(admin.role, Role::Admin);
    assert!(a.setup_done());
    assert!(matches!(a.setup("intruder", "another one", ""), Err(AccountError::SetupDone)));
    assert_eq!(a.users().unwrap().len(), 1);
}

#[test]
fn setup_validates_before_writing() {
    let (_d, a) = accounts();
    assert!(matches!(a.setup("Root", "correct horse", ""), Err(AccountError::Name(_))));
    assert!(matches!(a.setup("root", "correct horse", ""), Err(AccountError::Name(NameError::Reserved(_)))));
    assert!(matches!(a.setup("owner", "short", ""), Err(AccountError::PasswordTooShort { .. })));
    assert!(matches!(a.setup("owner", "correct horse", "not-an-email"), Err(AccountError::InvalidEmail(_))));
    assert!(matches!(a.setup("owner", "correct horse", "a@b.c\nBcc: x@y.z"), Err(AccountError::InvalidEmail(_))));
    assert!(!a.setup_done(), "a refused setup must leave nothing behind");
}

#[test]
fn login_checks_password_and_session_round_trips() {
    let (_d, a) = accounts();
    a.setup("owner", "correct horse", "").unwrap();
    assert!(matches!(a.login("owner", "wrong horse", "test"), Err(AccountError::BadCredentials)));
    assert!(matches!(a.login("nobody-here", "correct horse", "test"), Err(AccountError::BadCredentials)));
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
    for bad in [forged.as_str(), "", "../../etc/passwd", &token[..10], &format!("{token}00")] {
        assert!(matches!(a.session(bad), Err(AccountError::NoSession)), "{bad:?}");
    }
}

#[test]
fn sessions_survive_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let token = {
        let mut a = Accounts::new(Store::open(dir.path()).unwrap()).unwrap();
        a.password_policy.iterations = 1_000;
        a.setup("owner", "correct horse", "").unwrap();
        a.login("owner", "correct horse", "test").unwrap().1
    };
    let a = Accounts::new(Store::open(dir.path()).unwrap()).unwrap();
    assert_eq!(a.session(&token).unwrap().1.name, "owner");
}

#[test]
fn expired_sessions_are_refused_and_removed() {
    let (_d, mut a) = accounts();
    a.setup("owner", "correct horse", "").unwrap();
    let (_, token, _) = a.login("owner", "correct horse", "test").unwrap();
    a.session_policy = SessionPolicy { idle_s: 0, absolute_s: 0, touch_every_s: 0 };
    assert!(matches!(a.session(&token), Err(AccountError::NoSession)));
    a.session_policy = SessionPolicy::DASHBOARD;
    assert!(matches!(a.session(&token), Err(AccountError::NoSession)), "an expired session must be gone for good");
}

#[test]
fn names_follow_the_grammar() {
    for ok in ["alice", "a", "bob_2", "x-y", &"a".repeat(32)] {
        assert_eq!(validate_user_name(ok), Ok(()), "{ok}");
    }
    for bad in ["", "Alice", "1abc", "-x", "a b", "a/b", "a\nb", "a[b]", "a;b", "ä", &"a".repeat(33), "root", "nobody"] {
        assert!(validate_user_name(bad).is_err(), "{bad:?}");
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
