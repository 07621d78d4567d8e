//! The PID 1 main loop: bring-up, supervision, watchdog and shutdown. Only runs as PID 1 in the image.

use crate::boot_partition;
use crate::commit::{self, probes::Feed};
use crate::config_partition;
use crate::logring::LogRing;
use crate::modules;
use crate::reset_pin::ResetPin;
use crate::services::{Backoff, ServiceSpec, ServicesFile, SERVICES_FILE};
use crate::system_volume;
use cairn_board::{Board, IMAGE_BOARD_FILE};
use cairn_reset::Tier;
use cairn_store::unavailable::{ConfigState, Unavailable};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the config partition is mounted; the daemon keeps its store below it.
pub const CONFIG_MOUNT: &str = "/config";
/// How long services get to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The port the management daemon listens on; late modules wait for it.
const DASHBOARD_PORT: u16 = 80;
/// Longest wait for the dashboard before late modules load anyway.
const LATE_MODULES_WAIT: Duration = Duration::from_secs(20);
/// How often the main loop wakes up without a signal.
const TICK: Duration = Duration::from_millis(500);

struct Running {
    spec: ServiceSpec,
    pid: Option<Pid>,
    started: Instant,
    delay: Option<Duration>,
    restart_at: Option<Instant>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Reboot,
    Poweroff,
    /// The reset pin was released in a tier: apply it with every service stopped, then reboot.
    Reset(Tier),
}

/// Where the management daemon keeps the settings (its `--state` in services.toml).
const SETTINGS_DIR: &str = "/config/cairn";
/// The longest a reset may take before the box reboots without it.
const RESET_DEADLINE: Duration = Duration::from_secs(60);
/// How often the loop wakes while the reset pin is held, to show each tier as it is reached.
const PIN_TICK: Duration = Duration::from_millis(100);

