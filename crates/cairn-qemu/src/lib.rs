//! The QEMU harness: boots a board image the way an owner's box would start, and talks to it.
//!
//! Owns starting QEMU from the board's data (`board.toml` and the image's `manifest.json`): through real U-Boot
//! (the board's `[boot] u_boot` as QEMU's firmware, its environment in a per-box flash beside the disk), which
//! runs the image's boot script and picks the A/B slot as on a board; a copy-on-write
//! overlay so the built image stays pristine and a "box" keeps its disk across reboots, waiting for
//! readiness with deadlines (never a fixed sleep), HTTP through QEMU's port forwarding, commands on the
//! serial console, QMP, and the console log, which is printed when a test fails. Host-only; used by
//! `tests/` and the benchmarks.

mod http;
mod qmp;
mod tls;

pub use http::{HttpClient, HttpResponse};
pub use qmp::Qmp;
pub use tls::{fingerprint_sha256, pinned_client_config};

use cairn_board::Board;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What went wrong driving a machine. Each says what was awaited.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{0}")]
    Setup(String),
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("http: {0}")]
    Http(String),
    #[error("qmp: {0}")]
    Qmp(String),
}

pub type Result<T> = std::result::Result<T, HarnessError>;

/// The workspace root, for finding board files and build output.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root exists")
}

/// Where `make image` puts a board's build (overridable with `CAIRN_OUT`).
pub fn board_out_dir(board: &str) -> PathBuf {
    let base = std::env::var_os("CAIRN_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("out"));
    base.join(board)
}

/// Whether a console line is a log line of init, a service or the kernel rather than a command's output:
/// `[init] ...`, `[smb] ...`, `[   12.345678] ...`.
fn is_log_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('[') else {
        return false;
    };
    let Some((tag, after)) = rest.split_once(']') else {
        return false;
    };
    let service = !tag.is_empty()
        && tag
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    let kernel = tag.trim().split_once('.').is_some_and(|(s, us)| {
        !s.is_empty()
            && s.chars().all(|c| c.is_ascii_digit())
            && us.chars().all(|c| c.is_ascii_digit())
    });
    (service || kernel) && after.starts_with(' ')
}

/// A built image and its boot files, as `mkimage.py` describes them in `manifest.json`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Manifest {
    pub board: String,
    pub version: String,
    pub image: String,
    pub kernel: String,
    pub initrd: String,
    pub cmdline: String,
    /// U-Boot's own environment for the board's flash (no boot delay, load and run the boot script).
    pub u_boot_env: String,
    pub sizes: serde_json::Map<String, serde_json::Value>,
}

impl Manifest {
    pub fn load(board: &str) -> Result<(Manifest, PathBuf)> {
        Manifest::load_from(board, board_out_dir(board))
    }

    /// The manifest of the build in `dir` (`out/<board>` or a FEATURES build's folder).
    pub fn load_from(board: &str, dir: PathBuf) -> Result<(Manifest, PathBuf)> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            HarnessError::Setup(format!(
                "no built image for {board} ({}: {e}); run `make image BOARD={board}`",
                path.display()
            ))
        })?;
        let m = serde_json::from_str(&text)
            .map_err(|e| HarnessError::Setup(format!("{}: {e}", path.display())))?;
        Ok((m, dir))
    }
}

