//! The `system` volume's fixed-size home: an ext4 image file on the config partition, loop-mounted at the
//! volume's root, so shares on it cannot fill the settings' filesystem.
//!
//! ksmbd writes from kernel threads that keep CAP_SYS_RESOURCE, so neither ext4's root reserve nor quotas hold
//! SMB writes back; a preallocated image of (free space − headroom) does: the image is full long before the
//! config filesystem is. The decisions (how big, what to do with what init finds) are pure functions tested on
//! the host; [`Real`] carries them out with `mke2fs` and `mount -o loop` through `cairn-exec`.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The finished image's name on the config partition. It exists only once it is complete (made under
/// [`PARTIAL_NAME`] and renamed), so a power cut never leaves a half-made image under this name.
pub const IMAGE_NAME: &str = "system-volume.img";
/// The image while it is being made: holds nothing but what mke2fs wrote, so it is removed and remade.
pub const PARTIAL_NAME: &str = "system-volume.img.new";
/// Where an old box's files are copied into the image before they are removed from the plain folder.
pub const STAGING: &str = "/run/cairn-system-volume";
/// Smallest image worth making; below it the config partition is too full and the plain folder stays.
pub const MIN_IMAGE_BYTES: u64 = 4 << 20;
const MIB: u64 = 1 << 20;

/// The image's size: what is free on config less the settings' headroom, whole MiB, or `None` when that is
/// under [`MIN_IMAGE_BYTES`].
pub fn image_size(config_free: u64, headroom: u64) -> Option<u64> {
    let size = config_free.saturating_sub(headroom) / MIB * MIB;
    (size >= MIN_IMAGE_BYTES).then_some(size)
}

/// Whether files of `bytes` (as `du` counts them) fit in an image of `image` bytes, leaving ext4's own
/// metadata (inode tables, journal: about a tenth of a small filesystem) and one MiB spare.
pub fn files_fit(bytes: u64, image: u64) -> bool {
    bytes.saturating_add(MIB) <= image - image / 10
}

/// What init finds on the config partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The finished image exists.
    pub image: bool,
    /// A half-made image from a cut power.
    pub partial: bool,
    /// Bytes of files in the plain folder (0: empty or missing).
    pub folder_bytes: u64,
    /// Whether the plain folder holds any entry at all (an empty file counts).
    pub folder_has_entries: bool,
}

/// What init does about it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Make the image (after removing a half-made one), move the folder's files into it (when there are
    /// any) and mount it.
    Make { size: u64, migrate: bool },
    /// The image exists but the folder still has files (a power cut during a move): finish the move, mount.
    Migrate,
    /// Mount the image.
    Mount,
    /// Leave the plain folder as it is (its files do not fit, or there is no room): serve it unbounded and
    /// say so.
    KeepFolder { why: String },
}

/// Decides what to do with what init found, given the free space on config (not counting a half-made
/// image, which is removed first) and the headroom.
pub fn plan(found: Found, config_free: u64, headroom: u64) -> Plan {
    if found.image {
        return if found.folder_has_entries {
            Plan::Migrate
        } else {
            Plan::Mount
        };
    }
    let Some(size) = image_size(config_free, headroom) else {
        return Plan::KeepFolder {
            why: format!(
                "only {} MiB free on config, {} MiB kept as headroom: no room for a system volume image",
                config_free / MIB,
                headroom / MIB
            ),
        };
    };
    if found.folder_has_entries && !files_fit(found.folder_bytes, size) {
        return Plan::KeepFolder {
            why: format!(
                "its files ({} MiB) do not fit in a {} MiB image; left in place, not mounted over",
                found.folder_bytes.div_ceil(MIB),
                size / MIB
            ),
        };
    }
    Plan::Make {
        size,
        migrate: found.folder_has_entries,
    }
}

