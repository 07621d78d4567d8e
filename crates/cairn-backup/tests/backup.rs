//! Backup files as a hostile host or a damaged disk would hand them over, and restores part by part.

use cairn_accounts::{Access, Accounts, Level, NewShare, NewUser, Role};
use cairn_backup::{open, plan, seal, BackupError, BackupInfo, Part};
use cairn_store::snapshot::Export;
use cairn_store::{Store, SCHEMA_VERSION};
use std::collections::{BTreeMap, BTreeSet};

/// Fast key derivation for tests (the bound files must respect is checked separately).
const ITERATIONS: u32 = 100_000;

fn info() -> BackupInfo {
    BackupInfo {
        schema: 0,
        board: "qemu-aarch64-virt".into(),
        firmware: "0.1.0".into(),
        created_s: 5,
    }
}

struct Settings {
    _dir: tempfile::TempDir,
    store: Store,
    accounts: Accounts,
}

fn settings(users: &[&str]) -> Settings {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("settings.db")).unwrap();
    let mut accounts = Accounts::new(store.clone()).unwrap();
    accounts.set_kdf_iterations_for_seeding(1_000);
    accounts.setup("owner", "owner password", "").unwrap();
    for name in users {
        accounts
            .create_user(NewUser {
                name: name.to_string(),
                full_name: String::new(),
                email: format!("{name}@example.org"),
                role: Role::User,
                enabled: true,
                password: format!("{name} password"),
            })
            .unwrap();
    }
    Settings {
        _dir: dir,
        store,
        accounts,
    }
}

fn share(s: &Settings, name: &str, user: &str) {
    s.accounts
        .create_share(NewShare {
            name: name.into(),
            description: String::new(),
            volume: Some(cairn_accounts::SYSTEM_VOLUME.into()),
            path: None,
            guest: false,
            access: Access {
                users: BTreeMap::from([(user.to_string(), Level::Write)]),
                groups: BTreeMap::new(),
            },
        })
        .unwrap();
}

#[test]
fn a_sealed_backup_opens_only_with_its_passphrase_and_whole() {
    let s = settings(&["alice"]);
    let export = s.store.export().unwrap();
    let file = seal(&export, "a good passphrase", info(), ITERATIONS).unwrap();
    let (got_info, back) = open(&file, "a good passphrase", SCHEMA_VERSION).unwrap();
    assert_eq!(back, export);
    assert_eq!(got_info.schema, export.schema);
    assert!(
        !String::from_utf8_lossy(&file).contains("alice@example.org"),
        "the contents are encrypted"
    );

    let refuse = |bytes: &[u8], pass: &str| open(bytes, pass, SCHEMA_VERSION).unwrap_err();
    assert!(matches!(
        refuse(&file, "the wrong passphrase"),
        BackupError::CannotOpen
    ));
    assert!(matches!(
        refuse(&file[..file.len() - 40], "a good passphrase"),
        BackupError::Truncated
    ));
    assert!(matches!(
        refuse(&file[..30], "a good passphrase"),
        BackupError::Truncated
    ));
    let mut tampered = file.clone();
    let last = tampered.len() - 100;
    tampered[last] ^= 1;
    assert!(matches!(
        refuse(&tampered, "a good passphrase"),
        BackupError::CannotOpen
    ));
    // The header is authenticated too: a changed board (same length) does not open.
    let text = String::from_utf8_lossy(&file).into_owned();
    let mut forged = file.clone();
    let at = text.find("aarch64").unwrap();
    forged[at..at + 7].copy_from_slice(b"aarch65");
    assert!(matches!(
        refuse(&forged, "a good passphrase"),
        BackupError::CannotOpen
    ));
    // A hostile header asking for endless key derivation is refused before any is done.
    let greedy = text.replacen("\"iterations\":100000", "\"iterations\":4000000000", 1);
    assert!(matches!(
        refuse(greedy.as_bytes(), "a good passphrase"),
        BackupError::Damaged(_)
    ));
    assert!(matches!(
        refuse(b"PK\x03\x04 a zip file", "x"),
        BackupError::NotABackup(_)
    ));
    assert!(matches!(
        refuse(b"{\"format\":\"something-else\"}\n", "x"),
        BackupError::NotABackup(_)
    ));
    assert!(matches!(
        refuse(&vec![b'{'; cairn_backup::MAX_FILE_BYTES + 1], "x"),
        BackupError::TooLarge(_)
    ));
    let newer = text.replacen(
        &format!("\"schema\":{}", export.schema),
        &format!("\"schema\":{}", SCHEMA_VERSION + 1),
        1,
    );
    assert!(matches!(
        refuse(newer.as_bytes(), "a good passphrase"),
        BackupError::TooNew { .. }
    ));
    assert!(matches!(
        seal(&export, "short", info(), ITERATIONS),
        Err(BackupError::PassphraseTooShort(_))
    ));
}

