//! The health checks as they look at the box: the dashboard over loopback HTTP, `/run/cairn/config-state`,
//! sysfs for md arrays, `/proc/net/tcp{,6}` for SMB, and init's own watchdog feeding.

use super::Probes;
use crate::procnet;
use cairn_bootenv::Slot;
use cairn_store::unavailable::{ConfigState, STATE_FILE};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use serde_json::Value;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The dashboard's plain-HTTP listener as seen from the box itself.
const DASHBOARD: &str = "127.0.0.1:80";
const HEALTH_PATH: &str = "/api/v1/health";
/// One health request's time limit: the daemon answers in milliseconds when it is well.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);
const SMB_PORT: u16 = 445;

/// Init's watchdog feeding, shared between the main loop (which pets) and the commit (which checks).
#[derive(Debug)]
pub struct Feed {
    /// The board declares a watchdog: then it must be armed and petted.
    declared: bool,
    armed: AtomicBool,
    origin: Instant,
    last_pet_ms: AtomicU64,
    every_ms: AtomicU64,
}

impl Feed {
    /// A feed for a board with (`declared`) or without a watchdog.
    pub fn new(declared: bool) -> Feed {
        Feed {
            declared,
            armed: AtomicBool::new(false),
            origin: Instant::now(),
            last_pet_ms: AtomicU64::new(0),
            every_ms: AtomicU64::new(0),
        }
    }

    /// The device opened; it is petted every `every`.
    pub fn armed(&self, every: Duration) {
        self.every_ms
            .store(every.as_millis() as u64, Ordering::Relaxed);
        self.armed.store(true, Ordering::Relaxed);
    }

    /// The main loop just petted the device.
    pub fn petted(&self) {
        self.last_pet_ms
            .store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Fed: no watchdog on this board, or armed and petted within two intervals (and a second of slack).
    pub fn check(&self) -> Result<(), String> {
        if !self.declared {
            return Ok(());
        }
        if !self.armed.load(Ordering::Relaxed) {
            return Err("the board's watchdog is not armed".into());
        }
        let since = (self.origin.elapsed().as_millis() as u64)
            .saturating_sub(self.last_pet_ms.load(Ordering::Relaxed));
        let limit = 2 * self.every_ms.load(Ordering::Relaxed) + 1000;
        if since > limit {
            return Err(format!("the watchdog was last fed {since} ms ago"));
        }
        Ok(())
    }
}

/// The probes on the box.
pub struct BoxProbes {
    pub feed: std::sync::Arc<Feed>,
    runtime: Option<tokio::runtime::Runtime>,
    /// Reads a slot's version from its signed trailer.
    pub slot_version: Box<dyn FnMut(Slot) -> Option<String> + Send>,
}

impl BoxProbes {
    pub fn new(
        feed: std::sync::Arc<Feed>,
        slot_version: Box<dyn FnMut(Slot) -> Option<String> + Send>,
    ) -> BoxProbes {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok();
        BoxProbes {
            feed,
            runtime,
            slot_version,
        }
    }
}

impl Probes for BoxProbes {
    fn dashboard(&mut self) -> Result<Value, String> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or("no runtime for the health request")?;
        runtime.block_on(async {
            tokio::time::timeout(REQUEST_LIMIT, get_health())
                .await
                .map_err(|_| format!("no answer within {} s", REQUEST_LIMIT.as_secs()))?
        })
    }

    fn config_state(&mut self) -> Option<ConfigState> {
        ConfigState::load(Path::new(STATE_FILE))
    }

    fn assembled_volumes(&mut self) -> Vec<String> {
        assembled_md_uuids(Path::new("/sys/block"))
    }

    fn smb_listening(&mut self) -> bool {
        ["/proc/net/tcp6", "/proc/net/tcp"]
            .iter()
            .any(|f| std::fs::read_to_string(f).is_ok_and(|t| procnet::listens_on(&t, SMB_PORT)))
    }

    fn watchdog_fed(&mut self) -> Result<(), String> {
        self.feed.check()
    }

    fn slot_version(&mut self, slot: Slot) -> Option<String> {
        (self.slot_version)(slot)
    }

    fn wait(&mut self, time: Duration) {
        std::thread::sleep(time);
    }

    fn reboot(&mut self) {
        // The main loop reads SIGTERM from its signalfd and takes the clean reboot path.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGTERM);
    }
}

async fn get_health() -> Result<Value, String> {
    let stream = tokio::net::TcpStream::connect(DASHBOARD)
        .await
        .map_err(|e| format!("connect {DASHBOARD}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = hyper::Request::get(HEALTH_PATH)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if status != hyper::StatusCode::OK {
        return Err(format!("{HEALTH_PATH} answered {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{HEALTH_PATH} answered no JSON: {e}"))
}

/// UUIDs of the running md arrays under `sys_block` (`md*/md/uuid`, skipping inactive or cleared arrays).
pub fn assembled_md_uuids(sys_block: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(sys_block) else {
        return Vec::new();
    };
    let mut uuids: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("md"))
        .filter_map(|e| {
            let md = e.path().join("md");
            let state = std::fs::read_to_string(md.join("array_state")).ok()?;
            if matches!(state.trim(), "inactive" | "clear") {
                return None;
            }
            Some(
                std::fs::read_to_string(md.join("uuid"))
                    .ok()?
                    .trim()
                    .to_owned(),
            )
        })
        .collect();
    uuids.sort();
    uuids
}

/// The version in `slot`'s signed trailer on the boot medium (the partition named `root-a` or `root-b`), trusted
/// only when its signature checks out against the image's keys; `None` for an empty or unreadable slot.
pub fn trailer_version(board: &cairn_board::Board, slot: Slot) -> Option<String> {
    use std::io::{Seek, SeekFrom};
    let is_boot = |path: &str| board.is_boot_device(path);
    let name = format!("root-{}", slot.lower());
    let device =
        crate::config_partition::find_by_partname(Path::new("/sys/class/block"), &is_boot, &name)?;
    let keys =
        cairn_firmware::TrustedKeys::load_dir(Path::new(cairn_firmware::IMAGE_KEYS_DIR)).ok()?;
    let mut file = std::fs::File::open(device).ok()?;
    let end = file.seek(SeekFrom::End(0)).ok()?;
    let signed = cairn_firmware::read_trailer(&mut file, end).ok()??;
    Some(signed.verify(&keys).ok()?.version.to_string())
}
