//! Each tier on a real settings store: what it keeps, what it clears, and that undo brings back everything.

use cairn_accounts::{AccountError, Accounts, NewUser, Role};
use cairn_reset::{ResetError, Resets, Tier, Trigger};
use cairn_store::{Schema, Store};

struct Box_ {
    _dir: tempfile::TempDir,
    store: Store,
    accounts: Accounts,
    resets: Resets,
}

fn used_box() -> Box_ {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("settings.db")).unwrap();
    let mut accounts = Accounts::new(store.clone()).unwrap();
    accounts.set_kdf_iterations_for_seeding(1_000);
    accounts
        .setup("owner", "owner password", "owner@example.org")
        .unwrap();
    accounts
        .create_user(NewUser {
            name: "alice".into(),
            full_name: "Alice".into(),
            email: "alice@example.org".into(),
            role: Role::User,
            enabled: true,
            password: "alice password".into(),
        })
        .unwrap();
    let system = store.table("system").unwrap();
    system.put("hostname", &"attic").unwrap();
    let network = store.table("network").unwrap();
    network
        .put("confirmed", &serde_json::json!({"mode": "static"}))
        .unwrap();
    store.table("volumes").unwrap().put("photos", &1).unwrap();
    store.commit().unwrap();
    let resets = Resets::new(store.clone(), dir.path());
    Box_ {
        _dir: dir,
        store,
        accounts,
        resets,
    }
}

fn hostname(b: &Box_) -> Option<String> {
    b.store.table("system").unwrap().get("hostname").unwrap()
}

#[test]
fn the_network_tier_clears_network_name_and_admin_password_and_undo_restores_them() {
    let b = used_box();
    let before = b.store.export().unwrap();
    let last = b.resets.apply(Tier::Network, Trigger::Pin, 1_000).unwrap();
    assert_eq!(last.cleared_admins, vec!["owner".to_string()]);

    assert_eq!(hostname(&b), None, "the board's default name again");
    assert!(b.store.table("network").unwrap().is_empty(), "DHCP again");
    assert!(
        !b.accounts.setup_done(),
        "setup open for an administrator password"
    );
    assert!(matches!(
        b.accounts.login("owner", "owner password", "lan"),
        Err(AccountError::BadCredentials)
    ));
    b.accounts.login("alice", "alice password", "lan").unwrap();
    assert_eq!(b.store.table("volumes").unwrap().len(), 1, "volumes kept");
    let shown = b.resets.last().unwrap();
    assert_eq!(shown.tier, Tier::Network);
    assert!(shown.undo_available);

    b.resets.undo(&Schema::current_only()).unwrap();
    assert_eq!(b.store.export().unwrap(), before, "every record as before");
    b.accounts.login("owner", "owner password", "lan").unwrap();
    assert!(b.accounts.setup_done());
    assert_eq!(b.resets.last(), None, "nothing offers to undo twice");
    assert!(matches!(
        b.resets.undo(&Schema::current_only()),
        Err(ResetError::NothingToUndo)
    ));
}

#[test]
fn the_settings_tier_clears_everything_and_undo_restores_it() {
    let b = used_box();
    let before = b.store.export().unwrap();
    b.resets
        .apply(Tier::Settings, Trigger::Dashboard, 2_000)
        .unwrap();
    assert!(b.accounts.users().unwrap().is_empty());
    assert!(!b.accounts.setup_done());
    assert_eq!(hostname(&b), None);
    assert!(b.store.table("volumes").unwrap().is_empty());
    assert_eq!(b.store.schema_version().unwrap(), before.schema);
    assert_eq!(b.resets.last().unwrap().tier, Tier::Settings);

    // The owner sets the box up again before deciding to undo: undo still brings back the old settings.
    b.accounts.setup("newowner", "new password", "").unwrap();
    b.resets.undo(&Schema::current_only()).unwrap();
    assert_eq!(b.store.export().unwrap(), before);
    assert!(b.accounts.user("newowner").unwrap().is_none());
}

#[test]
fn dismissing_forgets_the_kept_settings() {
    let b = used_box();
    b.resets.apply(Tier::Network, Trigger::Pin, 3).unwrap();
    b.resets.dismiss().unwrap();
    assert_eq!(b.resets.last(), None);
    assert!(matches!(
        b.resets.undo(&Schema::current_only()),
        Err(ResetError::NothingToUndo)
    ));
    assert!(matches!(
        b.resets.apply(Tier::NoAction, Trigger::Pin, 4),
        Err(ResetError::NotAReset(_))
    ));
}

#[test]
fn a_second_reset_keeps_the_settings_from_just_before_it() {
    let b = used_box();
    b.resets.apply(Tier::Network, Trigger::Pin, 5).unwrap();
    b.accounts.setup("owner", "second password", "").unwrap();
    let between = b.store.export().unwrap();
    b.resets.apply(Tier::Settings, Trigger::Pin, 6).unwrap();
    b.resets.undo(&Schema::current_only()).unwrap();
    let mut expected = between;
    expected.retain(|tree, _, _| tree != "reset");
    assert_eq!(b.store.export().unwrap(), expected);
    b.accounts.login("owner", "second password", "lan").unwrap();
}
