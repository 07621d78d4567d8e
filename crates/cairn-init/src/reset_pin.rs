//! The reset pin as init reads it: the board's GPIO line through the GPIO character device (v2 uAPI, edge
//! events with kernel timestamps, via `gpiocdev`) and, where the board says so, the key that `gpio-keys`
//! reports on an input event device (under QEMU also the virtio keyboard that `scripts/reset-pin` presses).
//! Init's main loop polls these descriptors with its signals, so the pin works while the daemon is hung, crash
//! looping or stopped. While the pin is held, the status LED, the console and `/run/cairn/reset-pin` (read by the
//! daemon for `GET /api/v1/system`) show the tier a release would fire; the tier itself fires at release
//! (`cairn_reset::tier` decides, from the kernel's timestamps).

use crate::logring::LogRing;
use cairn_board::{Board, GpioLine};
use cairn_reset::held;
use cairn_reset::{Press, Release, Tier};
use gpiocdev::line::{EdgeDetection, EdgeKind, Value};
use gpiocdev::Request;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::Duration;

/// The input event type of keys, and the consumer name shown for the lines Cairn holds.
const EV_KEY: u16 = 1;
const CONSUMER: &str = "cairn-reset";

/// The reset pin's sources, the press being followed and the LED that shows it.
pub struct ResetPin {
    gpio: Option<Request>,
    keys: Vec<File>,
    key_code: u16,
    led: Option<(Request, u32)>,
    press: Press,
    /// The tier last announced while held, so each is announced once.
    shown: Option<Tier>,
}

fn chip_path(line: &GpioLine) -> String {
    format!("/dev/{}", line.chip)
}

impl ResetPin {
    /// Opens what the board describes; a source that cannot be opened is logged and left out (on armv7 under
    /// QEMU gpio-keys owns the line, and the key device carries the same presses).
    pub fn open(board: &Board, log: &LogRing) -> ResetPin {
        let button = &board.gpio.reset_button;
        let mut builder = Request::builder();
        builder
            .on_chip(chip_path(button))
            .with_consumer(CONSUMER)
            .with_line(button.line)
            .as_input()
            .with_edge_detection(EdgeDetection::BothEdges)
            .with_debounce_period(Duration::from_millis(5));
        if button.active_low {
            builder.as_active_low();
        }
        let gpio = match builder.request() {
            Ok(r) => {
                log.line(
                    "reset",
                    &format!(
                        "watching {} line {} (GPIO character device)",
                        button.chip, button.line
                    ),
                );
                Some(r)
            }
            Err(e) => {
                log.line(
                    "reset",
                    &format!(
                        "{} line {} not read directly: {e}",
                        button.chip, button.line
                    ),
                );
                None
            }
        };
        let key_code = board.gpio.reset_key.unwrap_or(0);
        let keys = if board.gpio.reset_key.is_some() {
            open_key_devices(Path::new("/dev/input"), log)
        } else {
            Vec::new()
        };
        let led = board.gpio.status_led.as_ref().and_then(|l| {
            let mut b = Request::builder();
            b.on_chip(chip_path(l))
                .with_consumer(CONSUMER)
                .with_line(l.line)
                .as_output(Value::Inactive);
            if l.active_low {
                b.as_active_low();
            }
            match b.request() {
                Ok(r) => Some((r, l.line)),
                Err(e) => {
                    log.line("reset", &format!("status LED unavailable: {e}"));
                    None
                }
            }
        });
        if gpio.is_none() && keys.is_empty() {
            log.line("reset", "ERROR no way to read the reset pin on this box");
        }
        ResetPin {
            gpio,
            keys,
            key_code,
            led,
            press: Press::new(),
            shown: None,
        }
    }

    /// The descriptors to poll with init's signals.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.gpio
            .iter()
            .map(|r| r.as_fd())
            .chain(self.keys.iter().map(|f| f.as_fd()))
            .collect()
    }

    /// True while a press is under way: the loop then wakes often enough to show each tier as it is reached.
    pub fn busy(&self) -> bool {
        self.press.down_since().is_some()
    }

    /// Reads every pending edge and the clock: returns a finished press, once.
    pub fn service(&mut self, log: &LogRing) -> Option<Release> {
        let mut edges = Vec::new();
        if let Some(r) = &self.gpio {
            while r.has_edge_event().unwrap_or(false) {
                match r.read_edge_event() {
                    Ok(e) => edges.push((e.kind == EdgeKind::Rising, e.timestamp_ns)),
                    Err(_) => break,
                }
            }
        }
        for f in &mut self.keys {
            edges.extend(read_key_edges(f, self.key_code));
        }
        let mut finished = None;
        for (pressed, at) in edges {
            let was_down = self.press.down_since().is_some();
            finished = finished.or(self.press.edge(pressed, at));
            if pressed && !was_down {
                held::write(Path::new(held::FILE), at);
                log.line("reset", "pin pressed");
            }
        }
        let now = held::monotonic_ns();
        finished = finished.or(self.press.poll(now));
        match self.press.held(now) {
            Some(d) => self.show(log, Tier::for_held(d)),
            None if finished.is_some() || self.shown.is_some() => {
                held::clear(Path::new(held::FILE));
                self.shown = None;
                self.set_led(false);
            }
            None => {}
        }
        if let Some(r) = finished {
            log.line(
                "reset",
                &format!(
                    "pin released after {:.1} s: {}",
                    r.held.as_secs_f64(),
                    match r.tier {
                        Tier::Ignored => "ignored (under 1 s)".to_string(),
                        Tier::NoAction => "no action (hold 4 s to reset the network and administrator password, 10 s for every setting)".to_string(),
                        t => format!("{} reset", t.name()),
                    }
                ),
            );
        }
        finished
    }

    /// Announces a tier once when reached; the LED is on for the network tier and blinks for settings.
    fn show(&mut self, log: &LogRing, tier: Tier) {
        if self.shown != Some(tier) {
            self.shown = Some(tier);
            log.line(
                "reset",
                &format!("pin held: release now to {}", tier.release_would()),
            );
        }
        let on = match tier {
            Tier::Ignored | Tier::NoAction => false,
            Tier::Network => true,
            Tier::Settings => (held::monotonic_ns() / 250_000_000).is_multiple_of(2),
        };
        self.set_led(on);
    }

    fn set_led(&self, on: bool) {
        if let Some((r, line)) = &self.led {
            let _ = r.set_value(*line, if on { Value::Active } else { Value::Inactive });
        }
    }
}

