//! Bundles and trailers end to end on the host: written, streamed back, and refused for every kind of damage.

use cairn_firmware::*;
use std::io::{self, Cursor, Read};

struct Fixture {
    key: SigningKey,
    trusted: TrustedKeys,
    manifest: Manifest,
    payloads: Vec<Vec<u8>>,
    bundle: Vec<u8>,
    header_len: usize,
}

fn payload_bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn new_key() -> SigningKey {
    SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap()
}

fn fixture() -> Fixture {
    let key = new_key();
    let mut trusted = TrustedKeys::default();
    trusted.insert("development", key.public_key());
    let payloads = vec![
        payload_bytes(1, 3 * 4096),
        payload_bytes(2, 5000),
        payload_bytes(3, 777),
    ];
    let specs = [
        ("root", Target::Slot),
        ("Image", Target::Boot),
        ("initrd.img", Target::Boot),
    ];
    let entries = specs
        .iter()
        .zip(&payloads)
        .map(|((name, target), bytes)| {
            PayloadEntry::from_reader(Name::new(name).unwrap(), *target, bytes.as_slice()).unwrap()
        })
        .collect();
    let manifest = Manifest {
        format: FORMAT,
        board: Name::new("qemu-aarch64-virt").unwrap(),
        version: "0.2.0".parse().unwrap(),
        floor: "0.1.0".parse().unwrap(),
        schema_version: 2,
        payloads: entries,
        verity: Verity {
            algorithm: "sha256".into(),
            block_size: 4096,
            data_blocks: 2,
            hash_offset: 8192,
            root_hash: Sha256([7; 32]),
            salt: vec![9; 32],
        },
    };
    let mut bundle = Vec::new();
    let sources = payloads
        .iter()
        .map(|p| Box::new(p.as_slice()) as Box<dyn Read>)
        .collect();
    let signed = write_bundle(&mut bundle, &key, &manifest, sources).unwrap();
    let header_len = signed.encode(Magic::Bundle).len();
    Fixture {
        key,
        trusted,
        manifest,
        payloads,
        bundle,
        header_len,
    }
}

/// Reads every payload of `bundle` to its end, returning their bytes or the first error.
fn read_all(bundle: &[u8], trusted: &TrustedKeys) -> Result<Vec<Vec<u8>>> {
    let mut reader = BundleReader::open(bundle, trusted)?;
    let mut out = Vec::new();
    while let Some(mut payload) = reader.next_payload()? {
        let mut bytes = Vec::new();
        payload.read_to_end(&mut bytes)?;
        out.push(bytes);
    }
    reader.finish()?;
    Ok(out)
}

#[test]
fn a_bundle_round_trips_with_its_manifest_and_payloads() {
    let f = fixture();
    let reader = BundleReader::open(f.bundle.as_slice(), &f.trusted).unwrap();
    assert_eq!(reader.manifest(), &f.manifest);
    assert_eq!(reader.signed().key_id(), f.key.key_id());
    assert_eq!(read_all(&f.bundle, &f.trusted).unwrap(), f.payloads);
}

#[test]
fn payloads_come_out_through_io_copy_in_small_reads() {
    let f = fixture();
    let mut reader = BundleReader::open(f.bundle.as_slice(), &f.trusted).unwrap();
    let mut payload = reader.next_payload().unwrap().unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 7];
    loop {
        let n = payload.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(out, f.payloads[0]);
    assert_eq!(payload.finish().unwrap(), f.manifest.payloads[0].sha256);
}

#[test]
fn a_tampered_manifest_byte_is_a_bad_signature() {
    let f = fixture();
    let manifest_start = FIXED_HEADER_LEN as usize;
    let manifest_len = f.manifest.to_bytes().len();
    // Every byte of the manifest, one at a time (a digit flipped keeps it valid JSON in most places).
    for i in manifest_start..manifest_start + manifest_len {
        let mut bad = f.bundle.clone();
        bad[i] ^= 0x01;
        let err = BundleReader::open(bad.as_slice(), &f.trusted)
            .err()
            .expect("a tampered manifest was accepted");
        assert!(
            matches!(err, FirmwareError::BadSignature { .. }),
            "byte {i}: {err}"
        );
    }
}

