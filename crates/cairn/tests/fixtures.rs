//! The settings fixtures (`tests/fixtures/settings-v<N>.export`): a box's settings at every schema version,
//! migrated to this firmware's schema with the migrations the binary wires (every domain's) and back down to
//! their own, checking that nothing is lost: every user, e-mail, password (dashboard hash and SMB hash), group,
//! share and its access, volume record, host name and network setting.
//!
//! The fixtures were made by the real code (`generate_fixtures`, ignored; it writes only the fixtures that
//! do not exist yet, so an old one is never regenerated): each through the domain crates' own calls (setup,
//! users, groups, shares, host name, network, a volume record) of the firmware at that schema, then the older
//! ones from it by the real backward migrations. v2 came from the `schema-2-only` build
//! (`cargo test -p cairn --features schema-2-only --test fixtures -- --ignored generate_fixtures`), v3 from
//! the default build; v1's code no longer exists, so v1 is v2's settings taken down by the real 2 → 1 step.
//! When a schema is added: add its step, run the generator once on the default build, commit the new file.
//! Once committed, a fixture is a box in the field: every later firmware must migrate it.

use cairn_accounts::{nt_hash_hex, Access, Accounts, Level, NewShare, NewUser, Role};
use cairn_store::snapshot::Export;
use cairn_store::{fake_free_space, Headroom, Schema, Store, SCHEMA_VERSION};
use cairn_system::{Facts, Mode, NetworkSettings, System};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// The people in every fixture: name, password, e-mail.
const PEOPLE: &[(&str, &str, &str)] = &[
    ("owner", "owner password 1", "owner@example.org"),
    ("alice", "alice password 2", "Alice.Liddell@Example.org"),
    ("bob", "bob password 3", ""),
];
const HOSTNAME: &str = "fixture-box";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn fixture(version: u32) -> PathBuf {
    fixtures().join(format!("settings-v{version}.export"))
}

fn schema() -> Schema {
    Schema::new(&[
        cairn_accounts::MIGRATIONS,
        cairn_storage::MIGRATIONS,
        cairn_system::MIGRATIONS,
    ])
    .unwrap()
}

fn facts() -> Facts {
    Facts {
        interface: "lan0".into(),
        default_hostname: "cairn".into(),
    }
}

fn unmigrated(dir: &Path) -> Store {
    Store::open_unmigrated(
        &dir.join("settings.db"),
        Headroom::CONFIG,
        fake_free_space(dir, Arc::new(AtomicU64::new(100 << 20))),
    )
    .unwrap()
}

fn network() -> NetworkSettings {
    NetworkSettings {
        mode: Mode::Static,
        address: Some("192.168.7.20".parse().unwrap()),
        prefix: Some(24),
        gateway: Some("192.168.7.1".parse().unwrap()),
        dns: vec!["192.168.7.1".parse().unwrap(), "9.9.9.9".parse().unwrap()],
    }
}

fn volume() -> cairn_storage::VolumeRecord {
    serde_json::from_value(serde_json::json!({
        "name": "tank", "level": "raid1", "uuid": "a1b2c3d4:e5f60718:293a4b5c:6d7e8f90", "md_minor": 127,
        "disks": [
            {"id": "virtio-CAIRN-BAY1", "serial": "CAIRN-BAY1", "model": "Virtual disk", "size_bytes": 1073741824, "slot": 1},
            {"id": "virtio-CAIRN-BAY2", "serial": "CAIRN-BAY2", "model": "Virtual disk", "size_bytes": 1073741824, "slot": 2}
        ],
        "created_s": 1764547200, "last_scrub_s": 1764633600, "last_mismatches": 0, "last_state": "clean"
    }))
    .unwrap()
}

/// Makes the current schema's settings through the domain crates and writes every version's fixture.
#[test]
#[ignore = "writes tests/fixtures: run by hand when a schema is added"]
fn generate_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let store = unmigrated(dir.path());
    store
        .db()
        .open_tree("meta")
        .unwrap()
        .insert("schema_version", SCHEMA_VERSION.to_string().as_bytes())
        .unwrap();
    let mut accounts = Accounts::new(store.clone()).unwrap();
    accounts.set_kdf_iterations_for_seeding(1_000);
    let (owner, owner_pw, owner_mail) = PEOPLE[0];
    accounts.setup(owner, owner_pw, owner_mail).unwrap();
    for (name, password, email) in &PEOPLE[1..] {
        accounts
            .create_user(NewUser {
                name: name.to_string(),
                full_name: format!("{name} of the fixture"),
                email: email.to_string(),
                role: Role::User,
                enabled: true,
                password: password.to_string(),
            })
            .unwrap();
    }
    accounts
        .create_group("family", &["alice".into(), "bob".into()])
        .unwrap();
    store
        .table("volumes")
        .unwrap()
        .put("tank", &volume())
        .unwrap();
    accounts
        .create_share(NewShare {
            name: "photos".into(),
            description: "Holidays".into(),
            volume: Some("tank".into()),
            path: Some("photos".into()),
            guest: false,
            access: Access {
                users: BTreeMap::from([("alice".into(), Level::Write)]),
                groups: BTreeMap::from([("family".into(), Level::Read)]),
            },
        })
        .unwrap();
    let system = System::new(
        store.clone(),
        Arc::new(cairn_system::host::Workstation),
        facts(),
    )
    .unwrap();
    system.set_hostname(HOSTNAME).unwrap();
    system.change_network(network()).unwrap();
    system.confirm_network().unwrap();
    store.commit().unwrap();
    std::fs::create_dir_all(fixtures()).unwrap();
    for version in (1..=SCHEMA_VERSION).rev() {
        store.migrate_to(&schema(), version).unwrap();
        if !fixture(version).exists() {
            std::fs::write(fixture(version), store.export().unwrap().to_bytes()).unwrap();
        }
    }
}

