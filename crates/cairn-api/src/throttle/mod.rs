//! The gate every password check passes (login, and the current password on `PATCH /api/v1/me`).
//!
//! In order, each refusal costing no hashing: the [`ledger`]'s wait for this account from this source, or
//! for this source over all accounts (`429 session.rate_limited`); one check in flight per source
//! (`429 session.login_in_progress`); then a short bounded wait for this account's one slot and for one of a
//! few hashing permits (`503 session.busy`). An admitted attempt is counted before its password is hashed.
//! The hash runs with the [`Attempt`] moved into it, so the slots are held until the hashing really ends,
//! even when the client hangs up. Applied to every name tried, existing or not, so it reveals nothing about
//! which accounts exist. The console (`cairn ctl` over the control socket) checks no passwords and never
//! meets this gate.

mod ledger;
#[cfg(test)]
mod tests;

pub use ledger::{Ledger, Source, ThrottlePolicy};

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How much password hashing may run and wait at once.
#[derive(Debug, Clone, Copy)]
pub struct HashQueue {
    /// Hashes running at once at most: each takes a core for most of a second on a NAS board. Never more
    /// than half the cores (at least one), so hashing alone cannot stall SMB and storage, and on a single
    /// core one check never shares it with another.
    pub concurrent: usize,
    /// Attempts waiting for a slot at most; beyond, refused at once.
    pub waiting: usize,
    /// The longest an attempt waits for its account's slot and a hashing permit.
    pub wait: Duration,
}

impl HashQueue {
    /// Two hashes on a 4-core board, one on smaller ones. A PBKDF2 check at 600,000
    /// rounds takes ~0.5-1 s on such a board but ~12 s under QEMU's emulation of one; the wait must cover
    /// the owner queued behind one other check of the same account on either, hence 30 s. Sixteen waiters
    /// are at most eight checks' time per permit; anyone beyond is refused at once.
    pub const LOGIN: HashQueue = HashQueue {
        concurrent: 2,
        waiting: 16,
        wait: Duration::from_secs(30),
    };
}

impl HashQueue {
    /// Hashes allowed at once on a machine with `cores`.
    fn permits(&self, cores: usize) -> usize {
        self.concurrent.min(cores / 2).max(1)
    }
}

/// Why an attempt was refused before any hashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many attempts at this account from this source, or from this source: wait this long.
    Throttled(Duration),
    /// This source already has a password being checked.
    InFlight,
    /// Hashing is at its bound: try again after this long.
    Busy(Duration),
}

/// What the password check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Right,
    Wrong,
    /// The check failed for another reason; the attempt stays counted.
    Unknown,
}

/// The attempts being checked now.
#[derive(Default)]
struct InFlight {
    sources: HashSet<Source>,
    /// One permit each: one check per account at a time. Dropped when nobody holds or awaits it.
    accounts: HashMap<String, Arc<Semaphore>>,
}

/// The login throttle and hashing queue of one daemon.
pub struct Throttle {
    ledger: Mutex<Ledger>,
    in_flight: Mutex<InFlight>,
    hashing: Arc<Semaphore>,
    waiting: AtomicUsize,
    /// Clean attempts (nothing counted for their source) waiting for a hashing permit.
    clean_waiting: AtomicUsize,
    queue: HashQueue,
    /// Passwords checked since start, for the log line each check writes.
    checked: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Releases a waiter's place in the queue however the wait ends.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Throttle {
    /// The gate for this machine (its number of cores sets how many hashes run at once).
    pub fn new(policy: ThrottlePolicy, queue: HashQueue) -> Throttle {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Throttle::on_cores(policy, queue, cores)
    }

    fn on_cores(policy: ThrottlePolicy, queue: HashQueue, cores: usize) -> Throttle {
        Throttle {
            ledger: Mutex::new(Ledger::new(policy)),
            in_flight: Mutex::new(InFlight::default()),
            hashing: Arc::new(Semaphore::new(queue.permits(cores))),
            waiting: AtomicUsize::new(0),
            clean_waiting: AtomicUsize::new(0),
            queue,
            checked: AtomicU64::new(0),
        }
    }

