//! Accounts and sessions: who may use the box, and who is logged in.
//!
//! Owns user records (with their password hash), the first-boot setup that creates the first administrator,
//! and login sessions. A session is a random token held in a cookie; it is bound to nothing but the account,
//! never to the box's address, host name or any cloud registration, so renaming or re-addressing the box
//! cannot lock its owner out. Never talks to the network. Tested on the host against a temporary store.
#![forbid(unsafe_code)]

mod names;
mod password;
mod sessions;

pub use names::{validate_user_name, NameError};
pub use password::{PasswordHash, PasswordPolicy};
pub use sessions::{Session, SessionPolicy};

use cairn_store::{Store, StoreError, Table};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// What an account may do.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

/// A stored account. The password hash never leaves this crate in API answers: see [`UserView`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    #[serde(default)]
    pub full_name: String,
    #[serde(default)]
    pub email: String,
    pub role: Role,
    pub enabled: bool,
    pub password: PasswordHash,
    pub created_s: u64,
}

/// An account as the API and pages show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserView {
    pub name: String,
    pub full_name: String,
    pub email: String,
    pub role: Role,
    pub enabled: bool,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView { name: u.name.clone(), full_name: u.full_name.clone(), email: u.email.clone(), role: u.role, enabled: u.enabled }
    }
}

/// Why an account operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("the password is too short: at least {min} characters")]
    PasswordTooShort { min: usize },
    #[error("the password is too long: at most {max} bytes")]
    PasswordTooLong { max: usize },
    #[error("the e-mail address {0:?} is not valid")]
    InvalidEmail(String),
    #[error("setup is already done: an administrator exists")]
    SetupDone,
    #[error("user name or password is wrong")]
    BadCredentials,
    #[error("the session has expired or does not exist")]
    NoSession,
    #[error("settings store: {0}")]
    Store(#[from] StoreError),
    #[error("the random number generator failed")]
    Random,
}

/// Seconds since the epoch, the unit of every stored time.
pub fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Accounts and sessions over the settings store.
#[derive(Clone)]
pub struct Accounts {
    store: Store,
    users: Table,
    sessions: Table,
    password_policy: PasswordPolicy,
    session_policy: SessionPolicy,
}

/// Longest e-mail address accepted (RFC 5321's path limit).
const EMAIL_MAX: usize = 254;

fn validate_email(email: &str) -> Result<(), AccountError> {
    if email.is_empty() {
        return Ok(());
    }
    let ok = email.len() <= EMAIL_MAX
        && email.chars().all(|c| c.is_ascii_graphic())
        && !email.contains(['<', '>', '"', '\'', ';', ',', '\\', '[', ']', '(', ')'])
        && matches!(email.split_once('@'), Some((local, domain)) if !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.') && !domain.contains('@'));
    if ok {
        Ok(())
    } else {
        Err(AccountError::InvalidEmail(email.to_string()))
    }
}

impl Accounts {
    /// Opens the account tables in the store.
    pub fn new(store: Store) -> Result<Accounts, AccountError> {
        Ok(Accounts {
            users: store.table("users")?,
            sessions: store.table("sessions")?,
            store,
            password_policy: PasswordPolicy::OWASP_2023,
            session_policy: SessionPolicy::DASHBOARD,
        })
    }

    /// True once the first administrator exists; until then only setup is offered.
    pub fn setup_done(&self) -> bool {
        !self.users.is_empty()
    }

    /// Creates the first administrator. Refused once any account exists, so setup can never take over a box.
    pub fn setup(&self, name: &str, password: &str, email: &str) -> Result<User, AccountError> {
        validate_user_name(name)?;
        self.password_policy.check(password).map_err(|e| match e {
            password::PolicyError::TooShort(min) => AccountError::PasswordTooShort { min },
            password::PolicyError::TooLong(max) => AccountError::PasswordTooLong { max },
        })?;
        validate_email(email)?;
        if self.setup_done() {
            return Err(AccountError::SetupDone);
        }
        let user = User {
            name: name.to_string(),
            full_name: String::new(),
            email: email.to_string(),
            role: Role::Admin,
            enabled: true,
            password: PasswordHash::new(password, self.password_policy.iterations).map_err(|_| AccountError::Random)?,
            created_s: now_s(),
        };
        // Two setup requests racing: a transaction over the whole table lets exactly one create the first account.
        let encoded = cairn_store::encode(&user)?;
        let created = self
            .users
            .tree()
            .transaction(|tx| {
                if tx.get(b"\x00setup_lock")?.is_some() {
                    return Ok(false);
                }
                tx.insert(b"\x00setup_lock".as_slice(), b"1".as_slice())?;
                tx.insert(user.name.as_bytes(), encoded.clone())?;
                Ok(true)
            })
            .map_err(|e: sled::transaction::TransactionError<()>| match e {
                sled::transaction::TransactionError::Storage(s) => AccountError::Store(StoreError::Db(s)),
                sled::transaction::TransactionError::Abort(()) => AccountError::SetupDone,
            })?;
        if !created {
            return Err(AccountError::SetupDone);
        }
        self.store.commit()?;
        Ok(user)
    }

    /// Looks up one account.
    pub fn user(&self, name: &str) -> Result<Option<User>, AccountError> {
        if validate_user_name(name).is_err() {
            return Ok(None);
        }
        Ok(self.users.get(name)?)
    }

    /// Every account, in name order.
    pub fn users(&self) -> Result<Vec<User>, AccountError> {
        Ok(self.users.all::<serde_json::Value>()?
            .into_iter()
            .filter(|(k, _)| !k.starts_with('\u{0}'))
            .map(|(k, v)| serde_json::from_value(v).map_err(|source| StoreError::Corrupt { tree: "users".into(), key: k, source }))
            .collect::<Result<_, _>>()?)
    }

    /// Checks a password and opens a session. The same error whether the account is unknown, disabled or the
    /// password is wrong, and the same work in each case, so a login never reveals which accounts exist.
    pub fn login(&self, name: &str, password: &str, client: &str) -> Result<(Session, String, User), AccountError> {
        let user = self.user(name)?;
        let ok = match &user {
            Some(u) => u.password.verify(password) && u.enabled,
            None => {
                PasswordHash::dummy(self.password_policy.iterations).verify(password);
                false
            }
        };
        match (ok, user) {
            (true, Some(user)) => {
                let (session, token) = sessions::open(&self.sessions, &user.name, client, self.session_policy)?;
                self.store.commit()?;
                Ok((session, token, user))
            }
            _ => Err(AccountError::BadCredentials),
        }
    }

    /// Opens a session for an account whose identity was just established (first-boot setup).
    pub fn open_session(&self, user: &str, client: &str) -> Result<(Session, String), AccountError> {
        let opened = sessions::open(&self.sessions, user, client, self.session_policy)?;
        self.store.commit()?;
        Ok(opened)
    }

    /// The live session behind a cookie token, with its enabled account.
    pub fn session(&self, token: &str) -> Result<(Session, User), AccountError> {
        let session = sessions::find(&self.sessions, token, self.session_policy)?.ok_or(AccountError::NoSession)?;
        match self.user(&session.user)? {
            Some(user) if user.enabled => Ok((session, user)),
            _ => Err(AccountError::NoSession),
        }
    }

    /// Ends a session (logout). Durable before it returns.
    pub fn logout(&self, token: &str) -> Result<(), AccountError> {
        sessions::remove(&self.sessions, token)?;
        self.store.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
