//! What a restore changes, part by part, and the settings it writes.
//!
//! A backup is first brought to this firmware's schema (by the caller, with the store's migrations). The
//! plan starts from the box's settings, replaces the records of each chosen part with the backup's, then
//! checks what it is about to write as hostile input: names against their grammar and their record keys, a
//! share's folder inside its volume and its volume on this box (a share whose volume is not here is left out
//! and named), share access only for accounts and groups that exist, and sessions only for accounts that
//! exist. The difference is answered for a dry run; the settings are written in one transaction.

use cairn_accounts::{validate_share_name, validate_share_path, validate_user_name, Share};
use cairn_store::snapshot::Export;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const ACCOUNTS: &str = "accounts";

/// The parts of the settings a restore can take on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// Network settings and the host name.
    Network,
    /// Users (with their passwords) and groups.
    Users,
    /// Shares and their access.
    Shares,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Network, Part::Users, Part::Shares];

    /// `network,users,shares` (any of them, in any order); empty means all.
    pub fn parse_list(list: &str) -> Result<Vec<Part>, String> {
        let mut parts = BTreeSet::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            parts.insert(match name {
                "network" => Part::Network,
                "users" => Part::Users,
                "shares" => Part::Shares,
                other => return Err(format!("{other:?} is not a part (network, users, shares)")),
            });
        }
        Ok(if parts.is_empty() {
            Part::ALL.to_vec()
        } else {
            parts.into_iter().collect()
        })
    }

    fn name(self) -> &'static str {
        match self {
            Part::Network => "network",
            Part::Users => "users",
            Part::Shares => "shares",
        }
    }

    /// True for the records this part is made of.
    fn owns(self, tree: &str, key: &[u8]) -> bool {
        match self {
            Part::Network => tree == "network" || (tree == "system" && key == b"hostname"),
            Part::Users => {
                tree == ACCOUNTS
                    && (key.starts_with(b"u/") || key.starts_with(b"g/") || key.starts_with(b"m/"))
            }
            Part::Shares => tree == ACCOUNTS && key.starts_with(b"s/"),
        }
    }
}

/// A restore worked out: what it changes, and the settings to write.
pub struct Plan {
    /// Per part: what is added, removed and changed, and what was left out and why.
    pub diff: Value,
    /// The box's settings with the chosen parts taken from the backup.
    pub settings: Export,
}

fn names_of(export: &Export, prefix: &[u8]) -> BTreeMap<String, Vec<u8>> {
    export
        .records
        .iter()
        .filter(|(t, k, _)| t == ACCOUNTS && k.starts_with(prefix))
        .map(|(_, k, v)| {
            (
                String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                v.clone(),
            )
        })
        .collect()
}

fn compare(before: &BTreeMap<String, Vec<u8>>, after: &BTreeMap<String, Vec<u8>>) -> Value {
    let added: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    let removed: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    let changed: Vec<&String> = after
        .iter()
        .filter(|(k, v)| before.get(*k).is_some_and(|b| b != *v))
        .map(|(k, _)| k)
        .collect();
    json!({"added": added, "removed": removed, "changed": changed})
}

fn text(export: &Export, tree: &str, key: &[u8]) -> Value {
    export
        .get(tree, key)
        .and_then(|v| serde_json::from_slice::<Value>(v).ok())
        .unwrap_or(Value::Null)
}

/// Works out the restore of `parts` from `backup` (already at this firmware's schema) onto `current`, with
/// `volumes` the volumes this box has (the system volume included).
pub fn plan(current: &Export, backup: &Export, parts: &[Part], volumes: &BTreeSet<String>) -> Plan {
    let mut settings = current.clone();
    let mut left_out: Vec<Value> = Vec::new();
    for part in parts {
        settings.retain(|t, k, _| !part.owns(t, k));
        for (tree, key, value) in &backup.records {
            if !part.owns(tree, key) {
                continue;
            }
            if let Some(why) = refuse(*part, key, value, volumes) {
                left_out.push(json!({"part": part.name(), "record": String::from_utf8_lossy(key), "why": why}));
                continue;
            }
            settings.put(tree, key, value.clone());
        }
    }
    tidy(&mut settings, &mut left_out);

    let mut diff = serde_json::Map::new();
    for part in parts {
        let entry = match part {
            Part::Network => json!({
                "hostname": {"from": text(current, "system", b"hostname"), "to": text(&settings, "system", b"hostname")},
                "network": {"from": text(current, "network", b"confirmed")["mode"], "to": text(&settings, "network", b"confirmed")["mode"]},
            }),
            Part::Users => json!({
                "users": compare(&names_of(current, b"u/"), &names_of(&settings, b"u/")),
                "groups": compare(&names_of(current, b"g/"), &names_of(&settings, b"g/")),
            }),
            Part::Shares => {
                json!({"shares": compare(&names_of(current, b"s/"), &names_of(&settings, b"s/"))})
            }
        };
        diff.insert(part.name().into(), entry);
    }
    diff.insert("left_out".into(), Value::Array(left_out));
    Plan {
        diff: Value::Object(diff),
        settings,
    }
}

