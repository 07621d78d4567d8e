//! The two copies on disk: which one is read, which one is written, and that a power cut anywhere in a write
//! (the copy cut short, or half new and half old) still reads back the state before it.

use cairn_bootenv::{select, BootFiles, BootState, CopyError, Env, EnvError, Slot};
use std::fs;
use std::path::{Path, PathBuf};

const SIZE: usize = 0x4000;
const TRIES: u8 = 3;

fn files(dir: &Path) -> BootFiles {
    BootFiles::at(
        [dir.join("env-1/cairn.env"), dir.join("env-2/cairn.env")],
        SIZE,
    )
}

fn copy_bytes(state: &BootState) -> Vec<u8> {
    let mut env = Env::new();
    state.write_env(&mut env).unwrap();
    env.serialize(SIZE).unwrap()
}

fn with_seq(mut state: BootState, seq: u64) -> BootState {
    state.seq = seq;
    state
}

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn installed_b() -> BootState {
    let mut s = BootState::factory(TRIES);
    s.activate(Slot::B, TRIES);
    s
}

/// Copies the tests spoil one at a time; each must leave the other copy current.
fn bad_copies() -> Vec<(&'static str, Option<Vec<u8>>)> {
    let good = copy_bytes(&with_seq(installed_b(), 9));
    let mut corrupt = good.clone();
    corrupt[100] ^= 1;
    vec![
        ("absent", None),
        ("empty", Some(Vec::new())),
        ("all zero", Some(vec![0; SIZE])),
        ("corrupt CRC", Some(corrupt)),
        ("truncated", Some(good[..SIZE / 2].to_vec())),
        ("wrong size", Some([good.clone(), vec![0; 512]].concat())),
    ]
}

#[test]
fn the_valid_copy_with_the_higher_seq_is_current() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    write(
        f.paths()[0],
        &copy_bytes(&with_seq(BootState::factory(TRIES), 7)),
    );
    write(f.paths()[1], &copy_bytes(&with_seq(installed_b(), 8)));
    let current = f.load().unwrap();
    assert_eq!(
        (current.copy, current.state.clone()),
        (1, with_seq(installed_b(), 8))
    );
    assert!(current.other_bad.is_none());
    write(
        f.paths()[0],
        &copy_bytes(&with_seq(BootState::factory(TRIES), 9)),
    );
    assert_eq!(f.load().unwrap().copy, 0);
}

#[test]
fn either_copy_bad_leaves_the_other_current() {
    let older = with_seq(BootState::factory(TRIES), 1);
    for (what, bad) in bad_copies() {
        for bad_index in [0, 1] {
            let dir = tempfile::tempdir().unwrap();
            let f = files(dir.path());
            write(f.paths()[1 - bad_index], &copy_bytes(&older));
            if let Some(bytes) = &bad {
                write(f.paths()[bad_index], bytes);
            }
            let current = f
                .load()
                .unwrap_or_else(|e| panic!("{what} copy {bad_index}: {e}"));
            assert_eq!(current.copy, 1 - bad_index, "{what}");
            assert_eq!(current.state, older, "{what}");
            assert!(
                current.other_bad.is_some(),
                "{what}: the bad copy is reported"
            );
        }
    }
}

#[test]
fn both_copies_bad_is_a_clear_error_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    write(f.paths()[0], &vec![0; SIZE]);
    let err = f.load().unwrap_err();
    assert!(
        matches!(*err.first_error, CopyError::Env(EnvError::BadCrc { .. })),
        "{err:?}"
    );
    assert!(matches!(*err.second_error, CopyError::Read(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("env-1/cairn.env") && text.contains("env-2/cairn.env"),
        "{text}"
    );
}

#[test]
fn a_valid_environment_without_a_boot_state_is_a_bad_copy() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    write(f.paths()[0], &Env::new().serialize(SIZE).unwrap());
    write(f.paths()[1], &copy_bytes(&BootState::factory(TRIES)));
    let current = f.load().unwrap();
    assert_eq!(current.copy, 1);
    assert!(matches!(current.other_bad, Some(CopyError::State(_))));
}

#[test]
fn store_writes_the_other_copy_with_the_next_seq_and_keeps_other_variables() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    let mut env = Env::new();
    with_seq(BootState::factory(TRIES), 4)
        .write_env(&mut env)
        .unwrap();
    env.set("bootdelay", "0").unwrap();
    write(f.paths()[0], &env.serialize(SIZE).unwrap());
    let before = fs::read(f.paths()[0]).unwrap();

    let current = f.load().unwrap();
    let stored = f.store(&current, &installed_b()).unwrap();
    assert_eq!(stored.copy, 1);
    assert_eq!(
        fs::read(f.paths()[0]).unwrap(),
        before,
        "the current copy is never written"
    );
    let reread = f.load().unwrap();
    assert_eq!(
        (reread.copy, reread.state.clone()),
        (1, with_seq(installed_b(), 5))
    );
    assert_eq!(reread.env.get("bootdelay"), Some("0"));
    assert_eq!(fs::metadata(f.paths()[1]).unwrap().len(), SIZE as u64);

    // The next write goes back to the first copy.
    let mut next = reread.state.clone();
    next.mark_good(Slot::B, TRIES);
    f.store(&reread, &next).unwrap();
    let third = f.load().unwrap();
    assert_eq!(
        (third.copy, third.state.seq, third.state.trial),
        (0, 6, None)
    );
}

