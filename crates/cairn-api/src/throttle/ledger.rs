//! The counts behind the login throttle: password checks per (account, source) and per source, and the waits
//! they earn. Pure state over a clock the caller passes in, so every rule is tested without sleeping.
//!
//! An attempt is counted when it is admitted, before its password is hashed; a right password takes back
//! that account's count (and only that account's share of its source's count). There is deliberately no
//! count per account alone: it would let any host on the LAN lock the owner out with a few wrong guesses.

pub use crate::source::Source;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How counted attempts turn into waiting.
#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    /// Attempts at one account from one source before any wait.
    pub free_per_account: u32,
    /// Attempts from one source at all accounts together before any wait (guessing across many names).
    pub free_per_source: u32,
    /// First wait; doubles with each further attempt.
    pub first: Duration,
    pub max: Duration,
    /// Entries remembered at most in each table (the least recently counted goes first), so a host
    /// rotating through addresses or names cannot grow the state without limit.
    pub capacity: usize,
}

impl ThrottlePolicy {
    /// Five tries at one account from one place cover a person's typos; ten over all accounts let a shared
    /// computer's users mistype too. Past that the wait doubles from 2 s to 5 min: a guesser gets about a dozen
    /// tries an hour per account and address. 4096 entries of ~150 bytes each cap each table near 600 KiB.
    pub const LOGIN: ThrottlePolicy = ThrottlePolicy {
        free_per_account: 5,
        free_per_source: 10,
        first: Duration::from_secs(2),
        max: Duration::from_secs(300),
        capacity: 4096,
    };

    /// The wait after the `count`th attempt when `free` come without one: none before the last free attempt,
    /// `first` after it, doubling with each attempt since, up to `max`.
    fn wait_after(&self, count: u32, free: u32) -> Duration {
        if count < free {
            return Duration::ZERO;
        }
        let doublings = (count - free).min(16);
        (self.first * 2u32.pow(doublings)).min(self.max)
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    count: u32,
    until: Instant,
    last: Instant,
}

impl Entry {
    fn wait(&self, now: Instant) -> Option<Duration> {
        self.until
            .checked_duration_since(now)
            .filter(|d| !d.is_zero())
    }
}

/// Account names are kept at most this long (longer ones are never valid names anyway).
const NAME_KEPT: usize = 64;

/// The two tables and their policy.
pub struct Ledger {
    policy: ThrottlePolicy,
    pairs: HashMap<(String, Source), Entry>,
    sources: HashMap<Source, Entry>,
}

fn key(account: &str, source: Source) -> (String, Source) {
    (account.chars().take(NAME_KEPT).collect(), source)
}

impl Ledger {
    pub fn new(policy: ThrottlePolicy) -> Ledger {
        Ledger {
            policy,
            pairs: HashMap::new(),
            sources: HashMap::new(),
        }
    }

    /// How long an attempt at `account` from `source` must still wait, if at all.
    pub fn wait(&self, account: &str, source: Source, now: Instant) -> Option<Duration> {
        let pair = self
            .pairs
            .get(&key(account, source))
            .and_then(|e| e.wait(now));
        let all = self.sources.get(&source).and_then(|e| e.wait(now));
        pair.max(all)
    }

    /// Whether nothing is counted for `source`, at any account: the owner's computer, typically.
    pub fn is_clean(&self, account: &str, source: Source) -> bool {
        !self.sources.contains_key(&source) && !self.pairs.contains_key(&key(account, source))
    }

    /// Counts an admitted attempt (before its password is checked) and starts the wait it earns.
    pub fn count(&mut self, account: &str, source: Source, now: Instant) {
        let p = self.policy;
        bump(
            &mut self.pairs,
            key(account, source),
            now,
            &p,
            p.free_per_account,
        );
        bump(&mut self.sources, source, now, &p, p.free_per_source);
    }

    /// The password was wrong: the wait runs from now, when the answer is known, not from admission.
    pub fn wrong(&mut self, account: &str, source: Source, now: Instant) {
        let p = self.policy;
        if let Some(e) = self.pairs.get_mut(&key(account, source)) {
            e.until = e.until.max(now + p.wait_after(e.count, p.free_per_account));
        }
        if let Some(e) = self.sources.get_mut(&source) {
            e.until = e.until.max(now + p.wait_after(e.count, p.free_per_source));
        }
    }

    /// The password was right: this account's attempts from this source are forgotten, and taken out of the
    /// source's count; its attempts at other accounts still count.
    pub fn right(&mut self, account: &str, source: Source) {
        let Some(pair) = self.pairs.remove(&key(account, source)) else {
            return;
        };
        if let Some(e) = self.sources.get_mut(&source) {
            e.count = e.count.saturating_sub(pair.count);
            if e.count == 0 {
                self.sources.remove(&source);
            } else {
                e.until = e.last + self.policy.wait_after(e.count, self.policy.free_per_source);
            }
        }
    }

    /// Entries held now: (account and source pairs, sources).
    #[cfg(test)]
    pub fn len(&self) -> (usize, usize) {
        (self.pairs.len(), self.sources.len())
    }
}

/// Counts one attempt in `map`; when the map is full, the least recently counted entry makes room.
fn bump<K: Clone + std::hash::Hash + Eq>(
    map: &mut HashMap<K, Entry>,
    k: K,
    now: Instant,
    policy: &ThrottlePolicy,
    free: u32,
) {
    if !map.contains_key(&k) && map.len() >= policy.capacity {
        // A linear scan, only when full; attempts are counted at hashing speed (a few a second).
        if let Some(oldest) = map
            .iter()
            .min_by_key(|(_, e)| e.last)
            .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }
    let e = map.entry(k).or_insert(Entry {
        count: 0,
        until: now,
        last: now,
    });
    e.count += 1;
    e.last = now;
    e.until = e.until.max(now + policy.wait_after(e.count, free));
}
