use super::*;

const SIZE: usize = 0x4000;

fn sample() -> Env {
    let mut env = Env::new();
    env.set("BOOT_ORDER", "A B").unwrap();
    env.set("BOOT_A_LEFT", "3").unwrap();
    env
}

/// Bytes with a correct CRC around `data` (entries and padding), for hand-made hostile environments.
fn with_crc(data: &[u8]) -> Vec<u8> {
    let mut out = crc32fast::hash(data).to_le_bytes().to_vec();
    out.extend_from_slice(data);
    out
}

#[test]
fn round_trip_keeps_every_variable() {
    let bytes = sample().serialize(SIZE).unwrap();
    assert_eq!(bytes.len(), SIZE);
    assert_eq!(Env::parse(&bytes, SIZE).unwrap(), sample());
}

#[test]
fn layout_is_crc_entries_terminator_zero_padding() {
    let bytes = sample().serialize(64).unwrap();
    let data = b"BOOT_A_LEFT=3\0BOOT_ORDER=A B\0\0";
    assert_eq!(&bytes[4..4 + data.len()], data);
    assert!(bytes[4 + data.len()..].iter().all(|&b| b == 0));
    assert_eq!(
        u32::from_le_bytes(bytes[..4].try_into().unwrap()),
        crc32fast::hash(&bytes[4..])
    );
}

#[test]
fn empty_environment_is_valid() {
    let bytes = Env::new().serialize(SIZE).unwrap();
    assert_eq!(Env::parse(&bytes, SIZE).unwrap(), Env::new());
}

#[test]
fn empty_file_is_wrong_size() {
    assert_eq!(
        Env::parse(&[], SIZE),
        Err(EnvError::WrongSize {
            expected: SIZE,
            found: 0
        })
    );
}

#[test]
fn truncated_and_oversized_are_wrong_size() {
    let bytes = sample().serialize(SIZE).unwrap();
    assert_eq!(
        Env::parse(&bytes[..SIZE - 1], SIZE),
        Err(EnvError::WrongSize {
            expected: SIZE,
            found: SIZE - 1
        })
    );
    let long = sample().serialize(2 * SIZE).unwrap();
    assert_eq!(
        Env::parse(&long, SIZE),
        Err(EnvError::WrongSize {
            expected: SIZE,
            found: 2 * SIZE
        })
    );
}

#[test]
fn all_zero_file_fails_its_crc() {
    let err = Env::parse(&vec![0; SIZE], SIZE).unwrap_err();
    assert!(matches!(err, EnvError::BadCrc { stored: 0, .. }), "{err:?}");
}

#[test]
fn one_flipped_bit_anywhere_fails_the_crc() {
    let good = sample().serialize(SIZE).unwrap();
    for pos in [0, 3, 4, 10, 40, SIZE - 1] {
        let mut bad = good.clone();
        bad[pos] ^= 0x10;
        assert!(
            matches!(Env::parse(&bad, SIZE), Err(EnvError::BadCrc { .. })),
            "byte {pos}"
        );
    }
}

#[test]
fn entries_without_terminator_are_refused() {
    let data = vec![b'x'; 60];
    assert_eq!(
        Env::parse(&with_crc(&data), 64),
        Err(EnvError::Unterminated { size: 64 })
    );
}

#[test]
fn entry_without_equals_or_name_is_refused() {
    let mut data = b"BOOT_ORDER=A\0garbage\0\0".to_vec();
    data.resize(60, 0);
    assert_eq!(
        Env::parse(&with_crc(&data), 64),
        Err(EnvError::BadEntry { offset: 4 + 13 })
    );
    let mut data = b"=A\0\0".to_vec();
    data.resize(60, 0);
    assert_eq!(
        Env::parse(&with_crc(&data), 64),
        Err(EnvError::BadEntry { offset: 4 })
    );
}

#[test]
fn non_utf8_entry_is_refused() {
    let mut data = b"X=\xff\0\0".to_vec();
    data.resize(60, 0);
    assert_eq!(
        Env::parse(&with_crc(&data), 64),
        Err(EnvError::NotUtf8 { offset: 4 })
    );
}

#[test]
fn padding_after_the_terminator_is_not_read() {
    let mut data = b"A=1\0\0".to_vec();
    data.resize(60, 0xff);
    assert_eq!(
        Env::parse(&with_crc(&data), 64).unwrap().get("A"),
        Some("1")
    );
}

#[test]
fn serialize_refuses_what_does_not_fit() {
    // 4 CRC + "BOOT_A_LEFT=3\0" (14) + "BOOT_ORDER=A B\0" (15) + terminator = 34.
    assert!(sample().serialize(34).is_ok());
    assert_eq!(
        sample().serialize(33),
        Err(EnvError::TooLarge {
            needed: 34,
            size: 33
        })
    );
}

#[test]
fn set_refuses_names_and_values_uboot_cannot_read_back() {
    let mut env = Env::new();
    assert!(matches!(
        env.set("", "x"),
        Err(EnvError::InvalidName { .. })
    ));
    assert!(matches!(
        env.set("A=B", "x"),
        Err(EnvError::InvalidName { .. })
    ));
    assert!(matches!(
        env.set("A", "x\0y"),
        Err(EnvError::InvalidValue { .. })
    ));
    assert_eq!(env, Env::new());
}