#[test]
fn store_replaces_a_bad_or_oversized_copy_with_a_full_sized_one() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    write(f.paths()[0], &copy_bytes(&BootState::factory(TRIES)));
    write(f.paths()[1], &vec![0xaa; 3 * SIZE]);
    let current = f.load().unwrap();
    f.store(&current, &installed_b()).unwrap();
    assert_eq!(fs::metadata(f.paths()[1]).unwrap().len(), SIZE as u64);
    assert_eq!(f.load().unwrap().state, with_seq(installed_b(), 1));
}

#[test]
fn store_refuses_a_state_that_does_not_fit_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // The factory state takes 69 bytes with its CRC and terminator; with "big" 94 of 96. Activating B adds 3.
    let small = BootFiles::at([dir.path().join("1"), dir.path().join("2")], 96);
    let mut env = Env::new();
    BootState::factory(TRIES).write_env(&mut env).unwrap();
    env.set("big", &"x".repeat(20)).unwrap();
    write(small.paths()[0], &env.serialize(96).unwrap());
    let current = small.load().unwrap();
    let mut next = current.state.clone();
    next.activate(Slot::B, TRIES);
    let err = small.store(&current, &next).unwrap_err();
    assert!(
        matches!(
            err,
            cairn_bootenv::StoreError::Encode(EnvError::TooLarge { .. })
        ),
        "{err:?}"
    );
    assert!(!small.paths()[1].exists());
}

#[test]
fn reset_writes_both_copies() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    f.reset(&BootState::factory(TRIES)).unwrap();
    for path in f.paths() {
        let state =
            BootState::from_env(&Env::parse(&fs::read(path).unwrap(), SIZE).unwrap()).unwrap();
        assert_eq!(state, BootState::factory(TRIES));
    }
}

#[test]
fn board_file_names_the_copies_under_the_boot_directory() {
    let board = cairn_board::Board::load(&board_file()).unwrap();
    let f = BootFiles::new(Path::new("/boot"), &board.boot);
    assert_eq!(
        f.paths(),
        [
            Path::new("/boot/env-1/cairn.env"),
            Path::new("/boot/env-2/cairn.env")
        ]
    );
    assert_eq!(f.size(), 0x4000);
}

fn board_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../board/qemu-aarch64-virt/board.toml")
}

/// A store cut by a power failure after `written` bytes: the target copy holds the new bytes up to there and
/// either nothing after (cut short) or its old bytes (overwritten in place). Every cut must read back the state
/// before the store, unless the copy already equals the new one byte for byte (then the write was complete).
#[test]
fn power_cut_at_every_byte_of_a_store_keeps_the_previous_state() {
    let previous = with_seq(installed_b(), 0x41);
    let older = with_seq(BootState::factory(TRIES), 0x40);
    let current_bytes = copy_bytes(&previous);
    let old_target = copy_bytes(&older);
    let current = select(
        [Ok(current_bytes.clone()), Ok(old_target.clone())],
        SIZE,
        paths(),
    )
    .unwrap();
    assert_eq!(current.copy, 0);
    let mut next = previous.clone();
    next.mark_good(Slot::B, TRIES);
    let (target, expected_next, new_bytes) =
        cairn_bootenv::encode_next(&current, &next, SIZE).unwrap();
    assert_eq!(target, 1);

    let mut checked = 0;
    for written in 0..=SIZE {
        let cut_short = new_bytes[..written].to_vec();
        let half_old = [&new_bytes[..written], &old_target[written..]].concat();
        for torn in [cut_short, half_old] {
            let loaded = select([Ok(current_bytes.clone()), Ok(torn.clone())], SIZE, paths())
                .unwrap_or_else(|e| panic!("cut after {written} bytes: {e}"));
            let want = if torn == new_bytes {
                &expected_next
            } else {
                &previous
            };
            assert_eq!(&loaded.state, want, "cut after {written} bytes");
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * (SIZE + 1));
}

fn paths() -> [&'static Path; 2] {
    [Path::new("env-1/cairn.env"), Path::new("env-2/cairn.env")]
}

#[test]
fn update_changes_the_state_as_it_is_now_and_skips_writes_that_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    f.reset(&BootState::factory(TRIES)).unwrap();
    let stale = f.load().unwrap();
    // Someone else (the install) writes meanwhile.
    f.store(&stale, &installed_b()).unwrap();
    let stored = f.update(|s| s.mark_good(Slot::A, TRIES)).unwrap();
    assert_eq!(
        stored,
        with_seq(installed_b(), 1),
        "A had its tries: nothing to change, nothing written"
    );
    let stored = f.update(|s| s.mark_good(Slot::B, TRIES)).unwrap();
    assert_eq!((stored.seq, stored.trial), (2, None));
    assert_eq!(f.load().unwrap().state, stored);
    assert_eq!(
        stored.order,
        [Slot::B, Slot::A],
        "the install's change is kept"
    );
}

#[test]
fn update_is_exclusive_between_threads() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    f.reset(&BootState::factory(TRIES)).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let f = f.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    f.update(|s| s.left[1] = s.left[1].wrapping_add(1)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let state = f.load().unwrap().state;
    assert_eq!((state.left[1], state.seq), (100, 100), "no update lost");
}
