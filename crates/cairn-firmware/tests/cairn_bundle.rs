//! The host tool `cairn-bundle` on a build directory laid out as mkimage writes it: seal, bundle, verify, and the
//! mistakes it must refuse (a key the image does not trust, a slot that does not fit, a changed slot).
// The tool under test is a program: running it is the test.
#![allow(clippy::disallowed_methods)]

use cairn_firmware::{public_key_text, BundleReader, SigningKey, TrustedKeys, TRAILER_SIZE};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PARTITION_OFFSET: u64 = 64 * 1024;
const PARTITION_SIZE: u64 = 512 * 1024;

struct Build {
    _dir: tempfile::TempDir,
    out: PathBuf,
    key: PathBuf,
}

fn write_key(dir: &Path, name: &str) -> (PathBuf, [u8; 32]) {
    let pkcs8 = SigningKey::generate_pkcs8().unwrap();
    let public = SigningKey::from_pkcs8(&pkcs8).unwrap().public_key();
    let path = dir.join(format!("{name}.pk8"));
    fs::write(&path, pkcs8).unwrap();
    (path, public)
}

/// out/<board> with a 3-block root slot (2 data blocks and a 1-block "tree"), two boot files, the trusted key and
/// an image holding the slot at its partition's offset.
fn build(slot_len: usize) -> Build {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    fs::create_dir_all(out.join("trusted-keys")).unwrap();
    let (key, public) = write_key(dir.path(), "development");
    fs::write(
        out.join("trusted-keys/development.pub"),
        public_key_text(&public),
    )
    .unwrap();
    let slot: Vec<u8> = (0..slot_len).map(|i| (i % 251) as u8).collect();
    fs::write(out.join("root.slot"), &slot).unwrap();
    fs::write(out.join("Image"), b"kernel bytes").unwrap();
    fs::write(out.join("initrd.img"), b"initramfs bytes").unwrap();
    let mut image = vec![0u8; (PARTITION_OFFSET + PARTITION_SIZE + 4096) as usize];
    image[PARTITION_OFFSET as usize..][..slot.len()].copy_from_slice(&slot);
    fs::write(out.join("cairn-test.img"), image).unwrap();
    let manifest = serde_json::json!({
        "board": "qemu-aarch64-virt",
        "version": "0.1.0",
        "image": "cairn-test.img",
        "kernel": "Image",
        "slot": {"file": "root.slot", "partition": "root-a", "offset": PARTITION_OFFSET, "size": PARTITION_SIZE},
        "boot_files": ["Image", "initrd.img"],
        "verity": {"algorithm": "sha256", "block_size": 4096, "data_blocks": 2, "hash_offset": 8192,
                   "root_hash": "ab".repeat(32), "salt": "cd".repeat(32)},
    });
    fs::write(
        out.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    Build {
        _dir: dir,
        out,
        key,
    }
}

fn tool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn-bundle"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn refused(output: Output) -> String {
    assert!(
        !output.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stderr).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn seal_writes_a_trailer_that_verifies_and_a_changed_slot_is_caught() {
    let b = build(3 * 4096);
    let out = s(&b.out);
    refused(tool(&["verify", "--build", out]));
    ok(tool(&[
        "seal",
        "--build",
        out,
        "--key",
        s(&b.key),
        "--floor",
        "0.1.0",
        "--version",
        "0.3.0",
    ]));
    let printed: serde_json::Value =
        serde_json::from_str(&ok(tool(&["verify", "--build", out]))).unwrap();
    assert_eq!(printed["version"], "0.3.0");
    assert_eq!(printed["schema_version"], cairn_store::SCHEMA_VERSION);
    assert_eq!(printed["payloads"][0]["name"], "root");
    assert_eq!(printed["payloads"][0]["size"], 3 * 4096);

    let image_path = b.out.join("cairn-test.img");
    let image = fs::read(&image_path).unwrap();
    let trailer_at = (PARTITION_OFFSET + PARTITION_SIZE - TRAILER_SIZE) as usize;
    assert_eq!(&image[trailer_at..trailer_at + 8], b"CAIRNSLT");
    let mut changed = image.clone();
    changed[PARTITION_OFFSET as usize + 5000] ^= 1;
    fs::write(&image_path, changed).unwrap();
    assert!(refused(tool(&["verify", "--build", out])).contains("do not match its trailer"));
}

#[test]
fn bundle_writes_what_a_box_streams_back() {
    let b = build(3 * 4096);
    let cfw = b.out.join("cairn-qemu-aarch64-virt-0.2.0.cfw");
    ok(tool(&[
        "bundle",
        "--build",
        s(&b.out),
        "--key",
        s(&b.key),
        "--floor",
        "0.1.0",
        "--version",
        "0.2.0",
        "--schema-version",
        "7",
        "--out",
        s(&cfw),
    ]));
    let keys = TrustedKeys::load_dir(&b.out.join("trusted-keys")).unwrap();
    let mut reader = BundleReader::open(fs::File::open(&cfw).unwrap(), &keys).unwrap();
    assert_eq!(reader.manifest().version.to_string(), "0.2.0");
    assert_eq!(reader.manifest().schema_version, 7);
    let mut payloads = Vec::new();
    while let Some(mut p) = reader.next_payload().unwrap() {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut p, &mut bytes).unwrap();
        payloads.push((p.entry().name.to_string(), bytes));
    }
    reader.finish().unwrap();
    assert_eq!(
        payloads[0],
        (
            "root".to_string(),
            fs::read(b.out.join("root.slot")).unwrap()
        )
    );
    assert_eq!(payloads[1], ("Image".to_string(), b"kernel bytes".to_vec()));
    assert_eq!(
        payloads[2],
        ("initrd.img".to_string(), b"initramfs bytes".to_vec())
    );
    ok(tool(&[
        "verify",
        "--keys",
        s(&b.out.join("trusted-keys")),
        s(&cfw),
    ]));
    assert!(!b
        .out
        .join("cairn-qemu-aarch64-virt-0.2.0.cfw.part")
        .exists());
}