    /// Admits one password check of `account` from `ip`, counted from now on, or refuses it without hashing.
    /// `what` names the check in the log ("login", "current password").
    pub async fn admit(
        self: &Arc<Self>,
        account: &str,
        ip: IpAddr,
        what: &'static str,
    ) -> Result<Attempt, Refusal> {
        let source = Source::of(ip);
        let clean = {
            let ledger = lock(&self.ledger);
            if let Some(wait) = ledger.wait(account, source, Instant::now()) {
                return Err(Refusal::Throttled(wait));
            }
            ledger.is_clean(account, source)
        };
        let account_slot = {
            let mut f = lock(&self.in_flight);
            if !f.sources.insert(source) {
                return Err(Refusal::InFlight);
            }
            f.accounts
                .entry(account.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(1)))
                .clone()
        };
        let mut attempt = Attempt {
            throttle: self.clone(),
            account: account.to_string(),
            source,
            what,
            _slots: None,
        };
        let slots = self.slots(account_slot, clean).await?;
        attempt._slots = Some(slots);
        // Counted before hashing: a burst that got past the checks above still counts in full.
        let now = Instant::now();
        let mut ledger = lock(&self.ledger);
        if let Some(wait) = ledger.wait(account, source, now) {
            return Err(Refusal::Throttled(wait));
        }
        ledger.count(account, source, now);
        Ok(attempt)
    }

    /// This account's slot and a hashing permit, within the queue's bounds. A `clean` attempt (its source
    /// has nothing counted) goes first: past a queue full of guessers (up to as many again) and ahead of them
    /// for the next permit, so a flood from many addresses does not keep the owner waiting or refused.
    async fn slots(
        &self,
        account_slot: Arc<Semaphore>,
        clean: bool,
    ) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), Refusal> {
        let busy = Refusal::Busy(self.queue.wait.max(Duration::from_secs(1)));
        let room = if clean {
            2 * self.queue.waiting
        } else {
            self.queue.waiting
        };
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= room {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(busy);
        }
        let _place = Waiting(&self.waiting);
        let hashing = self.hashing.clone();
        let clean_waiting = &self.clean_waiting;
        let both = async move {
            let account = account_slot.acquire_owned().await.ok()?;
            // Counted only once the account's slot is held: a guesser holding that slot must not yield to us.
            let _first = clean.then(|| {
                clean_waiting.fetch_add(1, Ordering::SeqCst);
                Waiting(clean_waiting)
            });
            loop {
                let hash = hashing.clone().acquire_owned().await.ok()?;
                if clean || clean_waiting.load(Ordering::SeqCst) == 0 {
                    return Some((account, hash));
                }
                // A clean attempt waits: hand the permit on and queue again.
                drop(hash);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        match tokio::time::timeout(self.queue.wait, both).await {
            Ok(Some(slots)) => Ok(slots),
            _ => Err(busy),
        }
    }

    /// Entries the ledger holds: (account and source pairs, sources).
    #[cfg(test)]
    fn remembered(&self) -> (usize, usize) {
        lock(&self.ledger).len()
    }

    /// Accounts with a slot allocated now (only while an attempt holds or awaits one).
    #[cfg(test)]
    fn account_slots(&self) -> usize {
        lock(&self.in_flight).accounts.len()
    }
}

/// An admitted password check: holds its source's place, its account's slot and a hashing permit until it is
/// dropped. Move it into the blocking task that hashes, and [`finish`](Attempt::finish) it there.
pub struct Attempt {
    throttle: Arc<Throttle>,
    account: String,
    source: Source,
    what: &'static str,
    _slots: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
}

impl Attempt {
    /// Records what the check found, and logs it (an auth log line per password checked).
    pub fn finish(self, verdict: Verdict) {
        let t = &self.throttle;
        let n = t.checked.fetch_add(1, Ordering::SeqCst) + 1;
        match verdict {
            Verdict::Right => lock(&t.ledger).right(&self.account, self.source),
            Verdict::Wrong => lock(&t.ledger).wrong(&self.account, self.source, Instant::now()),
            Verdict::Unknown => {}
        }
        log::info!(
            "password check #{n} ({}) for {:?} from {}: {}",
            self.what,
            self.account,
            self.source,
            match verdict {
                Verdict::Right => "right",
                Verdict::Wrong => "wrong",
                Verdict::Unknown => "not completed",
            }
        );
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        // The permits go first, so an idle account's slot is seen as unused and forgotten.
        self._slots = None;
        let mut f = lock(&self.throttle.in_flight);
        f.sources.remove(&self.source);
        if f.accounts
            .get(&self.account)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            f.accounts.remove(&self.account);
        }
    }
}