/// Runs PID 1. Never returns: it ends with a reboot or power-off.
pub fn run() -> ! {
    // First of all, before any thread exists: every thread inherits this mask, and a signal meant for the
    // main loop (busybox poweroff sends SIGUSR2) reaching a thread that does not block it would kill PID 1.
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGHUP,
        Signal::SIGPWR,
    ] {
        mask.add(s);
    }
    let _ = mask.thread_block();
    let log = Arc::new(LogRing::new(Path::new("/run/log/cairn.log"), true));
    mount_virtual_filesystems(&log);
    let _ = std::fs::create_dir_all("/run/log");
    log.line(
        "init",
        &format!("Cairn {} starting", env!("CARGO_PKG_VERSION")),
    );

    let board = match Board::load(Path::new(IMAGE_BOARD_FILE)) {
        Ok(b) => Some(b),
        Err(e) => {
            log.line("init", &format!("ERROR {e}; continuing without board data"));
            None
        }
    };
    if let Some(b) = &board {
        load_modules(&log, &b.modules.boot);
    }
    // The board's default until the daemon applies the owner's choice.
    let network = board
        .as_ref()
        .map(|b| b.network.clone())
        .unwrap_or_default();
    let _ = nix::unistd::sethostname(&network.hostname);
    bring_up_network(&log, board.as_ref());
    let late = board
        .as_ref()
        .map(|b| b.modules.late.clone())
        .unwrap_or_default();
    {
        // Services that need these (the SMB server) restart with backoff until they are in. They wait for the
        // dashboard to listen first: on a single core, loading them would otherwise delay it.
        let log = log.clone();
        std::thread::spawn(move || {
            wait_for_listener(DASHBOARD_PORT, LATE_MODULES_WAIT);
            if !late.is_empty() {
                load_modules(&log, &late);
            }
            // Only now may the kernel load modules by itself (an array assembled by hand finds its RAID
            // driver): its requests during boot would each start a modprobe and cost ~0.1 s of boot time.
            if let Err(e) = std::fs::write("/proc/sys/kernel/modprobe", "/bin/modprobe") {
                log.line("init", &format!("kernel module loading stays off: {e}"));
            }
        });
    }

    let interface = network.interface.clone();
    let specs = match std::fs::read_to_string(SERVICES_FILE)
        .map_err(|e| e.to_string())
        .and_then(|t| ServicesFile::parse(&t).map_err(|e| e.to_string()))
    {
        Ok(f) => f.services,
        Err(e) => {
            log.line(
                "init",
                &format!(
                    "ERROR services file {SERVICES_FILE}: {e}; starting only the console shell"
                ),
            );
            vec![ServiceSpec {
                name: "console".into(),
                argv: vec!["/bin/sh".into()],
                console: true,
                env: vec![],
                early: false,
            }]
        }
    };
    let mut running: Vec<Running> = specs
        .into_iter()
        .map(|mut spec| {
            spec.argv = spec
                .argv
                .iter()
                .map(|a| a.replace("{interface}", &interface))
                .collect();
            Running {
                spec,
                pid: None,
                started: Instant::now(),
                delay: None,
                restart_at: Some(Instant::now()),
            }
        })
        .collect();
    // The commit's health checks need the management daemon (it serves the dashboard): a system whose
    // services do not start it can never pass them.
    let never_healthy = (!running
        .iter()
        .any(|r| r.spec.argv.get(1).map(String::as_str) == Some("daemon")))
    .then(|| format!("{SERVICES_FILE} starts no management daemon (cairn daemon)"));
    // Early services (DHCP) need nothing from the config partition: they run while it is checked and mounted.
    for r in running.iter_mut().filter(|r| r.spec.early) {
        r.restart_at = None;
        r.pid = start(&log, &r.spec);
        r.started = Instant::now();
        if r.pid.is_none() {
            schedule_restart(&log, r);
        }
    }
    mount_config(&log, board.as_ref());
    mount_boot(&log, board.as_ref());

    let sigfd = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(fd) => fd,
        Err(e) => {
            log.line("init", &format!("ERROR signalfd: {e}; rebooting"));
            final_reboot(Stop::Reboot, None);
        }
    };

    let feed = Arc::new(Feed::new(
        board.as_ref().is_some_and(|b| b.watchdog.is_some()),
    ));
    let mut watchdog = board
        .as_ref()
        .and_then(|b| b.watchdog.as_ref())
        .and_then(|w| match OpenOptions::new().write(true).open(&w.device) {
            Ok(f) => {
                log.line("init", &format!("watchdog {} armed", w.device));
                let every = Duration::from_secs(u64::from(w.timeout_s.max(3)) / 3);
                feed.armed(every);
                Some((f, every))
            }
            Err(e) => {
                log.line("init", &format!("watchdog {} unavailable: {e}", w.device));
                None
            }
        });
    let mut last_pet = Instant::now() - Duration::from_secs(3600);
    // The reset pin is init's own: it works while the daemon is hung, crash-looping or stopped.
    let mut pin = board.as_ref().map(|b| ResetPin::open(b, &log));
    if let Some(b) = &board {
        let log = log.clone();
        commit::start(b, feed.clone(), never_healthy.clone(), move |line| {
            log.line("init", &line)
        });
    }

    let stop = loop {
        if let Some((dev, every)) = watchdog.as_mut() {
            if last_pet.elapsed() >= *every {
                let _ = dev.write_all(b"\0");
                let _ = dev.flush();
                last_pet = Instant::now();
                feed.petted();
            }
        }
        for r in running.iter_mut() {
            if r.pid.is_none() && r.restart_at.is_some_and(|t| Instant::now() >= t) {
                r.restart_at = None;
                r.pid = start(&log, &r.spec);
                r.started = Instant::now();
                if r.pid.is_none() {
                    schedule_restart(&log, r);
                }
            }
        }
        let tick = if pin.as_ref().is_some_and(ResetPin::busy) {
            PIN_TICK
        } else {
            TICK
        };
        let mut fds = vec![nix::poll::PollFd::new(
            sigfd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if let Some(p) = &pin {
            fds.extend(
                p.fds()
                    .into_iter()
                    .map(|fd| nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)),
            );
        }
        let _ = nix::poll::poll(
            &mut fds,
            nix::poll::PollTimeout::try_from(tick.as_millis() as i32)
                .unwrap_or(nix::poll::PollTimeout::NONE),
        );
        drop(fds);
        let mut requested = None;
        if let Some(release) = pin.as_mut().and_then(|p| p.service(&log)) {
            if release.tier.resets() {
                requested = Some(Stop::Reset(release.tier));
            }
        }
        while let Ok(Some(info)) = sigfd.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => {
                    requested = requested.or(Some(Stop::Reboot))
                }
                Ok(Signal::SIGUSR1) | Ok(Signal::SIGUSR2) | Ok(Signal::SIGPWR) => {
                    requested = requested.or(Some(Stop::Poweroff))
                }
                _ => {}
            }
        }
        reap(&log, &mut running);
        if let Some(stop) = requested {
            break stop;
        }
    };

    shutdown(&log, &mut running, stop, watchdog.map(|(f, _)| f));
}

