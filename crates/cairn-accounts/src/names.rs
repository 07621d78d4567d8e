//! The one grammar for account and group names, shared by the dashboard, SMB and the system files.

/// Longest name: fits every consumer (SMB, /etc/passwd, ksmbd's user database).
pub const NAME_MAX: usize = 32;

/// Names the system itself uses; an account with one of these names would be confused with it.
const RESERVED: &[&str] = &[
    // Section names of smb.conf-style files, so no name can ever look like one.
    "global",
    "homes",
    "printers",
    "print",
    "ipc",
    // The unix account share files belong to.
    "nas-files",
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "nogroup",
    "guest",
    "ksmbd",
    "cairn",
    "everyone",
    "users",
    "admins",
    "administrator",
    "system",
    "sshd",
    "messagebus",
    "systemd-network",
];

/// Why a name is not allowed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("the name is longer than {NAME_MAX} characters")]
    TooLong,
    #[error("the name must start with a lowercase letter")]
    BadStart,
    #[error("the name may only contain lowercase letters, digits, '_' and '-'")]
    BadCharacter,
    #[error("the name {0:?} is reserved for the system")]
    Reserved(String),
}

/// Checks a user or group name against the grammar: `[a-z][a-z0-9_-]{0,31}`, reserved names refused.
pub fn validate_user_name(name: &str) -> Result<(), NameError> {
    let first = name.chars().next().ok_or(NameError::Empty)?;
    if name.len() > NAME_MAX {
        return Err(NameError::TooLong);
    }
    if !first.is_ascii_lowercase() {
        return Err(NameError::BadStart);
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err(NameError::BadCharacter);
    }
    if RESERVED.contains(&name) {
        return Err(NameError::Reserved(name.to_string()));
    }
    Ok(())
}
