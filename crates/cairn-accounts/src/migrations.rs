//! The account records' schema steps (the store runs them in order; see `cairn_store::Schema`).
//!
//! - 1 → 2: users and sessions move from their own trees into the one accounts tree (`u/NAME`, `x/ID`), so a
//!   change spanning them is atomic; v1's setup marker (`"\0setup_lock"` among the users) becomes
//!   `m/setup_done`.
//! - 2 → 3: a user's password hash and SMB NT hash move into one `credential` object with the time the
//!   password was last set (`changed_s`), so both hashes are always read and written together and an owner can
//!   see stale passwords. Backward, they move back to the top; a known `changed_s` stays as
//!   `password_changed_s`, which schema 2 ignores and the next forward step takes back.
//!
//! Every step keeps what it does not understand: other record kinds, other fields, records that are not JSON.

use crate::records::TREE;
use cairn_store::{Migration, Step, StoreError};
use serde_json::{Map, Value};

/// This crate's steps, in the store's schema order.
#[cfg(not(feature = "schema-2-only"))]
pub static MIGRATIONS: &[Migration] = &[V1_ACCOUNTS_TREE, V2_CREDENTIAL];
/// This crate's steps (the `schema-2-only` build stops before schema 3).
#[cfg(feature = "schema-2-only")]
pub static MIGRATIONS: &[Migration] = &[V1_ACCOUNTS_TREE];

const V1_ACCOUNTS_TREE: Migration = Migration {
    from: 1,
    owner: "cairn-accounts",
    describe: "users and sessions move into the one accounts tree (u/NAME, x/ID), so changes spanning them are atomic",
    forward: v1_to_v2,
    backward: v2_to_v1,
};

#[cfg_attr(feature = "schema-2-only", allow(dead_code))]
const V2_CREDENTIAL: Migration = Migration {
    from: 2,
    owner: "cairn-accounts",
    describe: "a user's password hash and SMB hash move into one credential with the time the password was set",
    forward: v2_to_v3,
    backward: v3_to_v2,
};

/// v1's setup marker among the users.
const V1_SETUP_LOCK: &[u8] = b"\0setup_lock";
const SETUP_DONE: &[u8] = b"m/setup_done";
/// v1's trees and the prefixes their records take in the accounts tree.
const V1_TREES: [(&str, &str); 2] = [("users", "u/"), ("sessions", "x/")];

fn v1_to_v2(step: &mut Step) -> Result<(), StoreError> {
    for (old, prefix) in V1_TREES {
        for (key, value) in step.records(old, b"")? {
            step.remove(old, &key);
            if old == "users" && key == V1_SETUP_LOCK {
                step.put(TREE, SETUP_DONE, value);
                continue;
            }
            let mut new_key = prefix.as_bytes().to_vec();
            new_key.extend_from_slice(&key);
            step.put(TREE, &new_key, value);
        }
    }
    Ok(())
}

fn v2_to_v1(step: &mut Step) -> Result<(), StoreError> {
    for (old, prefix) in V1_TREES {
        for (key, value) in step.records(TREE, prefix.as_bytes())? {
            step.remove(TREE, &key);
            step.put(old, &key[prefix.len()..], value);
        }
    }
    // Groups, shares and other markers stay in the accounts tree: v1 never read it, and it keeps them.
    if let Some((key, value)) = step.records(TREE, SETUP_DONE)?.into_iter().next() {
        step.remove(TREE, &key);
        step.put("users", V1_SETUP_LOCK, value);
    }
    Ok(())
}

/// A user record's key and its JSON object.
type UserRecord = (Vec<u8>, Map<String, Value>);

/// The user records that are JSON objects (anything else is kept untouched).
fn users(step: &Step) -> Result<Vec<UserRecord>, StoreError> {
    Ok(step
        .records(TREE, b"u/")?
        .into_iter()
        .filter_map(|(k, v)| match serde_json::from_slice(&v) {
            Ok(Value::Object(user)) => Some((k, user)),
            _ => None,
        })
        .collect())
}