fn schedule_restart(log: &LogRing, r: &mut Running) {
    let delay = Backoff::SERVICE.next(r.delay, r.started.elapsed());
    r.delay = Some(delay);
    r.restart_at = Some(Instant::now() + delay);
    log.line(
        "init",
        &format!("{} will restart in {} ms", r.spec.name, delay.as_millis()),
    );
}

fn reap(log: &LogRing, running: &mut [Running]) {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(status) => {
                let Some(pid) = status.pid() else { continue };
                if let Some(r) = running.iter_mut().find(|r| r.pid == Some(pid)) {
                    r.pid = None;
                    log.line("init", &format!("{} exited: {status:?}", r.spec.name));
                    schedule_restart(log, r);
                }
                // Anything else was an orphan re-parented to us: reaped, nothing more to do.
            }
        }
    }
}

fn start(log: &Arc<LogRing>, spec: &ServiceSpec) -> Option<Pid> {
    #[allow(clippy::disallowed_methods)] // Init's supervisor starts the services it then watches.
    let mut cmd = Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    // PID 1 blocks the signals it waits for; a service must not inherit that mask, or it would ignore the
    // SIGTERM that asks it to stop (found by a test that restarts the daemon mid-rebuild).
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: only sigprocmask, which is async-signal-safe, runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::signal::sigprocmask(
                    nix::sys::signal::SigmaskHow::SIG_SETMASK,
                    Some(&SigSet::empty()),
                    None,
                )
                .map_err(std::io::Error::from)
            });
        }
    }
    for e in &spec.env {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    if spec.console {
        cmd.stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
    } else {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }
    match cmd.spawn() {
        Ok(mut child) => {
            for pipe in [
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            ]
            .into_iter()
            .flatten()
            {
                let log = log.clone();
                let name = spec.name.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                        log.line(&name, &line);
                    }
                });
            }
            log.line(
                "init",
                &format!("started {} (pid {})", spec.name, child.id()),
            );
            // The child is reaped by waitpid(-1) in the main loop, not through this handle.
            let pid = Pid::from_raw(child.id() as i32);
            std::mem::forget(child);
            Some(pid)
        }
        Err(e) => {
            log.line("init", &format!("ERROR cannot start {}: {e}", spec.name));
            None
        }
    }
}

/// Unmounts every data volume (newest mount first) so their filesystems are clean at power-off; one that
/// stays busy is remounted read-only instead.
fn unmount_data_volumes(log: &LogRing) {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with("/data/"))
        .collect();
    points.reverse();
    for point in points {
        match umount2(point, MntFlags::empty()) {
            Ok(()) => log.line("init", &format!("{point} unmounted cleanly")),
            Err(e) => {
                log.line(
                    "init",
                    &format!("ERROR unmount {point}: {e}; remounting read-only"),
                );
                let _ = mount(
                    None::<&str>,
                    point,
                    None::<&str>,
                    MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    None::<&str>,
                );
            }
        }
    }
}

