//! Login sessions: random tokens, stored only as their SHA-256 so a copied database opens no session.

use crate::password::hex;
use crate::records::{Kind, Records};
use crate::{now_s, AccountError};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// How long sessions live.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// Ends a session nobody used for this long.
    pub idle_s: u64,
    /// Ends every session this long after login, used or not.
    pub absolute_s: u64,
    /// Last-use times are written at most this often, so browsing does not wear the flash.
    pub touch_every_s: u64,
    /// Live sessions one user may have; a new login ends the oldest beyond it, so logins in a loop (a
    /// script, a guessed password) cannot fill the small settings partition.
    pub max_per_user: usize,
}

impl SessionPolicy {
    /// The LAN dashboard: a working day idle, two weeks at most; 16 browsers and scripts per user.
    pub const DASHBOARD: SessionPolicy = SessionPolicy {
        idle_s: 12 * 3600,
        absolute_s: 14 * 24 * 3600,
        touch_every_s: 60,
        max_per_user: 16,
    };
}

/// A stored session. Its id is the hash of the cookie token; the token itself is never stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub user: String,
    pub csrf_token: String,
    pub created_s: u64,
    pub last_used_s: u64,
    /// Where the login came from, shown to the owner in the session list; never checked.
    pub client: String,
}

impl Session {
    /// Seconds the cookie should live: until the absolute expiry.
    pub fn max_age_s(&self, policy: SessionPolicy) -> u64 {
        (self.created_s + policy.absolute_s).saturating_sub(now_s())
    }

    pub(crate) fn expired(&self, policy: SessionPolicy, now: u64) -> bool {
        now >= self.created_s + policy.absolute_s || now >= self.last_used_s + policy.idle_s
    }
}

const TOKEN_BYTES: usize = 32;

fn random_hex(len: usize) -> Result<String, AccountError> {
    let mut buf = vec![0u8; len];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| AccountError::Random)?;
    Ok(hex(&buf))
}

fn token_id(token: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
}

/// Opens a session for `user`. In the same change, every expired session (anyone's) is swept and the user's
/// oldest sessions beyond the cap end, so stored sessions stay bounded without a timer.
pub(crate) fn open(
    records: &Records,
    user: &str,
    client: &str,
    policy: SessionPolicy,
) -> Result<(Session, String), AccountError> {
    let token = random_hex(TOKEN_BYTES)?;
    let now = now_s();
    let session = Session {
        id: token_id(&token),
        user: user.to_string(),
        csrf_token: random_hex(TOKEN_BYTES)?,
        created_s: now,
        last_used_s: now,
        client: client.chars().take(64).collect(),
    };
    records.change(|tx| {
        let mut own = Vec::new();
        for (key, s) in tx.list::<Session>(Kind::Session)? {
            if s.expired(policy, now) {
                tx.remove(Kind::Session, &key);
            } else if s.user == user {
                own.push((s.created_s, s.last_used_s, key));
            }
        }
        own.sort();
        let keep = policy.max_per_user.saturating_sub(1);
        for (_, _, key) in own.iter().take(own.len().saturating_sub(keep)) {
            tx.remove(Kind::Session, key);
        }
        tx.put(Kind::Session, &session.id, &session)
    })?;
    Ok((session, token))
}

pub(crate) fn find(
    records: &Records,
    token: &str,
    policy: SessionPolicy,
) -> Result<Option<Session>, AccountError> {
    if token.len() != TOKEN_BYTES * 2 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let id = token_id(token);
    let Some(mut session) = records.get::<Session>(Kind::Session, &id)? else {
        return Ok(None);
    };
    let now = now_s();
    if session.expired(policy, now) {
        records.change(|tx| {
            tx.remove(Kind::Session, &id);
            Ok(())
        })?;
        return Ok(None);
    }
    if now >= session.last_used_s + policy.touch_every_s {
        session.last_used_s = now;
        // Written under the change lock, and only if the session still exists (a logout may have raced us).
        records.change(|tx| {
            if tx.exists(Kind::Session, &id)? {
                tx.put(Kind::Session, &id, &session)
            } else {
                Ok(())
            }
        })?;
    }
    Ok(Some(session))
}

pub(crate) fn remove(records: &Records, token: &str) -> Result<(), AccountError> {
    records.change(|tx| {
        tx.remove(Kind::Session, &token_id(token));
        Ok(())
    })
}
