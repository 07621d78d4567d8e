//! `cairn`: one binary, dispatched busybox-style on `argv[0]` or its first argument, so the image carries
//! a single copy of the standard library, tokio and the TLS stack. Wiring only; logic lives in the crates.
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

mod ctl;
mod ctl_firmware;
mod firmware;
mod migrate;
mod reset;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

const USAGE: &str = "usage: cairn <command> [options]

commands:
  init                 PID 1 of the image (also run as /sbin/init)
  initramfs            PID 1 of the initramfs (also run as /init): check the slot, dm-verity, switch root
  daemon [options]     the management service: HTTP API and dashboard
      --listen ADDR      address to listen on (default [::]:80)
      --listen-tls ADDR  address to serve HTTPS on (the image: [::]:443; default none), with the
                         certificate kept in the state directory (made on first start)
      --state DIR        settings directory (default /config/cairn)
      --board FILE       board description (default /etc/cairn/board.toml)
      --power init|none  who carries out reboot and power-off (default none)
      --smb on|off       render the SMB server's files (default: on with --power init)
      --storage on|off   manage disks and volumes (default: on with --power init)
      --ctl PATH         control socket for `cairn ctl` (default /run/cairn/ctl.sock)
  ctl ...              manage the box from its console (root): `cairn ctl help`
  migrate [--dry-run] --state DIR [--to N]
                       run the settings' schema steps (on a copy with --dry-run), print the report as JSON
  reset --tier network|settings --state DIR
                       apply a reset tier to the settings (init runs it for the reset pin; docs/reset.md)
  version              print the firmware version";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let invoked = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    // The kernel starts the initramfs as `/init`; the root slot's init is `/sbin/init`: same base name.
    let initramfs = args.first().is_some_and(|a| a == "/init");
    let (command, rest) = match invoked.as_str() {
        _ if initramfs => ("initramfs".to_string(), &args[1..]),
        "init" => ("init".to_string(), &args[1..]),
        "cairn-ctl" => ("ctl".to_string(), &args[1..]),
        "cairnd" => ("daemon".to_string(), &args[1..]),
        _ => match args.get(1) {
            Some(c) => (c.clone(), &args[2..]),
            None => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        },
    };
    match command.as_str() {
        "init" => {
            if std::process::id() != 1 {
                eprintln!("cairn init: must run as PID 1");
                return ExitCode::from(2);
            }
            cairn_init::run()
        }
        "initramfs" => {
            if std::process::id() != 1 {
                eprintln!("cairn initramfs: must run as PID 1 of an initramfs");
                return ExitCode::from(2);
            }
            cairn_initramfs::run()
        }
        "daemon" => daemon(rest),
        "ctl" => ctl::run(rest),
        "migrate" => migrate::run(rest),
        "reset" => reset::run(rest),
        "version" | "--version" => {
            println!("{}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("cairn: unknown command {other:?}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Where the daemon runs: on the box it changes the machine (host name, network, power through init); on a
/// workstation (`make dev`) it only stores settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Power {
    Init,
    None,
}

struct DaemonOptions {
    listen: String,
    listen_tls: Option<String>,
    state: PathBuf,
    board: PathBuf,
    power: Power,
    smb: Option<bool>,
    storage: Option<bool>,
    ctl: PathBuf,
}

fn parse_daemon_options(args: &[String]) -> Result<DaemonOptions, String> {
    let mut o = DaemonOptions {
        listen: "[::]:80".into(),
        listen_tls: None,
        state: PathBuf::from("/config/cairn"),
        board: PathBuf::from(cairn_board::IMAGE_BOARD_FILE),
        power: Power::None,
        smb: None,
        storage: None,
        ctl: PathBuf::from(ctl::SOCKET),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--listen" => o.listen = value()?,
            "--listen-tls" => o.listen_tls = Some(value()?),
            "--state" => o.state = PathBuf::from(value()?),
            "--board" => o.board = PathBuf::from(value()?),
            "--power" => {
                o.power = match value()?.as_str() {
                    "init" => Power::Init,
                    "none" => Power::None,
                    v => return Err(format!("--power takes init or none, not {v:?}")),
                }
            }
            "--ctl" => o.ctl = PathBuf::from(value()?),
            "--storage" => {
                o.storage = match value()?.as_str() {
                    "on" => Some(true),
                    "off" => Some(false),
                    v => return Err(format!("--storage takes on or off, not {v:?}")),
                }
            }
            "--smb" => {
                o.smb = match value()?.as_str() {
                    "on" => Some(true),
                    "off" => Some(false),
                    v => return Err(format!("--smb takes on or off, not {v:?}")),
                }
            }
            _ => return Err(format!("unknown option {flag:?}")),
        }
    }
    Ok(o)
}

fn daemon(args: &[String]) -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp(None)
        .init();
    let options = match parse_daemon_options(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cairn daemon: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let board_data = match cairn_board::Board::load(&options.board) {
        Ok(b) => Some(b),
        Err(e) => {
            log::warn!("{e}");
            None
        }
    };
    let board = board_data
        .as_ref()
        .map(|b| b.name.clone())
        .unwrap_or_else(|| "unknown".to_string());
    let network_facts = board_data
        .as_ref()
        .map(|b| b.network.clone())
        .unwrap_or_default();
    let config_root = std::path::Path::new(cairn_init::CONFIG_MOUNT);
    let state_file = std::path::Path::new(cairn_store::unavailable::STATE_FILE);
    let opened = match settings::open(
        &options.state,
        config_root,
        state_file,
        settings::booted_slot(),
    ) {
        Ok(o) => o,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let store = opened.store;
    let unavailable = opened.unavailable;
    // Without settings nothing runs that acts on them: no disks, no SMB files, no stored network.
    let usable = unavailable.is_none();
    let on_box = options.power == Power::Init;
    // The root slots, found once: they name the running version and take installs.
    let slots = board_data
        .as_ref()
        .filter(|_| on_box)
        .and_then(firmware::layout);
    let identity = cairn_api::Identity {
        version: slots
            .as_ref()
            .and_then(firmware::running_version)
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string()),
        board,
    };
    let host: Arc<dyn cairn_system::Host> = if on_box {
        Arc::new(cairn_system::host::Machine)
    } else {
        Arc::new(cairn_system::host::Workstation)
    };
    let system = match cairn_system::System::new(store.clone(), host, (&network_facts).into()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // The box's TLS identity: made on first start, kept on the config partition.
    let certificates = options
        .listen_tls
        .as_ref()
        .filter(|_| usable)
        .and_then(|_| {
            match cairn_tls::Certificates::open(&options.state, &cairn_api::box_names(&system)) {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    log::error!("no TLS certificate, HTTPS not served: {e}");
                    None
                }
            }
        });
    let smb = options.smb.unwrap_or(on_box) && usable;
    let storage = match (&board_data, options.storage.unwrap_or(on_box) && usable) {
        (Some(b), true) => {
            match cairn_storage::Storage::new(
                b.clone(),
                cairn_storage::Paths::on_box(),
                store.clone(),
            ) {
                Ok(s) => Some(s),
                Err(e) => {
                    log::error!("storage records unreadable, disks not managed: {e}");
                    None
                }
            }
        }
        _ => None,
    };
    // Every change, the repair timer and the storage manager ask this one queue; one worker renders.
    let smb_renders = cairn_smb::RenderQueue::new();
    let recovery = settings::BoxRecovery {
        device: opened
            .config
            .as_ref()
            .and_then(|c| c.device())
            .map(PathBuf::from),
        config_root: config_root.to_path_buf(),
        state: options.state.clone(),
        state_file: state_file.to_path_buf(),
    };
    // Installs into the other root slot, on a box booted from one (U-Boot's cairn.slot=).
    let firmware = slots.filter(|_| usable).map(|layout| {
        Arc::new(cairn_api::Firmware {
            layout,
            settings: Arc::new(firmware::StoreSettings {
                store: store.clone(),
                snapshots: options.state.join("snapshots"),
            }),
        })
    });
    let resets = usable.then(|| Arc::new(cairn_reset::Resets::new(store.clone(), &options.state)));
    let pairings = usable
        .then(|| cairn_cloud::Pairings::new(store.clone()).ok())
        .flatten();
    let app = match cairn_api::App::new(identity, store, system).map(|mut a| {
        a.board = board_data;
        a.storage = storage;
        a.settings_unavailable = unavailable;
        a.settings_opening = opened.opening;
        a.config_recovery = Some(Box::new(recovery));
        a.certificates = certificates;
        a.firmware = firmware;
        a.resets = resets;
        a.pairings = pairings;
        a.settings_schema = settings::schema().ok().map(Arc::new);
        a
    }) {
        Ok(a) if smb => {
            let renders = smb_renders.clone();
            Arc::new(a.with_change_hook(Box::new(move |_| {
                if !renders.request_and_wait(SMB_RENDER_WAIT) {
                    log::warn!(
                        "SMB render still running after {SMB_RENDER_WAIT:?}; answering anyway"
                    );
                }
            })))
        }
        Ok(a) => Arc::new(a),
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            log::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if usable {
        app.system.restore_at_start();
    }
    if smb {
        // The one renderer, off the async threads: renders what changes ask for, and every minute to
        // repair drift. It reads the settings when it runs, never a copy from when a render was asked for.
        let app = app.clone();
        let renders = smb_renders.clone();
        if let Err(e) = std::thread::Builder::new()
            .name("smb-render".into())
            .spawn(move || renders.run(|| render_smb(&app), SMB_REPAIR_EVERY))
        {
            log::error!("cannot start the SMB renderer: {e}");
            return ExitCode::FAILURE;
        }
    }
    // Render the servers' files now, before the dashboard answers.
    app.notify_change();
    if let Some(storage) = app.storage.clone() {
        // Volumes are assembled off the start-up path (the dashboard answers meanwhile), then watched.
        let app = app.clone();
        let _ = std::thread::Builder::new()
            .name("storage".into())
            .spawn(move || {
                storage.start();
                app.notify_change();
                storage.run_monitor(std::time::Duration::from_secs(10));
            });
    }
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&options.listen).await {
            Ok(l) => l,
            Err(e) => {
                log::error!("cannot listen on {}: {e}", options.listen);
                return ExitCode::FAILURE;
            }
        };
        log::info!("listening on {}", options.listen);
        // One set of connection caps for both listeners: a host cannot double its share by using both.
        let conns = cairn_api::Connections::new(cairn_api::ConnPolicy::LAN);
        if let (Some(addr), Some(_)) = (&options.listen_tls, &app.certificates) {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(tls) => {
                    log::info!("serving HTTPS on {addr}");
                    tokio::spawn(cairn_api::serve_tls(tls, app.clone(), conns.clone()));
                }
                // Plain HTTP still serves the dashboard, where the owner can see why.
                Err(e) => log::error!("cannot listen on {addr} for HTTPS: {e}"),
            }
        }
        let _ = std::fs::remove_file(&options.ctl);
        match tokio::net::UnixListener::bind(&options.ctl) {
            Ok(control) => {
                use std::os::unix::fs::PermissionsExt;
                let _ =
                    std::fs::set_permissions(&options.ctl, std::fs::Permissions::from_mode(0o600));
                tokio::spawn(cairn_api::serve_control(control, app.clone()));
            }
            Err(e) => log::error!(
                "cannot open the control socket {}: {e}; `cairn ctl` will not work",
                options.ctl.display()
            ),
        }
        let restart = app.clone();
        tokio::select! {
            served = cairn_api::serve_with(listener, app, conns) => match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("server stopped: {e}");
                    ExitCode::FAILURE
                }
            },
            // After the console's repair or format: init starts the daemon again, on the recovered settings.
            () = restart.restart.notified() => {
                log::warn!("settings recovered from the console: starting again");
                ExitCode::SUCCESS
            }
        }
    })
}