/// The steps, so [`bring_up`]'s order can be tested without a disk.
pub trait Volume {
    /// What is on the config partition now.
    fn find(&self) -> std::io::Result<Found>;
    /// Removes a half-made image.
    fn remove_partial(&self) -> Result<(), String>;
    /// Free bytes on config, as the settings' headroom counts them.
    fn config_free(&self) -> Result<u64, String>;
    /// Makes the image under the partial name (allocated, not sparse), formats it, syncs it, renames it.
    fn make_image(&self, size: u64) -> Result<(), String>;
    /// Mounts the image at `at`.
    fn mount_image(&self, at: &Path) -> Result<(), String>;
    /// Checks the image (`e2fsck -y`).
    fn check_image(&self) -> Result<(), String>;
    /// Copies the folder's files into the image mounted at `staging`, syncs them, then removes the originals.
    fn move_files(&self, staging: &Path) -> Result<(), String>;
    /// Unmounts `at`.
    fn unmount(&self, at: &Path) -> Result<(), String>;
    /// The volume's root (the plain folder's place).
    fn root(&self) -> PathBuf;
}

/// Where the system volume stands after boot, for the log and the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The image is mounted at the root; `made` when it was made this boot, `moved` when files were moved in.
    Mounted { made: bool, moved: bool },
    /// The plain folder is served unbounded, for the reason given.
    Folder { why: String },
    /// The image exists but does not mount: the volume is unavailable (nothing writable put in its place).
    Unavailable { why: String },
}

/// What init does once config is usable: make, migrate, check and mount as [`plan`] says.
pub fn bring_up(headroom: u64, vol: &dyn Volume) -> Outcome {
    let unavailable = |why: String| Outcome::Unavailable { why };
    let found = match vol.find() {
        Ok(f) => f,
        Err(e) => return unavailable(format!("cannot read the config partition: {e}")),
    };
    if found.partial {
        if let Err(e) = vol.remove_partial() {
            return unavailable(format!("cannot remove a half-made image: {e}"));
        }
    }
    let free = match vol.config_free() {
        Ok(f) => f,
        Err(e) => return unavailable(e),
    };
    let (made, migrate) = match plan(found, free, headroom) {
        Plan::KeepFolder { why } => return Outcome::Folder { why },
        Plan::Mount => (false, false),
        Plan::Migrate => (false, true),
        Plan::Make { size, migrate } => {
            if let Err(e) = vol.make_image(size) {
                // Whatever was made is a half-made image: the next boot removes it.
                return Outcome::Folder {
                    why: format!("making the image failed: {e}"),
                };
            }
            (true, migrate)
        }
    };
    let staging = Path::new(STAGING);
    let at = if migrate {
        staging.to_path_buf()
    } else {
        vol.root()
    };
    if vol.mount_image(&at).is_err() {
        let checked = vol.check_image();
        if let Err(e) = vol.mount_image(&at) {
            return unavailable(match checked {
                Err(c) => format!("{e}; the check said: {c}"),
                Ok(()) => e,
            });
        }
    }
    if migrate {
        let moved = vol.move_files(staging);
        let _ = vol.unmount(staging);
        if let Err(e) = moved {
            return Outcome::Folder {
                why: format!("moving its files into the image stopped: {e}; they stay in place"),
            };
        }
        if let Err(e) = vol.mount_image(&vol.root()) {
            return unavailable(e);
        }
    }
    Outcome::Mounted {
        made,
        moved: migrate,
    }
}

/// The settings' headroom on config in bytes: the board's, or the default without a board file.
pub fn headroom(board: Option<&cairn_board::Board>) -> u64 {
    board
        .map(|b| b.storage.config_headroom_mib)
        .unwrap_or(cairn_board::DEFAULT_CONFIG_HEADROOM_MIB)
        << 20
}

/// Brings the system volume up below a mounted, usable config partition (at boot, and after the console
/// repaired or formatted it) and says how it went in one log line.
pub fn start(config: &Path, headroom: u64) -> (Outcome, String) {
    let real = Real {
        config: config.to_path_buf(),
        root: config.join("shares"),
    };
    let root = real.root.display().to_string();
    let started = std::time::Instant::now();
    let outcome = bring_up(headroom, &real);
    let ms = started.elapsed().as_millis();
    let line = match &outcome {
        Outcome::Mounted { made, moved } => format!(
            "system volume image mounted at {root}{}{} ({ms} ms)",
            if *made { ", made this boot" } else { "" },
            if *moved {
                ", files moved in from the plain folder"
            } else {
                ""
            }
        ),
        Outcome::Folder { why } => {
            format!("ERROR system volume: {why}; {root} stays a plain folder that SMB can fill")
        }
        Outcome::Unavailable { why } => {
            // Nothing writable in its place: share folders are not recreated empty on the config partition.
            let placeholder = crate::config_partition::mount_placeholder(&real.root)
                .err()
                .map(|e| format!(" (placeholder: {e})"))
                .unwrap_or_default();
            format!("ERROR system volume image does not mount: {why}; the system volume is unavailable{placeholder}")
        }
    };
    (outcome, line)
}

