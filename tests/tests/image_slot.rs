//! The built images' root slot A, checked on the host as the box's initramfs will read it: a signed trailer at the
//! partition's end that verifies against the image's trusted keys, names this build, and matches the slot's bytes
//! and its dm-verity hash tree; the trusted keys inside the slot. No QEMU: seconds per board.

use cairn_firmware::{read_trailer, Sha256, TrustedKeys};
use cairn_qemu::Manifest;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::process::Command;

fn slot_a_is_sealed_and_matches_its_bytes(board: &str) {
    let (manifest, dir) = Manifest::load(board).unwrap_or_else(|e| panic!("{e}"));
    let build: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let offset = build["slot"]["offset"]
        .as_u64()
        .expect("manifest.json has slot.offset");
    let size = build["slot"]["size"]
        .as_u64()
        .expect("manifest.json has slot.size");
    let keys = TrustedKeys::load_dir(&dir.join("trusted-keys")).unwrap();

    let mut image = File::open(dir.join(&manifest.image)).unwrap();
    let signed = read_trailer(&mut image, offset + size)
        .unwrap()
        .expect("slot A of the image is not sealed (no trailer)");
    let slot_manifest = signed
        .verify(&keys)
        .unwrap_or_else(|e| panic!("{board}: slot A's trailer: {e}"));
    assert_eq!(slot_manifest.board.as_str(), board);
    assert_eq!(
        slot_manifest.version.to_string(),
        manifest.version,
        "make image seals with the workspace version by default"
    );
    assert_eq!(slot_manifest.schema_version, cairn_store::SCHEMA_VERSION);

    let root = slot_manifest.slot_payload();
    let mut slot = vec![0u8; root.size as usize];
    image.seek(SeekFrom::Start(offset)).unwrap();
    image.read_exact(&mut slot).unwrap();
    assert_eq!(
        Sha256::of_reader(slot.as_slice()).unwrap().0,
        root.sha256,
        "{board}: slot A's bytes differ from its trailer"
    );

    // The signed root hash is the one of the tree in the slot: what dm-verity will check every block against.
    let work = tempfile::tempdir().unwrap();
    let slot_file = work.path().join("root.slot");
    std::fs::write(&slot_file, &slot).unwrap();
    let v = &slot_manifest.verity;
    let status = Command::new("veritysetup")
        .args(["verify", "--no-superblock", "--hash", &v.algorithm])
        .args([
            "--data-block-size",
            &v.block_size.to_string(),
            "--hash-block-size",
            &v.block_size.to_string(),
        ])
        .args([
            "--data-blocks",
            &v.data_blocks.to_string(),
            &format!("--hash-offset={}", v.hash_offset),
        ])
        .args([
            "--salt",
            &v.salt
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        ])
        .arg(&slot_file)
        .arg(&slot_file)
        .arg(v.root_hash.to_string())
        .status()
        .expect("veritysetup (cryptsetup-bin, installed by scripts/bootstrap)");
    assert!(
        status.success(),
        "{board}: the signed root hash does not match slot A's hash tree"
    );

    // The slot trusts exactly the keys the build was given.
    for (id, key) in keys.iter() {
        let inside = Command::new("unsquashfs")
            .args(["-cat"])
            .arg(&slot_file)
            .arg(format!("etc/cairn/keys/{}.pub", key.name))
            .output()
            .unwrap();
        assert!(
            inside.status.success(),
            "{board}: key {} ({id}) is not in the slot's /etc/cairn/keys",
            key.name
        );
        assert_eq!(
            cairn_firmware::parse_public_key(&String::from_utf8_lossy(&inside.stdout)),
            Some(key.public_key)
        );
    }
}

#[test]
fn aarch64_slot_a_is_sealed_and_matches_its_bytes_and_hash_tree() {
    slot_a_is_sealed_and_matches_its_bytes("qemu-aarch64-virt");
}

#[test]
fn armv7_slot_a_is_sealed_and_matches_its_bytes_and_hash_tree() {
    slot_a_is_sealed_and_matches_its_bytes("qemu-armv7-virt");
}
