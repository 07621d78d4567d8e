//! Whole update cycles played on the boot state's two copies (in memory, through the same select and encode the
//! files use): install, trial boots under the model of U-Boot's script, commit or fallback; and a power cut
//! after, or in the middle of, every single write of each cycle still ends with the box on a healthy slot.

use cairn_bootenv::{encode_next, select, BootState, Current, Env, Slot};
use std::path::Path;

const SIZE: usize = 0x4000;
const TRIES: u8 = 3;
/// More boots than any cycle needs: a box that has not settled by then is stuck.
const MAX_BOOTS: usize = 20;

/// The power went out: the cycle stops where it is.
struct PowerCut;

/// A box's boot partition: the two copies, and how many more writes the power lasts for.
struct Machine {
    copies: [Option<Vec<u8>>; 2],
    writes_left: Option<usize>,
    /// Whether the write the power fails in leaves the copy torn (half new) rather than untouched.
    tear: bool,
    writes: usize,
}

impl Machine {
    fn new() -> Machine {
        let mut env = Env::new();
        BootState::factory(TRIES).write_env(&mut env).unwrap();
        let bytes = env.serialize(SIZE).unwrap();
        Machine {
            copies: [Some(bytes.clone()), Some(bytes)],
            writes_left: None,
            tear: false,
            writes: 0,
        }
    }

    fn load(&self) -> Current {
        let copies = self
            .copies
            .clone()
            .map(|c| c.ok_or_else(|| std::io::Error::other("absent")));
        select(copies, SIZE, [Path::new("1"), Path::new("2")]).expect("one copy is always valid")
    }

    fn store(&mut self, next: &BootState) -> Result<(), PowerCut> {
        let current = self.load();
        let (target, _, bytes) = encode_next(&current, next, SIZE).unwrap();
        if let Some(left) = self.writes_left.as_mut() {
            if *left == 0 {
                if self.tear {
                    let mut torn = self.copies[target].clone().unwrap_or_default();
                    torn.resize(SIZE, 0);
                    torn[..SIZE / 2].copy_from_slice(&bytes[..SIZE / 2]);
                    self.copies[target] = Some(torn);
                }
                return Err(PowerCut);
            }
            *left -= 1;
        }
        self.copies[target] = Some(bytes);
        self.writes += 1;
        Ok(())
    }

    fn state(&self) -> BootState {
        self.load().state
    }

    /// Power-on: U-Boot's script picks a slot, counting its try down (one write), or resets the counters and
    /// resets the board when none is left.
    fn uboot(&mut self) -> Result<Slot, PowerCut> {
        loop {
            let mut state = self.state();
            let picked = state.uboot_pick(TRIES);
            self.store(&state)?;
            if let Some(slot) = picked {
                return Ok(slot);
            }
        }
    }

    /// Init once services ran: a fallback is recorded, a healthy slot commits; both in one write. An unhealthy
    /// slot changes nothing (it reboots at its deadline). Returns the given-up slot.
    fn init(&mut self, booted: Slot, healthy: bool) -> Result<Option<Slot>, PowerCut> {
        let mut state = self.state();
        let failed = state.failed_trial(booted);
        if let Some(slot) = failed {
            state.give_up(slot);
        }
        if healthy {
            state.mark_good(booted, TRIES);
        }
        let mut unchanged = self.state();
        unchanged.seq = state.seq;
        if state != unchanged {
            self.store(&state)?;
        }
        Ok(failed)
    }

    /// The daemon installs `slot` while the other one runs (two writes around the slot's bytes).
    fn install(&mut self, slot: Slot) -> Result<(), PowerCut> {
        let mut state = self.state();
        state.begin_install(slot);
        self.store(&state)?;
        state.activate(slot, TRIES);
        self.store(&state)
    }

