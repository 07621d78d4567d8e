//! What the boot loader tells the initramfs on the kernel command line.

/// A root slot: which `root-<slot>` partition to boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    /// The slot's letter as the partition names and the command line spell it.
    pub fn letter(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    /// The GPT name of the slot's partition on the boot medium.
    pub fn partition_name(self) -> String {
        format!("root-{}", self.letter())
    }
}

/// The boot loader's choices for this boot (`cairn.slot=a|b`, `cairn.trial=1`), and the owner's
/// `cairn.rescue=1` (a shell on the console instead of a reboot when something is wrong).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootArgs {
    pub slot: Slot,
    /// The slot is on trial after an install: every block is read (and so checked) before switching root.
    pub trial: bool,
    pub rescue: bool,
}

/// Why the command line cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CmdlineError {
    #[error("no cairn.slot=a|b on the kernel command line (the boot loader sets it)")]
    NoSlot,
    #[error("cairn.slot={0:?} on the kernel command line is neither a nor b")]
    BadSlot(String),
}

/// Reads the command line as the kernel does (whitespace-separated words, the last of a repeated key wins).
/// Nothing here is ever passed to a shell.
pub fn parse(cmdline: &str) -> Result<BootArgs, CmdlineError> {
    let mut slot = None;
    let mut trial = false;
    let mut rescue = false;
    for word in cmdline.split_whitespace() {
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        match key {
            "cairn.slot" => slot = Some(value.to_string()),
            "cairn.trial" => trial = value == "1",
            "cairn.rescue" => rescue = value == "1",
            _ => {}
        }
    }
    let slot = match slot.as_deref() {
        None => return Err(CmdlineError::NoSlot),
        Some("a") => Slot::A,
        Some("b") => Slot::B,
        Some(other) => return Err(CmdlineError::BadSlot(other.to_string())),
    };
    Ok(BootArgs {
        slot,
        trial,
        rescue,
    })
}

/// Whether the owner asked for a rescue shell, read even from a command line [`parse`] refuses, so a shell is
/// still offered when the slot itself is what is wrong.
pub fn wants_rescue(cmdline: &str) -> bool {
    cmdline
        .split_whitespace()
        .rev()
        .find_map(|w| w.strip_prefix("cairn.rescue="))
        == Some("1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_and_trial_are_read_among_other_words() {
        let args =
            parse("console=ttyAMA0 panic=5 quiet cairn.slot=b cairn.trial=1 loglevel=4\n").unwrap();
        assert_eq!(
            args,
            BootArgs {
                slot: Slot::B,
                trial: true,
                rescue: false
            }
        );
        assert_eq!(args.slot.partition_name(), "root-b");
    }

    #[test]
    fn a_normal_boot_is_not_a_trial() {
        let args = parse("console=ttyAMA0 cairn.slot=a").unwrap();
        assert_eq!(args.slot, Slot::A);
        assert!(!args.trial);
        assert!(!parse("cairn.slot=a cairn.trial=0").unwrap().trial);
        assert!(!parse("cairn.slot=a cairn.trial").unwrap().trial);
    }

    #[test]
    fn the_last_repeated_key_wins_as_in_the_kernel() {
        assert_eq!(parse("cairn.slot=a cairn.slot=b").unwrap().slot, Slot::B);
        assert!(
            !parse("cairn.slot=a cairn.trial=1 cairn.trial=0")
                .unwrap()
                .trial
        );
    }

    #[test]
    fn a_missing_or_unknown_slot_is_refused() {
        assert_eq!(parse("console=ttyAMA0"), Err(CmdlineError::NoSlot));
        assert_eq!(
            parse("cairn.slot=c"),
            Err(CmdlineError::BadSlot("c".into()))
        );
        assert_eq!(parse("cairn.slot="), Err(CmdlineError::BadSlot("".into())));
        assert_eq!(
            parse("cairn.slot=a;reboot"),
            Err(CmdlineError::BadSlot("a;reboot".into()))
        );
        // Prefix lookalikes are other parameters.
        assert_eq!(parse("xcairn.slot=a"), Err(CmdlineError::NoSlot));
    }

    #[test]
    fn rescue_is_read_even_when_the_slot_is_not() {
        assert!(wants_rescue("cairn.slot=z cairn.rescue=1"));
        assert!(parse("cairn.slot=a cairn.rescue=1").unwrap().rescue);
        assert!(!wants_rescue("cairn.rescue=0"));
        assert!(!wants_rescue("cairn.rescue=1 cairn.rescue=0"));
    }
}
