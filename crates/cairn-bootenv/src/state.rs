//! The A/B boot state (docs/updates.md, "The boot state") as plain data with the transitions the boot loader,
//! the install and the commit make: no I/O here, so whole update cycles are played in host tests.

use crate::env::{Env, EnvError};
use std::fmt;
use thiserror::Error;

/// Variable names shared with U-Boot's boot script (`rootfs/boot/boot.cmd`).
pub const VAR_ORDER: &str = "BOOT_ORDER";
pub const VAR_A_LEFT: &str = "BOOT_A_LEFT";
pub const VAR_B_LEFT: &str = "BOOT_B_LEFT";
pub const VAR_SEQ: &str = "BOOT_SEQ";
pub const VAR_TRIAL: &str = "BOOT_TRIAL";

/// One of the two root slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    /// Both slots, in index order.
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    /// Index into per-slot arrays such as [`BootState::left`].
    pub fn index(self) -> usize {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }

    /// The slot that is not this one: where an install goes while this one runs.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The name in the boot state (`A`, `B`).
    pub fn letter(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }

    /// The name on the kernel command line and in paths (`a`, `b`: `cairn.slot=a`, `boot/slot-a/`).
    pub fn lower(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    /// Reads `A`/`a` or `B`/`b`, as the boot state and the kernel command line spell slots.
    pub fn parse(text: &str) -> Option<Slot> {
        match text {
            "A" | "a" => Some(Slot::A),
            "B" | "b" => Some(Slot::B),
            _ => None,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.letter())
    }
}

/// What the boot loader told the kernel: the slot it booted (`cairn.slot=a|b`) and whether it booted it as a
/// trial (`cairn.trial=1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Booted {
    pub slot: Slot,
    pub trial: bool,
}

impl Booted {
    /// Reads `/proc/cmdline`'s words; `None` when no `cairn.slot=` names a slot (a development boot without
    /// U-Boot), so the caller leaves the boot state alone.
    pub fn from_cmdline(cmdline: &str) -> Option<Booted> {
        let mut slot = None;
        let mut trial = false;
        for word in cmdline.split_whitespace() {
            if let Some(value) = word.strip_prefix("cairn.slot=") {
                slot = Slot::parse(value);
            } else if let Some(value) = word.strip_prefix("cairn.trial=") {
                trial = value == "1";
            }
        }
        slot.map(|slot| Booted { slot, trial })
    }
}

/// The boot state: which slots U-Boot tries, in which order, with how many attempts left, and which slot is on
/// trial after an install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootState {
    /// Slots U-Boot tries, first to last; a slot absent here is never booted.
    pub order: Vec<Slot>,
    /// Boot attempts left, indexed by [`Slot::index`] (A, B).
    pub left: [u8; 2],
    /// Write counter: the valid copy with the higher value is the current one.
    pub seq: u64,
    /// The slot installed last and not yet proven healthy.
    pub trial: Option<Slot>,
}

