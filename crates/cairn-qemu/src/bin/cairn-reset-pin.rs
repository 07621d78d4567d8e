//! `scripts/reset-pin SECONDS`: presses and holds the reset pin of the box `make run` boots (BOARD, default
//! qemu-aarch64-virt) for that long, through QEMU's machine protocol: the same key event the box reads its pin
//! from. Under 1 s nothing happens, 4–10 s resets the network and administrator password, 10 s or more every
//! setting (docs/reset.md); the console shows the tier while the pin is held.

use cairn_qemu::{board_out_dir, press_power_key, Qmp};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds = match args.as_slice() {
        [s] => s.parse::<f64>().ok().filter(|s| *s > 0.0 && *s <= 120.0),
        _ => None,
    };
    let Some(seconds) = seconds else {
        eprintln!("usage: scripts/reset-pin SECONDS   (more than 0, at most 120; BOARD=... for another board)");
        return ExitCode::from(2);
    };
    let board = std::env::var("BOARD").unwrap_or_else(|_| "qemu-aarch64-virt".into());
    let socket = board_out_dir(&board).join("box").join("qmp.sock");
    let hold = Duration::from_secs_f64(seconds);
    let pressed =
        Qmp::connect(&socket).and_then(|mut q| q.execute("send-key", press_power_key(hold)));
    match pressed {
        Ok(_) => {
            println!("reset pin held for {seconds} s on {board} (watch the box's console)");
            // The release happens inside QEMU when the hold time ends; wait so the prompt returns after it.
            std::thread::sleep(hold);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "reset-pin: cannot reach the box at {}: {e}. Is `make run` running for BOARD={board}?",
                socket.display()
            );
            ExitCode::FAILURE
        }
    }
}
