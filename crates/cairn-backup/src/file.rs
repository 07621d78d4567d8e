//! The backup file: one JSON header line, then the sealed settings export.
//!
//! The header says what the file is (format, version), what it holds (schema, board, firmware, when) and how
//! to open it (key derivation and nonce). It is the AEAD's associated data, so none of it can be changed
//! without the open failing. Every bound is checked before work is done: the file's size, the header's, the
//! key derivation's iterations (a hostile file could otherwise ask for hours of hashing).

use cairn_store::snapshot::{hex, unhex, Export};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;

const FORMAT: &str = "cairn-settings-backup";
const VERSION: u32 = 1;
/// A settings backup is small (a few hundred KiB with many users); anything larger is not one.
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;
const MAX_HEADER_BYTES: usize = 4096;
/// The work factor new backups use (OWASP 2023 for PBKDF2-HMAC-SHA256), and the range a file may ask for.
pub const ITERATIONS: u32 = 600_000;
const MIN_ITERATIONS: u32 = 100_000;
const MAX_ITERATIONS: u32 = 2_000_000;
const SALT_LEN: usize = 16;
/// Shortest passphrase accepted for a new backup.
pub const MIN_PASSPHRASE_CHARS: usize = 8;

/// What a backup says about itself (authenticated with its contents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    pub schema: u32,
    pub board: String,
    pub firmware: String,
    pub created_s: u64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    #[serde(flatten)]
    info: BackupInfo,
    kdf: String,
    iterations: u32,
    salt_hex: String,
    cipher: String,
    nonce_hex: String,
    /// The length of what follows the header, so a cut file is told from a wrong passphrase.
    sealed_bytes: u64,
}

/// Why a backup was not made or not opened (nothing was changed).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the passphrase is too short: at least {0} characters")]
    PassphraseTooShort(usize),
    #[error("this is not a Cairn settings backup ({0})")]
    NotABackup(String),
    #[error("the backup is larger than any settings backup ({0} bytes)")]
    TooLarge(usize),
    #[error("the backup file is cut short")]
    Truncated,
    #[error("the backup's header is damaged: {0}")]
    Damaged(String),
    #[error("the backup cannot be opened: the passphrase is wrong, or the file was changed after it was made")]
    CannotOpen,
    #[error("the backup holds settings schema {found}, newer than this firmware's {supported}")]
    TooNew { found: u32, supported: u32 },
    #[error("the random number generator failed")]
    Random,
}

fn key(passphrase: &str, salt: &[u8], iterations: u32) -> LessSafeKey {
    let mut bytes = [0u8; 32];
    let rounds = NonZeroU32::new(iterations.max(1)).unwrap_or(NonZeroU32::MIN);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        passphrase.as_bytes(),
        &mut bytes,
    );
    // A 32-byte key is always valid for AES-256-GCM.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes).expect("32-byte AES-256 key"))
}

/// True when `bytes` begin as a backup's header does (or are a cut piece of that beginning).
fn looks_like_a_backup(bytes: &[u8]) -> bool {
    const START: &[u8] = b"{\"format\":\"cairn-settings-backup\"";
    let n = bytes.len().min(START.len());
    n > 0 && bytes[..n] == START[..n]
}

/// Seals `export` with `passphrase` into a backup file's bytes.
pub fn seal(
    export: &Export,
    passphrase: &str,
    info: BackupInfo,
    iterations: u32,
) -> Result<Vec<u8>, BackupError> {
    if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(BackupError::PassphraseTooShort(MIN_PASSPHRASE_CHARS));
    }
    let rng = SystemRandom::new();
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut salt).map_err(|_| BackupError::Random)?;
    rng.fill(&mut nonce).map_err(|_| BackupError::Random)?;
    let mut body = export.to_bytes();
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        info: BackupInfo {
            schema: export.schema,
            ..info
        },
        kdf: "pbkdf2-hmac-sha256".into(),
        iterations,
        salt_hex: hex(&salt),
        cipher: "aes-256-gcm".into(),
        nonce_hex: hex(&nonce),
        sealed_bytes: (body.len() + AES_256_GCM.tag_len()) as u64,
    };
    let mut head = serde_json::to_vec(&header).map_err(|e| BackupError::Damaged(e.to_string()))?;
    head.push(b'\n');
    key(passphrase, &salt, iterations)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&head),
            &mut body,
        )
        .map_err(|_| BackupError::Random)?;
    head.extend_from_slice(&body);
    Ok(head)
}

/// Opens a backup file: checks every bound, then the passphrase and the whole contents at once. `supported`
/// is this firmware's schema (a newer backup is refused before its key is derived).
pub fn open(
    bytes: &[u8],
    passphrase: &str,
    supported: u32,
) -> Result<(BackupInfo, Export), BackupError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(BackupError::TooLarge(bytes.len()));
    }
    let end = bytes
        .iter()
        .take(MAX_HEADER_BYTES)
        .position(|b| *b == b'\n')
        .ok_or_else(|| {
            if bytes.len() < MAX_HEADER_BYTES && looks_like_a_backup(bytes) {
                BackupError::Truncated
            } else {
                BackupError::NotABackup("no header line".into())
            }
        })?;
    let (head, sealed) = bytes.split_at(end + 1);
    let header: Header = serde_json::from_slice(head).map_err(|e| {
        if looks_like_a_backup(head) {
            BackupError::Damaged(e.to_string())
        } else {
            BackupError::NotABackup(e.to_string())
        }
    })?;
    if header.format != FORMAT {
        return Err(BackupError::NotABackup(format!(
            "format {:?}",
            header.format
        )));
    }
    if header.version != VERSION
        || header.kdf != "pbkdf2-hmac-sha256"
        || header.cipher != "aes-256-gcm"
    {
        return Err(BackupError::Damaged(format!(
            "version {} with {} and {} is not one this firmware reads",
            header.version, header.kdf, header.cipher
        )));
    }
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&header.iterations) {
        return Err(BackupError::Damaged(format!(
            "{} key derivation iterations",
            header.iterations
        )));
    }
    let salt = unhex(&header.salt_hex).filter(|s| s.len() == SALT_LEN);
    let nonce = unhex(&header.nonce_hex).and_then(|n| <[u8; NONCE_LEN]>::try_from(n).ok());
    let (Some(salt), Some(nonce)) = (salt, nonce) else {
        return Err(BackupError::Damaged("salt or nonce".into()));
    };
    if header.info.schema > supported {
        return Err(BackupError::TooNew {
            found: header.info.schema,
            supported,
        });
    }
    if (sealed.len() as u64) < header.sealed_bytes {
        return Err(BackupError::Truncated);
    }
    if sealed.len() as u64 != header.sealed_bytes {
        return Err(BackupError::Damaged("bytes after the end".into()));
    }
    let mut body = sealed.to_vec();
    let plain = key(passphrase, &salt, header.iterations)
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(head),
            &mut body,
        )
        .map_err(|_| BackupError::CannotOpen)?;
    // Authenticated, so written by a box that knew the passphrase: still parsed as carefully as any input.
    let export = Export::from_bytes(plain).map_err(BackupError::Damaged)?;
    if export.schema != header.info.schema {
        return Err(BackupError::Damaged(format!(
            "header says schema {}, contents {}",
            header.info.schema, export.schema
        )));
    }
    Ok((header.info, export))
}