fn volumes() -> BTreeSet<String> {
    BTreeSet::from([cairn_accounts::SYSTEM_VOLUME.to_string()])
}

#[test]
fn a_restore_brings_back_the_chosen_parts_and_says_what_changes() {
    let old = settings(&["alice", "bob"]);
    share(&old, "family", "alice");
    old.store
        .table("system")
        .unwrap()
        .put("hostname", &"attic")
        .unwrap();
    let backup = old.store.export().unwrap();

    let new = settings(&["carol"]);
    let current = new.store.export().unwrap();
    let all = plan(&current, &backup, &Part::ALL, &volumes());
    assert_eq!(
        all.diff["users"]["users"]["added"],
        serde_json::json!(["alice", "bob"])
    );
    assert_eq!(
        all.diff["users"]["users"]["removed"],
        serde_json::json!(["carol"])
    );
    assert_eq!(
        all.diff["shares"]["shares"]["added"],
        serde_json::json!(["family"])
    );
    assert_eq!(all.diff["network"]["hostname"]["to"], "attic");
    new.store.import(&all.settings).unwrap();
    new.accounts
        .login("alice", "alice password", "lan")
        .unwrap();
    new.accounts
        .login("owner", "owner password", "lan")
        .unwrap();
    assert!(new.accounts.user("carol").unwrap().is_none());
    assert_eq!(
        new.accounts
            .share("family")
            .unwrap()
            .unwrap()
            .access
            .users
            .len(),
        1
    );

    // Only the shares, onto a box without alice: her access is dropped and said so.
    let other = settings(&[]);
    let only = plan(
        &other.store.export().unwrap(),
        &backup,
        &[Part::Shares],
        &volumes(),
    );
    assert!(only.diff.get("users").is_none());
    assert!(
        only.diff["left_out"]
            .to_string()
            .contains("access for users"),
        "{}",
        only.diff
    );
    other.store.import(&only.settings).unwrap();
    assert!(other
        .accounts
        .share("family")
        .unwrap()
        .unwrap()
        .access
        .users
        .is_empty());
    assert!(other.accounts.user("alice").unwrap().is_none());
    assert_eq!(
        Part::parse_list("shares, users").unwrap(),
        vec![Part::Users, Part::Shares]
    );
    assert!(Part::parse_list("network,disks").is_err());
}

#[test]
fn hostile_records_in_a_backup_are_left_out() {
    let old = settings(&["alice"]);
    share(&old, "family", "alice");
    let mut backup = old.store.export().unwrap();
    // A share whose folder climbs out of its volume, one on a volume this box lacks, a user with a bad name.
    let escape = br#"{"name":"escape","description":"","volume":"system","path":"../../etc","guest":false,"access":{"users":{},"groups":{}}}"#;
    backup.put("accounts", b"s/escape", escape.to_vec());
    let elsewhere = br#"{"name":"away","description":"","volume":"vault","path":"away","guest":false,"access":{"users":{},"groups":{}}}"#;
    backup.put("accounts", b"s/away", elsewhere.to_vec());
    let alice = backup.get("accounts", b"u/alice").unwrap().to_vec();
    let root = String::from_utf8(alice)
        .unwrap()
        .replace("\"alice\"", "\"root\"");
    backup.put("accounts", b"u/root", root.into_bytes());
    let mislabelled = backup.get("accounts", b"u/alice").unwrap().to_vec();
    backup.put("accounts", b"u/mallory", mislabelled);

    let new = settings(&[]);
    let p = plan(
        &new.store.export().unwrap(),
        &backup,
        &Part::ALL,
        &volumes(),
    );
    let left = p.diff["left_out"].to_string();
    for record in ["s/escape", "s/away", "u/root", "u/mallory"] {
        assert!(left.contains(record), "{record} not left out: {left}");
    }
    new.store.import(&p.settings).unwrap();
    let shares: Vec<String> = new
        .accounts
        .shares()
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(shares, vec!["family".to_string()]);
    assert!(new.accounts.user("root").unwrap().is_none());
    assert!(new.accounts.user("mallory").unwrap().is_none());
    let _ = Export::empty(SCHEMA_VERSION);
}
