//! A box in temporary files and bundles signed for it: what the engine's tests and the API's host tests
//! install into (feature `testing`).

use super::{Layout, Settings, Slot};
use crate::{
    public_key_text, write_bundle, Manifest, Name, PayloadEntry, Sha256, SigningKey, Target, Verity,
};
use cairn_bootenv::{BootFiles, BootState};
use std::fs;
use std::io::{Read, Write};
use std::sync::Mutex;

pub const SLOT_BYTES: u64 = 1024 * 1024;

/// Settings whose size and free space a test chooses; snapshots are recorded.
pub struct DirSettings {
    pub free: u64,
    pub size: u64,
    pub snapshots: Mutex<Vec<Slot>>,
    /// What the dry run of the new slot's migrations answers (`{"ok": true, ...}` by default).
    pub preview: Mutex<serde_json::Value>,
    /// The schemas dry runs were asked for.
    pub previews: Mutex<Vec<u32>>,
}

impl DirSettings {
    /// Settings of `size` bytes with `free` bytes free, whose migrations preview cleanly.
    pub fn new(size: u64, free: u64) -> DirSettings {
        DirSettings {
            free,
            size,
            snapshots: Mutex::new(Vec::new()),
            preview: Mutex::new(
                serde_json::json!({"dry_run": true, "ok": true, "dropped": 0, "steps": []}),
            ),
            previews: Mutex::new(Vec::new()),
        }
    }
}

impl Settings for DirSettings {
    fn snapshot_size(&self) -> std::io::Result<u64> {
        Ok(self.size)
    }
    fn free_space(&self) -> std::io::Result<u64> {
        Ok(self.free)
    }
    fn snapshot(&self, slot: Slot) -> std::io::Result<()> {
        self.snapshots.lock().unwrap().push(slot);
        Ok(())
    }
    fn preview_migrations(
        &self,
        _running: Slot,
        _new_root: &std::path::Path,
        schema: u32,
    ) -> std::io::Result<serde_json::Value> {
        self.previews.lock().unwrap().push(schema);
        Ok(self.preview.lock().unwrap().clone())
    }
}

/// A box in a temporary directory: slot A running 0.1.0 (floor 0.1.0) with its trailer, slot B empty.
pub struct TestBox {
    pub dir: tempfile::TempDir,
    pub layout: Layout,
    /// The key the box trusts.
    pub key: SigningKey,
    pub settings: DirSettings,
}

impl TestBox {
    /// The boot state as it is now.
    pub fn boot_state(&self) -> BootState {
        self.layout.boot.load().unwrap().state
    }
}

pub fn keypair() -> SigningKey {
    SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap()
}

pub fn manifest(version: &str, board: &str, payloads: &[(&str, Target, &[u8])]) -> Manifest {
    let root = payloads[0].2.len() as u64;
    let data_blocks = (root - 1) / 4096;
    Manifest {
        format: crate::FORMAT,
        board: Name::new(board).unwrap(),
        version: version.parse().unwrap(),
        floor: "0.0.1".parse().unwrap(),
        schema_version: 1,
        payloads: payloads
            .iter()
            .map(|(n, t, b)| PayloadEntry::from_reader(Name::new(n).unwrap(), *t, *b).unwrap())
            .collect(),
        verity: Verity {
            algorithm: "sha256".into(),
            block_size: 4096,
            data_blocks,
            hash_offset: data_blocks * 4096,
            root_hash: Sha256([3; 32]),
            salt: vec![4; 32],
        },
    }
}

pub fn bundle_bytes(key: &SigningKey, m: &Manifest, payloads: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    let sources = payloads
        .iter()
        .map(|p| Box::new(*p) as Box<dyn Read>)
        .collect();
    write_bundle(&mut out, key, m, sources).unwrap();
    out
}

pub fn root_bytes() -> Vec<u8> {
    (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// A box running slot A at 0.1.0 (floor 0.1.0), slot B empty.
pub fn new_box() -> TestBox {
    new_box_with_slots(SLOT_BYTES)
}

/// [`new_box`] with root partitions of `slot_bytes` each (sparse files).
pub fn new_box_with_slots(slot_bytes: u64) -> TestBox {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keypair();
    fs::create_dir_all(d.join("keys")).unwrap();
    fs::write(d.join("keys/dev.pub"), public_key_text(&key.public_key())).unwrap();
    fs::write(d.join("cmdline"), "console=ttyAMA0 cairn.slot=a quiet\n").unwrap();
    fs::create_dir_all(d.join("boot/slot-a")).unwrap();
    fs::write(d.join("boot/slot-a/Image"), b"running kernel").unwrap();
    let layout = Layout {
        cmdline: d.join("cmdline"),
        root_a: d.join("root-a"),
        root_b: d.join("root-b"),
        boot_dir: d.join("boot"),
        firmware_dir: d.join("firmware"),
        keys_dir: d.join("keys"),
        board: "qemu-aarch64-virt".into(),
        boot: BootFiles::at(
            [
                d.join("boot/env-1/cairn.env"),
                d.join("boot/env-2/cairn.env"),
            ],
            16384,
        ),
        tries: 3,
    };
    // A new box's boot state, as the image build writes it.
    fs::create_dir_all(d.join("boot/env-1")).unwrap();
    fs::create_dir_all(d.join("boot/env-2")).unwrap();
    layout.boot.reset(&BootState::factory(3)).unwrap();
    // Slot A: its own payload and trailer.
    let a_root = vec![7u8; 3 * 4096];
    let mut running = manifest(
        "0.1.0",
        "qemu-aarch64-virt",
        &[("root", Target::Slot, &a_root)],
    );
    running.floor = "0.1.0".parse().unwrap();
    let mut a = std::io::Cursor::new(vec![0u8; 64 * 1024 + 4 * 4096]);
    a.write_all(&a_root).unwrap();
    crate::write_trailer(
        &mut a,
        64 * 1024 + 4 * 4096,
        &crate::SignedManifest::sign(&running, &key).unwrap(),
    )
    .unwrap();
    fs::write(&layout.root_a, a.into_inner()).unwrap();
    fs::write(&layout.root_b, b"").unwrap();
    fs::File::options()
        .write(true)
        .open(&layout.root_b)
        .unwrap()
        .set_len(slot_bytes)
        .unwrap();
    TestBox {
        dir,
        layout,
        key,
        settings: DirSettings::new(1 << 20, 10 << 20),
    }
}

pub fn bundle_for(b: &TestBox, version: &str, board: &str) -> Vec<u8> {
    let root = root_bytes();
    let m = manifest(
        version,
        board,
        &[
            ("root", Target::Slot, &root),
            ("Image", Target::Boot, b"kernel 2"),
            ("initrd.img", Target::Boot, b"initrd 2"),
        ],
    );
    bundle_bytes(&b.key, &m, &[&root, b"kernel 2", b"initrd 2"])
}
