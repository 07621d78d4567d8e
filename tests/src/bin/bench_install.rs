//! Install figures on this machine (host, not the box): the install engine streaming a bundle into a root
//! slot (write, fsync, read-back, trailer, activation) against the two-pass baseline of the issue (`sha256sum`
//! of the payload, then `dd` into the slot with fsync), and the peak memory the install adds, for two bundle
//! sizes (the goal: independent of the size, at most 8 MiB).

use cairn_firmware::install::testing::{manifest, new_box_with_slots, DirSettings};
use cairn_firmware::install::{install, Options};
use cairn_firmware::{write_bundle, Target};
use std::io::{Read, Write};
use std::process::Command;

use std::time::Instant;

/// Pseudo-random bytes (xorshift), so nothing compresses or deduplicates them.
struct Noise {
    state: u64,
    left: u64,
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left as usize) / 8 * 8;
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            chunk.copy_from_slice(&self.state.to_le_bytes());
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Peak resident memory of this process (VmHWM), in KiB.
fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resets VmHWM to the current resident size (Linux 4.0+).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn run(command: &mut Command) -> f64 {
    let started = Instant::now();
    let status = command.status().expect("runs");
    assert!(status.success(), "{command:?} failed");
    started.elapsed().as_secs_f64()
}

fn figures(payload_mib: u64) {
    let size = payload_mib << 20;
    let tb = new_box_with_slots(size + (1 << 20));
    let work = tb.dir.path();
    // The payload once as a file (for the baseline), then the bundle from it, both streamed.
    let payload = work.join("root.slot");
    let mut noise = Noise {
        state: 0x9e37_79b9_7f4a_7c15,
        left: size,
    };
    std::io::copy(&mut noise, &mut std::fs::File::create(&payload).unwrap()).unwrap();
    let data_blocks = (size - 4096) / 4096;
    let mut m = manifest("0.2.0", "qemu-aarch64-virt", &[("root", Target::Slot, b"")]);
    m.payloads[0] = cairn_firmware::PayloadEntry::from_reader(
        cairn_firmware::Name::new("root").unwrap(),
        Target::Slot,
        std::fs::File::open(&payload).unwrap(),
    )
    .unwrap();
    m.verity.data_blocks = data_blocks;
    m.verity.hash_offset = data_blocks * 4096;
    let bundle = work.join("bundle.cfw");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&bundle).unwrap());
    write_bundle(
        &mut out,
        &tb.key,
        &m,
        vec![Box::new(std::fs::File::open(&payload).unwrap())],
    )
    .unwrap();
    out.flush().unwrap();
    drop(out);

    // Baseline: hash, then copy with a flush, into the other slot file.
    let baseline_slot = work.join("baseline.slot");
    std::fs::File::create(&baseline_slot)
        .unwrap()
        .set_len(size + (1 << 20))
        .unwrap();
    let hash = run(Command::new("sha256sum")
        .arg(&payload)
        .stdout(std::process::Stdio::null()));
    let copy = run(Command::new("dd")
        .arg(format!("if={}", payload.display()))
        .arg(format!("of={}", baseline_slot.display()))
        .args(["bs=1M", "conv=fsync,notrunc", "status=none"]));

    let settings = DirSettings::new(1 << 20, 1 << 30);
    reset_peak();
    let idle = peak_kib();
    let started = Instant::now();
    let mut input = std::fs::File::open(&bundle).unwrap();
    let mut steps = |_: &cairn_firmware::install::Step| true;
    install(
        &tb.layout,
        &settings,
        &[],
        &mut input,
        Options::default(),
        &mut steps,
    )
    .unwrap();
    let took = started.elapsed().as_secs_f64();
    let added = peak_kib().saturating_sub(idle);
    println!(
        "install {payload_mib} MiB (host): {took:.2} s with read-back; baseline sha256sum {hash:.2} s + dd {copy:.2} s = {:.2} s; ratio {:.2} (goal <= 0.6); peak memory added {added} KiB (goal <= 8192)",
        hash + copy,
        took / (hash + copy)
    );
}

fn main() {
    for mib in [16, 48] {
        figures(mib);
    }
}
