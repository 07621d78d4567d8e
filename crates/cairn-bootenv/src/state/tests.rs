use super::*;

const TRIES: u8 = 3;

fn state(order: &[Slot], left: [u8; 2], trial: Option<Slot>) -> BootState {
    BootState {
        order: order.to_vec(),
        left,
        seq: 0,
        trial,
    }
}

#[test]
fn variables_round_trip_through_an_environment() {
    let s = BootState {
        order: vec![Slot::B, Slot::A],
        left: [3, 0xa],
        seq: 0x1f,
        trial: Some(Slot::B),
    };
    let mut env = Env::new();
    s.write_env(&mut env).unwrap();
    assert_eq!(env.get(VAR_B_LEFT), Some("a"));
    assert_eq!(env.get(VAR_SEQ), Some("1f"));
    assert_eq!(env.get(VAR_ORDER), Some("B A"));
    assert_eq!(BootState::from_env(&env).unwrap(), s);
}

#[test]
fn absent_seq_and_empty_trial_are_defaults_but_order_and_counters_are_required() {
    let mut env = Env::new();
    env.set(VAR_ORDER, "A").unwrap();
    assert_eq!(
        BootState::from_env(&env),
        Err(StateError::Missing { name: VAR_A_LEFT })
    );
    env.set(VAR_A_LEFT, "0x3").unwrap();
    env.set(VAR_B_LEFT, "0").unwrap();
    env.set(VAR_TRIAL, "").unwrap();
    assert_eq!(
        BootState::from_env(&env).unwrap(),
        BootState::factory(TRIES)
    );
}

#[test]
fn unknown_slots_and_bad_numbers_are_refused() {
    for (name, value) in [
        (VAR_ORDER, "A C"),
        (VAR_ORDER, "A A"),
        (VAR_ORDER, "AB"),
        (VAR_A_LEFT, "x"),
        (VAR_A_LEFT, "100"),
        (VAR_A_LEFT, ""),
        (VAR_SEQ, "-1"),
        (VAR_TRIAL, "C"),
    ] {
        let mut env = Env::new();
        BootState::factory(TRIES).write_env(&mut env).unwrap();
        env.set(name, value).unwrap();
        assert_eq!(
            BootState::from_env(&env),
            Err(StateError::Invalid {
                name,
                value: value.to_owned()
            }),
            "{name}={value}"
        );
    }
}

#[test]
fn booted_slot_comes_from_the_kernel_command_line() {
    let line = "console=ttyAMA0 root=/dev/mapper/root cairn.slot=b cairn.trial=1 quiet\n";
    assert_eq!(
        Booted::from_cmdline(line),
        Some(Booted {
            slot: Slot::B,
            trial: true
        })
    );
    assert_eq!(
        Booted::from_cmdline("cairn.slot=a"),
        Some(Booted {
            slot: Slot::A,
            trial: false
        })
    );
    assert_eq!(Booted::from_cmdline("console=ttyAMA0"), None);
    assert_eq!(Booted::from_cmdline("cairn.slot=c"), None);
}

#[test]
fn install_takes_the_slot_out_then_activate_puts_it_first_on_trial() {
    let mut s = state(&[Slot::A, Slot::B], [3, 3], None);
    s.begin_install(Slot::B);
    assert_eq!(s, state(&[Slot::A], [3, 0], None));
    s.activate(Slot::B, TRIES);
    assert_eq!(s, state(&[Slot::B, Slot::A], [3, 3], Some(Slot::B)));
}

#[test]
fn begin_install_over_a_slot_on_trial_ends_that_trial() {
    let mut s = state(&[Slot::B, Slot::A], [3, 2], Some(Slot::B));
    s.begin_install(Slot::B);
    assert_eq!(s, state(&[Slot::A], [3, 0], None));
}

#[test]
fn mark_good_refills_the_slot_and_ends_its_trial_only() {
    let mut s = state(&[Slot::B, Slot::A], [2, 1], Some(Slot::B));
    s.mark_good(Slot::A, TRIES);
    assert_eq!(s, state(&[Slot::B, Slot::A], [3, 1], Some(Slot::B)));
    s.mark_good(Slot::B, TRIES);
    assert_eq!(s, state(&[Slot::B, Slot::A], [3, 3], None));
}

#[test]
fn mark_good_puts_a_slot_missing_from_the_order_back() {
    let mut s = state(&[], [0, 0], None);
    s.mark_good(Slot::A, TRIES);
    assert_eq!(s, state(&[Slot::A], [3, 0], None));
}

#[test]
fn failed_trial_is_the_other_slot_with_no_tries_left() {
    assert_eq!(
        state(&[Slot::B, Slot::A], [2, 0], Some(Slot::B)).failed_trial(Slot::A),
        Some(Slot::B)
    );
    // Still tries left: U-Boot booted A for another reason; not (yet) a failure.
    assert_eq!(
        state(&[Slot::B, Slot::A], [2, 1], Some(Slot::B)).failed_trial(Slot::A),
        None
    );
    // The trial slot itself booted: not a fallback.
    assert_eq!(
        state(&[Slot::B, Slot::A], [3, 0], Some(Slot::B)).failed_trial(Slot::B),
        None
    );
    assert_eq!(state(&[Slot::A], [2, 0], None).failed_trial(Slot::A), None);
}

#[test]
fn give_up_takes_the_slot_out_and_ends_the_trial() {
    let mut s = state(&[Slot::B, Slot::A], [2, 0], Some(Slot::B));
    s.give_up(Slot::B);
    assert_eq!(s, state(&[Slot::A], [2, 0], None));
}

#[test]
fn uboot_picks_the_first_slot_with_tries_and_counts_down() {
    let mut s = state(&[Slot::B, Slot::A], [3, 1], Some(Slot::B));
    assert_eq!(s.uboot_pick(TRIES), Some(Slot::B));
    assert_eq!(s.left, [3, 0]);
    assert_eq!(s.uboot_pick(TRIES), Some(Slot::A));
    assert_eq!(s.left, [2, 0]);
}

#[test]
fn uboot_with_no_tries_left_resets_every_ordered_slot_and_boots_nothing() {
    let mut s = state(&[Slot::B, Slot::A], [0, 0], None);
    assert_eq!(s.uboot_pick(TRIES), None);
    assert_eq!(s.left, [3, 3]);
    assert_eq!(s.uboot_pick(TRIES), Some(Slot::B));
}
