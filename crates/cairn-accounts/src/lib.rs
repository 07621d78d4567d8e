//! Accounts and access: who may use the box, what they may reach, and who is logged in.
//!
//! Owns user records (password hash and SMB NT hash side by side in the same record, so the dashboard and
//! file sharing can never disagree about a password), groups, shares with their per-user and per-group access,
//! first-boot setup, and login sessions. A session is a random token held in a cookie; it is bound to nothing
//! but the account, never to the box's address, host name or any cloud registration. Every change that touches
//! several records (deleting a user drops its memberships, share access and sessions) is one sled transaction,
//! committed to disk before it returns. Never talks to the network and never writes server configuration
//! files: `cairn-smb` renders those from what this crate holds. Tested on the host against a temporary store.
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

mod migrations;
mod names;
mod password;
mod records;
mod reset;
mod sessions;
mod shares;

pub use migrations::MIGRATIONS;
pub use names::{validate_user_name, NameError};
pub use password::{nt_hash_hex, PasswordHash, PasswordPolicy};
pub use reset::clear_admin_passwords;
pub use sessions::{Session, SessionPolicy};
pub use shares::{
    validate_share_name, validate_share_path, Access, Level, NewShare, Share, SharePatch,
    SYSTEM_VOLUME,
};

use cairn_store::{Store, StoreError};
use records::{Change, Kind, Records};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// What an account may do.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

/// First unix id handed to accounts (below are system ids); ids are never reused.
pub const FIRST_UID: u32 = 10_000;

/// A stored account. The hashes never leave this crate in API answers: see [`UserView`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    #[serde(default)]
    pub full_name: String,
    #[serde(default)]
    pub email: String,
    pub role: Role,
    pub enabled: bool,
    /// Everything that proves who the user is, for the dashboard and SMB alike (schema 3 keeps it as one
    /// object; the `schema-2-only` build keeps its fields at the top, as schema 2 did).
    #[cfg_attr(feature = "schema-2-only", serde(flatten))]
    pub credential: Credential,
    /// Unix id the file server maps this account to.
    #[serde(default)]
    pub uid: u32,
    pub created_s: u64,
}

/// One credential serves the dashboard and SMB: both hashes change together, so they can never disagree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credential {
    pub password: PasswordHash,
    /// MD4 of the UTF-16LE password: what SMB's NTLM authentication needs. Changed only with `password`.
    #[serde(default)]
    pub nt_hash_hex: String,
    /// When the password was last set (seconds since the epoch); none for a password set before schema 3,
    /// when the box did not keep it. Lets an owner see stale passwords.
    #[cfg_attr(feature = "schema-2-only", serde(skip))]
    #[serde(default)]
    pub changed_s: Option<u64>,
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
        UserView {
            name: u.name.clone(),
            full_name: u.full_name.clone(),
            email: u.email.clone(),
            role: u.role,
            enabled: u.enabled,
        }
    }
}

/// A new account, as an administrator fills it in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    #[serde(default)]
    pub full_name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default = "default_role")]
    pub role: Role,
    #[serde(default = "default_true")]
    pub enabled: bool,
    pub password: String,
}

fn default_role() -> Role {
    Role::User
}

fn default_true() -> bool {
    true
}

/// A change to an account; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub full_name: Option<String>,
    pub email: Option<String>,
    pub role: Option<Role>,
    pub enabled: Option<bool>,
    pub password: Option<String>,
}

