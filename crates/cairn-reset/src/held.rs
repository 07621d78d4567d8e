//! While the pin is held, init keeps a small file saying since when (CLOCK_MONOTONIC nanoseconds, the clock of
//! the kernel's event timestamps); the daemon reads it to show which tier a release would fire. The file lives
//! on tmpfs and is removed at release, so a reboot never leaves a press behind.

use crate::tier::Tier;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// Where init keeps the state of a held pin.
pub const FILE: &str = "/run/cairn/reset-pin";

#[derive(Serialize, Deserialize)]
struct Record {
    down_since_ns: u64,
}

/// The pin as the dashboard shows it while held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    pub held_ms: u64,
    /// The tier a release now would fire.
    pub tier: Tier,
    /// What that tier does, in words.
    pub release_would: &'static str,
    /// Milliseconds until the next tier, if there is one.
    pub next_tier_in_ms: Option<u64>,
}

impl Held {
    /// The state after holding for `held`.
    pub fn after(held: Duration) -> Held {
        let tier = Tier::for_held(held);
        Held {
            held_ms: held.as_millis() as u64,
            tier,
            release_would: tier.release_would(),
            next_tier_in_ms: Tier::next_in(held).map(|d| d.as_millis() as u64),
        }
    }
}

/// Nanoseconds of CLOCK_MONOTONIC now.
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| (t.tv_sec() as u64).saturating_mul(1_000_000_000) + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Init: the pin went down at `down_since_ns`. Best effort: showing the tier must never stop a reset.
pub fn write(path: &Path, down_since_ns: u64) {
    let text = serde_json::to_string(&Record { down_since_ns }).unwrap_or_default();
    let _ = std::fs::write(path, text);
}

/// Init: the pin was released.
pub fn clear(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// The daemon: the pin's state now, if it is held.
pub fn read(path: &Path) -> Option<Held> {
    let record: Record = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some(Held::after(Duration::from_nanos(
        monotonic_ns().saturating_sub(record.down_since_ns),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_pin_reads_back_with_its_tier_and_is_gone_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reset-pin");
        assert_eq!(read(&path), None);
        write(&path, monotonic_ns().saturating_sub(5_000_000_000));
        let held = read(&path).unwrap();
        assert!(held.held_ms >= 5_000 && held.held_ms < 9_000, "{held:?}");
        assert_eq!(held.tier, Tier::Network);
        assert!(held.next_tier_in_ms.unwrap() <= 5_000);
        clear(&path);
        assert_eq!(read(&path), None);
        std::fs::write(&path, b"garbage").unwrap();
        assert_eq!(read(&path), None, "a damaged file shows no press");
    }
}
