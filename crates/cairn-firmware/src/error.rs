//! One error type for reading, checking and writing bundles and slot trailers. Each variant is one thing an
//! owner or a build can be told to fix, so the API maps them one to one to stable codes.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// The part of a bundle or trailer that was being read when it ended early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Region {
    /// The magic and the two lengths.
    Header,
    /// The signed manifest.
    Manifest,
    /// The signature block.
    Signature,
    /// A payload, by name.
    Payload(String),
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Region::Header => f.write_str("header"),
            Region::Manifest => f.write_str("manifest"),
            Region::Signature => f.write_str("signature block"),
            Region::Payload(name) => write!(f, "payload {name:?}"),
        }
    }
}

/// Why a bundle, trailer, manifest or key was refused.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error("this is not a {expected} (its first bytes are not {expected_magic:?})")]
    BadMagic {
        expected: &'static str,
        expected_magic: &'static str,
    },
    #[error("the header claims a {manifest_len}-byte manifest and a {signature_len}-byte signature block, more than a header may hold ({max} bytes)")]
    HeaderTooLarge {
        manifest_len: u32,
        signature_len: u32,
        max: u32,
    },
    #[error("the file ends inside its {0}: it is truncated")]
    Truncated(Region),
    #[error("the signature block is malformed: {0}")]
    MalformedSignature(String),
    #[error("it is signed with key {key_id}, which this firmware does not trust")]
    UnknownKey { key_id: String },
    #[error(
        "its signature does not match its manifest (key {key_id}): it was changed after signing"
    )]
    BadSignature { key_id: String },
    #[error("the manifest is malformed: {0}")]
    MalformedManifest(String),
    #[error("manifest format {found} is not supported (this firmware reads format {supported})")]
    UnsupportedFormat { found: u32, supported: u32 },
    #[error("{0:?} is not a version (MAJOR.MINOR.PATCH, numbers only)")]
    InvalidVersion(String),
    #[error("{0:?} is not a valid name (1 to 64 of A-Z a-z 0-9 . _ -, not starting with a dot)")]
    InvalidName(String),
    #[error(
        "payload {payload:?} does not match its manifest: SHA-256 {actual}, signed {expected}"
    )]
    DigestMismatch {
        payload: String,
        expected: String,
        actual: String,
    },
    #[error("payload {payload:?} must be exactly {expected} bytes but the source has {found}")]
    PayloadSize {
        payload: String,
        expected: u64,
        found: u64,
    },
    #[error("payload {payload:?} was not read to its end before the next one")]
    PayloadUnfinished { payload: String },
    #[error("there are bytes after the last payload")]
    TrailingData,
    #[error("no trusted keys in {dir}")]
    NoTrustedKeys { dir: PathBuf },
    #[error("{path}: not a public key (64 hex characters): {reason}")]
    InvalidPublicKey { path: PathBuf, reason: String },
    #[error("the signing key is not an Ed25519 PKCS#8 key: {0}")]
    InvalidSigningKey(String),
    #[error("the partition ({partition_end} bytes to its end) is too small for a {needed}-byte slot trailer")]
    PartitionTooSmall { partition_end: u64, needed: u64 },
    #[error("{path}: {source}")]
    File { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Io(io::Error),
}

impl From<io::Error> for FirmwareError {
    /// Unwraps the errors a payload reader reports through `io::Read` (digest mismatch, truncation), so `io::copy`
    /// from a payload keeps their meaning.
    fn from(e: io::Error) -> Self {
        if e.get_ref().is_none() {
            return FirmwareError::Io(e);
        }
        let kind = e.kind();
        match e
            .into_inner()
            .map(|inner| inner.downcast::<FirmwareError>())
        {
            Some(Ok(own)) => *own,
            Some(Err(other)) => FirmwareError::Io(io::Error::new(kind, other)),
            None => FirmwareError::Io(kind.into()),
        }
    }
}

impl FirmwareError {
    /// Wraps this error for reporting through `io::Read` (undone by `From<io::Error>`).
    pub(crate) fn into_io(self) -> io::Error {
        let kind = match self {
            FirmwareError::Truncated(_) => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, self)
    }

    /// A file error with its path, for errors the build machine's user must locate.
    pub(crate) fn file(path: &std::path::Path) -> impl FnOnce(io::Error) -> FirmwareError + '_ {
        move |source| FirmwareError::File {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Shorthand for this crate's results.
pub type Result<T, E = FirmwareError> = std::result::Result<T, E>;
