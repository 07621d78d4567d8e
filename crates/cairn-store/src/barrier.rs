//! What makes a commit reach the disk, not only the kernel.
//!
//! sled 0.34 makes its log "stable" with `sync_file_range` (its `pagecache/iobuf.rs`), which writes the pages
//! out but neither commits the file's metadata (a grown size, newly allocated blocks) nor sends the device a
//! cache flush; its `sync_all` runs only in the background flusher, which the store turns off. It also never
//! syncs the files it creates (`conf`, large values under `blobs/`) nor the directories they are in. So a
//! change acknowledged after `Db::flush` alone is lost when the power goes before the disk empties its write
//! cache or the filesystem commits its journal (ext4: every 5 s): on a new box the first changes all land in
//! new blocks of a new file in a new directory, and all of them were lost at the first power cut.
//!
//! [`Barrier::sync`] is the missing step: `fdatasync` of the log (on ext4 with barriers, the default: a
//! journal commit when metadata changed, and always a device flush), preceded by an `fsync` of every file
//! that appeared in a watched directory since the last barrier and of that directory. Directories whose
//! entries did not change are not synced again, so a usual commit costs one `fdatasync`.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file sled appends its log to, inside the database directory.
const LOG_FILE: &str = "db";
/// Where sled keeps values too large for a log segment, one file each.
const BLOB_DIR: &str = "blobs";

/// The entries of a directory, by name and inode (a file replaced under the same name is a new entry).
type Entries = BTreeSet<(OsString, u64)>;

/// Makes everything sled has written to one database directory durable.
pub(crate) struct Barrier {
    log: File,
    /// Each watched directory (blobs first: the log may point into them) with its entries at the last barrier
    /// (none before the first).
    watched: Mutex<Vec<(PathBuf, Option<Entries>)>>,
}

/// What one barrier synced besides the log: the files and directories it found new or changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Synced {
    pub files: Vec<PathBuf>,
    pub dirs: Vec<PathBuf>,
}

impl Barrier {
    /// Takes over a database directory sled has just opened: syncs every file in it and the directories
    /// from it up to its filesystem's root, so that the store itself, not only its changes, survives a
    /// power cut (on a new box all of them are new).
    pub(crate) fn open(dir: &Path) -> io::Result<(Barrier, Synced)> {
        let dir = dir.canonicalize()?;
        let log = File::open(dir.join(LOG_FILE))?;
        let barrier = Barrier {
            log,
            watched: Mutex::new(vec![(dir.join(BLOB_DIR), None), (dir.clone(), None)]),
        };
        let mut synced = barrier.sync()?;
        synced.dirs.extend(sync_ancestors(&dir));
        Ok((barrier, synced))
    }

    /// Makes every write sled has made so far durable. Call after `Db::flush`, before acknowledging.
    pub(crate) fn sync(&self) -> io::Result<Synced> {
        let mut watched = self
            .watched
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut synced = Synced::default();
        let (blobs, rest) = watched.split_at_mut(1);
        sync_new_entries(&mut blobs[0], &mut synced)?;
        self.log.sync_data()?;
        for dir in rest {
            sync_new_entries(dir, &mut synced)?;
        }
        Ok(synced)
    }
}

/// Syncs the files that appeared in `dir` since the last barrier, then `dir`, when its entries changed (or
/// it was never synced).
fn sync_new_entries(
    (dir, seen): &mut (PathBuf, Option<Entries>),
    synced: &mut Synced,
) -> io::Result<()> {
    let now = entries(dir)?;
    if seen.as_ref() == Some(&now) {
        return Ok(());
    }
    let before = seen.take().unwrap_or_default();
    for (name, _) in now.difference(&before) {
        let path = dir.join(name);
        if std::fs::symlink_metadata(&path)?.is_file() {
            File::open(&path)?.sync_all()?;
            synced.files.push(path);
        }
    }
    File::open(&*dir)?.sync_all()?;
    synced.dirs.push(dir.clone());
    *seen = Some(now);
    Ok(())
}

