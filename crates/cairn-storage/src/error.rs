//! Why a storage request was refused or failed; each variant maps to one stable API code.

/// A refusal (nothing was touched) or a failure (the event log keeps the tool's own words).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("there is no volume named {0:?}")]
    NoSuchVolume(String),
    #[error("there is no disk {0:?}")]
    NoSuchDisk(String),
    #[error("there is no job {0:?}")]
    NoSuchJob(String),
    #[error("a volume named {0:?} already exists")]
    VolumeExists(String),
    #[error("{0}")]
    InvalidName(String),
    #[error("{0:?} is not a volume type Cairn builds")]
    InvalidLevel(String),
    #[error("{level} needs {rule}; {got} chosen")]
    DiskCount {
        level: &'static str,
        rule: &'static str,
        got: usize,
    },
    #[error("disk {0:?} is listed twice")]
    DiskTwice(String),
    #[error("{0} is the disk the box starts from and is never used for data")]
    BootMedium(String),
    #[error("{disk} is in use by {by}")]
    DiskInUse { disk: String, by: String },
    #[error("{disk} is too small: volumes need disks of at least {min_mib} MiB")]
    DiskTooSmall { disk: String, min_mib: u64 },
    #[error("{what}")]
    ConfirmRequired { volume: String, what: String },
    /// A disk chosen to build on could not be read; `what` names the disk and the error, and `token` is the
    /// confirmation that must come back to erase it anyway.
    #[error("{what}")]
    UnreadableConfirmRequired { what: String, token: String },
    /// The disk at a device is no longer the one that was checked (a hot-swap in between): nothing was
    /// written to it.
    #[error("{device} is no longer {expected}: it is now {found}; nothing was written to it")]
    DiskChanged {
        device: String,
        expected: String,
        found: String,
    },
    #[error("volume {volume:?} still carries the shares {shares}")]
    HasShares { volume: String, shares: String },
    #[error("{0}")]
    Busy(String),
    #[error("{disk} is not a member of volume {volume:?}")]
    NotMember { disk: String, volume: String },
    #[error("{0}")]
    Refused(String),
    #[error("{step} failed: {detail}")]
    Tool { step: String, detail: String },
    #[error("storage records: {0}")]
    Store(#[from] cairn_store::StoreError),
    #[error("{0}")]
    Io(String),
}

impl StorageError {
    pub(crate) fn tool(step: &str, e: cairn_exec::ExecError) -> StorageError {
        let detail = match &e {
            cairn_exec::ExecError::Failed { stderr, stdout, .. }
                if !stderr.is_empty() || !stdout.is_empty() =>
            {
                if stderr.is_empty() {
                    stdout.trim().to_string()
                } else {
                    stderr.clone()
                }
            }
            _ => e.to_string(),
        };
        StorageError::Tool {
            step: step.to_string(),
            detail,
        }
    }

    pub(crate) fn io(what: &str, e: impl std::fmt::Display) -> StorageError {
        StorageError::Io(format!("{what}: {e}"))
    }
}
