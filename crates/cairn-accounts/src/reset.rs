//! The reset pin's network tier, as it concerns accounts: every administrator's password is cleared (no
//! password matches, SMB gets no hash for them) and their sessions end, and a mark makes the box offer setup
//! from the LAN again, where the owner sets a new administrator password. Every other account, group, share
//! and session stays. Works on an export of the settings so the reset applies it with the other domains' parts
//! in one transaction.

use crate::records::TREE;
use crate::{AccountError, Credential, PasswordHash, Role, Session, User};
use cairn_store::snapshot::Export;
use std::collections::BTreeSet;

/// The mark (a meta record) that administrator passwords were cleared and setup is open for one of them.
pub(crate) const ADMIN_RESET: &str = "admin_password_reset";

/// A credential nothing matches: no dashboard password verifies against an empty hash, and SMB renders no
/// line for an empty NT hash.
pub(crate) fn cleared_credential(at_s: u64) -> Credential {
    Credential {
        password: PasswordHash {
            hash_hex: String::new(),
            ..PasswordHash::dummy(1)
        },
        nt_hash_hex: String::new(),
        changed_s: Some(at_s),
    }
}

/// Clears the administrators' passwords in `export`, ends their sessions and opens setup for a new
/// administrator password. Returns the administrators' names. A damaged user record is left as it is (it
/// cannot log in anyway).
pub fn clear_admin_passwords(export: &mut Export, at_s: u64) -> Result<Vec<String>, AccountError> {
    let mut admins = BTreeSet::new();
    let mut changed = Vec::new();
    for (tree, key, value) in &export.records {
        if tree != TREE || !key.starts_with(b"u/") {
            continue;
        }
        let Ok(mut user) = serde_json::from_slice::<User>(value) else {
            log::warn!(
                "reset: user record {} is damaged and left as it is",
                String::from_utf8_lossy(key)
            );
            continue;
        };
        if user.role == Role::Admin {
            user.credential = cleared_credential(at_s);
            admins.insert(user.name.clone());
            changed.push((key.clone(), cairn_store::encode(&user)?));
        }
    }
    for (key, value) in changed {
        export.put(TREE, &key, value);
    }
    export.retain(|tree, key, value| {
        !(tree == TREE
            && key.starts_with(b"x/")
            && serde_json::from_slice::<Session>(value).is_ok_and(|s| admins.contains(&s.user)))
    });
    export.put(
        TREE,
        format!("m/{ADMIN_RESET}").as_bytes(),
        at_s.to_string().into_bytes(),
    );
    Ok(admins.into_iter().collect())
}
