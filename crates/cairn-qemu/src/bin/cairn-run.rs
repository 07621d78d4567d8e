//! `make run`: boots a board's image under QEMU with the serial console on this terminal, the dashboard on
//! http://127.0.0.1:$HTTP_PORT and https://127.0.0.1:$HTTPS_PORT, and SMB on 127.0.0.1:$SMB_PORT. The box's disk (an overlay of the built image)
//! and its data disks live under `out/<board>/box/` and survive between runs until `make clean-box`, with U-Boot's
//! flash (its environment) beside the disk: the box boots through U-Boot and its A/B boot script, as a board does.

use cairn_qemu::{
    blank_data_disks, board_out_dir, box_flash, qemu_command, BootOptions, Manifest, Network, Ports,
};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

fn env_u16(name: &str, default: u16) -> Result<u16, String> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a port number")),
        Err(_) => Ok(default),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cairn-run: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let board = std::env::var("BOARD").unwrap_or_else(|_| "qemu-aarch64-virt".into());
    let (manifest, dir) = Manifest::load(&board).map_err(|e| e.to_string())?;
    let box_dir = board_out_dir(&board).join("box");
    std::fs::create_dir_all(&box_dir).map_err(|e| e.to_string())?;
    let disk = box_dir.join("boot.qcow2");
    let base = dir.join(&manifest.image);
    let stale = std::fs::metadata(&disk)
        .and_then(|d| Ok(d.modified()? < std::fs::metadata(&base)?.modified()?))
        .unwrap_or(true);
    if stale {
        // A new image was built: the box is re-flashed, U-Boot's environment with it (its data disks are kept).
        let _ = std::fs::remove_file(&disk);
        let _ = std::fs::remove_file(box_flash(&disk));
        let status = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(base.canonicalize().map_err(|e| e.to_string())?)
            .arg(&disk)
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err("qemu-img create failed".into());
        }
        eprintln!("cairn-run: flashed a fresh box from {}", manifest.image);
    }
    let disks: usize = std::env::var("DISKS")
        .ok()
        .map(|v| {
            v.parse()
                .map_err(|_| format!("DISKS={v:?} is not a number"))
        })
        .transpose()?
        .unwrap_or(0);
    let size_mib: u64 = std::env::var("DISK_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let data_disks =
        blank_data_disks(&box_dir.join("disks"), disks, size_mib).map_err(|e| e.to_string())?;
    let network = match std::env::var("NET").as_deref() {
        Ok("offline") => Network::Offline,
        Ok("user") | Err(_) => Network::User,
        Ok(other) => return Err(format!("NET={other:?}: use user or offline")),
    };
    let ports = Ports {
        http: env_u16("HTTP_PORT", 8080)?,
        forwarded: vec![
            (445, env_u16("SMB_PORT", 1445)?),
            (443, env_u16("HTTPS_PORT", 8443)?),
        ],
    };
    let empty_bays: usize = std::env::var("EMPTY_BAYS")
        .ok()
        .map(|v| {
            v.parse()
                .map_err(|_| format!("EMPTY_BAYS={v:?} is not a number"))
        })
        .transpose()?
        .unwrap_or(0);
    let options = BootOptions {
        network,
        data_disks,
        empty_bays,
        ..BootOptions::default()
    };
    let qmp = box_dir.join("qmp.sock");
    let _ = std::fs::remove_file(&qmp);
    let (_, _, mut cmd) =
        qemu_command(&board, &disk, &options, &ports, &qmp).map_err(|e| e.to_string())?;
    cmd.arg("-nographic");
    eprintln!(
        "cairn-run: booting {board}; dashboard at http://127.0.0.1:{} and https://127.0.0.1:{}  (quit QEMU with Ctrl-a x; QMP at {})",
        ports.http,
        env_u16("HTTPS_PORT", 8443)?,
        qmp.display()
    );
    Err(format!("cannot start QEMU: {}", cmd.exec()))
}