/// A box's boot medium: a copy-on-write overlay of the built image, kept across boots of the same box.
pub struct BootDisk {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl BootDisk {
    /// A fresh box, as if the image had just been flashed.
    pub fn flash(manifest: &Manifest, dir: &Path) -> Result<BootDisk> {
        let tmp = tempfile::Builder::new().prefix("cairn-box-").tempdir()?;
        let path = tmp.path().join("boot.qcow2");
        let base = dir.join(&manifest.image).canonicalize()?;
        let out = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&base)
            .arg(&path)
            .output()?;
        if !out.status.success() {
            return Err(HarnessError::Setup(format!(
                "qemu-img create: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(BootDisk { path, _dir: tmp })
    }

    /// Copies `count_mib` MiB at `offset_mib` out of the disk into a raw file (to inspect a partition offline).
    pub fn extract(&self, offset_mib: u64, count_mib: u64, to: &Path) -> Result<()> {
        let out = Command::new("qemu-img")
            .args(["dd", "-f", "qcow2", "-O", "raw", "bs=1M"])
            .arg(format!("skip={offset_mib}"))
            // qemu-img dd counts `count` from the start of the input, skipped blocks included.
            .arg(format!("count={}", offset_mib + count_mib))
            .arg(format!("if={}", self.path.display()))
            .arg(format!("of={}", to.display()))
            .output()?;
        let written = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
        if !out.status.success() || written != count_mib * 1024 * 1024 {
            return Err(HarnessError::Setup(format!(
                "qemu-img dd wrote {written} bytes: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }
}

/// The network the box is plugged into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// QEMU user networking with DHCP and a route out (through the host, which itself has no internet here).
    User,
    /// The same LAN with no route beyond the host (`restrict=on`): "the internet cable is pulled".
    Offline,
}

/// How to boot.
#[derive(Debug, Clone)]
pub struct BootOptions {
    pub network: Network,
    /// Extra guest TCP ports to forward from loopback (guest port → host port chosen by the harness).
    pub forward: Vec<u16>,
    pub memory_mib: Option<u32>,
    /// Boot the image's kernel directly (QEMU `-kernel`, no U-Boot) with this initrd: only for benchmark
    /// floors, which are not the product. Without it the box boots through U-Boot like a board.
    pub initrd_override: Option<PathBuf>,
    /// Data-disk bays, in order.
    pub data_disks: Vec<DataDisk>,
    /// Empty hot-plug bays after the filled ones, for disks added while the box runs.
    pub empty_bays: usize,
    /// The build the box was flashed from, when not `out/<board>` (an older version's build, such as
    /// `out/<board>-schema-2-only`): its U-Boot environment and manifest.
    pub build: Option<PathBuf>,
}

impl Default for BootOptions {
    fn default() -> Self {
        BootOptions {
            network: Network::User,
            forward: vec![],
            memory_mib: None,
            initrd_override: None,
            data_disks: vec![],
            empty_bays: 0,
            build: None,
        }
    }
}

/// Shared access to a machine's console log.
#[derive(Clone)]
pub struct ConsoleHandle(Arc<Mutex<Vec<u8>>>);

impl ConsoleHandle {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A running QEMU machine.
pub struct Machine {
    pub board: Board,
    pub manifest: Manifest,
    child: Child,
    stdin: ChildStdin,
    console: Arc<Mutex<Vec<u8>>>,
    qmp_path: PathBuf,
    /// Guest port 80 on the host.
    pub http_port: u16,
    /// Other forwarded guest ports: (guest, host).
    pub forwarded: Vec<(u16, u16)>,
    pub started: Instant,
    /// When the console showed U-Boot's "Starting kernel": the end of the boot loader's share of the boot.
    kernel_started: Arc<std::sync::OnceLock<Instant>>,
    marker: u32,
    /// QEMU device ids of disks plugged while running, by bay (boot-time disks are `disk<bay>`).
    disk_ids: Mutex<std::collections::HashMap<usize, String>>,
    plugged: std::sync::atomic::AtomicUsize,
    _runtime_dir: tempfile::TempDir,
}

/// Host ports forwarded into the guest.
#[derive(Debug, Clone)]
pub struct Ports {
    /// Guest port 80.
    pub http: u16,
    /// (guest, host) pairs.
    pub forwarded: Vec<(u16, u16)>,
}

/// A data-disk bay: a raw disk file on its own hot-pluggable PCIe port, with the serial a real disk reports.
#[derive(Debug, Clone)]
pub struct DataDisk {
    pub file: PathBuf,
    pub serial: String,
}

/// Size of the QEMU virt machine's second flash bank (pflash unit 1), where U-Boot keeps its environment.
const FLASH_BYTES: u64 = 64 * 1024 * 1024;

/// U-Boot's flash for the box whose disk is `disk`: kept beside it (a box keeps its flash across boots, as
/// a board does), made on first use from the image's `u-boot-env.bin` at offset 0 of the 64 MiB bank.
pub fn box_flash(disk: &Path) -> PathBuf {
    disk.with_file_name("u-boot-flash.img")
}

fn ensure_flash(flash: &Path, env: &Path) -> Result<()> {
    if flash.exists() {
        return Ok(());
    }
    let bytes = std::fs::read(env).map_err(|e| {
        HarnessError::Setup(format!(
            "U-Boot environment {}: {e}; run `make image`",
            env.display()
        ))
    })?;
    let mut f = std::fs::File::create(flash)?;
    f.write_all(&bytes)?;
    f.set_len(FLASH_BYTES)?;
    Ok(())
}

/// The QEMU command line for a board, from its board file and built manifest; the caller adds console options.
/// The box boots through U-Boot (its flash is [`box_flash`] of `disk`), unless a benchmark floor asks for
/// a direct kernel boot with [`BootOptions::initrd_override`].
pub fn qemu_command(
    board: &str,
    disk: &Path,
    options: &BootOptions,
    ports: &Ports,
    qmp: &Path,
) -> Result<(Board, Manifest, Command)> {
    let (manifest, dir) = match &options.build {
        Some(dir) => Manifest::load_from(board, dir.clone())?,
        None => Manifest::load(board)?,
    };
    let board_file = workspace_root()
        .join("board")
        .join(board)
        .join("board.toml");
    let board = Board::load(&board_file).map_err(|e| HarnessError::Setup(e.to_string()))?;
    let qemu = board.qemu.clone().ok_or_else(|| {
        HarnessError::Setup(format!("board {} has no [qemu] section", board.name))
    })?;
    let mut netdev = format!("user,id=lan,hostfwd=tcp:127.0.0.1:{}-:80", ports.http);
    for (guest, host) in &ports.forwarded {
        netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
    }
    if options.network == Network::Offline {
        netdev.push_str(",restrict=on");
    }
    let format = if disk.extension().is_some_and(|e| e == "qcow2") {
        "qcow2"
    } else {
        "raw"
    };
    let mut cmd = Command::new(&qemu.system);
    cmd.args(["-machine", &qemu.machine, "-cpu", &qemu.cpu])
        .args([
            "-m",
            &options.memory_mib.unwrap_or(qemu.memory_mib).to_string(),
        ])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp.display()));
    match &options.initrd_override {
        Some(initrd) => {
            cmd.arg("-kernel")
                .arg(dir.join(&manifest.kernel))
                .arg("-initrd")
                .arg(initrd)
                .args(["-append", &manifest.cmdline]);
        }
        None => {
            let flash = box_flash(disk);
            ensure_flash(&flash, &dir.join(&manifest.u_boot_env))?;
            cmd.arg("-bios")
                .arg(&board.boot.u_boot)
                .arg("-drive")
                .arg(format!(
                    "if=pflash,unit=1,format=raw,file={}",
                    flash.display()
                ));
        }
    }
    cmd.arg("-drive")
        .arg(format!(
            "if=none,id=boot,file={},format={format}",
            disk.display()
        ))
        .args(["-device", "virtio-blk-device,drive=boot"])
        .args([
            "-netdev",
            &netdev,
            "-device",
            "virtio-net-pci,netdev=lan,romfile=",
        ]);
    for dev in &qemu.extra_devices {
        cmd.args(["-device", dev]);
    }
    for bay in options.data_disks.len() + 1..=options.data_disks.len() + options.empty_bays {
        cmd.args(["-device", &bay_port(bay)]);
    }
    for (i, d) in options.data_disks.iter().enumerate() {
        let bay = i + 1;
        cmd.args(["-device", &bay_port(bay)])
            .arg("-drive")
            .arg(format!(
                "if=none,id=data{bay},file={},format=raw",
                d.file.display()
            ))
            .args([
                "-device",
                &format!(
                    "virtio-blk-pci,drive=data{bay},id=disk{bay},bus=bay{bay},serial={}",
                    d.serial
                ),
            ]);
    }
    Ok((board, manifest, cmd))
}

/// blkdebug's rules failing every read (EIO) that touches one of `bad_sectors`: blkdebug matches one sector
/// per rule, and raw's reads raise its `read_aio` event, which makes the rules live.
fn blkdebug_rules(bad_sectors: impl IntoIterator<Item = u64>) -> String {
    bad_sectors
        .into_iter()
        .map(|sector| {
            format!(
                "[inject-error]\nevent = \"read_aio\"\niotype = \"read\"\nerrno = \"5\"\nsector = \"{sector}\"\nonce = \"off\"\n\n"
            )
        })
        .collect()
}

/// A hot-plug PCIe port whose slot number is the bay number the guest reads from /sys/bus/pci/slots.
fn bay_port(bay: usize) -> String {
    format!("pcie-root-port,id=bay{bay},chassis={bay},slot={bay}")
}

/// The QMP arguments that press the power key (the reset pin under QEMU) for `hold`.
pub fn press_power_key(hold: Duration) -> serde_json::Value {
    serde_json::json!({
        "keys": [{"type": "qcode", "data": "power"}],
        "hold-time": hold.as_millis() as u64,
    })
}

/// Creates a blank sparse disk file of `size_mib`, replacing none that exists.
pub fn blank_disk(file: &Path, size_mib: u64) -> Result<()> {
    if !file.exists() {
        std::fs::File::create(file)?.set_len(size_mib * 1024 * 1024)?;
    }
    Ok(())
}

/// Creates (if missing) `count` blank sparse data disks of `size_mib` in `dir`, named like bays.
pub fn blank_data_disks(dir: &Path, count: usize, size_mib: u64) -> Result<Vec<DataDisk>> {
    std::fs::create_dir_all(dir)?;
    (1..=count)
        .map(|bay| {
            let file = dir.join(format!("bay{bay}.img"));
            blank_disk(&file, size_mib)?;
            Ok(DataDisk {
                file,
                serial: format!("CAIRN-BAY{bay}"),
            })
        })
        .collect()
}

/// QEMU must not outlive the test process, even when a shared machine's handle is never dropped.
/// PR_SET_PDEATHSIG fires when the spawning *thread* ends: spawn long-lived machines from a thread that stays.
fn kill_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent; this runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

/// What U-Boot prints as it hands over to the kernel.
const STARTING_KERNEL: &[u8] = b"Starting kernel ...";

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Machine {
    /// Boots `disk` as board `board` and returns at once; use the `wait_*` methods for readiness.
    pub fn boot(board: &str, disk: &BootDisk, options: &BootOptions) -> Result<Machine> {
        let runtime_dir = tempfile::Builder::new().prefix("cairn-qemu-").tempdir()?;
        let qmp_path = runtime_dir.path().join("qmp.sock");
        let mut ports = Ports {
            http: free_port()?,
            forwarded: vec![],
        };
        for guest in &options.forward {
            ports.forwarded.push((*guest, free_port()?));
        }
        let (board, manifest, mut cmd) =
            qemu_command(board, &disk.path, options, &ports, &qmp_path)?;
        cmd.args(["-display", "none", "-serial", "stdio", "-monitor", "none"]);
        kill_with_parent(&mut cmd);
        let (http_port, forwarded) = (ports.http, ports.forwarded);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|e| {
            HarnessError::Setup(format!("cannot start QEMU: {e} (run scripts/bootstrap)"))
        })?;
        let console = Arc::new(Mutex::new(Vec::new()));
        let kernel_started = Arc::new(std::sync::OnceLock::new());
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let console = console.clone();
            let kernel_started = kernel_started.clone();
            std::thread::spawn(move || {
                let mut pipe = pipe;
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut log = console.lock().unwrap();
                    let from = log.len().saturating_sub(STARTING_KERNEL.len());
                    log.extend_from_slice(&buf[..n]);
                    if kernel_started.get().is_none()
                        && log[from..]
                            .windows(STARTING_KERNEL.len())
                            .any(|w| w == STARTING_KERNEL)
                    {
                        let _ = kernel_started.set(Instant::now());
                    }
                }
            });
        }
        let stdin = child.stdin.take().expect("piped");
        Ok(Machine {
            board,
            manifest,
            child,
            stdin,
            console,
            qmp_path,
            http_port,
            forwarded,
            started,
            kernel_started,
            marker: 0,
            disk_ids: Mutex::new(Default::default()),
            plugged: Default::default(),
            _runtime_dir: runtime_dir,
        })
    }

    /// U-Boot's share of the boot: QEMU start to U-Boot's "Starting kernel" (its script, reading and writing
    /// the boot state, loading the slot's kernel and initrd). `None` until the kernel starts, and on direct
    /// kernel boots.
    pub fn u_boot_time(&self) -> Option<Duration> {
        self.kernel_started
            .get()
            .map(|at| at.saturating_duration_since(self.started))
    }

    /// A handle to the console log that outlives borrows of the machine.
    pub fn console_handle(&self) -> ConsoleHandle {
        ConsoleHandle(self.console.clone())
    }

    /// Everything the machine printed so far (serial console and QEMU's own messages).
    pub fn console_log(&self) -> String {
        String::from_utf8_lossy(&self.console.lock().unwrap()).into_owned()
    }

    fn console_len(&self) -> usize {
        self.console.lock().unwrap().len()
    }

    /// An HTTP client for the dashboard port.
    pub fn http(&self) -> HttpClient {
        HttpClient::new(self.http_port)
    }

    /// An HTTPS client for the box's port 443 (boot with it in [`BootOptions::forward`]) that trusts only
    /// the certificate with this SHA-256 fingerprint, as an owner who compared it would.
    pub fn https(&self, fingerprint: &str) -> Result<HttpClient> {
        let port = self.host_port(443).ok_or_else(|| {
            HarnessError::Setup("port 443 is not forwarded: boot with forward: vec![443]".into())
        })?;
        Ok(HttpClient::https(port, fingerprint))
    }

    /// The host port a guest port is forwarded to.
    pub fn host_port(&self, guest: u16) -> Option<u16> {
        self.forwarded
            .iter()
            .find(|(g, _)| *g == guest)
            .map(|(_, h)| *h)
    }

    /// Polls until `GET /api/v1/health` answers 200, returning the time since `since`.
    pub fn wait_healthy(
        &mut self,
        since: Instant,
        deadline: Duration,
    ) -> Result<(Duration, serde_json::Value)> {
        let until = Instant::now() + deadline;
        // Short attempts: until the guest has its address, QEMU's forwarder leaves connections hanging.
        let client = self.http().with_timeout(Duration::from_millis(400));
        loop {
            if let Ok(r) = client.get("/api/v1/health") {
                if r.status == 200 {
                    return Ok((since.elapsed(), r.json()?));
                }
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(HarnessError::Setup(format!(
                    "QEMU exited ({status}) while waiting for health"
                )));
            }
            if Instant::now() >= until {
                return Err(HarnessError::Timeout {
                    what: "GET /api/v1/health to answer 200".into(),
                    seconds: deadline.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls until any HTTP answer arrives on port 80 (for floors that are not Cairn).
    pub fn wait_http(
        &mut self,
        path: &str,
        since: Instant,
        deadline: Duration,
    ) -> Result<Duration> {
        let until = Instant::now() + deadline;
        // Short attempts: until the guest has its address, QEMU's forwarder leaves connections hanging.
        let client = self.http().with_timeout(Duration::from_millis(400));
        loop {
            if let Ok(r) = client.get(path) {
                if r.status == 200 {
                    return Ok(since.elapsed());
                }
            }
            if Instant::now() >= until {
                return Err(HarnessError::Timeout {
                    what: format!("GET {path} to answer 200"),
                    seconds: deadline.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the console prints `needle` (after byte `from` of the log).
    pub fn wait_console(&self, needle: &str, from: usize, deadline: Duration) -> Result<()> {
        let until = Instant::now() + deadline;
        loop {
            {
                let log = self.console.lock().unwrap();
                if log.len() > from && String::from_utf8_lossy(&log[from..]).contains(needle) {
                    return Ok(());
                }
            }
            if Instant::now() >= until {
                return Err(HarnessError::Timeout {
                    what: format!("the console to print {needle:?}"),
                    seconds: deadline.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a command in the serial console's shell and returns what it printed.
    pub fn serial(&mut self, command: &str, deadline: Duration) -> Result<String> {
        self.marker += 1;
        let n = self.marker;
        let start = self.console_len();
        // The markers are assembled by printf, so the echoed command line never contains them.
        let line = format!(
            "printf '%s_%s\\n' CAIRN_BEGIN {n}; {command}; printf '%s_%s\\n' CAIRN_END {n}\n"
        );
        self.stdin.write_all(line.as_bytes())?;
        self.stdin.flush()?;
        let end = format!("CAIRN_END_{n}");
        self.wait_console(&end, start, deadline)?;
        let log = self.console_log();
        let tail = &log[start.min(log.len())..];
        let begin = format!("CAIRN_BEGIN_{n}");
        let body = tail.split_once(&begin).map(|(_, b)| b).unwrap_or(tail);
        let body = body.split_once(&end).map(|(b, _)| b).unwrap_or(body);
        // Init and the kernel write to the same console at any moment: their lines ("[init] ...",
        // "[   12.345678] ...") are not the command's output.
        let own: Vec<&str> = body
            .split('\n')
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !is_log_line(l))
            .collect();
        Ok(own.join("\n").trim_matches('\n').to_string())
    }

    /// Pulls the disk out of `bay` while the box runs (PCIe hot-unplug, as a drive sled pulled from a NAS).
    pub fn unplug_disk(&self, bay: usize) -> Result<()> {
        let mut qmp = self.qmp()?;
        let id = self
            .disk_ids
            .lock()
            .unwrap()
            .remove(&bay)
            .unwrap_or(format!("disk{bay}"));
        qmp.execute("device_del", serde_json::json!({"id": id}))?;
        Ok(())
    }

    /// Pushes a disk image into an empty `bay` while the box runs.
    pub fn plug_disk(&self, bay: usize, disk: &DataDisk) -> Result<()> {
        let file = serde_json::json!({"driver": "file", "filename": disk.file.to_string_lossy()});
        self.plug(bay, disk, file)
    }

    /// Pushes a failing disk into an empty `bay`: reads that touch any of `bad_sectors` (512-byte sectors, a
    /// range or a list) fail with an I/O error, as a disk with unreadable sectors does; writes go through. QEMU's `blkdebug`
    /// driver does it, from a rules file written next to the image (`<image>.blkdebug`).
    pub fn plug_failing_disk(
        &self,
        bay: usize,
        disk: &DataDisk,
        bad_sectors: impl IntoIterator<Item = u64>,
    ) -> Result<()> {
        let rules = disk.file.with_extension("blkdebug");
        std::fs::write(&rules, blkdebug_rules(bad_sectors))?;
        let file = serde_json::json!({"driver": "blkdebug", "config": rules.to_string_lossy(),
            "image": {"driver": "file", "filename": disk.file.to_string_lossy()}});
        self.plug(bay, disk, file)
    }

    fn plug(&self, bay: usize, disk: &DataDisk, file: serde_json::Value) -> Result<()> {
        let mut qmp = self.qmp()?;
        let n = self
            .plugged
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let node = format!("hot{n}");
        qmp.execute(
            "blockdev-add",
            serde_json::json!({"driver": "raw", "node-name": node, "file": file}),
        )?;
        let id = format!("hotdisk{n}");
        // A disk pulled a moment ago leaves its slot only once the guest has powered the slot off.
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            match qmp.execute(
                "device_add",
                serde_json::json!({"driver": "virtio-blk-pci", "drive": node, "id": id,
                    "bus": format!("bay{bay}"), "serial": disk.serial}),
            ) {
                Ok(_) => break,
                Err(e) if e.to_string().contains("occupied") && Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => return Err(e),
            }
        }
        self.disk_ids.lock().unwrap().insert(bay, id);
        Ok(())
    }

    /// Presses the box's reset pin and holds it for `hold` (QMP `send-key` of the power key with a hold time:
    /// the key event device Cairn reads the pin from, as gpio-keys reports a board's button). Returns at once.
    pub fn hold_reset_pin(&self, hold: Duration) -> Result<()> {
        self.qmp()?.execute("send-key", press_power_key(hold))?;
        Ok(())
    }

    /// A short pulse on the reset pin's GPIO line (QMP `system_powerdown` pulses the virt machine's PL061
    /// line 3 for about 100 ms).
    pub fn pulse_reset_pin(&self) -> Result<()> {
        self.qmp()?
            .execute("system_powerdown", serde_json::json!({}))?;
        Ok(())
    }

    /// Connects to QEMU's machine protocol (QMP), for what a test does to the hardware: power, disks, keys.
    pub fn qmp(&self) -> Result<Qmp> {
        Qmp::connect(&self.qmp_path)
    }

    /// Waits until QEMU exits (after a power-off), returning its status.
    pub fn wait_exit(&mut self, deadline: Duration) -> Result<ExitStatus> {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= until {
                return Err(HarnessError::Timeout {
                    what: "QEMU to exit after power-off".into(),
                    seconds: deadline.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Byte length of the console log: pass to [`Machine::wait_console`] to look only at what comes next.
    pub fn mark(&self) -> usize {
        self.console_len()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.console_log();
            let dir = workspace_root().join("target").join("qemu-logs");
            let _ = std::fs::create_dir_all(&dir);
            let file = dir.join(format!("{}-{}.log", self.board.name, std::process::id()));
            let _ = std::fs::write(&file, &log);
            eprintln!(
                "---- console of {} (also in {}) ----\n{}\n---- end of console ----",
                self.board.name,
                file.display(),
                log
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn console_log_lines_are_told_from_command_output() {
        assert!(super::is_log_line("[init] started smb (pid 199)"));
        assert!(super::is_log_line("[   12.345678] md: md0 stopped."));
        assert!(!super::is_log_line("nameserver 10.0.2.9"));
        assert!(!super::is_log_line("[global]"));
        assert!(!super::is_log_line("inet 10.0.2.15/24"));
    }

    /// The rules as QEMU itself reads them (qemu-io over the same blkdebug node the bay gets): reads touching
    /// a bad sector fail, reads beside them and writes over them do not.
    #[test]
    fn blkdebug_rules_fail_reads_of_exactly_the_bad_sectors() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(1024 * 1024)
            .unwrap();
        let rules = dir.path().join("disk.blkdebug");
        std::fs::write(&rules, super::blkdebug_rules((100..102).chain([2047]))).unwrap();
        let node = serde_json::json!({"driver": "raw", "file": {"driver": "blkdebug",
            "config": rules.to_string_lossy(), "image": {"driver": "file", "filename": image.to_string_lossy()}}});
        let io = |op: &str| -> bool {
            let out = std::process::Command::new("qemu-io")
                .args(["-c", op, &format!("json:{node}")])
                .output()
                .expect("qemu-io (qemu-utils) is installed");
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            !text.contains("failed")
        };
        assert!(!io("read 51200 512"), "sector 100");
        assert!(!io("read 51712 512"), "sector 101");
        assert!(!io("read 0 65536"), "a read spanning sector 100");
        assert!(!io("read 1048064 512"), "the last sector");
        assert!(io("read 52224 512"), "sector 102 is readable");
        assert!(
            io("read 0 51200"),
            "everything before sector 100 is readable"
        );
        assert!(io("write 51200 512"), "writes go through");
    }
}