#[test]
fn a_tampered_signature_is_refused() {
    let f = fixture();
    let text = String::from_utf8_lossy(&f.bundle[..f.header_len]).into_owned();
    let at = text.find("\"signature\":\"").unwrap() + "\"signature\":\"".len() + 10;
    let mut bad = f.bundle.clone();
    bad[at] = if bad[at] == b'0' { b'1' } else { b'0' };
    assert!(matches!(
        BundleReader::open(bad.as_slice(), &f.trusted),
        Err(FirmwareError::BadSignature { .. })
    ));
    let mut bad = f.bundle.clone();
    bad[at] = b'G';
    assert!(matches!(
        BundleReader::open(bad.as_slice(), &f.trusted),
        Err(FirmwareError::MalformedSignature(_))
    ));
}

#[test]
fn a_bundle_signed_by_an_unknown_key_is_refused() {
    let f = fixture();
    let mut other = TrustedKeys::default();
    other.insert("release", new_key().public_key());
    match BundleReader::open(f.bundle.as_slice(), &other) {
        Err(FirmwareError::UnknownKey { key_id }) => assert_eq!(key_id, f.key.key_id().to_string()),
        other => panic!("expected an unknown key, got {:?}", other.err()),
    }
    assert!(matches!(
        BundleReader::open(f.bundle.as_slice(), &TrustedKeys::default()),
        Err(FirmwareError::UnknownKey { .. })
    ));
}

/// A reader that counts what was taken from it.
struct Counting<'a> {
    inner: &'a [u8],
    taken: usize,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.taken += n;
        Ok(n)
    }
}

#[test]
fn nothing_after_the_header_is_read_before_the_signature_checks_out() {
    let f = fixture();
    let mut counting = Counting {
        inner: &f.bundle,
        taken: 0,
    };
    assert!(BundleReader::open(&mut counting, &TrustedKeys::default()).is_err());
    assert_eq!(counting.taken, f.header_len);
}

#[test]
fn truncation_anywhere_is_named_by_its_region() {
    let f = fixture();
    let manifest_end = FIXED_HEADER_LEN as usize + f.manifest.to_bytes().len();
    let mut payload_ends = Vec::new();
    let mut end = f.header_len;
    for p in &f.manifest.payloads {
        end += p.size as usize;
        payload_ends.push((end, p.name.to_string()));
    }
    assert_eq!(end, f.bundle.len());
    for len in 0..f.bundle.len() {
        let expected = if len < FIXED_HEADER_LEN as usize {
            Region::Header
        } else if len < manifest_end {
            Region::Manifest
        } else if len < f.header_len {
            Region::Signature
        } else {
            let (_, name) = payload_ends.iter().find(|(end, _)| len < *end).unwrap();
            Region::Payload(name.clone())
        };
        match read_all(&f.bundle[..len], &f.trusted) {
            Err(FirmwareError::Truncated(region)) => assert_eq!(region, expected, "cut at {len}"),
            other => panic!("cut at {len}: expected truncation in the {expected}, got {other:?}"),
        }
    }
}

#[test]
fn a_payload_digest_mismatch_is_reported_at_its_end() {
    let f = fixture();
    for (index, entry) in f.manifest.payloads.iter().enumerate() {
        let start = f.header_len
            + f.manifest.payloads[..index]
                .iter()
                .map(|p| p.size as usize)
                .sum::<usize>();
        let mut bad = f.bundle.clone();
        bad[start + entry.size as usize / 2] ^= 0x80;
        match read_all(&bad, &f.trusted) {
            Err(FirmwareError::DigestMismatch {
                payload,
                expected,
                actual,
            }) => {
                assert_eq!(payload, entry.name.to_string());
                assert_eq!(expected, entry.sha256.to_string());
                assert_ne!(actual, expected);
            }
            other => panic!("payload {index}: expected a digest mismatch, got {other:?}"),
        }
    }
}