/// The real system volume: the image beside the settings, mounted at `root`.
pub struct Real {
    /// The config partition's mount point.
    pub config: PathBuf,
    /// The system volume's root (`/config/shares`).
    pub root: PathBuf,
}

const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

impl Real {
    fn image(&self) -> PathBuf {
        self.config.join(IMAGE_NAME)
    }
    fn partial(&self) -> PathBuf {
        self.config.join(PARTIAL_NAME)
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Bytes a tree uses (file sizes rounded up to 4 KiB blocks) and whether it has any entry.
fn tree_bytes(dir: &Path) -> std::io::Result<(u64, bool)> {
    let mut bytes = 0;
    let mut any = false;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, false)),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        any = true;
        let meta = entry.path().symlink_metadata()?;
        bytes += meta.len().div_ceil(4096) * 4096 + 4096;
        if meta.is_dir() {
            bytes += tree_bytes(&entry.path())?.0;
        }
    }
    Ok((bytes, any))
}

/// Copies `from` into `to` (files synced, ownership and mode kept), then removes the originals. Safe to run
/// again after a cut: a copy is overwritten with the same bytes, and originals go only after all are synced.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let meta = src.symlink_metadata()?;
        if meta.is_dir() {
            copy_tree(&src, &dst)?;
        } else if meta.is_file() {
            let tmp = to.join(format!(
                ".{}.cairn-move",
                entry.file_name().to_string_lossy()
            ));
            std::fs::copy(&src, &tmp)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &dst)?;
        } else {
            // Sockets, devices, symlinks: not share content; left in place.
            continue;
        }
        let _ = std::os::unix::fs::chown(&dst, Some(meta.uid()), Some(meta.gid()));
        let _ = std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(meta.mode()));
    }
    sync_dir(to)
}

fn remove_copied(from: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        let meta = path.symlink_metadata()?;
        if meta.is_dir() {
            remove_copied(&path)?;
            std::fs::remove_dir(&path)?;
        } else if meta.is_file() {
            std::fs::remove_file(&path)?;
        }
    }
    sync_dir(from)
}

impl Volume for Real {
    fn find(&self) -> std::io::Result<Found> {
        let (folder_bytes, folder_has_entries) = tree_bytes(&self.root)?;
        Ok(Found {
            image: self.image().exists(),
            partial: self.partial().exists(),
            folder_bytes,
            folder_has_entries,
        })
    }

    fn remove_partial(&self) -> Result<(), String> {
        std::fs::remove_file(self.partial())
            .and_then(|()| sync_dir(&self.config))
            .map_err(|e| e.to_string())
    }

    fn config_free(&self) -> Result<u64, String> {
        cairn_store::statvfs_free(&self.config)
            .map_err(|e| format!("statvfs {}: {e}", self.config.display()))
    }

