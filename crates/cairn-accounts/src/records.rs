//! All account records in one sled tree, keyed `<kind>/<name>`, changed through all-or-nothing batches.
//!
//! One tree makes every multi-record change (deleting a user with its memberships, share access and sessions)
//! a single atomic `sled::Batch`. Writers are serialised by a mutex, so a change reads a consistent state,
//! decides, and applies everything at once; readers see the state before or after, never between.
//! A record that does not decode is skipped by the lists (and remembered with its key for health and the
//! console), so one damaged record never stops a login, the user list or the SMB render for everyone else;
//! a change that must read it still fails, naming it.

use crate::AccountError;
use cairn_store::{Need, Room, StoreError};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// Name of the tree holding every account record.
pub(crate) const TREE: &str = "accounts";

/// What a record is; the key prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    User,
    Group,
    Share,
    Session,
    Meta,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::User => "u/",
            Kind::Group => "g/",
            Kind::Share => "s/",
            Kind::Session => "x/",
            Kind::Meta => "m/",
        }
    }

    fn key(self, name: &str) -> Vec<u8> {
        format!("{}{name}", self.prefix()).into_bytes()
    }
}

#[derive(Clone)]
pub(crate) struct Records {
    tree: sled::Tree,
    writer: Arc<Mutex<()>>,
    room: Room,
    /// Keys of records a list found damaged (and skipped), since start.
    damaged: Arc<Mutex<BTreeSet<String>>>,
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, AccountError> {
    serde_json::from_slice(bytes).map_err(|source| {
        AccountError::Store(StoreError::Corrupt {
            tree: TREE.into(),
            key: String::from_utf8_lossy(key).into_owned(),
            source,
        })
    })
}

impl Records {
    pub fn new(tree: sled::Tree, room: Room) -> Records {
        Records {
            tree,
            writer: Arc::new(Mutex::new(())),
            room,
            damaged: Arc::default(),
        }
    }

    /// Keys of the damaged records the lists have skipped.
    pub fn damaged(&self) -> Vec<String> {
        self.damaged
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    pub fn get<T: DeserializeOwned>(
        &self,
        kind: Kind,
        name: &str,
    ) -> Result<Option<T>, AccountError> {
        let key = kind.key(name);
        match self.tree.get(&key)? {
            Some(v) => Ok(Some(decode(&key, &v)?)),
            None => Ok(None),
        }
    }

    /// Every readable record of a kind; a damaged one is logged with its key, remembered and skipped.
    pub fn list<T: DeserializeOwned>(&self, kind: Kind) -> Result<Vec<T>, AccountError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(kind.prefix()) {
            let (k, v) = item?;
            match decode(&k, &v) {
                Ok(record) => out.push(record),
                Err(e) => {
                    let key = String::from_utf8_lossy(&k).into_owned();
                    let new = self
                        .damaged
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .insert(key);
                    if new {
                        log::error!("{e}; skipped (the rest of the settings are used)");
                    }
                }
            }
        }
        Ok(out)
    }

    pub fn is_empty(&self, kind: Kind) -> bool {
        self.tree.scan_prefix(kind.prefix()).next().is_none()
    }

    /// Runs `f` with exclusive write access; what it stages is applied atomically only if it returns Ok.
    /// The caller flushes (Store::commit) before acknowledging.
    pub fn change<R>(
        &self,
        f: impl FnOnce(&mut Change) -> Result<R, AccountError>,
    ) -> Result<R, AccountError> {
        let _guard = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut change = Change {
            records: self,
            staged: BTreeMap::new(),
        };
        let result = f(&mut change)?;
        if change.staged.is_empty() {
            return Ok(result);
        }
        // A login's session record may use the headroom kept for it; every other change stops before it.
        let session = Kind::Session.prefix().as_bytes();
        let need = if change.staged.keys().all(|k| k.starts_with(session)) {
            Need::Session
        } else {
            Need::Change
        };
        self.room.check(need)?;
        let mut batch = sled::Batch::default();
        for (k, v) in change.staged {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(result)
    }
}

/// A change being prepared: reads see what it has staged so far.
pub(crate) struct Change<'a> {
    records: &'a Records,
    staged: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Change<'_> {
    pub fn get<T: DeserializeOwned>(
        &self,
        kind: Kind,
        name: &str,
    ) -> Result<Option<T>, AccountError> {
        let key = kind.key(name);
        match self.staged.get(&key) {
            Some(Some(v)) => Ok(Some(decode(&key, v)?)),
            Some(None) => Ok(None),
            None => self.records.get(kind, name),
        }
    }

    pub fn exists(&self, kind: Kind, name: &str) -> Result<bool, AccountError> {
        let key = kind.key(name);
        match self.staged.get(&key) {
            Some(v) => Ok(v.is_some()),
            None => Ok(self.records.tree.contains_key(&key)?),
        }
    }

    /// Every record of a kind as it will be after this change, with its name.
    pub fn list<T: DeserializeOwned>(&self, kind: Kind) -> Result<Vec<(String, T)>, AccountError> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for item in self.records.tree.scan_prefix(kind.prefix()) {
            let (k, v) = item?;
            merged.insert(k.to_vec(), v.to_vec());
        }
        for (k, v) in self.staged.range(kind.prefix().as_bytes().to_vec()..) {
            if !k.starts_with(kind.prefix().as_bytes()) {
                break;
            }
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        merged
            .into_iter()
            .map(|(k, v)| {
                let name = String::from_utf8_lossy(&k[kind.prefix().len()..]).into_owned();
                Ok((name, decode(&k, &v)?))
            })
            .collect()
    }

    pub fn put<T: Serialize>(
        &mut self,
        kind: Kind,
        name: &str,
        value: &T,
    ) -> Result<(), AccountError> {
        self.staged
            .insert(kind.key(name), Some(cairn_store::encode(value)?));
        Ok(())
    }

    pub fn remove(&mut self, kind: Kind, name: &str) {
        self.staged.insert(kind.key(name), None);
    }
}