fn entries(dir: &Path) -> io::Result<Entries> {
    let mut out = Entries::new();
    match std::fs::read_dir(dir) {
        Ok(list) => {
            for entry in list {
                let entry = entry?;
                out.insert((entry.file_name(), entry.ino()));
            }
            Ok(out)
        }
        // sled makes `blobs` when it opens; should it be gone, there is nothing in it to sync.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(out),
        Err(e) => Err(e),
    }
}

/// Syncs the directories above `dir` that hold the entries leading to it, up to the root of its filesystem.
/// Only logged when one cannot be synced: they are new only on a new box, and the store itself works.
fn sync_ancestors(dir: &Path) -> Vec<PathBuf> {
    let device = |path: &Path| std::fs::metadata(path).map(|m| m.dev());
    let mut synced = vec![];
    for parent in dir.ancestors().skip(1) {
        let step = match (device(dir), device(parent)) {
            (Ok(own), Ok(theirs)) if own != theirs => break,
            (Ok(_), Ok(_)) => File::open(parent).and_then(|d| d.sync_all()),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        if let Err(e) = step {
            log::warn!("settings: cannot sync directory {}: {e}", parent.display());
            break;
        }
        synced.push(parent.to_path_buf());
    }
    synced
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_dir() -> (tempfile::TempDir, PathBuf) {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().canonicalize().unwrap().join("settings.db");
        std::fs::create_dir_all(dir.join(BLOB_DIR)).unwrap();
        std::fs::write(dir.join(LOG_FILE), b"log").unwrap();
        std::fs::write(dir.join("conf"), b"conf").unwrap();
        (top, dir)
    }

    #[test]
    fn opening_syncs_every_file_the_directories_and_the_way_to_them() {
        let (top, dir) = db_dir();
        let (_, synced) = Barrier::open(&dir).unwrap();
        assert_eq!(
            synced.files,
            [dir.join("conf"), dir.join(LOG_FILE)],
            "new files are synced"
        );
        assert_eq!(synced.dirs[..2], [dir.join(BLOB_DIR), dir.clone()]);
        assert!(
            synced.dirs.contains(&top.path().canonicalize().unwrap()),
            "the directory holding the store's own entry: {:?}",
            synced.dirs
        );
    }

    #[test]
    fn a_commit_that_made_no_new_file_syncs_only_the_log() {
        let (_top, dir) = db_dir();
        let (barrier, _) = Barrier::open(&dir).unwrap();
        std::fs::write(dir.join(LOG_FILE), b"log grew").unwrap();
        assert_eq!(barrier.sync().unwrap(), Synced::default());
    }

    #[test]
    fn a_new_blob_is_synced_with_its_directory_once() {
        let (_top, dir) = db_dir();
        let (barrier, _) = Barrier::open(&dir).unwrap();
        let blob = dir.join(BLOB_DIR).join("4096");
        std::fs::write(&blob, b"a large value").unwrap();
        assert_eq!(
            barrier.sync().unwrap(),
            Synced {
                files: vec![blob],
                dirs: vec![dir.join(BLOB_DIR)]
            }
        );
        assert_eq!(barrier.sync().unwrap(), Synced::default(), "only once");
    }

    #[test]
    fn a_file_renamed_into_the_directory_and_one_removed_sync_the_directory() {
        let (_top, dir) = db_dir();
        let (barrier, _) = Barrier::open(&dir).unwrap();
        // sled writes a snapshot as snap.N.generating, syncs it and renames it to snap.N.
        let generating = dir.join("snap.0001.generating");
        std::fs::write(&generating, b"snapshot").unwrap();
        std::fs::rename(&generating, dir.join("snap.0001")).unwrap();
        let synced = barrier.sync().unwrap();
        assert_eq!(synced.dirs, vec![dir.clone()]);
        assert_eq!(synced.files, [dir.join("snap.0001")]);
        std::fs::remove_file(dir.join("snap.0001")).unwrap();
        assert_eq!(barrier.sync().unwrap().dirs, vec![dir.clone()]);
    }
}
