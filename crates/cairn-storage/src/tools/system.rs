//! The real tools: mdadm, mke2fs, e2fsck and modprobe through `cairn-exec` (argument vectors, bounded time),
//! mounts through `nix`, and the writes md and a disk's ends need. Only the QEMU scenario runs it.

use super::{Fsck, Tools, HOMEHOST};
use crate::volumes::Level;
use crate::StorageError;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

const MDADM_TIMEOUT: Duration = Duration::from_secs(120);
const MKFS_TIMEOUT: Duration = Duration::from_secs(1800);
const FSCK_TIMEOUT: Duration = Duration::from_secs(3600);
const MODPROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// The machine's own tools. `sys` is the sysfs root (md attributes are written under it).
pub struct System {
    sys: PathBuf,
}

impl System {
    pub fn new(sys: &Path) -> System {
        System {
            sys: sys.to_path_buf(),
        }
    }
}

/// The first of the usual system folders holding `name`: tools are run by absolute path, never via a shell.
fn tool(name: &str) -> String {
    for dir in ["/sbin", "/usr/sbin", "/bin", "/usr/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p.to_string_lossy().into_owned();
        }
    }
    name.to_string()
}

fn run(
    step: &str,
    program: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<String, StorageError> {
    cairn_exec::run(&tool(program), args, timeout)
        .map(|o| o.stdout)
        .map_err(|e| StorageError::tool(step, e))
}

/// One mdadm step whose output is not needed.
fn mdadm(step: &str, args: &[&str]) -> Result<(), StorageError> {
    run(step, "mdadm", args, MDADM_TIMEOUT).map(|_| ())
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

impl Tools for System {
    fn load_module(&self, name: &str) -> Result<(), StorageError> {
        run(
            "loading the RAID driver",
            "modprobe",
            &[name],
            MODPROBE_TIMEOUT,
        )
        .map(|_| ())
    }

    fn zero_superblock(&self, dev: &Path) -> Result<(), StorageError> {
        mdadm(
            "clearing old RAID labels",
            &["--zero-superblock", "--force", &s(dev)],
        )
    }

    fn wipe_ends(&self, dev: &Path) -> Result<(), StorageError> {
        zero_ends(dev).map_err(|e| StorageError::Io(e.to_string()))
    }

    fn create_array(
        &self,
        md: &Path,
        name: &str,
        level: Level,
        devices: &[PathBuf],
    ) -> Result<(), StorageError> {
        let md = s(md);
        let level_arg = format!("--level={}", level.md_level());
        let name = format!("--name={name}");
        let homehost = format!("--homehost={HOMEHOST}");
        let count = format!("--raid-devices={}", devices.len());
        let devs: Vec<String> = devices.iter().map(|d| s(d)).collect();
        let mut args: Vec<&str> = vec![
            "--create",
            &md,
            "--config=none",
            "--run",
            "--metadata=1.2",
            &homehost,
            &name,
            &level_arg,
            &count,
        ];
        // A single disk is a one-disk mirror, which mdadm only makes when told it is meant.
        if level == Level::Single {
            args.push("--force");
        }
        args.extend(devs.iter().map(|s| s.as_str()));
        mdadm("creating the RAID array", &args)
    }

    fn array_uuid(&self, md: &Path) -> Result<String, StorageError> {
        let out = run(
            "reading the new array",
            "mdadm",
            &["--detail", "--export", &s(md)],
            MDADM_TIMEOUT,
        )?;
        Ok(crate::md::parse_detail_export(&out).uuid)
    }

    fn assemble(&self, md: &Path, uuid: &str, devices: &[PathBuf]) -> Result<(), StorageError> {
        let md = s(md);
        let uuid = format!("--uuid={uuid}");
        let devs: Vec<String> = devices.iter().map(|d| s(d)).collect();
        let mut args: Vec<&str> = vec!["--assemble", &md, "--config=none", "--run", &uuid];
        args.extend(devs.iter().map(|s| s.as_str()));
        mdadm("assembling the RAID array", &args)
    }

    fn fail(&self, md: &Path, dev: &Path) -> Result<(), StorageError> {
        mdadm("marking the disk failed", &[&s(md), "--fail", &s(dev)])
    }

    fn remove(&self, md: &Path, dev: &Path) -> Result<(), StorageError> {
        mdadm(
            "removing the disk from the array",
            &[&s(md), "--remove", &s(dev)],
        )
    }

    fn add(&self, md: &Path, dev: &Path) -> Result<(), StorageError> {
        mdadm("adding the new disk", &[&s(md), "--add", &s(dev)])
    }

    fn hot_replace(&self, md: &Path, old: &Path, new: &Path) -> Result<(), StorageError> {
        mdadm(
            "replacing the disk",
            &[&s(md), "--replace", &s(old), "--with", &s(new)],
        )
    }

    fn stop(&self, md: &Path) -> Result<(), StorageError> {
        mdadm("stopping the RAID array", &["--stop", &s(md)])
    }

    fn fail_detached(&self, md: &Path, member: &str) -> Result<(), StorageError> {
        mdadm(
            "failing a removed disk",
            &["--incremental", "--fail", member, "--config=none"],
        )
        .or_else(|_| {
            mdadm(
                "failing a removed disk",
                &[&s(md), "--fail", "detached", "--remove", "detached"],
            )
        })
    }

    fn mkfs_ext4(&self, md: &Path, label: &str) -> Result<(), StorageError> {
        run(
            "creating the filesystem",
            "mke2fs",
            &[
                "-t",
                "ext4",
                "-F",
                "-q",
                "-L",
                label,
                "-m",
                "1",
                "-E",
                "lazy_itable_init=1,lazy_journal_init=1",
                &s(md),
            ],
            MKFS_TIMEOUT,
        )
        .map(|_| ())
    }

    fn fsck(&self, md: &Path) -> Result<Fsck, StorageError> {
        match cairn_exec::run(&tool("e2fsck"), &["-p", &s(md)], FSCK_TIMEOUT) {
            Ok(_) => Ok(Fsck::Clean),
            // 1: errors corrected; 2: corrected, and the system should be rebooted (not for a data volume).
            Err(cairn_exec::ExecError::Failed {
                code: Some(1 | 2), ..
            }) => Ok(Fsck::Repaired),
            Err(e) => Err(StorageError::tool("checking the filesystem", e)),
        }
    }

    fn mount(&self, md: &Path, dir: &Path) -> Result<(), StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io("making the mount point", e))?;
        nix::mount::mount(
            Some(md),
            dir,
            Some("ext4"),
            nix::mount::MsFlags::MS_NOATIME
                | nix::mount::MsFlags::MS_NODEV
                | nix::mount::MsFlags::MS_NOSUID,
            None::<&str>,
        )
        .map_err(|e| StorageError::Tool {
            step: "mounting the filesystem".into(),
            detail: e.to_string(),
        })
    }

    fn unmount(&self, dir: &Path) -> Result<(), StorageError> {
        nix::mount::umount(dir).map_err(|e| StorageError::Tool {
            step: "unmounting the filesystem".into(),
            detail: e.to_string(),
        })
    }

    fn remove_mount_point(&self, dir: &Path) -> Result<(), StorageError> {
        std::fs::remove_dir(dir).map_err(|e| StorageError::io("removing the mount point", e))
    }

    fn start_check(&self, md: &Path) -> Result<(), StorageError> {
        let name = md.file_name().unwrap_or_default();
        let attr = self.sys.join("block").join(name).join("md/sync_action");
        std::fs::write(attr, "check").map_err(|e| StorageError::io("starting the scrub", e))
    }

    fn note_assembly_time(&self, assembling: Duration, total: Duration) {
        let (asm, ms) = (assembling.as_millis(), total.as_millis());
        let _ = std::fs::write("/run/cairn/assembly-ms", format!("{asm} {ms}\n"));
    }
}

/// Zeros the first and last MiB of a disk so nothing old is recognised on it again.
fn zero_ends(dev: &Path) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(dev)?;
    let size = f.seek(SeekFrom::End(0))?;
    let chunk = vec![0u8; 1024 * 1024];
    let len = (chunk.len() as u64).min(size);
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&chunk[..len as usize])?;
    if size > len {
        f.seek(SeekFrom::Start(size - len))?;
        f.write_all(&chunk[..len as usize])?;
    }
    f.sync_all()
}
