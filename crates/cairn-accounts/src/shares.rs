//! Shares: a folder on a volume, and who may read or write it.

use crate::names::{validate_user_name, NameError};
use crate::{validate_text, AccountError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The volume shares live on until the storage manager provides real ones: a folder on the config partition.
pub const SYSTEM_VOLUME: &str = "system";
const DESCRIPTION_MAX: usize = 256;
const PATH_COMPONENT_MAX: usize = 64;
const PATH_DEPTH_MAX: usize = 8;
/// Section names smb.conf-style files give a meaning to.
const RESERVED_SHARES: &[&str] = &["global", "homes", "printers", "print", "ipc"];

/// How much a user or group may do on a share. No entry means no access.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Read,
    Write,
}

/// Who may reach a share.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Access {
    #[serde(default)]
    pub users: BTreeMap<String, Level>,
    #[serde(default)]
    pub groups: BTreeMap<String, Level>,
}

/// A stored share.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Share {
    pub name: String,
    pub description: String,
    pub volume: String,
    /// Folder relative to the volume's root.
    pub path: String,
    /// Guests (no account) may read. Off unless an administrator turns it on.
    pub guest: bool,
    pub access: Access,
}

impl Share {
    /// The level `user` (a member of `groups`) has; the stronger of the direct and group grants.
    pub fn level_for(&self, user: &str, groups: &[String]) -> Option<Level> {
        let direct = self.access.users.get(user).copied();
        let via_groups = groups
            .iter()
            .filter_map(|g| self.access.groups.get(g).copied())
            .max();
        direct.max(via_groups)
    }
}

/// A share as an administrator fills it in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewShare {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub volume: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub guest: bool,
    #[serde(default)]
    pub access: Access,
}

/// A change to a share; absent fields stay. The name cannot change (clients map it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharePatch {
    pub description: Option<String>,
    pub guest: Option<bool>,
    pub access: Option<Access>,
}

/// Share names: the account grammar (so no `[`, `;`, `#`, newline or path separator can reach a config file),
/// and not a section name the file server treats specially.
pub fn validate_share_name(name: &str) -> Result<(), NameError> {
    validate_user_name(name).or_else(|e| match e {
        // System account names are fine as share names; smb.conf's own section names are not.
        NameError::Reserved(_) => Ok(()),
        e => Err(e),
    })?;
    if RESERVED_SHARES.contains(&name) {
        return Err(NameError::Reserved(name.to_string()));
    }
    Ok(())
}

/// A folder below a volume's root: relative, no `.`/`..`, no leading `-` or `.`, portable characters only.
pub fn validate_share_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    if path.starts_with('/') {
        return Err("the path must be relative to the volume, not start with '/'".into());
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() > PATH_DEPTH_MAX {
        return Err(format!("the path is deeper than {PATH_DEPTH_MAX} folders"));
    }
    for p in parts {
        if p.is_empty() || p == "." || p == ".." {
            return Err("the path may not contain empty, '.' or '..' parts".into());
        }
        if p.starts_with('-') || p.starts_with('.') {
            return Err(format!(
                "the folder name {p:?} may not start with '-' or '.'"
            ));
        }
        if p.len() > PATH_COMPONENT_MAX {
            return Err(format!(
                "the folder name {p:?} is longer than {PATH_COMPONENT_MAX} characters"
            ));
        }
        if !p
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '))
        {
            return Err(format!(
                "the folder name {p:?} may only contain letters, digits, spaces, '_', '-' and '.'"
            ));
        }
    }
    Ok(())
}

fn validate_access(access: &Access) -> Result<(), AccountError> {
    for name in access.users.keys().chain(access.groups.keys()) {
        validate_user_name(name)?;
    }
    Ok(())
}

impl NewShare {
    pub(crate) fn into_share(self) -> Result<Share, AccountError> {
        validate_share_name(&self.name)?;
        validate_text(&self.description, DESCRIPTION_MAX)
            .map_err(AccountError::InvalidDescription)?;
        let volume = self.volume.unwrap_or_else(|| SYSTEM_VOLUME.to_string());
        // Which volumes exist is the storage manager's to say (the API asks it); here only the grammar.
        if volume != SYSTEM_VOLUME && crate::names::validate_user_name(&volume).is_err() {
            return Err(AccountError::NoSuchVolume(volume));
        }
        let path = self.path.unwrap_or_else(|| self.name.clone());
        validate_share_path(&path).map_err(AccountError::InvalidSharePath)?;
        validate_access(&self.access)?;
        Ok(Share {
            name: self.name,
            description: self.description,
            volume,
            path,
            guest: self.guest,
            access: self.access,
        })
    }
}

impl SharePatch {
    pub(crate) fn validate(&self) -> Result<(), AccountError> {
        if let Some(d) = &self.description {
            validate_text(d, DESCRIPTION_MAX).map_err(AccountError::InvalidDescription)?;
        }
        if let Some(a) = &self.access {
            validate_access(a)?;
        }
        Ok(())
    }

    pub(crate) fn apply(&self, share: &mut Share) {
        if let Some(d) = &self.description {
            share.description = d.clone();
        }
        if let Some(g) = self.guest {
            share.guest = g;
        }
        if let Some(a) = &self.access {
            share.access = a.clone();
        }
    }
}
