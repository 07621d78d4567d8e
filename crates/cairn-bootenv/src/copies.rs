//! The boot state's two copies on the boot partition. Reading takes the valid copy with the higher `BOOT_SEQ`;
//! writing goes to the other copy (the older or bad one), in place and full size, then fsync, so a power cut
//! mid-write leaves the current copy intact and the next read finds it.

use crate::env::{Env, EnvError};
use crate::state::{BootState, StateError};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why one copy cannot be used.
#[derive(Debug, Error)]
pub enum CopyError {
    #[error("cannot read it: {0}")]
    Read(#[source] io::Error),
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Why the boot state cannot be read: both copies are unusable. Callers decide what to do; init logs it and
/// leaves the boot loader's own fallback to act rather than stop the box.
#[derive(Debug, Error)]
#[error(
    "neither copy of the boot state is usable ({first}: {first_error}; {second}: {second_error})"
)]
pub struct LoadError {
    pub first: PathBuf,
    pub first_error: Box<CopyError>,
    pub second: PathBuf,
    pub second_error: Box<CopyError>,
}

/// Why a new boot state was not written. The current copy is untouched in every case.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("the boot state does not fit its copy: {0}")]
    Encode(#[from] EnvError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("cannot lock the boot state's directory {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the boot state to {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The copy that was read, with everything needed to write the next state over the other one.
#[derive(Debug)]
pub struct Current {
    /// The boot state of the current copy.
    pub state: BootState,
    /// Index (0, 1) of the copy it came from.
    pub copy: usize,
    /// The whole environment of that copy: variables other than the boot state's are kept on the next write.
    pub env: Env,
    /// Why the other copy is not current, when it is unusable rather than older: worth a log line.
    pub other_bad: Option<CopyError>,
}

/// Picks the current copy from both copies' bytes (`Err` for a copy that could not be read): the valid one with the
/// higher `BOOT_SEQ`; on equal sequence numbers the first. Pure, so power cuts at every byte are tested in memory.
pub fn select(
    copies: [Result<Vec<u8>, io::Error>; 2],
    size: usize,
    paths: [&Path; 2],
) -> Result<Current, LoadError> {
    let [first, second] = copies.map(|bytes| decode(bytes, size));
    match (first, second) {
        (Ok((a_env, a)), Ok((b_env, b))) => Ok(if b.seq > a.seq {
            Current {
                state: b,
                copy: 1,
                env: b_env,
                other_bad: None,
            }
        } else {
            Current {
                state: a,
                copy: 0,
                env: a_env,
                other_bad: None,
            }
        }),
        (Ok((env, state)), Err(bad)) => Ok(Current {
            state,
            copy: 0,
            env,
            other_bad: Some(bad),
        }),
        (Err(bad), Ok((env, state))) => Ok(Current {
            state,
            copy: 1,
            env,
            other_bad: Some(bad),
        }),
        (Err(first_error), Err(second_error)) => Err(LoadError {
            first: paths[0].to_owned(),
            first_error: Box::new(first_error),
            second: paths[1].to_owned(),
            second_error: Box::new(second_error),
        }),
    }
}

fn decode(bytes: Result<Vec<u8>, io::Error>, size: usize) -> Result<(Env, BootState), CopyError> {
    let env = Env::parse(&bytes.map_err(CopyError::Read)?, size)?;
    let state = BootState::from_env(&env)?;
    Ok((env, state))
}

/// The bytes of the next copy: `next` with `BOOT_SEQ` one above the current copy's, the current copy's other
/// variables kept. Returns the index of the copy to write them to (the one that is not current).
pub fn encode_next(
    current: &Current,
    next: &BootState,
    size: usize,
) -> Result<(usize, BootState, Vec<u8>), EnvError> {
    let mut state = next.clone();
    state.seq = current.state.seq.wrapping_add(1);
    let mut env = current.env.clone();
    state.write_env(&mut env)?;
    let bytes = env.serialize(size)?;
    Ok((1 - current.copy, state, bytes))
}

/// The two copies of one box's boot state.
#[derive(Debug, Clone)]
pub struct BootFiles {
    paths: [PathBuf; 2],
    size: usize,
}

impl BootFiles {
    /// The copies the board file names, under `boot_dir` (where the boot partition is mounted, normally `/boot`).
    pub fn new(boot_dir: &Path, boot: &cairn_board::Boot) -> BootFiles {
        BootFiles::at(
            boot.state_files.clone().map(|f| boot_dir.join(f)),
            boot.state_size as usize,
        )
    }

    /// Copies at explicit paths (tests, tools).
    pub fn at(paths: [PathBuf; 2], size: usize) -> BootFiles {
        BootFiles { paths, size }
    }

    /// Both copies' paths.
    pub fn paths(&self) -> [&Path; 2] {
        [&self.paths[0], &self.paths[1]]
    }

    /// Each copy's size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Reads both copies and returns the current one; one copy bad or absent is fine, both is a [`LoadError`].
    pub fn load(&self) -> Result<Current, LoadError> {
        select(
            self.paths.clone().map(std::fs::read),
            self.size,
            self.paths(),
        )
    }

    /// Writes `next` (with `BOOT_SEQ` = current + 1) over the copy that is not current, in place and full size,
    /// then makes it durable. Returns what a following [`BootFiles::load`] gives, for a further store.
    pub fn store(&self, current: &Current, next: &BootState) -> Result<Current, StoreError> {
        let (copy, state, bytes) = encode_next(current, next, self.size)?;
        let path = &self.paths[copy];
        write_in_place(path, &bytes).map_err(|source| StoreError::Write {
            path: path.clone(),
            source,
        })?;
        let env = Env::parse(&bytes, self.size)?;
        Ok(Current {
            state,
            copy,
            env,
            other_bad: None,
        })
    }

    /// Reads the current state, lets `change` edit it and stores it when it changed, all under an exclusive lock
    /// on the copies' directory: the daemon's install and init's commit both write the boot state, and each must
    /// change the state as it is now, not as it was read minutes ago. Returns the state as stored (or unchanged).
    pub fn update(&self, change: impl FnOnce(&mut BootState)) -> Result<BootState, StoreError> {
        let _lock = self.lock()?;
        let current = self.load()?;
        let mut next = current.state.clone();
        change(&mut next);
        next.seq = current.state.seq;
        if next == current.state {
            return Ok(next);
        }
        Ok(self.store(&current, &next)?.state)
    }

    /// An exclusive advisory lock (flock) on the directory that holds both copies (the boot partition's mount
    /// point on a box), released when dropped.
    fn lock(&self) -> Result<Flock<File>, StoreError> {
        let dir = self.paths[0]
            .ancestors()
            .skip(1)
            .find(|dir| self.paths[1].starts_with(dir))
            .unwrap_or(Path::new("/"))
            .to_owned();
        let fail = |source| StoreError::Lock {
            path: dir.clone(),
            source,
        };
        let handle = File::open(&dir).map_err(fail)?;
        Flock::lock(handle, FlockArg::LockExclusive)
            .map_err(|(_, errno)| fail(io::Error::from(errno)))
    }

    /// Writes `state` as a first state over both copies, one after the other (each a complete copy before the next
    /// is touched): for a boot partition whose copies are both unusable, so the box has a boot state again.
    pub fn reset(&self, state: &BootState) -> Result<Current, StoreError> {
        let mut env = Env::new();
        state.write_env(&mut env)?;
        let bytes = env.serialize(self.size)?;
        for path in &self.paths {
            write_in_place(path, &bytes).map_err(|source| StoreError::Write {
                path: path.clone(),
                source,
            })?;
        }
        Ok(Current {
            state: state.clone(),
            copy: 0,
            env,
            other_bad: None,
        })
    }
}

/// Overwrites `path` from its first byte without truncating first (FAT keeps the file's clusters, and a cut leaves
/// a copy that fails its CRC, never an empty one the other copy could be confused with), trims it to the new
/// length, and fsyncs the file, and its directory when the file is new.
fn write_in_place(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let existed = path.exists();
    if !existed {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    file.write_all(bytes)?;
    file.set_len(bytes.len() as u64)?;
    file.sync_all()?;
    if !existed {
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
    }
    Ok(())
}