/// Every record as data: JSON values compared as values (a migration may reorder an object's keys).
fn records(store: &Store) -> BTreeMap<(String, Vec<u8>), Value> {
    store
        .export()
        .unwrap()
        .records
        .into_iter()
        .map(|(tree, key, value)| {
            let v = serde_json::from_slice(&value)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&value).into()));
            ((tree, key), v)
        })
        .collect()
}

/// What the owner would check after an update, read through the domain crates at the current schema.
fn everything_is_there(store: &Store, version: u32) {
    let accounts = Accounts::new(store.clone()).unwrap();
    assert!(accounts.setup_done(), "v{version}: setup done");
    assert_eq!(accounts.users().unwrap().len(), PEOPLE.len(), "v{version}");
    for (name, password, email) in PEOPLE {
        let user = accounts.require_user(name).unwrap();
        assert_eq!(user.email, *email, "v{version}: {name}'s e-mail");
        assert!(
            user.credential.password.verify(password),
            "v{version}: {name}'s dashboard password"
        );
        assert_eq!(
            user.credential.nt_hash_hex,
            nt_hash_hex(password),
            "v{version}: {name}'s SMB password"
        );
        accounts.login(name, password, "fixture").unwrap();
    }
    assert_eq!(
        accounts.require_user("alice").unwrap().full_name,
        "alice of the fixture"
    );
    assert_eq!(
        accounts.require_group("family").unwrap().members,
        vec!["alice".to_string(), "bob".to_string()]
    );
    let share = accounts.require_share("photos").unwrap();
    assert_eq!(
        (share.volume.as_str(), share.path.as_str()),
        ("tank", "photos")
    );
    assert_eq!(share.access.users["alice"], Level::Write);
    assert_eq!(share.access.groups["family"], Level::Read);
    assert_eq!(accounts.access_of("bob").unwrap()["photos"], Level::Read);
    let volumes = store.table("volumes").unwrap();
    assert_eq!(
        volumes.get::<cairn_storage::VolumeRecord>("tank").unwrap(),
        Some(volume())
    );
    let system = System::new(
        store.clone(),
        Arc::new(cairn_system::host::Workstation),
        facts(),
    )
    .unwrap();
    assert_eq!(system.hostname(), HOSTNAME, "v{version}: host name");
    assert_eq!(system.confirmed_network(), network(), "v{version}: network");
}

#[test]
fn every_fixture_migrates_to_the_current_schema_and_back_without_losing_anything() {
    for version in 1..=SCHEMA_VERSION {
        let dir = tempfile::tempdir().unwrap();
        let store = unmigrated(dir.path());
        let export = Export::load(&fixture(version)).unwrap();
        assert_eq!(export.schema, version);
        store.import(&export).unwrap();
        let before = records(&store);

        let up = store.migrate_to(&schema(), SCHEMA_VERSION).unwrap();
        assert_eq!(up.len() as u32, SCHEMA_VERSION - version);
        for step in &up {
            assert!(step.dropped.is_empty(), "v{version} up: {step:?}");
        }
        everything_is_there(&store, version);

        let down = store.migrate_to(&schema(), version).unwrap();
        for step in &down {
            assert!(step.dropped.is_empty(), "v{version} down: {step:?}");
        }
        // The logins above wrote sessions; everything else is as the fixture had it.
        let after: BTreeMap<_, _> = records(&store)
            .into_iter()
            .filter(|((tree, key), _)| {
                !(key.starts_with(b"x/") || tree == "sessions" || key.starts_with(b"m/login"))
            })
            .collect();
        let before: BTreeMap<_, _> = before
            .into_iter()
            .filter(|((tree, key), _)| !(key.starts_with(b"x/") || tree == "sessions"))
            .collect();
        assert_eq!(after, before, "v{version}: up and down again");
    }
}

#[test]
fn the_fixtures_cover_every_schema() {
    for version in 1..=SCHEMA_VERSION {
        assert!(fixture(version).exists(), "no fixture for schema {version}");
    }
}

/// A settings backup from a firmware at every schema (the fixture, sealed as that firmware would have) restores
/// onto a new box of this firmware whose owner imported the volume first: migrated on restore, every person logs
/// in with their password (dashboard and SMB hash), groups, shares, name and network as they were.
#[test]
fn a_backup_from_every_schema_restores_onto_a_new_box() {
    use cairn_backup::{BackupInfo, Part};
    for version in 1..=SCHEMA_VERSION {
        let old = Export::load(&fixture(version)).unwrap();
        let info = BackupInfo {
            schema: version,
            board: "qemu-armv7-virt".into(),
            firmware: "0.0.1".into(),
            created_s: 1,
        };
        let file = cairn_backup::seal(&old, "fixture passphrase", info, 100_000).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let (store, _) =
            Store::open_migrating(&dir.path().join("settings.db"), &schema(), None).unwrap();
        store
            .table("volumes")
            .unwrap()
            .put("tank", &volume())
            .unwrap();
        let (info, backup) =
            cairn_backup::open(&file, "fixture passphrase", SCHEMA_VERSION).unwrap();
        assert_eq!(info.schema, version);
        let backup = backup.migrated(&schema()).unwrap();
        assert_eq!(backup.schema, SCHEMA_VERSION);
        let volumes = ["tank".to_string(), "system".to_string()].into();
        let plan = cairn_backup::plan(&store.export().unwrap(), &backup, &Part::ALL, &volumes);
        assert_eq!(
            plan.diff["left_out"],
            serde_json::json!([]),
            "v{version}: {}",
            plan.diff
        );
        store.import(&plan.settings).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        everything_is_there(&store, version);
    }
}