fn mount_virtual_filesystems(log: &LogRing) {
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let table: [(&str, &str, &str, MsFlags, Option<&str>); 7] = [
        ("proc", "/proc", "proc", nodev, None),
        ("sysfs", "/sys", "sysfs", nodev, None),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        ),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("gid=5,mode=620,ptmxmode=666"),
        ),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755,size=16m"),
        ),
        (
            "tmpfs",
            "/tmp",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777,size=32m"),
        ),
        // Mount points of the data volumes (the root slot is read-only); nothing is stored here itself.
        (
            "tmpfs",
            "/data",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=0755,size=1m"),
        ),
    ];
    for (source, target, fstype, flags, data) in table {
        let _ = std::fs::create_dir_all(target);
        match mount(Some(source), target, Some(fstype), flags, data) {
            Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
            Err(e) => log.line("init", &format!("mount {target}: {e}")),
        }
    }
    let _ = std::fs::create_dir_all("/run/log");
    let _ = std::fs::create_dir_all("/run/cairn");
    let _ = std::fs::create_dir_all("/run/ksmbd");
    // /etc/passwd and /etc/group point here; the daemon adds the owner's accounts once it runs.
    for (base, live) in [
        ("/etc/cairn/passwd.base", "/run/cairn/passwd"),
        ("/etc/cairn/group.base", "/run/cairn/group"),
    ] {
        if let Err(e) = std::fs::copy(base, live) {
            log.line("init", &format!("cannot prepare {live}: {e}"));
        }
    }
}

fn load_modules(log: &LogRing, wanted: &[String]) {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = Path::new("/lib/modules").join(release);
    let started = Instant::now();
    for problem in modules::load(&dir, wanted) {
        log.line("init", &format!("module: {problem}"));
    }
    log.line(
        "init",
        &format!(
            "{} modules loaded in {} ms",
            wanted.len(),
            started.elapsed().as_millis()
        ),
    );
}

/// Mounts the config partition, formatting it only when it is blank. On any other trouble nothing writable
/// takes its place (a read-only, empty placeholder): the daemon finds the reason in the state file and
/// refuses setup, so a box whose settings cannot be read is never offered to the network as a new one.
fn mount_config(log: &LogRing, board: Option<&Board>) {
    let _ = std::fs::create_dir_all(CONFIG_MOUNT);
    let is_boot = |path: &str| board.map(|b| b.is_boot_device(path)).unwrap_or(true);
    let state =
        match config_partition::find_by_partname(Path::new("/sys/class/block"), &is_boot, "config")
        {
            None => ConfigState::Unavailable {
                device: None,
                why: Unavailable::NoPartition,
            },
            Some(dev) => {
                let part = config_partition::Device {
                    device: dev,
                    mount_point: CONFIG_MOUNT.into(),
                };
                config_partition::bring_up(&part.device.to_string_lossy(), &part)
            }
        };
    match &state {
        ConfigState::Unavailable { why, .. } => {
            log.line(
                "init",
                &format!("ERROR config partition: {why}; settings unavailable until the owner repairs or formats it from the console (cairn ctl config repair)"),
            );
            if let Err(e) = config_partition::mount_placeholder(Path::new(CONFIG_MOUNT)) {
                log.line("init", &format!("read-only placeholder at {CONFIG_MOUNT}: {e}"));
            }
        }
        ConfigState::Formatted { device } => log.line(
            "init",
            &format!("config partition {device} is blank: formatting (first boot); mounted at {CONFIG_MOUNT}"),
        ),
        ConfigState::Repaired { device } => log.line(
            "init",
            &format!("config partition {device} does not mount: checking it; repaired and mounted at {CONFIG_MOUNT}"),
        ),
        ConfigState::Mounted { device } => log.line(
            "init",
            &format!("config partition {device} mounted at {CONFIG_MOUNT}"),
        ),
    }
    if let Err(e) = state.save(Path::new(cairn_store::unavailable::STATE_FILE)) {
        log.line("init", &format!("cannot record the config state: {e}"));
    }
    if !matches!(state, ConfigState::Unavailable { .. }) {
        mount_system_volume(log, board);
    }
}