/// Opens every input event device, non-blocking, with its timestamps on CLOCK_MONOTONIC (the clock of GPIO
/// edge events and of the held-pin file).
fn open_key_devices(dir: &Path, log: &LogRing) -> Vec<File> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("event"))
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut files = Vec::new();
    for path in names {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => {
                if let Err(e) = monotonic_timestamps(&f) {
                    log.line(
                        "reset",
                        &format!("{}: timestamps stay on the wall clock: {e}", path.display()),
                    );
                }
                files.push(f)
            }
            Err(e) => log.line("reset", &format!("{}: {e}", path.display())),
        }
    }
    log.line(
        "reset",
        &format!(
            "watching {} input event device(s) for the reset key",
            files.len()
        ),
    );
    files
}

nix::ioctl_write_ptr!(eviocsclockid, b'E', 0xa0, nix::libc::c_int);

fn monotonic_timestamps(f: &File) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    let clock: nix::libc::c_int = nix::libc::CLOCK_MONOTONIC;
    // SAFETY: EVIOCSCLOCKID reads one int from the pointer, which lives for the call.
    unsafe { eviocsclockid(f.as_raw_fd(), &clock) }.map(|_| ())
}

/// The size of the kernel's `struct input_event` for this process: two longs of time, then type, code, value.
const LONG: usize = std::mem::size_of::<nix::libc::c_ulong>();
const EVENT_SIZE: usize = 2 * LONG + 8;

/// Presses (true) and releases (false) of `code` in what one device has queued, with their timestamps.
fn read_key_edges(f: &mut File, code: u16) -> Vec<(bool, u64)> {
    let mut out = Vec::new();
    let mut buf = [0u8; EVENT_SIZE * 16];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend(key_edges(&buf[..n], code));
        if n < buf.len() {
            break;
        }
    }
    out
}

/// Parses whole input events from `bytes`: key `code` going down (value 1) or up (value 0); repeats (2) and
/// every other event are left out.
pub fn key_edges(bytes: &[u8], code: u16) -> Vec<(bool, u64)> {
    let word = |b: &[u8]| -> u64 {
        let mut v = [0u8; 8];
        v[..LONG].copy_from_slice(&b[..LONG]);
        u64::from_ne_bytes(v)
    };
    bytes
        .chunks_exact(EVENT_SIZE)
        .filter_map(|e| {
            let sec = word(&e[..LONG]);
            let usec = word(&e[LONG..2 * LONG]);
            let kind = u16::from_ne_bytes([e[2 * LONG], e[2 * LONG + 1]]);
            let key = u16::from_ne_bytes([e[2 * LONG + 2], e[2 * LONG + 3]]);
            let value = i32::from_ne_bytes([
                e[2 * LONG + 4],
                e[2 * LONG + 5],
                e[2 * LONG + 6],
                e[2 * LONG + 7],
            ]);
            (kind == EV_KEY && key == code && (value == 0 || value == 1))
                .then(|| (value == 1, sec * 1_000_000_000 + usec * 1_000))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(sec: u64, usec: u64, kind: u16, code: u16, value: i32) -> Vec<u8> {
        let mut e = Vec::new();
        e.extend_from_slice(&sec.to_ne_bytes()[..LONG]);
        e.extend_from_slice(&usec.to_ne_bytes()[..LONG]);
        e.extend_from_slice(&kind.to_ne_bytes());
        e.extend_from_slice(&code.to_ne_bytes());
        e.extend_from_slice(&value.to_ne_bytes());
        e
    }

    #[test]
    fn key_events_become_edges_and_everything_else_is_left_out() {
        let mut bytes = Vec::new();
        bytes.extend(event(10, 500_000, EV_KEY, 116, 1));
        bytes.extend(event(10, 500_000, 0, 0, 0)); // SYN_REPORT
        bytes.extend(event(11, 0, EV_KEY, 116, 2)); // autorepeat
        bytes.extend(event(12, 0, EV_KEY, 30, 1)); // another key
        bytes.extend(event(15, 250_000, EV_KEY, 116, 0));
        bytes.extend([1, 2, 3]); // a partial event is not read
        assert_eq!(
            key_edges(&bytes, 116),
            vec![(true, 10_500_000_000), (false, 15_250_000_000)]
        );
    }
}