    /// Boots until a slot is healthy and committed; returns it and the slots given up on the way.
    fn boot_until_settled(
        &mut self,
        healthy: impl Fn(Slot) -> bool,
    ) -> Result<(Slot, Vec<Slot>), PowerCut> {
        let mut given_up = Vec::new();
        for _ in 0..MAX_BOOTS {
            let slot = self.uboot()?;
            given_up.extend(self.init(slot, healthy(slot))?);
            if healthy(slot) {
                return Ok((slot, given_up));
            }
        }
        panic!(
            "no healthy slot after {MAX_BOOTS} boots: {:?}",
            self.state()
        );
    }
}

/// The update cycle: boot A, install B, reboot into B's trial and on until settled.
fn update_cycle(m: &mut Machine, b_healthy: bool) -> Result<(Slot, Vec<Slot>), PowerCut> {
    let health = move |s: Slot| s == Slot::A || b_healthy;
    m.boot_until_settled(health)?;
    m.install(Slot::B)?;
    m.boot_until_settled(health)
}

#[test]
fn install_trial_boot_and_commit() {
    let mut m = Machine::new();
    assert_eq!(update_cycle(&mut m, true).ok().unwrap(), (Slot::B, vec![]));
    let state = m.state();
    assert_eq!(
        (state.order.clone(), state.left, state.trial),
        (vec![Slot::B, Slot::A], [TRIES, TRIES], None)
    );
}

#[test]
fn trial_that_never_commits_gets_three_tries_then_falls_back_to_a_once() {
    let mut m = Machine::new();
    m.boot_until_settled(|s| s == Slot::A).ok().unwrap();
    m.install(Slot::B).ok().unwrap();
    let mut booted = Vec::new();
    let mut given_up = Vec::new();
    loop {
        let slot = m.uboot().ok().unwrap();
        booted.push(slot);
        given_up.extend(m.init(slot, slot == Slot::A).ok().unwrap());
        if slot == Slot::A {
            break;
        }
    }
    assert_eq!(booted, [Slot::B, Slot::B, Slot::B, Slot::A]);
    assert_eq!(given_up, [Slot::B]);
    let state = m.state();
    assert_eq!(
        (state.order.clone(), state.left, state.trial),
        (vec![Slot::A], [TRIES, 0], None)
    );
    // Later boots stay on A and never see the failure again.
    for _ in 0..3 {
        assert_eq!(
            m.boot_until_settled(|s| s == Slot::A).ok().unwrap(),
            (Slot::A, vec![])
        );
    }
}

#[test]
fn power_cut_after_or_during_any_write_ends_on_a_healthy_slot() {
    for b_healthy in [true, false] {
        let mut full = Machine::new();
        update_cycle(&mut full, b_healthy).ok().unwrap();
        let total = full.writes;
        assert!(total >= 5, "{total} writes");
        for cut in 0..total {
            for tear in [false, true] {
                let mut m = Machine::new();
                m.writes_left = Some(cut);
                m.tear = tear;
                let what =
                    format!("B healthy {b_healthy}, cut at write {cut} of {total}, torn {tear}");
                assert!(
                    update_cycle(&mut m, b_healthy).is_err(),
                    "{what}: the cut happened"
                );
                m.writes_left = None;
                let (slot, _) = m
                    .boot_until_settled(|s| s == Slot::A || b_healthy)
                    .ok()
                    .unwrap_or_else(|| panic!("{what}"));
                let state = m.state();
                assert!(b_healthy || slot == Slot::A, "{what}: booted {slot}");
                assert_eq!(state.left_of(slot), TRIES, "{what}: {state:?}");
                assert!(
                    state.order.contains(&Slot::A),
                    "{what}: A stays bootable: {state:?}"
                );
                assert_eq!(
                    state.trial, None,
                    "{what}: the trial ended one way or the other"
                );
                if !b_healthy {
                    assert_eq!(
                        state.order,
                        [Slot::A],
                        "{what}: the failed slot is out of the order"
                    );
                }
            }
        }
    }
}
