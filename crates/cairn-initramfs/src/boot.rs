//! The initramfs's one run, as PID 1: the steps in order, each failure one console line, then a reboot (or the
//! owner's rescue shell). Only the pure parts below it are host-tested; this sequence runs under QEMU in the
//! `verity` and `boot` end-to-end tests.

use crate::cmdline::{self, BootArgs, CmdlineError};
use crate::dm::{Control, DmError, Target};
use crate::partition::{self, Poll};
use crate::slot::{self, SlotError, VerifiedSlot};
use crate::verity::OnCorruption;
use cairn_board::{Board, BoardError};
use nix::mount::MsFlags;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The device-mapper name of the verified root, and its node (made here: there is no udev).
const MAPPED_NAME: &str = "root";
const MAPPED_NODE: &str = "/dev/mapper/root";
/// Where the slot is mounted before it becomes `/`.
const NEW_ROOT: &str = "/newroot";
const INIT: &str = "/sbin/init";
/// busybox, for `switch_root` (it empties the initramfs's memory before handing over) and the rescue shell.
const BUSYBOX: &str = "/bin/busybox";
/// Long enough to read the console line on a screen or a serial log before the box restarts.
const REBOOT_PAUSE: Duration = Duration::from_secs(5);
/// Chunk of the trial boot's read-through.
const READ_CHUNK: usize = 1024 * 1024;

