use cairn_qemu::{BootDisk, BootOptions, Machine, Manifest};
use std::time::{Duration, Instant};
#[test]
fn look() {
    let board = std::env::var("B").unwrap_or("qemu-aarch64-virt".into());
    let (manifest, dir) = Manifest::load(&board).unwrap();
    let disk = BootDisk::flash(&manifest, &dir).unwrap();
    let mut m = Machine::boot(&board, &disk, &BootOptions::default()).unwrap();
    m.wait_healthy(Instant::now(), Duration::from_secs(240))
        .unwrap();
    let out = m
        .serial(&std::env::var("CMD").unwrap(), Duration::from_secs(30))
        .unwrap();
    println!("{out}");
}