/// Mounts the boot partition at /boot for the boot state and updates; without it the box still serves.
fn mount_boot(log: &LogRing, board: Option<&Board>) {
    let is_boot = |path: &str| board.map(|b| b.is_boot_device(path)).unwrap_or(true);
    let at = Path::new(boot_partition::BOOT_MOUNT);
    let mut check = |device: &Path| log.line("init", &boot_partition::repair(device));
    match boot_partition::mount_boot(Path::new("/sys/class/block"), &is_boot, &mut check, at) {
        Ok(device) => {
            log.line(
                "init",
                &format!("boot partition {} mounted at {}", device.display(), at.display()),
            );
            // An install cut mid-write: its files go, and a second check gives back what they held.
            let removed = boot_partition::remove_leftovers(at);
            if removed > 0 {
                log.line(
                    "init",
                    &format!("boot partition: {removed} file(s) of a cut install removed; checking it again"),
                );
                if let Some(line) = boot_partition::unmount_boot(at) {
                    log.line("init", &line);
                }
                if let Err(e) = boot_partition::mount_boot(Path::new("/sys/class/block"), &is_boot, &mut check, at) {
                    log.line("init", &format!("ERROR boot partition: {e}; carrying on without it"));
                }
            }
        }
        Err(e) => log.line(
            "init",
            &format!("ERROR boot partition: {e}; carrying on without it (the boot state and updates are unavailable)"),
        ),
    }
}

/// Where the `system` volume's shares live: the image mounted here caps them below the config partition.
const SYSTEM_VOLUME_ROOT: &str = "/config/shares";

/// Gives the `system` volume its fixed-size home on a usable config partition (see [`system_volume`]).
fn mount_system_volume(log: &LogRing, board: Option<&Board>) {
    let (_, line) = system_volume::start(Path::new(CONFIG_MOUNT), system_volume::headroom(board));
    log.line("init", &line);
}

fn bring_up_network(log: &LogRing, board: Option<&Board>) {
    let network = board.map(|b| b.network.clone()).unwrap_or_default();
    let interface = network.interface.as_str();
    for args in [
        vec!["link", "set", "lo", "up"],
        vec!["link", "set", interface, "up"],
    ] {
        if let Err(e) = cairn_exec::run("/bin/ip", &args, Duration::from_secs(5)) {
            log.line("init", &format!("network: {e}"));
        }
    }
}

