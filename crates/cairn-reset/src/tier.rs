//! From held time to action, and from the kernel's edges to presses.
//!
//! The tiers follow what owners know from other NAS boxes (WD, Synology, QNAP): a brush of the pin does
//! nothing, about 4 s resets the network and the administrator password, 10 s or more resets every setting.
//! A tier fires at release, never while held, so an owner who holds too long can still let go at a tier they
//! chose by watching the LED. Times come from the kernel's event timestamps (CLOCK_MONOTONIC), so a busy
//! init loop never stretches a press.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Presses shorter than this are glitches or brushes: logged and ignored.
pub const GLITCH_BELOW: Duration = Duration::from_secs(1);
/// From this long the network and administrator reset fires.
pub const NETWORK_FROM: Duration = Duration::from_secs(4);
/// From this long every setting is reset.
pub const SETTINGS_FROM: Duration = Duration::from_secs(10);
/// A release followed by a press within this is contact bounce: one press.
pub const DEBOUNCE: Duration = Duration::from_millis(30);

/// What a release after some held time does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Under a second: a brush or a glitch.
    Ignored,
    /// One to four seconds: too short for a reset, logged so an owner sees the pin works.
    NoAction,
    /// Four to ten seconds: network back to DHCP, host name to the default, administrator passwords cleared.
    Network,
    /// Ten seconds or more: every setting back to factory; data volumes untouched.
    Settings,
}

impl Tier {
    /// The rule: the tier a release after `held` fires.
    pub fn for_held(held: Duration) -> Tier {
        if held >= SETTINGS_FROM {
            Tier::Settings
        } else if held >= NETWORK_FROM {
            Tier::Network
        } else if held >= GLITCH_BELOW {
            Tier::NoAction
        } else {
            Tier::Ignored
        }
    }

    /// True for the tiers that change settings.
    pub fn resets(self) -> bool {
        matches!(self, Tier::Network | Tier::Settings)
    }

    /// How long until the next tier while held at `held`, if there is one.
    pub fn next_in(held: Duration) -> Option<Duration> {
        [GLITCH_BELOW, NETWORK_FROM, SETTINGS_FROM]
            .into_iter()
            .find(|t| *t > held)
            .map(|t| t - held)
    }

    /// What a release now would do, for the console, the LED's meaning and the dashboard.
    pub fn release_would(self) -> &'static str {
        match self {
            Tier::Ignored => "do nothing",
            Tier::NoAction => "do nothing (from 4 s the network and administrator password reset)",
            Tier::Network => "reset the network and the administrator password",
            Tier::Settings => "reset every setting (data volumes are kept)",
        }
    }

    /// The stable name used in records and the API.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Ignored => "ignored",
            Tier::NoAction => "no_action",
            Tier::Network => "network",
            Tier::Settings => "settings",
        }
    }

    /// The tier an API request or the command line names (only the two that reset).
    pub fn parse_reset(name: &str) -> Option<Tier> {
        match name {
            "network" => Some(Tier::Network),
            "settings" => Some(Tier::Settings),
            _ => None,
        }
    }
}

/// A finished press: how long it was held and what it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    pub held: Duration,
    pub tier: Tier,
}

/// Follows one pin's edges (timestamps in nanoseconds of CLOCK_MONOTONIC) and reports each press once it is
/// over: a release counts only when no press follows within [`DEBOUNCE`].
#[derive(Debug, Default)]
pub struct Press {
    down_since: Option<u64>,
    /// A release waiting out the debounce time: (pressed at, released at).
    releasing: Option<(u64, u64)>,
}

impl Press {
    /// A new tracker with the pin released.
    pub fn new() -> Press {
        Press::default()
    }

    /// An edge of the pin: `pressed` true when it went down. Returns a press that an earlier release finished
    /// (when this edge comes after its debounce time).
    pub fn edge(&mut self, pressed: bool, at_ns: u64) -> Option<Release> {
        let finished = self.poll(at_ns);
        if pressed {
            match self.releasing.take() {
                // Bounce: the same press goes on.
                Some((since, _)) => self.down_since = Some(since),
                None if self.down_since.is_none() => self.down_since = Some(at_ns),
                None => {}
            }
        } else if let Some(since) = self.down_since.take() {
            self.releasing = Some((since, at_ns));
        }
        finished
    }