/// Why a record from the backup is not restored, if it is not.
fn refuse(part: Part, key: &[u8], value: &[u8], volumes: &BTreeSet<String>) -> Option<String> {
    let name_in = |prefix: &[u8]| String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
    let record: Option<Value> = serde_json::from_slice(value).ok();
    match part {
        Part::Network => None,
        Part::Users if key.starts_with(b"u/") || key.starts_with(b"g/") => {
            let name = name_in(&key[..2]);
            if let Err(e) = validate_user_name(&name) {
                return Some(format!("{e}"));
            }
            match record.as_ref().and_then(|r| r["name"].as_str()) {
                Some(n) if n == name => None,
                _ => Some("the record does not match its name".into()),
            }
        }
        Part::Users => None,
        Part::Shares => {
            let name = name_in(b"s/");
            let share: Share = match serde_json::from_slice(value) {
                Ok(s) => s,
                Err(e) => return Some(format!("the share record is damaged: {e}")),
            };
            if share.name != name {
                return Some("the record does not match its name".into());
            }
            if let Err(e) = validate_share_name(&name) {
                return Some(format!("{e}"));
            }
            if let Err(e) = validate_share_path(&share.path) {
                return Some(format!(
                    "its folder {:?} would leave its volume: {e}",
                    share.path
                ));
            }
            if !volumes.contains(&share.volume) {
                return Some(format!(
                    "its volume {:?} is not on this box (import it, then restore the shares again)",
                    share.volume
                ));
            }
            None
        }
    }
}

/// Keeps what refers to accounts consistent with the accounts there are: share access for existing users
/// and groups only, group members and sessions of existing users only.
fn tidy(settings: &mut Export, left_out: &mut Vec<Value>) {
    let users: BTreeSet<String> = names_of(settings, b"u/").into_keys().collect();
    let groups: BTreeSet<String> = names_of(settings, b"g/").into_keys().collect();
    let mut rewrites = Vec::new();
    for (tree, key, value) in &settings.records {
        if tree != ACCOUNTS {
            continue;
        }
        let Ok(mut record) = serde_json::from_slice::<Value>(value) else {
            continue;
        };
        let mut changed = false;
        if key.starts_with(b"s/") {
            for (field, known) in [("users", &users), ("groups", &groups)] {
                if let Some(map) = record["access"][field].as_object_mut() {
                    let before = map.len();
                    map.retain(|name, _| known.contains(name));
                    if map.len() != before {
                        changed = true;
                        left_out.push(json!({"part": "shares", "record": String::from_utf8_lossy(key), "why": format!("access for {field} that are not on the box was dropped")}));
                    }
                }
            }
        } else if key.starts_with(b"g/") {
            if let Some(members) = record["members"].as_array_mut() {
                let before = members.len();
                members.retain(|m| m.as_str().is_some_and(|m| users.contains(m)));
                changed = members.len() != before;
            }
        } else if key.starts_with(b"x/") {
            if !record["user"].as_str().is_some_and(|u| users.contains(u)) {
                rewrites.push((key.clone(), None));
            }
            continue;
        }
        if changed {
            rewrites.push((key.clone(), serde_json::to_vec(&record).ok()));
        }
    }
    for (key, value) in rewrites {
        match value {
            Some(v) => settings.put(ACCOUNTS, &key, v),
            None => settings.retain(|t, k, _| !(t == ACCOUNTS && *k == key[..])),
        }
    }
}