#[test]
fn a_key_the_image_does_not_trust_is_refused() {
    let b = build(3 * 4096);
    let (other, _) = write_key(b.out.parent().unwrap(), "release");
    let err = refused(tool(&[
        "seal",
        "--build",
        s(&b.out),
        "--key",
        s(&other),
        "--floor",
        "0.1.0",
    ]));
    assert!(err.contains("not one the image trusts"), "{err}");
    let err = refused(tool(&[
        "bundle",
        "--build",
        s(&b.out),
        "--key",
        s(&other),
        "--floor",
        "0.1.0",
        "--out",
        s(&b.out.join("x.cfw")),
    ]));
    assert!(err.contains("not one the image trusts"), "{err}");
    assert!(!b.out.join("x.cfw").exists());
}

#[test]
fn a_slot_that_leaves_no_room_for_its_trailer_is_refused() {
    let b = build((PARTITION_SIZE - TRAILER_SIZE) as usize + 4096);
    let err = refused(tool(&[
        "seal",
        "--build",
        s(&b.out),
        "--key",
        s(&b.key),
        "--floor",
        "0.1.0",
    ]));
    assert!(err.contains("do not fit"), "{err}");
}

#[test]
fn a_floor_above_the_version_is_refused() {
    let b = build(3 * 4096);
    let err = refused(tool(&[
        "seal",
        "--build",
        s(&b.out),
        "--key",
        s(&b.key),
        "--floor",
        "0.2.0",
        "--version",
        "0.1.0",
    ]));
    assert!(err.contains("floor"), "{err}");
    let err = refused(tool(&[
        "seal",
        "--build",
        s(&b.out),
        "--key",
        s(&b.key),
        "--floor",
        "0.01.0",
    ]));
    assert!(err.contains("not a version"), "{err}");
}