    /// A press whose release has outlasted the debounce time at `now_ns`, once.
    pub fn poll(&mut self, now_ns: u64) -> Option<Release> {
        let (since, released) = self.releasing?;
        if now_ns.saturating_sub(released) < DEBOUNCE.as_nanos() as u64 {
            return None;
        }
        self.releasing = None;
        let held = Duration::from_nanos(released.saturating_sub(since));
        Some(Release {
            held,
            tier: Tier::for_held(held),
        })
    }

    /// When the pin went down, while it is held (bounces included).
    pub fn down_since(&self) -> Option<u64> {
        self.down_since.or(self.releasing.map(|(since, _)| since))
    }

    /// How long the pin has been held at `now_ns`, while it is.
    pub fn held(&self, now_ns: u64) -> Option<Duration> {
        self.down_since
            .map(|since| Duration::from_nanos(now_ns.saturating_sub(since)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn tiers_follow_the_documented_table() {
        let cases = [
            (0, Tier::Ignored),
            (100, Tier::Ignored),
            (999, Tier::Ignored),
            (1_000, Tier::NoAction),
            (3_999, Tier::NoAction),
            (4_000, Tier::Network),
            (5_000, Tier::Network),
            (9_999, Tier::Network),
            (10_000, Tier::Settings),
            (12_000, Tier::Settings),
            (600_000, Tier::Settings),
        ];
        for (ms, tier) in cases {
            assert_eq!(Tier::for_held(Duration::from_millis(ms)), tier, "{ms} ms");
        }
        assert!(!Tier::Ignored.resets() && !Tier::NoAction.resets());
        assert!(Tier::Network.resets() && Tier::Settings.resets());
        assert_eq!(
            Tier::next_in(Duration::from_millis(4_500)),
            Some(Duration::from_millis(5_500))
        );
        assert_eq!(Tier::next_in(Duration::from_secs(11)), None);
    }

    #[test]
    fn a_press_fires_once_at_release_after_the_debounce_time() {
        let mut p = Press::new();
        assert_eq!(p.edge(true, 1_000 * MS), None);
        assert_eq!(p.held(6_000 * MS), Some(Duration::from_secs(5)));
        assert_eq!(p.poll(6_000 * MS), None, "nothing fires while held");
        assert_eq!(p.edge(false, 6_000 * MS), None);
        assert_eq!(p.poll(6_010 * MS), None, "still within the debounce time");
        let r = p.poll(6_040 * MS).unwrap();
        assert_eq!(r.held, Duration::from_secs(5));
        assert_eq!(r.tier, Tier::Network);
        assert_eq!(p.poll(7_000 * MS), None, "once");
    }

    #[test]
    fn contact_bounce_is_one_press() {
        let mut p = Press::new();
        p.edge(true, 0);
        p.edge(false, 2 * MS);
        p.edge(true, 5 * MS);
        p.edge(false, 11_000 * MS);
        p.edge(true, 11_010 * MS);
        p.edge(false, 12_000 * MS);
        let r = p.poll(12_100 * MS).unwrap();
        assert_eq!(r.held, Duration::from_secs(12));
        assert_eq!(r.tier, Tier::Settings);
    }

    #[test]
    fn two_presses_apart_are_two_and_stray_edges_do_nothing() {
        let mut p = Press::new();
        assert_eq!(p.edge(false, 0), None, "a release without a press");
        p.edge(true, 10 * MS);
        p.edge(true, 20 * MS);
        p.edge(false, 110 * MS);
        // The next press, well after the debounce time, reports the first one.
        let first = p.edge(true, 1_000 * MS).unwrap();
        assert_eq!(first.held, Duration::from_millis(100));
        assert_eq!(first.tier, Tier::Ignored);
        p.edge(false, 3_000 * MS);
        let second = p.poll(4_000 * MS).unwrap();
        assert_eq!(second.held, Duration::from_secs(2));
        assert_eq!(second.tier, Tier::NoAction);
    }
}
