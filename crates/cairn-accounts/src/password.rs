//! Password hashing with PBKDF2-HMAC-SHA256 from ring, at OWASP's 2023 strength.

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;

/// Rules a new password must meet, and the work factor used to hash it.
#[derive(Debug, Clone, Copy)]
pub struct PasswordPolicy {
    pub min_chars: usize,
    pub max_bytes: usize,
    pub iterations: u32,
}

impl PasswordPolicy {
    /// OWASP Password Storage Cheat Sheet (2023): PBKDF2-HMAC-SHA256 with 600,000 iterations.
    pub const OWASP_2023: PasswordPolicy = PasswordPolicy {
        min_chars: 8,
        max_bytes: 1024,
        iterations: 600_000,
    };

    pub(crate) fn check(&self, password: &str) -> Result<(), PolicyError> {
        if password.chars().count() < self.min_chars {
            return Err(PolicyError::TooShort(self.min_chars));
        }
        if password.len() > self.max_bytes {
            return Err(PolicyError::TooLong(self.max_bytes));
        }
        Ok(())
    }
}

pub(crate) enum PolicyError {
    TooShort(usize),
    TooLong(usize),
}

/// A stored password: algorithm, work factor, salt and derived key, so the factor can rise without a migration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasswordHash {
    pub algorithm: String,
    pub iterations: u32,
    pub salt_hex: String,
    pub hash_hex: String,
}

const ALGORITHM: &str = "pbkdf2-hmac-sha256";
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;

impl PasswordHash {
    /// Hashes a new password with a fresh random salt.
    pub fn new(password: &str, iterations: u32) -> Result<PasswordHash, ring::error::Unspecified> {
        let mut salt = [0u8; SALT_LEN];
        SystemRandom::new().fill(&mut salt)?;
        Ok(Self::derive(password, &salt, iterations))
    }

    fn derive(password: &str, salt: &[u8], iterations: u32) -> PasswordHash {
        let mut out = [0u8; HASH_LEN];
        let rounds = NonZeroU32::new(iterations.max(1)).expect("max(1) is non-zero");
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            rounds,
            salt,
            password.as_bytes(),
            &mut out,
        );
        PasswordHash {
            algorithm: ALGORITHM.into(),
            iterations,
            salt_hex: hex(salt),
            hash_hex: hex(&out),
        }
    }

    /// A hash no password matches, verified against unknown accounts so they cost the same time as known ones.
    pub fn dummy(iterations: u32) -> PasswordHash {
        PasswordHash {
            algorithm: ALGORITHM.into(),
            iterations,
            salt_hex: "00".repeat(SALT_LEN),
            hash_hex: String::new(),
        }
    }

    /// Constant-time check of a password against this hash.
    pub fn verify(&self, password: &str) -> bool {
        let (Some(salt), Some(expected)) = (unhex(&self.salt_hex), unhex(&self.hash_hex)) else {
            return false;
        };
        let Some(rounds) = NonZeroU32::new(self.iterations) else {
            return false;
        };
        if self.algorithm != ALGORITHM {
            return false;
        }
        let expected = if expected.len() == HASH_LEN {
            expected
        } else {
            vec![0u8; HASH_LEN]
        };
        let ok = ring::pbkdf2::verify(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            rounds,
            &salt,
            password.as_bytes(),
            &expected,
        )
        .is_ok();
        ok && !self.hash_hex.is_empty()
    }
}

/// Lowercase hex, for salts, hashes and tokens.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses lowercase or uppercase hex; None for anything else.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The NT hash SMB authenticates with: MD4 over the UTF-16LE password, as hex.
pub fn nt_hash_hex(password: &str) -> String {
    use md4::Digest;
    let utf16: Vec<u8> = password
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    hex(&md4::Md4::digest(&utf16))
}