    fn make_image(&self, size: u64) -> Result<(), String> {
        let partial = self.partial();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .map_err(|e| format!("{}: {e}", partial.display()))?;
        // off_t is 32 bits on armv7: an image that does not fit in it is refused, not truncated.
        let len: nix::libc::off_t = size
            .try_into()
            .map_err(|_| format!("an image of {size} bytes is too large for this board"))?;
        // Allocated, not sparse: the blocks are the image's from now on, whatever SMB writes later.
        nix::fcntl::fallocate(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            nix::fcntl::FallocateFlags::empty(),
            0,
            len,
        )
        .map_err(|e| format!("fallocate {} bytes: {e}", size))?;
        file.sync_all().map_err(|e| e.to_string())?;
        drop(file);
        let path = partial.to_string_lossy().into_owned();
        cairn_exec::run(
            "/sbin/mke2fs",
            &[
                "-q",
                "-F",
                "-t",
                "ext4",
                "-L",
                "cairn-system",
                "-m",
                "0",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0,nodiscard",
                &path,
            ],
            TOOL_TIMEOUT,
        )
        .map_err(|e| e.to_string())?;
        std::fs::File::open(&partial)
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&partial, self.image()))
            .and_then(|()| sync_dir(&self.config))
            .map_err(|e| e.to_string())
    }

    fn mount_image(&self, at: &Path) -> Result<(), String> {
        std::fs::create_dir_all(at).map_err(|e| format!("{}: {e}", at.display()))?;
        let image = self.image().to_string_lossy().into_owned();
        let target = at.to_string_lossy().into_owned();
        cairn_exec::run(
            "/bin/mount",
            &[
                "-t",
                "ext4",
                "-o",
                "loop,nosuid,nodev,noexec,noatime",
                &image,
                &target,
            ],
            TOOL_TIMEOUT,
        )
        .map(|_| ())
        .map_err(|e| format!("mount {image}: {e}"))
    }

    fn check_image(&self) -> Result<(), String> {
        let image = self.image().to_string_lossy().into_owned();
        match cairn_exec::run("/sbin/e2fsck", &["-y", &image], TOOL_TIMEOUT) {
            Ok(_) => Ok(()),
            Err(cairn_exec::ExecError::Failed {
                code: Some(1 | 2), ..
            }) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn move_files(&self, staging: &Path) -> Result<(), String> {
        copy_tree(&self.root, staging)
            .and_then(|()| {
                nix::unistd::sync();
                remove_copied(&self.root)
            })
            .map_err(|e| e.to_string())
    }

    fn unmount(&self, at: &Path) -> Result<(), String> {
        let target = at.to_string_lossy().into_owned();
        cairn_exec::run("/bin/umount", &[&target], TOOL_TIMEOUT)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn root(&self) -> PathBuf {
        self.root.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    const HEADROOM: u64 = 16 * MIB;

    #[test]
    fn the_image_is_what_is_free_less_the_headroom_in_whole_mib() {
        assert_eq!(image_size(58 * MIB + 123, HEADROOM), Some(42 * MIB));
        assert_eq!(
            image_size(HEADROOM + MIN_IMAGE_BYTES, HEADROOM),
            Some(4 * MIB)
        );
        assert_eq!(image_size(HEADROOM + MIN_IMAGE_BYTES - 1, HEADROOM), None);
        assert_eq!(image_size(MIB, HEADROOM), None);
    }

    fn found(image: bool, partial: bool, bytes: u64) -> Found {
        Found {
            image,
            partial,
            folder_bytes: bytes,
            folder_has_entries: bytes > 0,
        }
    }

    #[test]
    fn a_new_box_makes_the_image_and_an_existing_one_mounts_it() {
        assert_eq!(
            plan(found(false, false, 0), 58 * MIB, HEADROOM),
            Plan::Make {
                size: 42 * MIB,
                migrate: false
            }
        );
        assert_eq!(plan(found(true, false, 0), MIB, HEADROOM), Plan::Mount);
    }

    #[test]
    fn a_plain_folder_moves_in_when_it_fits_and_stays_otherwise() {
        assert_eq!(
            plan(found(false, false, 10 * MIB), 48 * MIB, HEADROOM),
            Plan::Make {
                size: 32 * MIB,
                migrate: true
            }
        );
        match plan(found(false, false, 30 * MIB), 48 * MIB, HEADROOM) {
            Plan::KeepFolder { why } => assert!(why.contains("do not fit"), "{why}"),
            other => panic!("{other:?}"),
        }
        match plan(found(false, false, 30 * MIB), 10 * MIB, HEADROOM) {
            Plan::KeepFolder { why } => assert!(why.contains("no room"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A move cut short by a power cut: the image is there, the folder not yet empty.
        assert_eq!(
            plan(found(true, false, 5 * MIB), MIB, HEADROOM),
            Plan::Migrate
        );
    }

    /// A volume whose answers the test sets, recording the steps taken.
    struct Fake {
        found: Found,
        free: u64,
        mounts: RefCell<Vec<bool>>,
        steps: RefCell<Vec<String>>,
    }

    impl Fake {
        fn new(found: Found, mounts: &[bool]) -> Fake {
            Fake {
                found,
                free: 58 * MIB,
                mounts: RefCell::new(mounts.iter().rev().copied().collect()),
                steps: RefCell::default(),
            }
        }
        fn step(&self, s: String) {
            self.steps.borrow_mut().push(s);
        }
        fn steps(&self) -> Vec<String> {
            self.steps.borrow().clone()
        }
    }

    impl Volume for Fake {
        fn find(&self) -> std::io::Result<Found> {
            Ok(self.found)
        }
        fn remove_partial(&self) -> Result<(), String> {
            self.step("rm partial".into());
            Ok(())
        }
        fn config_free(&self) -> Result<u64, String> {
            Ok(self.free)
        }
        fn make_image(&self, size: u64) -> Result<(), String> {
            self.step(format!("make {}", size / MIB));
            Ok(())
        }
        fn mount_image(&self, at: &Path) -> Result<(), String> {
            self.step(format!("mount {}", at.display()));
            if self.mounts.borrow_mut().pop().unwrap_or(false) {
                Ok(())
            } else {
                Err("EUCLEAN".into())
            }
        }
        fn check_image(&self) -> Result<(), String> {
            self.step("fsck".into());
            Err("Bad magic".into())
        }
        fn move_files(&self, staging: &Path) -> Result<(), String> {
            self.step(format!("move {}", staging.display()));
            Ok(())
        }
        fn unmount(&self, at: &Path) -> Result<(), String> {
            self.step(format!("umount {}", at.display()));
            Ok(())
        }
        fn root(&self) -> PathBuf {
            "/config/shares".into()
        }
    }

    #[test]
    fn a_half_made_image_is_removed_and_remade() {
        let f = Fake::new(found(false, true, 0), &[true]);
        assert_eq!(
            bring_up(HEADROOM, &f),
            Outcome::Mounted {
                made: true,
                moved: false
            }
        );
        assert_eq!(f.steps(), ["rm partial", "make 42", "mount /config/shares"]);
    }

    #[test]
    fn files_are_moved_through_the_staging_mount_before_the_root_is_mounted() {
        let f = Fake::new(found(false, false, MIB), &[true, true]);
        assert_eq!(
            bring_up(HEADROOM, &f),
            Outcome::Mounted {
                made: true,
                moved: true
            }
        );
        assert_eq!(
            f.steps(),
            [
                "make 42",
                &format!("mount {STAGING}"),
                &format!("move {STAGING}"),
                &format!("umount {STAGING}"),
                "mount /config/shares"
            ]
        );
    }

    #[test]
    fn a_damaged_image_is_checked_once_then_reported_unavailable_never_remade() {
        let f = Fake::new(found(true, false, 0), &[false, false]);
        match bring_up(HEADROOM, &f) {
            Outcome::Unavailable { why } => {
                assert!(
                    why.contains("EUCLEAN") && why.contains("Bad magic"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            f.steps(),
            ["mount /config/shares", "fsck", "mount /config/shares"]
        );
    }

    #[test]
    fn files_that_do_not_fit_are_left_and_nothing_is_mounted_over_them() {
        let mut f = Fake::new(found(false, false, 40 * MIB), &[true]);
        f.free = 20 * MIB;
        assert!(matches!(bring_up(HEADROOM, &f), Outcome::Folder { .. }));
        assert!(f.steps().is_empty(), "{:?}", f.steps());
    }

    #[test]
    fn a_real_move_copies_keeps_and_then_removes_originals() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("shares"), dir.path().join("img"));
        std::fs::create_dir_all(from.join("docs/sub")).unwrap();
        std::fs::write(from.join("docs/a.txt"), b"hello").unwrap();
        std::fs::write(from.join("docs/sub/b.bin"), vec![7u8; 10_000]).unwrap();
        let (bytes, any) = tree_bytes(&from).unwrap();
        assert!(any && bytes >= 10_000, "{bytes}");
        // Twice: a move resumed after a cut gives the same result.
        copy_tree(&from, &to).unwrap();
        copy_tree(&from, &to).unwrap();
        remove_copied(&from).unwrap();
        assert_eq!(std::fs::read(to.join("docs/a.txt")).unwrap(), b"hello");
        assert_eq!(
            std::fs::read(to.join("docs/sub/b.bin")).unwrap().len(),
            10_000
        );
        assert_eq!(tree_bytes(&from).unwrap(), (0, false));
    }
}