fn put_user(step: &mut Step, key: &[u8], user: Map<String, Value>) -> Result<(), StoreError> {
    step.put(TREE, key, cairn_store::encode(&Value::Object(user))?);
    Ok(())
}

#[cfg_attr(feature = "schema-2-only", allow(dead_code))]
fn v2_to_v3(step: &mut Step) -> Result<(), StoreError> {
    for (key, mut user) in users(step)? {
        let mut credential = match user.remove("credential") {
            Some(Value::Object(c)) => c,
            Some(other) => {
                // Not ours to interpret: kept under another name rather than lost.
                user.insert("credential_v2".into(), other);
                Map::new()
            }
            None => Map::new(),
        };
        for (from, to) in [
            ("password", "password"),
            ("nt_hash_hex", "nt_hash_hex"),
            ("password_changed_s", "changed_s"),
        ] {
            if let Some(v) = user.remove(from) {
                credential.insert(to.into(), v);
            }
        }
        credential.entry("changed_s").or_insert(Value::Null);
        user.insert("credential".into(), Value::Object(credential));
        put_user(step, &key, user)?;
    }
    Ok(())
}

#[cfg_attr(feature = "schema-2-only", allow(dead_code))]
fn v3_to_v2(step: &mut Step) -> Result<(), StoreError> {
    for (key, mut user) in users(step)? {
        let Some(Value::Object(mut credential)) = user.remove("credential") else {
            continue;
        };
        for (from, to) in [
            ("password", "password"),
            ("nt_hash_hex", "nt_hash_hex"),
            ("changed_s", "password_changed_s"),
        ] {
            match credential.remove(from) {
                Some(Value::Null) | None => {}
                Some(v) => {
                    user.insert(to.into(), v);
                }
            }
        }
        if !credential.is_empty() {
            // Fields a later schema added to the credential: kept for the next forward step.
            user.insert("credential".into(), Value::Object(credential));
        }
        put_user(step, &key, user)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_store::{Schema, Store};

    #[test]
    fn v1_accounts_move_into_the_accounts_tree_and_back() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert("schema_version", b"1")
                .unwrap();
            let users = db.open_tree("users").unwrap();
            let owner = br#"{"name":"owner","email":"o@example.org","role":"admin","enabled":true,"password":{"salt":"00","hash":"11","iterations":1},"nt_hash_hex":"22","uid":10000,"created_s":5}"#;
            users.insert("owner", owner.to_vec()).unwrap();
            users.insert(V1_SETUP_LOCK, b"1".to_vec()).unwrap();
            db.open_tree("sessions")
                .unwrap()
                .insert("abc", br#"{"id":"abc","user":"owner"}"#.to_vec())
                .unwrap();
            db.flush().unwrap();
        }
        let schema = Schema::new(&[MIGRATIONS]).unwrap();
        let (store, opening) = Store::open_migrating(dir.path(), &schema, None).unwrap();
        assert!(opening.migrated.iter().all(|r| r.dropped.is_empty()));
        let accounts = store.db().open_tree(TREE).unwrap();
        let owner: Value =
            serde_json::from_slice(&accounts.get("u/owner").unwrap().unwrap()).unwrap();
        assert_eq!(owner["email"], "o@example.org", "no field may be dropped");
        assert!(accounts.get("x/abc").unwrap().is_some());
        assert!(accounts.get(SETUP_DONE).unwrap().is_some());
        assert!(!store
            .db()
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == b"users"));

        let down = store.migrate_to(&schema, 1).unwrap();
        assert!(down.iter().all(|r| r.dropped.is_empty()), "{down:?}");
        let users = store.db().open_tree("users").unwrap();
        let owner: Value = serde_json::from_slice(&users.get("owner").unwrap().unwrap()).unwrap();
        assert_eq!(owner["nt_hash_hex"], "22");
        assert_eq!(owner["password"]["hash"], "11");
        assert_eq!(users.get(V1_SETUP_LOCK).unwrap().unwrap().as_ref(), b"1");
    }
}
