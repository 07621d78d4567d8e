//! Login throttling: growing delays per account name and per source address after repeated failures.
//!
//! Applied to every name tried, existing or not, so it reveals nothing about which accounts exist. While an
//! account or address is held back, the password is not even checked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How failures turn into waiting.
#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    /// Failures allowed before any delay.
    pub free: u32,
    /// First delay; doubles with each further failure.
    pub first: Duration,
    pub max: Duration,
    /// Entries remembered at most (oldest dropped), so a flood of names cannot exhaust memory.
    pub capacity: usize,
}

impl ThrottlePolicy {
    pub const LOGIN: ThrottlePolicy = ThrottlePolicy {
        free: 5,
        first: Duration::from_secs(2),
        max: Duration::from_secs(300),
        capacity: 4096,
    };
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    until: Instant,
    last: Instant,
}

#[derive(Default)]
struct Maps {
    accounts: HashMap<String, Failures>,
    sources: HashMap<IpAddr, Failures>,
}

pub struct Throttle {
    policy: ThrottlePolicy,
    maps: Mutex<Maps>,
}

fn wait_left(f: Option<&Failures>, now: Instant) -> Option<Duration> {
    f.and_then(|f| f.until.checked_duration_since(now))
        .filter(|d| !d.is_zero())
}

impl Throttle {
    pub fn new(policy: ThrottlePolicy) -> Throttle {
        Throttle {
            policy,
            maps: Mutex::new(Maps::default()),
        }
    }

    /// How long this login attempt must wait, if at all.
    pub fn check(&self, account: &str, source: IpAddr) -> Option<Duration> {
        let maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        wait_left(maps.accounts.get(account), now).max(wait_left(maps.sources.get(&source), now))
    }

    pub fn failed(&self, account: &str, source: IpAddr) {
        let mut maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let policy = self.policy;
        let bump = |f: &mut Failures| {
            f.count += 1;
            f.last = now;
            if f.count > policy.free {
                let exp = (f.count - policy.free - 1).min(16);
                f.until = now + (policy.first * 2u32.pow(exp)).min(policy.max);
            }
        };
        let fresh = Failures {
            count: 0,
            until: now,
            last: now,
        };
        bump(
            maps.accounts
                .entry(account.chars().take(64).collect())
                .or_insert(fresh),
        );
        bump(maps.sources.entry(source).or_insert(fresh));
        let cap = policy.capacity;
        prune(&mut maps.accounts, cap);
        prune(&mut maps.sources, cap);
    }

    pub fn succeeded(&self, account: &str, source: IpAddr) {
        let mut maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        maps.accounts.remove(account);
        maps.sources.remove(&source);
    }
}

fn prune<K: Clone + std::hash::Hash + Eq>(map: &mut HashMap<K, Failures>, cap: usize) {
    if map.len() <= cap {
        return;
    }
    let mut by_age: Vec<(K, Instant)> = map.iter().map(|(k, f)| (k.clone(), f.last)).collect();
    by_age.sort_by_key(|(_, t)| *t);
    for (k, _) in by_age.into_iter().take(map.len() - cap) {
        map.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 2, 2));

    #[test]
    fn delays_start_after_the_free_failures_and_grow() {
        let t = Throttle::new(ThrottlePolicy::LOGIN);
        for _ in 0..5 {
            assert!(t.check("alice", IP).is_none());
            t.failed("alice", IP);
        }
        assert!(t.check("alice", IP).is_none(), "five failures are free");
        t.failed("alice", IP);
        let first = t.check("alice", IP).unwrap();
        t.failed("alice", IP);
        let second = t.check("alice", IP).unwrap();
        assert!(second > first, "{first:?} then {second:?}");
        assert!(
            t.check("bob", IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 2, 3)))
                .is_none(),
            "others are not held back"
        );
    }

    #[test]
    fn the_wait_doubles_from_the_first_delay_and_stops_at_the_cap() {
        let t = Throttle::new(ThrottlePolicy::LOGIN);
        for _ in 0..5 {
            t.failed("alice", IP);
        }
        let mut waits = vec![];
        for _ in 0..12 {
            t.failed("alice", IP);
            waits.push(t.check("alice", IP).unwrap().as_secs_f64());
        }
        // Each figure is a little under its delay (time passes between failing and checking).
        for (got, want) in waits
            .iter()
            .zip([2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0])
        {
            assert!(*got <= want && *got > want - 0.5, "{waits:?}");
        }
        assert!(
            waits[8..].iter().all(|w| *w > 299.5 && *w <= 300.0),
            "{waits:?}"
        );
    }

    #[test]
    fn unknown_names_are_throttled_the_same_way() {
        let t = Throttle::new(ThrottlePolicy::LOGIN);
        for _ in 0..6 {
            t.failed("ghost", IP);
        }
        assert!(t
            .check("ghost", IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 9)))
            .is_some());
    }

    #[test]
    fn memory_is_bounded() {
        let t = Throttle::new(ThrottlePolicy {
            capacity: 10,
            ..ThrottlePolicy::LOGIN
        });
        for i in 0..100 {
            t.failed(
                &format!("name{i}"),
                IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 3, i)),
            );
        }
        let maps = t.maps.lock().unwrap();
        assert_eq!((maps.accounts.len(), maps.sources.len()), (10, 10));
    }

    #[test]
    fn a_success_clears_the_count_for_the_account_and_the_source() {
        let t = Throttle::new(ThrottlePolicy::LOGIN);
        for _ in 0..5 {
            t.failed("alice", IP);
        }
        t.succeeded("alice", IP);
        for _ in 0..5 {
            t.failed("alice", IP);
        }
        assert!(
            t.check("alice", IP).is_none(),
            "five failures after a success are free again"
        );
        t.failed("alice", IP);
        assert!(t.check("alice", IP).is_some());
    }
}