/// How long a change's answer waits for the SMB render that serves it (a reload is bounded at 10 s).
const SMB_RENDER_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How often ksmbd's files are rendered with no change asking, to put back what changed behind Cairn's back.
const SMB_REPAIR_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Renders ksmbd's files from the accounts as they are now; logs instead of failing the change that asked.
/// Runs only on the `smb-render` thread (see [`cairn_smb::RenderQueue`]).
fn render_smb(app: &cairn_api::App) {
    let mut layout = cairn_smb::Layout::on_box();
    if let Some(storage) = &app.storage {
        layout.volumes = storage.mounted_roots();
    }
    let result = (|| -> Result<bool, String> {
        let users = app.accounts.users().map_err(|e| e.to_string())?;
        let groups = app.accounts.groups().map_err(|e| e.to_string())?;
        let shares = app.accounts.shares().map_err(|e| e.to_string())?;
        let base_passwd = std::fs::read_to_string(&layout.base_passwd).unwrap_or_default();
        let base_group = std::fs::read_to_string(&layout.base_group).unwrap_or_default();
        let hostname = app.system.hostname();
        let rendered = cairn_smb::render(
            &users,
            &groups,
            &shares,
            &layout,
            &hostname,
            &base_passwd,
            &base_group,
        )
        .map_err(|e| e.to_string())?;
        cairn_smb::apply(&rendered, &shares, &layout).map_err(|e| e.to_string())
    })();
    match result {
        Ok(true) => log::info!("SMB configuration updated"),
        Ok(false) => {}
        Err(e) => log::error!("SMB configuration not updated: {e}"),
    }
}