#[test]
fn a_payload_must_be_finished_before_the_next_and_nothing_may_follow() {
    let f = fixture();
    let mut reader = BundleReader::open(f.bundle.as_slice(), &f.trusted).unwrap();
    let mut first = reader.next_payload().unwrap().unwrap();
    first.read_exact(&mut [0u8; 10]).unwrap();
    assert!(matches!(
        reader.next_payload(),
        Err(FirmwareError::PayloadUnfinished { .. })
    ));

    let mut longer = f.bundle.clone();
    longer.push(0);
    assert!(matches!(
        read_all(&longer, &f.trusted),
        Err(FirmwareError::TrailingData)
    ));
    let reader = BundleReader::open(f.bundle.as_slice(), &f.trusted).unwrap();
    assert!(matches!(
        reader.finish(),
        Err(FirmwareError::PayloadUnfinished { .. })
    ));
}

#[test]
fn a_wrong_magic_is_refused() {
    let f = fixture();
    let mut bad = f.bundle.clone();
    bad[..8].copy_from_slice(b"CAIRNSLT");
    assert!(matches!(
        BundleReader::open(bad.as_slice(), &f.trusted),
        Err(FirmwareError::BadMagic { .. })
    ));
    assert!(matches!(
        BundleReader::open(&b"PK\x03\x04 a zip file, not a bundle"[..], &f.trusted),
        Err(FirmwareError::BadMagic { .. })
    ));
}

fn header_with_lengths(manifest_len: u32, signature_len: u32) -> Vec<u8> {
    let mut h = b"CAIRNFW1".to_vec();
    h.extend_from_slice(&manifest_len.to_le_bytes());
    h.extend_from_slice(&signature_len.to_le_bytes());
    h
}

#[test]
fn hostile_lengths_are_refused_before_anything_is_allocated() {
    let f = fixture();
    let cases = [
        (u32::MAX, 100),
        (100, u32::MAX),
        (u32::MAX - 50, 100),
        (MAX_HEADER_LEN, 1),
        (MAX_HEADER_LEN - FIXED_HEADER_LEN - 100, 101),
        (100, MAX_SIGNATURE_LEN + 1),
        (0, 100),
        (100, 0),
    ];
    for (m, s) in cases {
        // Only the fixed header is given: a refusal must come before reading (or allocating) the claimed lengths.
        match BundleReader::open(header_with_lengths(m, s).as_slice(), &f.trusted) {
            Err(FirmwareError::HeaderTooLarge { .. }) => {}
            other => panic!("lengths {m}/{s}: {:?}", other.err()),
        }
    }
    // The largest legal lengths are read (and found truncated), not refused.
    let m = MAX_HEADER_LEN - FIXED_HEADER_LEN - MAX_SIGNATURE_LEN;
    assert!(matches!(
        BundleReader::open(
            header_with_lengths(m, MAX_SIGNATURE_LEN).as_slice(),
            &f.trusted
        ),
        Err(FirmwareError::Truncated(Region::Manifest))
    ));
}