/// A group of accounts, for giving share access to several people at once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub members: Vec<String>,
    #[serde(default)]
    pub gid: u32,
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
    #[error("the full name is not valid: {0}")]
    InvalidFullName(&'static str),
    #[error("setup is already done: an administrator exists")]
    SetupDone,
    #[error("{0:?} is an account without administrator rights; after a reset, setup sets an administrator's password")]
    SetupNotAdmin(String),
    #[error("user name or password is wrong")]
    BadCredentials,
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    #[error("the session has expired or does not exist")]
    NoSession,
    #[error("there is no user named {0:?}")]
    NoSuchUser(String),
    #[error("a user named {0:?} already exists")]
    UserExists(String),
    #[error("there is no group named {0:?}")]
    NoSuchGroup(String),
    #[error("a group named {0:?} already exists")]
    GroupExists(String),
    #[error("there is no share named {0:?}")]
    NoSuchShare(String),
    #[error("a share named {0:?} already exists")]
    ShareExists(String),
    #[error("{0:?} is the last enabled administrator")]
    LastAdmin(String),
    #[error("the share path is not valid: {0}")]
    InvalidSharePath(String),
    #[error("there is no volume named {0:?}")]
    NoSuchVolume(String),
    #[error("the description is not valid: {0}")]
    InvalidDescription(&'static str),
    #[error("settings store: {0}")]
    Store(#[from] StoreError),
    #[error("the random number generator failed")]
    Random,
}

impl From<sled::Error> for AccountError {
    fn from(e: sled::Error) -> Self {
        AccountError::Store(StoreError::Db(e))
    }
}

/// Seconds since the epoch, the unit of every stored time.
pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Accounts, groups, shares and sessions over the settings store.
#[derive(Clone)]
pub struct Accounts {
    store: Store,
    records: Records,
    pub(crate) password_policy: PasswordPolicy,
    pub(crate) session_policy: SessionPolicy,
}

/// Longest e-mail address accepted (RFC 5321's path limit).
const EMAIL_MAX: usize = 254;
/// Longest full name, in characters.
const FULL_NAME_MAX: usize = 128;
/// Written with the first administrator; once there, setup never runs again.
const SETUP_DONE: &str = "setup_done";

fn validate_email(email: &str) -> Result<(), AccountError> {
    if email.is_empty() {
        return Ok(());
    }
    let ok = email.len() <= EMAIL_MAX
        && email.chars().all(|c| c.is_ascii_graphic())
        && !email.contains([
            '<', '>', '"', '\'', ';', ',', '\\', '[', ']', '(', ')', '/', '#',
        ])
        && matches!(email.split_once('@'), Some((local, domain)) if !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.') && !domain.contains('@'));
    if ok {
        Ok(())
    } else {
        Err(AccountError::InvalidEmail(email.to_string()))
    }
}

/// Free text shown to people: no control characters (newlines included), bounded length.
pub(crate) fn validate_text(text: &str, max: usize) -> Result<(), &'static str> {
    if text.chars().count() > max {
        return Err("it is too long");
    }
    if text.chars().any(|c| c.is_control()) {
        return Err("it contains a line break or another control character");
    }
    Ok(())
}

impl Accounts {
    /// Opens the account tables in the store.
    pub fn new(store: Store) -> Result<Accounts, AccountError> {
        Ok(Accounts {
            records: Records::new(
                store
                    .db()
                    .open_tree(records::TREE)
                    .map_err(StoreError::Db)?,
                store.room().clone(),
            ),
            store,
            password_policy: PasswordPolicy::OWASP_2023,
            session_policy: SessionPolicy::DASHBOARD,
        })
    }

    /// Lowers the password work factor for new hashes. Only for seeding benchmark and test data fast:
    /// every hash records its own factor, so logins stay correct. The daemon never calls this.
    #[doc(hidden)]
    pub fn set_kdf_iterations_for_seeding(&mut self, iterations: u32) {
        self.password_policy.iterations = iterations;
    }

    /// One all-or-nothing change, durable before it returns.
    fn tx<R>(
        &self,
        f: impl FnOnce(&mut Change) -> Result<R, AccountError>,
    ) -> Result<R, AccountError> {
        let r = self.records.change(f)?;
        self.store.commit()?;
        Ok(r)
    }

    fn check_password(&self, password: &str) -> Result<(), AccountError> {
        self.password_policy.check(password).map_err(|e| match e {
            password::PolicyError::TooShort(min) => AccountError::PasswordTooShort { min },
            password::PolicyError::TooLong(max) => AccountError::PasswordTooLong { max },
        })
    }

    fn credential(&self, password: &str) -> Result<Credential, AccountError> {
        Ok(Credential {
            password: PasswordHash::new(password, self.password_policy.iterations)
                .map_err(|_| AccountError::Random)?,
            nt_hash_hex: nt_hash_hex(password),
            changed_s: Some(now_s()),
        })
    }

    fn next_id(&self) -> Result<u32, AccountError> {
        let n = self.store.db().generate_id()?;
        Ok(FIRST_UID + u32::try_from(n % 1_000_000).unwrap_or(0))
    }

    /// True once an administrator can log in: the first one exists and no reset pin cleared their passwords.
    /// Until then only setup is offered.
    pub fn setup_done(&self) -> bool {
        !self.records.is_empty(Kind::User) && !self.admin_password_reset()
    }

    /// True after the reset pin's network tier cleared the administrators' passwords, until setup sets one.
    pub fn admin_password_reset(&self) -> bool {
        matches!(
            self.records
                .get::<serde_json::Value>(Kind::Meta, reset::ADMIN_RESET),
            Ok(Some(_))
        )
    }

    /// Creates the first administrator. Refused once any account exists, so setup can never take over a box;
    /// after the reset pin cleared the administrators' passwords it sets the password of the administrator
    /// named (or makes a new one) and closes setup again.
    pub fn setup(&self, name: &str, password: &str, email: &str) -> Result<User, AccountError> {
        validate_user_name(name)?;
        self.check_password(password)?;
        validate_email(email)?;
        if self.setup_done() {
            return Err(AccountError::SetupDone);
        }
        let credential = self.credential(password)?;
        let new_admin = User {
            name: name.to_string(),
            full_name: String::new(),
            email: email.to_string(),
            role: Role::Admin,
            enabled: true,
            credential,
            uid: self.next_id()?,
            created_s: now_s(),
        };
        // Two setup requests racing: the lock key lets exactly one create the first account.
        self.tx(|tx| {
            if tx.exists(Kind::Meta, reset::ADMIN_RESET)? {
                tx.remove(Kind::Meta, reset::ADMIN_RESET);
                let user = match tx.get::<User>(Kind::User, name)? {
                    Some(existing) if existing.role != Role::Admin => {
                        return Err(AccountError::SetupNotAdmin(name.to_string()))
                    }
                    Some(mut existing) => {
                        existing.credential = new_admin.credential.clone();
                        existing.enabled = true;
                        if !email.is_empty() {
                            existing.email = email.to_string();
                        }
                        existing
                    }
                    None => new_admin,
                };
                tx.put(Kind::User, &user.name, &user)?;
                return Ok(user);
            }
            if tx.exists(Kind::Meta, SETUP_DONE)?
                || !tx.list::<serde_json::Value>(Kind::User)?.is_empty()
            {
                return Err(AccountError::SetupDone);
            }
            tx.put(Kind::Meta, SETUP_DONE, &now_s())?;
            tx.put(Kind::User, &new_admin.name, &new_admin)?;
            Ok(new_admin)
        })
    }

    /// Looks up one account.
    pub fn user(&self, name: &str) -> Result<Option<User>, AccountError> {
        if validate_user_name(name).is_err() {
            return Ok(None);
        }
        self.records.get(Kind::User, name)
    }

    /// One account, or the not-found error callers answer with.
    pub fn require_user(&self, name: &str) -> Result<User, AccountError> {
        self.user(name)?
            .ok_or_else(|| AccountError::NoSuchUser(name.to_string()))
    }

    /// Keys of damaged account records that lists skipped (for health and the console).
    pub fn damaged_records(&self) -> Vec<String> {
        self.records.damaged()
    }

    /// Every account, in name order.
    pub fn users(&self) -> Result<Vec<User>, AccountError> {
        self.records.list(Kind::User)
    }

    /// Adds an account (administrators only: the API checks the caller).
    pub fn create_user(&self, new: NewUser) -> Result<User, AccountError> {
        validate_user_name(&new.name)?;
        validate_email(&new.email)?;
        validate_text(&new.full_name, FULL_NAME_MAX).map_err(AccountError::InvalidFullName)?;
        self.check_password(&new.password)?;
        let credential = self.credential(&new.password)?;
        let user = User {
            name: new.name.clone(),
            full_name: new.full_name,
            email: new.email,
            role: new.role,
            enabled: new.enabled,
            credential,
            uid: self.next_id()?,
            created_s: now_s(),
        };
        self.tx(|tx| {
            if tx.exists(Kind::User, &user.name)? {
                return Err(AccountError::UserExists(user.name.clone()));
            }
            if tx.exists(Kind::Group, &user.name)? {
                // One namespace for users and groups: SMB and /etc/group would confuse them.
                return Err(AccountError::GroupExists(user.name.clone()));
            }
            tx.put(Kind::User, &user.name, &user)
        })?;
        Ok(user)
    }

    /// Changes an account. The last enabled administrator can be neither demoted nor disabled.
    pub fn update_user(&self, name: &str, patch: UserPatch) -> Result<User, AccountError> {
        if let Some(e) = &patch.email {
            validate_email(e)?;
        }
        if let Some(f) = &patch.full_name {
            validate_text(f, FULL_NAME_MAX).map_err(AccountError::InvalidFullName)?;
        }
        let new_hash = match &patch.password {
            Some(p) => {
                self.check_password(p)?;
                Some(self.credential(p)?)
            }
            None => None,
        };
        self.tx(|tx| {
            let mut user: User = tx
                .get(Kind::User, name)?
                .ok_or_else(|| AccountError::NoSuchUser(name.to_string()))?;
            let was_admin = user.role == Role::Admin && user.enabled;
            if let Some(f) = &patch.full_name {
                user.full_name = f.clone();
            }
            if let Some(e) = &patch.email {
                user.email = e.clone();
            }
            if let Some(r) = patch.role {
                user.role = r;
            }
            if let Some(en) = patch.enabled {
                user.enabled = en;
            }
            if let Some(credential) = &new_hash {
                user.credential = credential.clone();
            }
            let still_admin = user.role == Role::Admin && user.enabled;
            if was_admin && !still_admin && enabled_admins_other_than(tx, name)? == 0 {
                return Err(AccountError::LastAdmin(name.to_string()));
            }
            tx.put(Kind::User, name, &user)?;
            if !user.enabled || new_hash.is_some() {
                // A disabled account or a changed password ends the account's other logins.
                remove_sessions_of(tx, name, None)?;
            }
            Ok(user)
        })
    }

    /// Removes an account with its group memberships, share access and sessions, all at once.
    pub fn delete_user(&self, name: &str) -> Result<(), AccountError> {
        self.tx(|tx| {
            let user: User = tx
                .get(Kind::User, name)?
                .ok_or_else(|| AccountError::NoSuchUser(name.to_string()))?;
            if user.role == Role::Admin && user.enabled && enabled_admins_other_than(tx, name)? == 0
            {
                return Err(AccountError::LastAdmin(name.to_string()));
            }
            tx.remove(Kind::User, name);
            for (key, mut group) in tx.list::<Group>(Kind::Group)? {
                if group.members.iter().any(|m| m == name) {
                    group.members.retain(|m| m != name);
                    tx.put(Kind::Group, &key, &group)?;
                }
            }
            for (key, mut share) in tx.list::<Share>(Kind::Share)? {
                if share.access.users.remove(name).is_some() {
                    tx.put(Kind::Share, &key, &share)?;
                }
            }
            remove_sessions_of(tx, name, None)
        })
    }

    /// A user changing their own password must know the current one; their other sessions end.
    pub fn change_own_password(
        &self,
        name: &str,
        current: &str,
        new: &str,
        keep_session: &str,
    ) -> Result<(), AccountError> {
        // The new password's rules first: a refusal then says nothing about the current password.
        self.check_password(new)?;
        let user = self
            .user(name)?
            .ok_or_else(|| AccountError::NoSuchUser(name.to_string()))?;
        if !user.credential.password.verify(current) {
            return Err(AccountError::WrongCurrentPassword);
        }
        let credential = self.credential(new)?;
        self.tx(|tx| {
            let mut user: User = tx
                .get(Kind::User, name)?
                .ok_or_else(|| AccountError::NoSuchUser(name.to_string()))?;
            user.credential = credential.clone();
            tx.put(Kind::User, name, &user)?;
            remove_sessions_of(tx, name, Some(keep_session))
        })
    }

    /// Every group, in name order.
    pub fn groups(&self) -> Result<Vec<Group>, AccountError> {
        self.records.list(Kind::Group)
    }

    pub fn group(&self, name: &str) -> Result<Option<Group>, AccountError> {
        if validate_user_name(name).is_err() {
            return Ok(None);
        }
        self.records.get(Kind::Group, name)
    }

    /// One group, or the not-found error callers answer with.
    pub fn require_group(&self, name: &str) -> Result<Group, AccountError> {
        self.group(name)?
            .ok_or_else(|| AccountError::NoSuchGroup(name.to_string()))
    }

    fn clean_members(members: &[String]) -> Result<Vec<String>, AccountError> {
        let mut out: Vec<String> = Vec::new();
        for m in members {
            validate_user_name(m)?;
            if !out.contains(m) {
                out.push(m.clone());
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn create_group(&self, name: &str, members: &[String]) -> Result<Group, AccountError> {
        validate_user_name(name)?;
        let members = Self::clean_members(members)?;
        let gid = self.next_id()?;
        self.tx(|tx| {
            if tx.exists(Kind::Group, name)? {
                return Err(AccountError::GroupExists(name.to_string()));
            }
            if tx.exists(Kind::User, name)? {
                return Err(AccountError::UserExists(name.to_string()));
            }
            for m in &members {
                if !tx.exists(Kind::User, m)? {
                    return Err(AccountError::NoSuchUser(m.clone()));
                }
            }
            let group = Group {
                name: name.to_string(),
                members: members.clone(),
                gid,
            };
            tx.put(Kind::Group, name, &group)?;
            Ok(group)
        })
    }

    /// Replaces a group's members.
    pub fn update_group(&self, name: &str, members: &[String]) -> Result<Group, AccountError> {
        let members = Self::clean_members(members)?;
        self.tx(|tx| {
            let mut group: Group = tx
                .get(Kind::Group, name)?
                .ok_or_else(|| AccountError::NoSuchGroup(name.to_string()))?;
            for m in &members {
                if !tx.exists(Kind::User, m)? {
                    return Err(AccountError::NoSuchUser(m.clone()));
                }
            }
            group.members = members.clone();
            tx.put(Kind::Group, name, &group)?;
            Ok(group)
        })
    }

    /// Removes a group and the share access given to it.
    pub fn delete_group(&self, name: &str) -> Result<(), AccountError> {
        self.tx(|tx| {
            if !tx.exists(Kind::Group, name)? {
                return Err(AccountError::NoSuchGroup(name.to_string()));
            }
            tx.remove(Kind::Group, name);
            for (key, mut share) in tx.list::<Share>(Kind::Share)? {
                if share.access.groups.remove(name).is_some() {
                    tx.put(Kind::Share, &key, &share)?;
                }
            }
            Ok(())
        })
    }

    /// Every share, in name order.
    pub fn shares(&self) -> Result<Vec<Share>, AccountError> {
        self.records.list(Kind::Share)
    }

    pub fn share(&self, name: &str) -> Result<Option<Share>, AccountError> {
        if shares::validate_share_name(name).is_err() {
            return Ok(None);
        }
        self.records.get(Kind::Share, name)
    }

    /// One share, or the not-found error callers answer with.
    pub fn require_share(&self, name: &str) -> Result<Share, AccountError> {
        self.share(name)?
            .ok_or_else(|| AccountError::NoSuchShare(name.to_string()))
    }

    /// Adds a share. Access may name only existing users and groups.
    pub fn create_share(&self, new: NewShare) -> Result<Share, AccountError> {
        let share = new.into_share()?;
        self.tx(|tx| {
            if tx.exists(Kind::Share, &share.name)? {
                return Err(AccountError::ShareExists(share.name.clone()));
            }
            check_access(tx, &share.access)?;
            tx.put(Kind::Share, &share.name, &share)?;
            Ok(share.clone())
        })
    }

    pub fn update_share(&self, name: &str, patch: SharePatch) -> Result<Share, AccountError> {
        patch.validate()?;
        self.tx(|tx| {
            let mut share: Share = tx
                .get(Kind::Share, name)?
                .ok_or_else(|| AccountError::NoSuchShare(name.to_string()))?;
            patch.apply(&mut share);
            check_access(tx, &share.access)?;
            tx.put(Kind::Share, name, &share)?;
            Ok(share)
        })
    }

    pub fn delete_share(&self, name: &str) -> Result<Share, AccountError> {
        self.tx(|tx| {
            let share: Share = tx
                .get(Kind::Share, name)?
                .ok_or_else(|| AccountError::NoSuchShare(name.to_string()))?;
            tx.remove(Kind::Share, name);
            Ok(share)
        })
    }

    /// What a user may do on each share: directly or through a group, the stronger level wins.
    pub fn access_of(&self, user: &str) -> Result<BTreeMap<String, Level>, AccountError> {
        let groups: Vec<String> = self
            .groups()?
            .into_iter()
            .filter(|g| g.members.iter().any(|m| m == user))
            .map(|g| g.name)
            .collect();
        let mut out = BTreeMap::new();
        for share in self.shares()? {
            if let Some(level) = share.level_for(user, &groups) {
                out.insert(share.name.clone(), level);
            }
        }
        Ok(out)
    }

    /// Checks a password and opens a session. The same error whether the account is unknown, disabled or the
    /// password is wrong, and the same work in each case, so a login never reveals which accounts exist.
    pub fn login(
        &self,
        name: &str,
        password: &str,
        client: &str,
    ) -> Result<(Session, String, User), AccountError> {
        let user = self.user(name)?;
        let ok = match &user {
            Some(u) => u.credential.password.verify(password) && u.enabled,
            None => {
                PasswordHash::dummy(self.password_policy.iterations).verify(password);
                false
            }
        };
        match (ok, user) {
            (true, Some(user)) => {
                let (session, token) =
                    sessions::open(&self.records, &user.name, client, self.session_policy)?;
                self.store.commit()?;
                Ok((session, token, user))
            }
            _ => Err(AccountError::BadCredentials),
        }
    }

    /// Opens a session for an account whose identity was just established (first-boot setup).
    pub fn open_session(
        &self,
        user: &str,
        client: &str,
    ) -> Result<(Session, String), AccountError> {
        let opened = sessions::open(&self.records, user, client, self.session_policy)?;
        self.store.commit()?;
        Ok(opened)
    }

    /// The live session behind a cookie token, with its enabled account.
    pub fn session(&self, token: &str) -> Result<(Session, User), AccountError> {
        let session = sessions::find(&self.records, token, self.session_policy)?
            .ok_or(AccountError::NoSession)?;
        match self.user(&session.user)? {
            Some(user) if user.enabled => Ok((session, user)),
            _ => Err(AccountError::NoSession),
        }
    }

    /// Ends a session (logout). Durable before it returns.
    pub fn logout(&self, token: &str) -> Result<(), AccountError> {
        sessions::remove(&self.records, token)?;
        self.store.commit()?;
        Ok(())
    }

    /// A user's live sessions, newest first.
    pub fn sessions_of(&self, user: &str) -> Result<Vec<Session>, AccountError> {
        let mut out: Vec<Session> = self
            .records
            .list::<Session>(Kind::Session)?
            .into_iter()
            .filter(|s| s.user == user)
            .collect();
        out.retain(|s| !s.expired(self.session_policy, now_s()));
        out.sort_by_key(|s| std::cmp::Reverse(s.created_s));
        Ok(out)
    }

    /// Ends one of a user's own sessions by its id; false when the user has no such session.
    pub fn revoke_session(&self, user: &str, id: &str) -> Result<bool, AccountError> {
        self.tx(|tx| match tx.get::<Session>(Kind::Session, id)? {
            Some(s) if s.user == user => {
                tx.remove(Kind::Session, id);
                Ok(true)
            }
            _ => Ok(false),
        })
    }
}

/// Enabled administrators other than `name`: the last one may not be removed, disabled or demoted.
fn enabled_admins_other_than(tx: &Change, name: &str) -> Result<usize, AccountError> {
    Ok(tx
        .list::<User>(Kind::User)?
        .iter()
        .filter(|(k, u)| k != name && u.role == Role::Admin && u.enabled)
        .count())
}

fn remove_sessions_of(tx: &mut Change, user: &str, keep: Option<&str>) -> Result<(), AccountError> {
    for (key, s) in tx.list::<Session>(Kind::Session)? {
        if s.user == user && keep != Some(s.id.as_str()) {
            tx.remove(Kind::Session, &key);
        }
    }
    Ok(())
}

/// Share access may name only accounts and groups that exist.
fn check_access(tx: &Change, access: &Access) -> Result<(), AccountError> {
    for u in access.users.keys() {
        if !tx.exists(Kind::User, u)? {
            return Err(AccountError::NoSuchUser(u.clone()));
        }
    }
    for g in access.groups.keys() {
        if !tx.exists(Kind::Group, g)? {
            return Err(AccountError::NoSuchGroup(g.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod damaged_and_full;
#[cfg(test)]
mod tests;