/// Why this boot of the slot stops before its init.
#[derive(Debug, thiserror::Error)]
enum BootError {
    #[error("{0}")]
    Cmdline(#[from] CmdlineError),
    #[error("{0}")]
    Board(#[from] BoardError),
    #[error("no partition named {name} on the boot medium ({boot_device}) after {seconds} s")]
    NoPartition {
        name: String,
        boot_device: String,
        seconds: u64,
    },
    #[error("no trusted keys: {0}")]
    Keys(cairn_firmware::FirmwareError),
    #[error("{0}")]
    Slot(#[from] SlotError),
    #[error("{0}")]
    Dm(#[from] DmError),
    #[error("cannot make {path}: {errno}")]
    Node {
        path: String,
        errno: nix::errno::Errno,
    },
    #[error("verity refuses the slot: reading byte {offset} of {total} failed: {source}")]
    Corrupted {
        offset: u64,
        total: u64,
        source: std::io::Error,
    },
    #[error("cannot mount {device} (squashfs) on {NEW_ROOT}: {errno}")]
    Mount {
        device: String,
        errno: nix::errno::Errno,
    },
    #[error("the slot has no {INIT}")]
    NoInit,
    #[error("cannot hand over to {INIT} with {BUSYBOX} switch_root: {0}")]
    Exec(nix::errno::Errno),
}

/// Runs the initramfs: returns only if neither the new root's init nor a reboot could be started.
pub fn run() -> ExitCode {
    let started = Instant::now();
    mount_early();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let error = match boot(&cmdline, started) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let rescue = cmdline::wants_rescue(&cmdline);
    if rescue {
        say(&format!(
            "initramfs: not booting: {error}; cairn.rescue=1: here is a shell (to go on by hand: exec switch_root {NEW_ROOT} {INIT})"
        ));
        shell();
    } else {
        say(&format!(
            "initramfs: not booting: {error}; restarting in {} s so the boot loader can fall back to the other slot (cairn.rescue=1 on the kernel command line gives a shell instead)",
            REBOOT_PAUSE.as_secs()
        ));
    }
    std::thread::sleep(REBOOT_PAUSE);
    let e = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    say(&format!("initramfs: cannot restart: {e:?}"));
    ExitCode::FAILURE
}

fn boot(cmdline: &str, started: Instant) -> Result<Infallible, BootError> {
    let mut steps = Steps::new(started);
    let args = cmdline::parse(cmdline)?;
    let board = Board::load(Path::new(cairn_board::IMAGE_BOARD_FILE))?;
    load_modules(&board);
    steps.mark("modules");
    let name = args.slot.partition_name();
    let device = partition::wait_for(Path::new("/sys/class/block"), &board, &name, &Poll::DEVICES)
        .ok_or_else(|| BootError::NoPartition {
            name: name.clone(),
            boot_device: board.storage.boot_device.clone(),
            seconds: Poll::DEVICES.deadline.as_secs(),
        })?;
    steps.mark("partition");
    let keys = cairn_firmware::TrustedKeys::load_dir(Path::new(cairn_firmware::IMAGE_KEYS_DIR))
        .map_err(BootError::Keys)?;
    let slot = slot::check(&device, &keys, &board.name)?;
    steps.mark("signature");
    map_verity(&args, &device, &slot)?;
    steps.mark("verity");
    say(&format!(
        "initramfs: slot {} ({name} on {}) version {} signed by key {}: {MAPPED_NODE} verified through dm-verity, {} ms ({})",
        args.slot.letter(),
        device.display(),
        slot.version,
        slot.key,
        started.elapsed().as_millis(),
        steps.summary()
    ));
    mount_root()?;
    switch_root()
}

/// How long each step took, for the success line: the boot-time figures start here.
struct Steps {
    last: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Steps {
    fn new(started: Instant) -> Steps {
        Steps {
            last: started,
            done: Vec::new(),
        }
    }

    fn mark(&mut self, step: &'static str) {
        let now = Instant::now();
        self.done.push((step, now - self.last));
        self.last = now;
    }

    fn summary(&self) -> String {
        let parts: Vec<String> = self
            .done
            .iter()
            .map(|(step, took)| format!("{step} {} ms", took.as_millis()))
            .collect();
        parts.join(", ")
    }
}

/// Creates `/dev/mapper/root` over the slot's partition. A slot on trial is first mapped with read errors on
/// corruption and read through, so a changed block is reported here and the boot stops before anything
/// runs from it; then (like every other boot) it gets `restart_on_corruption` for the rest of its life.
fn map_verity(args: &BootArgs, device: &Path, slot: &VerifiedSlot) -> Result<(), BootError> {
    let control = Control::open(Path::new(Control::PATH))?;
    let uuid = format!("CAIRN-VERITY-{}", args.slot.partition_name());
    let (major, minor) = control.create(MAPPED_NAME, &uuid)?;
    make_node(major, minor)?;
    let dev = device.to_string_lossy();
    let target = |mode| Target {
        sectors: slot.verity.sectors(),
        target_type: "verity".into(),
        params: slot.verity.table(&dev, mode),
    };
    if args.trial {
        control.load(MAPPED_NAME, &target(OnCorruption::Eio))?;
        control.resume(MAPPED_NAME)?;
        let took = read_through(slot.verity.data_bytes())?;
        say(&format!(
            "initramfs: slot {} on trial: read through, every block verified ({} MiB in {} ms)",
            args.slot.letter(),
            slot.verity.data_bytes() / (1024 * 1024),
            took.as_millis()
        ));
        control.load(MAPPED_NAME, &target(OnCorruption::Restart))?;
        control.suspend(MAPPED_NAME)?;
    } else {
        control.load(MAPPED_NAME, &target(OnCorruption::Restart))?;
    }
    control.resume(MAPPED_NAME)?;
    Ok(())
}

fn make_node(major: u64, minor: u64) -> Result<(), BootError> {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    let _ = std::fs::remove_file(MAPPED_NODE);
    mknod(
        MAPPED_NODE,
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o600),
        makedev(major, minor),
    )
    .map_err(|errno| BootError::Node {
        path: MAPPED_NODE.into(),
        errno,
    })
}

/// Reads every byte of the verity device once: dm-verity checks each block against the signed tree.
fn read_through(total: u64) -> Result<Duration, BootError> {
    let started = Instant::now();
    let corrupted = |offset, source| BootError::Corrupted {
        offset,
        total,
        source,
    };
    let mut file = std::fs::File::open(MAPPED_NODE).map_err(|e| corrupted(0, e))?;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut offset = 0u64;
    while offset < total {
        match file.read(&mut buf) {
            Ok(0) => {
                let short =
                    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "device ends early");
                return Err(corrupted(offset, short));
            }
            Ok(n) => offset += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(corrupted(offset, e)),
        }
    }
    Ok(started.elapsed())
}

fn mount_root() -> Result<(), BootError> {
    let _ = std::fs::create_dir_all(NEW_ROOT);
    nix::mount::mount(
        Some(MAPPED_NODE),
        NEW_ROOT,
        Some("squashfs"),
        MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(|errno| BootError::Mount {
        device: MAPPED_NODE.into(),
        errno,
    })?;
    if std::fs::metadata(Path::new(NEW_ROOT).join(INIT.trim_start_matches('/'))).is_err() {
        return Err(BootError::NoInit);
    }
    Ok(())
}

/// Moves /dev into the new root and lets busybox's `switch_root` (exec'd, not spawned: it becomes PID 1)
/// free the initramfs, make the new root `/` and exec its init.
fn switch_root() -> Result<Infallible, BootError> {
    let new_dev = PathBuf::from(NEW_ROOT).join("dev");
    if let Err(e) = nix::mount::mount(
        Some("/dev"),
        &new_dev,
        None::<&str>,
        MsFlags::MS_MOVE,
        None::<&str>,
    ) {
        say(&format!(
            "initramfs: cannot move /dev into the new root: {e}"
        ));
    }
    for point in ["/proc", "/sys"] {
        let _ = nix::mount::umount(point);
    }
    let argv = [c"switch_root", c"/newroot", c"/sbin/init"];
    let errno = nix::unistd::execv(c"/bin/busybox", &argv).unwrap_err();
    Err(BootError::Exec(errno))
}

/// The owner's way in when a slot cannot boot (`cairn.rescue=1`): busybox's shell on the console.
fn shell() {
    let argv = [c"sh"];
    let e = nix::unistd::execv(c"/bin/busybox", &argv).unwrap_err();
    say(&format!("initramfs: cannot start a shell: {e}"));
}

fn load_modules(board: &Board) {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = Path::new("/lib/modules").join(release);
    for problem in cairn_init::modules::load(&dir, &board.modules.initramfs) {
        say(&format!("initramfs: module {problem}"));
    }
}

/// devtmpfs, proc and sysfs, then the console on stdin/stdout/stderr (devtmpfs's node, as the shell did).
fn mount_early() {
    let table: [(&str, &str, MsFlags, Option<&str>); 3] = [
        ("devtmpfs", "/dev", MsFlags::MS_NOSUID, Some("mode=0755")),
        (
            "proc",
            "/proc",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None,
        ),
        (
            "sysfs",
            "/sys",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None,
        ),
    ];
    for (fstype, point, flags, data) in table {
        if let Err(e) = nix::mount::mount(Some(fstype), point, Some(fstype), flags, data) {
            say(&format!("initramfs: cannot mount {fstype} on {point}: {e}"));
        }
    }
    if let Ok(console) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            let _ = nix::unistd::dup2(console.as_raw_fd(), fd);
        }
    }
}

/// One line on the console; a console that cannot be written is no reason to stop booting.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