#[test]
fn a_manifest_with_a_valid_signature_is_still_checked() {
    // A trusted key that signs something a box must not act on: the signature passes, the manifest does not.
    let f = fixture();
    let mut json: serde_json::Value = serde_json::from_slice(&f.manifest.to_bytes()).unwrap();
    json["payloads"][1]["name"] = "../../boot.scr".into();
    let bytes = serde_json::to_vec(&json).unwrap();
    let signature = f.key.sign(&bytes);
    let block = format!(
        "{{\"key_id\":\"{}\",\"signature\":\"{}\"}}",
        f.key.key_id(),
        signature
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let mut bundle = header_with_lengths(bytes.len() as u32, block.len() as u32);
    bundle.extend_from_slice(&bytes);
    bundle.extend_from_slice(block.as_bytes());
    match BundleReader::open(bundle.as_slice(), &f.trusted) {
        Err(FirmwareError::MalformedManifest(why)) => assert!(why.contains("boot.scr"), "{why}"),
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn write_bundle_refuses_sources_that_do_not_match_the_manifest() {
    let f = fixture();
    let mut short = f.payloads.clone();
    short[1].pop();
    let sources = short
        .iter()
        .map(|p| Box::new(p.as_slice()) as Box<dyn Read>)
        .collect();
    assert!(matches!(
        write_bundle(&mut Vec::new(), &f.key, &f.manifest, sources),
        Err(FirmwareError::PayloadSize { .. })
    ));
    let mut changed = f.payloads.clone();
    changed[2][0] ^= 1;
    let sources = changed
        .iter()
        .map(|p| Box::new(p.as_slice()) as Box<dyn Read>)
        .collect();
    assert!(matches!(
        write_bundle(&mut Vec::new(), &f.key, &f.manifest, sources),
        Err(FirmwareError::DigestMismatch { .. })
    ));
}

#[test]
fn a_trailer_round_trips_and_a_zeroed_one_is_an_empty_slot() {
    let f = fixture();
    let signed = BundleReader::open(f.bundle.as_slice(), &f.trusted)
        .unwrap()
        .signed()
        .clone();
    let partition = 256 * 1024u64;
    let mut disk = Cursor::new(vec![0xAAu8; partition as usize + 4096]);
    clear_trailer(&mut disk, partition).unwrap();
    assert_eq!(read_trailer(&mut disk, partition).unwrap(), None);
    write_trailer(&mut disk, partition, &signed).unwrap();
    let back = read_trailer(&mut disk, partition).unwrap().unwrap();
    assert_eq!(back, signed);
    assert_eq!(back.verify(&f.trusted).unwrap(), f.manifest);
    // Only the last 64 KiB of the partition were written.
    let bytes = disk.get_ref();
    assert!(bytes[..(partition - TRAILER_SIZE) as usize]
        .iter()
        .all(|&b| b == 0xAA));
    assert!(bytes[partition as usize..].iter().all(|&b| b == 0xAA));
    assert_eq!(
        &bytes[(partition - TRAILER_SIZE) as usize..][..8],
        b"CAIRNSLT"
    );
}

#[test]
fn a_damaged_trailer_is_refused() {
    let f = fixture();
    let signed = BundleReader::open(f.bundle.as_slice(), &f.trusted)
        .unwrap()
        .signed()
        .clone();
    let partition = 128 * 1024u64;
    let mut disk = Cursor::new(vec![0u8; partition as usize]);
    write_trailer(&mut disk, partition, &signed).unwrap();
    let start = (partition - TRAILER_SIZE) as usize;

    let mut wrong_magic = disk.clone();
    wrong_magic.get_mut()[start..start + 8].copy_from_slice(b"CAIRNFW1");
    assert!(matches!(
        read_trailer(&mut wrong_magic, partition),
        Err(FirmwareError::BadMagic { .. })
    ));

    let mut tampered = disk.clone();
    tampered.get_mut()[start + FIXED_HEADER_LEN as usize + 20] ^= 1;
    let read = read_trailer(&mut tampered, partition).unwrap().unwrap();
    assert!(matches!(
        read.verify(&f.trusted),
        Err(FirmwareError::BadSignature { .. })
    ));

    let mut huge = disk.clone();
    huge.get_mut()[start + 8..start + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        read_trailer(&mut huge, partition),
        Err(FirmwareError::HeaderTooLarge { .. })
    ));

    assert!(matches!(
        read_trailer(&mut disk, 1000),
        Err(FirmwareError::PartitionTooSmall { .. })
    ));
    let mut short_device = Cursor::new(vec![0u8; 1000]);
    assert!(matches!(
        read_trailer(&mut short_device, partition),
        Err(FirmwareError::Truncated(Region::Header))
    ));
}