fn shutdown(
    log: &LogRing,
    running: &mut [Running],
    stop: Stop,
    watchdog: Option<std::fs::File>,
) -> ! {
    log.line(
        "init",
        match stop {
            Stop::Reboot => "reboot requested: stopping services",
            Stop::Poweroff => "power-off requested: stopping services",
            Stop::Reset(_) => "reset pin released in a reset tier: stopping services",
        },
    );
    for r in running.iter_mut().rev() {
        r.restart_at = None;
        if let Some(pid) = r.pid {
            let _ = kill(pid, Signal::SIGTERM);
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    while running.iter().any(|r| r.pid.is_some()) && Instant::now() < deadline {
        reap_quietly(running);
        std::thread::sleep(Duration::from_millis(50));
    }
    // Whatever is left, services that ignored SIGTERM and their children alike.
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    // A killed process keeps its files open until it has fully exited: wait for every child to be gone,
    // or the unmount below finds the config filesystem busy.
    let deadline = Instant::now() + STOP_GRACE;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Err(nix::errno::Errno::ECHILD) => break,
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Ok(WaitStatus::StillAlive) | Err(_) => {
                log.line("init", "some processes did not exit in time");
                break;
            }
            Ok(_) => {}
        }
    }
    nix::unistd::sync();
    if let Stop::Reset(tier) = stop {
        apply_reset(log, tier);
    }
    unmount_data_volumes(log);
    if let Err(e) = umount2(SYSTEM_VOLUME_ROOT, MntFlags::empty()) {
        if e != nix::errno::Errno::EINVAL {
            log.line("init", &format!("ERROR unmount {SYSTEM_VOLUME_ROOT}: {e}"));
        }
    }
    if let Some(line) = boot_partition::unmount_boot(Path::new(boot_partition::BOOT_MOUNT)) {
        log.line("init", &line);
    }
    match umount2(CONFIG_MOUNT, MntFlags::empty()) {
        Ok(()) => log.line("init", "config partition unmounted cleanly"),
        Err(e) => {
            log.line(
                "init",
                &format!("ERROR unmount {CONFIG_MOUNT}: {e}; remounting read-only"),
            );
            let _ = mount(
                None::<&str>,
                CONFIG_MOUNT,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            );
        }
    }
    nix::unistd::sync();
    log.line(
        "init",
        if stop == Stop::Poweroff {
            "powering off"
        } else {
            "restarting"
        },
    );
    final_reboot(stop, watchdog)
}

/// Applies a reset tier with every service stopped, through `cairn reset` (a child, so a failure there never
/// takes PID 1 with it); the box reboots afterwards whatever happened, and the console says what did.
fn apply_reset(log: &LogRing, tier: Tier) {
    log.line(
        "reset",
        &format!("applying the {} reset to the settings", tier.name()),
    );
    #[allow(clippy::disallowed_methods)] // Init's supervisor runs the reset it decided, as a child.
    let child = Command::new("/usr/bin/cairn")
        .args(["reset", "--tier", tier.name(), "--state", SETTINGS_DIR])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            log.line("reset", &format!("ERROR cannot run the reset: {e}"));
            return;
        }
    };
    let deadline = Instant::now() + RESET_DEADLINE;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let mut output = String::new();
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read>),
    ]
    .into_iter()
    .flatten()
    {
        let mut pipe = pipe;
        let _ = pipe.read_to_string(&mut output);
    }
    for line in output.lines() {
        log.line("reset", line);
    }
    match status {
        Some(s) if s.success() => {}
        Some(s) => log.line("reset", &format!("ERROR the reset failed ({s}); the settings are as they were")),
        None => log.line("reset", "ERROR the reset did not finish in time; the settings are as they were or reset, never half of each"),
    }
    nix::unistd::sync();
}

fn reap_quietly(running: &mut [Running]) {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        let Some(pid) = status.pid() else { break };
        if let Some(r) = running.iter_mut().find(|r| r.pid == Some(pid)) {
            r.pid = None;
        }
    }
}

fn final_reboot(stop: Stop, watchdog: Option<std::fs::File>) -> ! {
    // Magic close: a deliberate shutdown must not look like a hang to the watchdog.
    if let Some(mut f) = watchdog {
        let _ = f.write_all(b"V");
    }
    nix::unistd::sync();
    let mode = if stop == Stop::Poweroff {
        nix::sys::reboot::RebootMode::RB_POWER_OFF
    } else {
        nix::sys::reboot::RebootMode::RB_AUTOBOOT
    };
    let _ = nix::sys::reboot::reboot(mode);
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Waits until something listens on TCP `port` (IPv4 or IPv6), or `deadline` passes.
fn wait_for_listener(port: u16, deadline: Duration) {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        let listening = ["/proc/net/tcp6", "/proc/net/tcp"].iter().any(|f| {
            std::fs::read_to_string(f).is_ok_and(|t| crate::procnet::listens_on(&t, port))
        });
        if listening {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
