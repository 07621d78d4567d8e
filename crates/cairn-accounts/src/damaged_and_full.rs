//! One damaged record and a full settings partition: the rest of the box keeps working.

use super::*;
use cairn_store::{fake_free_space, Headroom};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn accounts_on(store: Store) -> Accounts {
    let mut accounts = Accounts::new(store).unwrap();
    accounts.password_policy.iterations = 1_000;
    accounts
}

fn user(name: &str) -> NewUser {
    NewUser {
        name: name.into(),
        full_name: String::new(),
        email: String::new(),
        role: Role::User,
        enabled: true,
        password: "password one".into(),
    }
}

#[test]
fn a_damaged_user_record_is_skipped_with_its_key_and_others_still_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let a = accounts_on(Store::open(dir.path()).unwrap());
    a.setup("owner", "correct horse", "").unwrap();
    a.create_user(user("alice")).unwrap();
    a.create_share(NewShare {
        name: "photos".into(),
        description: String::new(),
        volume: None,
        path: None,
        guest: false,
        access: Default::default(),
    })
    .unwrap();
    // A torn write or a bit flip: bob's record no longer decodes, nor does one share's.
    let tree = a.store.db().open_tree(records::TREE).unwrap();
    tree.insert("u/bob", b"{\"name\":\"bob\",\"ro".to_vec())
        .unwrap();
    tree.insert("s/broken", b"\xff\xfe".to_vec()).unwrap();

    let names: Vec<String> = a.users().unwrap().into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["alice", "owner"], "the damaged record is skipped");
    assert_eq!(a.shares().unwrap().len(), 1);
    assert_eq!(a.damaged_records(), ["s/broken", "u/bob"]);
    a.login("owner", "correct horse", "test").unwrap();
    a.login("alice", "password one", "test").unwrap();
    assert!(
        a.setup_done(),
        "a damaged record still counts as an account"
    );
    assert!(matches!(
        a.setup("intruder", "another one", ""),
        Err(AccountError::SetupDone)
    ));
}

#[test]
fn with_the_settings_partition_full_the_owner_logs_in_and_changes_fail_typed() {
    let dir = tempfile::tempdir().unwrap();
    let free = Arc::new(AtomicU64::new(64 << 20));
    let measure = fake_free_space(dir.path(), free.clone());
    let store =
        Store::open_with(&dir.path().join("settings.db"), Headroom::CONFIG, measure).unwrap();
    let a = accounts_on(store);
    a.setup("owner", "correct horse", "").unwrap();
    // Filled to the last block by root.
    free.store(0, Ordering::SeqCst);
    let (_, token, _) = a.login("owner", "correct horse", "test").unwrap();
    a.session(&token).unwrap();
    match a.create_user(user("alice")) {
        Err(AccountError::Store(StoreError::Full { .. })) => {}
        other => panic!("expected a full store, got {other:?}"),
    }
    assert!(a.user("alice").unwrap().is_none(), "nothing half-written");
    a.login("owner", "correct horse", "test")
        .expect("the next login still works");
}