/// Why a valid environment does not hold a usable boot state.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum StateError {
    #[error("the boot state has no {name}")]
    Missing { name: &'static str },
    #[error("the boot state's {name} is {value:?}, not what Cairn and U-Boot write")]
    Invalid { name: &'static str, value: String },
    #[error(transparent)]
    Env(#[from] EnvError),
}

impl BootState {
    /// A new box's state: only slot A, committed, with `tries` attempts (what the image build writes).
    pub fn factory(tries: u8) -> BootState {
        BootState {
            order: vec![Slot::A],
            left: [tries, 0],
            seq: 0,
            trial: None,
        }
    }

    /// Attempts left for `slot`.
    pub fn left_of(&self, slot: Slot) -> u8 {
        self.left[slot.index()]
    }

    /// The booted slot proved healthy: it gets its full `tries` again and, if it was on trial, the trial is over.
    /// A healthy slot missing from the order (only a hand-edited state) is put back at its end, so the box keeps
    /// something to boot.
    pub fn mark_good(&mut self, slot: Slot, tries: u8) {
        self.left[slot.index()] = tries;
        if self.trial == Some(slot) {
            self.trial = None;
        }
        if !self.order.contains(&slot) {
            self.order.push(slot);
        }
    }

    /// An install into `slot` starts: U-Boot must never try it until [`BootState::activate`], so a half-written
    /// slot is never booted.
    pub fn begin_install(&mut self, slot: Slot) {
        self.order.retain(|&s| s != slot);
        self.left[slot.index()] = 0;
        if self.trial == Some(slot) {
            self.trial = None;
        }
    }

    /// The install into `slot` is complete and read back: U-Boot tries it first, `tries` times, as a trial.
    pub fn activate(&mut self, slot: Slot, tries: u8) {
        self.order.retain(|&s| s != slot);
        self.order.insert(0, slot);
        self.left[slot.index()] = tries;
        self.trial = Some(slot);
    }

    /// The slot whose trial failed, seen from the slot U-Boot fell back to: the trial slot when it is not the
    /// booted one and has no attempts left.
    pub fn failed_trial(&self, booted: Slot) -> Option<Slot> {
        self.trial
            .filter(|&trial| trial != booted && self.left_of(trial) == 0)
    }

    /// The update in `slot` failed for good: out of the order, no longer on trial.
    pub fn give_up(&mut self, slot: Slot) {
        self.order.retain(|&s| s != slot);
        self.left[slot.index()] = 0;
        if self.trial == Some(slot) {
            self.trial = None;
        }
    }

    /// What U-Boot's boot script does on power-on, for host tests: the first slot in the order with attempts left
    /// loses one and is booted; when none has any, every slot in the order gets `tries` again and the board resets
    /// (`None`), so the owner gets a box that tries again, never a brick. The caller stores the result either way.
    pub fn uboot_pick(&mut self, tries: u8) -> Option<Slot> {
        if let Some(&slot) = self.order.iter().find(|&&s| self.left_of(s) > 0) {
            self.left[slot.index()] -= 1;
            return Some(slot);
        }
        for &slot in &self.order {
            self.left[slot.index()] = tries;
        }
        None
    }

    /// Reads the boot state's variables from an environment. `BOOT_SEQ` absent counts as 0 and `BOOT_TRIAL`
    /// absent or empty as no trial; the order and both counters must be there.
    pub fn from_env(env: &Env) -> Result<BootState, StateError> {
        let order_text = env
            .get(VAR_ORDER)
            .ok_or(StateError::Missing { name: VAR_ORDER })?;
        let mut order = Vec::new();
        for word in order_text.split_whitespace() {
            match Slot::parse(word) {
                Some(slot) if word.len() == 1 && !order.contains(&slot) => order.push(slot),
                _ => return Err(invalid(VAR_ORDER, order_text)),
            }
        }
        let left = [hex_var(env, VAR_A_LEFT)?, hex_var(env, VAR_B_LEFT)?];
        let seq = match env.get(VAR_SEQ) {
            None => 0,
            Some(text) => parse_hex(text).ok_or_else(|| invalid(VAR_SEQ, text))?,
        };
        let trial = match env.get(VAR_TRIAL) {
            None | Some("") => None,
            Some(text @ ("A" | "B")) => Slot::parse(text),
            Some(text) => return Err(invalid(VAR_TRIAL, text)),
        };
        Ok(BootState {
            order,
            left,
            seq,
            trial,
        })
    }

    /// Writes the boot state's variables into `env`, keeping any other variable in it.
    pub fn write_env(&self, env: &mut Env) -> Result<(), EnvError> {
        let order: Vec<&str> = self.order.iter().map(|s| s.letter()).collect();
        env.set(VAR_ORDER, &order.join(" "))?;
        env.set(VAR_A_LEFT, &format!("{:x}", self.left[0]))?;
        env.set(VAR_B_LEFT, &format!("{:x}", self.left[1]))?;
        env.set(VAR_SEQ, &format!("{:x}", self.seq))?;
        env.set(VAR_TRIAL, self.trial.map_or("", Slot::letter))
    }
}

fn invalid(name: &'static str, value: &str) -> StateError {
    StateError::Invalid {
        name,
        value: value.to_owned(),
    }
}

/// Hex as U-Boot's `setexpr` writes it; a `0x` prefix is accepted too (a hand-written `fw_setenv`).
fn parse_hex<T: TryFrom<u64>>(text: &str) -> Option<T> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16)
        .ok()
        .and_then(|n| T::try_from(n).ok())
}

fn hex_var(env: &Env, name: &'static str) -> Result<u8, StateError> {
    let text = env.get(name).ok_or(StateError::Missing { name })?;
    parse_hex(text).ok_or_else(|| invalid(name, text))
}

#[cfg(test)]
mod tests;
