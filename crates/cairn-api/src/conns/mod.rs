//! Connections under attack: who gets one, for how long, and who goes when there are too many.
//!
//! A LAN host can open connections and never finish a request (slowloris), trickle a body, or hold idle
//! keep-alive connections; left alone, a thousand of them use up the daemon's descriptors and memory and the
//! owner cannot get in. Every accepted stream (plain TCP, and TLS beside it) is admitted here first
//! ([`Connections::admit`]) and then served by [`serve_accepted`], so the same caps and deadlines hold for
//! both:
//! - **Caps**: at most [`ConnPolicy::max_total`] open connections, and [`ConnPolicy::max_per_source`] from one
//!   source (an IPv4 address, or an IPv6 /64: one host can use its whole /64).
//! - **Who goes**: a new connection over a cap closes the connection that has waited longest for its client
//!   (for a first request, for the rest of a head or body, or idle between requests) from the same source,
//!   or, for the global cap, from the source holding the most; never-answered ones go before idle ones. Only
//!   connections that were given their chance qualify: the server read everything that had arrived and still
//!   waits for more (or, not read yet, they are older than [`ConnPolicy::grace`]). A client that sends its
//!   request at once therefore always gets in and is served, even from a source at its cap (an owner behind
//!   the same NAT as the attacker, or on the same IPv6 /64), and a request whose head and body arrived is
//!   never cut. With nothing to close, the newcomer gets a `503` with a code.
//! - **Deadlines**: the request head within [`ConnPolicy::head_timeout`] (else `408` with the API's error
//!   body), the body within [`ConnPolicy::body_timeout`] (`408` through the normal error path, see
//!   [`crate::http::read_body`]), and an idle keep-alive connection is closed after
//!   [`ConnPolicy::idle_timeout`].
//!
//! Tested on the host by `tests/conns.rs` (the real server on loopback, sources told apart by 127.0.0.x) and
//! under QEMU by `tests/tests/conns.rs` (a thousand slow connections while the owner logs in).

mod serve;

pub(crate) use serve::refusal_answer;
pub use serve::serve_accepted;
pub(crate) use serve::serve_admitted;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The numbers of the connection policy.
#[derive(Debug, Clone, Copy)]
pub struct ConnPolicy {
    /// Open connections in all.
    pub max_total: usize,
    /// Open connections from one source (IPv4 address or IPv6 /64).
    pub max_per_source: usize,
    /// From the first byte of a request (or the connection's opening) to the end of its head.
    pub head_timeout: Duration,
    /// From the end of the head to the end of the body.
    pub body_timeout: Duration,
    /// An answered connection with no new request is closed after this long.
    pub idle_timeout: Duration,
    /// A connection the server has not read yet (just accepted, or in a TLS handshake) is not closed to make
    /// room before it is this old in its state.
    pub grace: Duration,
}

impl ConnPolicy {
    /// The box on a home LAN, 256 MB of memory. A browser opens at most 6 connections to a host and a
    /// household a few dozen, so 64 per source never bites a person (an IPv6 /64 is the whole home LAN), and
    /// one source can hold at most a quarter of the 256 in all. 256 stays far from the daemon's 1024
    /// descriptors, and at worst (every connection holding a full 16 KiB head buffer and a 64 KiB body) costs
    /// 20 MiB; idle ones cost a few KiB each. A head is a few hundred bytes and a body at most 64 KiB: 10 s is
    /// plenty on a slow Wi-Fi link (64 KiB in 10 s is 52 kbit/s), and a total deadline (not per byte) defeats
    /// trickling. Browsers reuse an idle connection within seconds; 30 s keeps that and frees the rest. A
    /// connection is read within milliseconds of its accept; a second is ample and bounds a TLS handshake.
    pub const LAN: ConnPolicy = ConnPolicy {
        max_total: 256,
        max_per_source: 64,
        head_timeout: Duration::from_secs(10),
        body_timeout: crate::http::BODY_TIMEOUT,
        idle_timeout: Duration::from_secs(30),
        grace: Duration::from_secs(1),
    };
}

/// Largest request head (and read buffer) a connection keeps: hyper's default (400 KiB) would let 256
/// trickled heads take 100 MiB.
pub(crate) const HEAD_BUFFER: usize = 16 * 1024;

pub use crate::source::Source;

/// Where a connection is in its life; what it may be closed for depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Accepted (and, for TLS, being set up); no byte of a request yet.
    Opened,
    /// Bytes of a request head arrived, the head is not complete.
    Head,
    /// The head is in; the body is being read.
    Body,
    /// The request is whole and being answered: never cut to make room.
    Working,
    /// Answered; waiting for the next request on the kept-alive connection.
    Idle,
}

#[derive(Debug, Clone, Copy)]
struct SlotState {
    phase: Phase,
    since: Instant,
    evicted: bool,
    /// The last read found nothing more: the server waits for the client.
    waiting: bool,
}

/// One open connection as the registry and its own task see it.
pub(crate) struct Slot {
    id: u64,
    source: Source,
    state: Mutex<SlotState>,
    /// Wakes the connection's task: it was chosen to make room, or its deadline moved.
    attention: Notify,
}

/// What a connection's deadline means when it passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// Not yet.
    No,
    /// A request head is incomplete: answer 408 and close.
    SlowHead,
    /// Nothing was asked (never, or since the last answer), or a body was not read: close quietly.
    Quiet,
}

impl Slot {
    fn state(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, phase: Phase) {
        let mut s = self.state();
        s.phase = phase;
        s.since = Instant::now();
        s.waiting = false;
    }

    /// A read found nothing: everything the client sent so far is read.
    pub(crate) fn read_pending(&self) {
        self.state().waiting = true;
    }

    /// Bytes arrived: the start of a request head if the connection was waiting for one.
    pub(crate) fn bytes_arrived(&self) {
        let mut s = self.state();
        s.waiting = false;
        if matches!(s.phase, Phase::Opened | Phase::Idle) {
            s.phase = Phase::Head;
            s.since = Instant::now();
        }
    }

    /// The head is complete; the handler reads a body next if the method has one.
    pub(crate) fn request_started(&self, has_body: bool) {
        self.set(if has_body {
            Phase::Body
        } else {
            Phase::Working
        });
    }

    /// A chunk of a streamed body arrived: the body deadline counts from now (per chunk, not per body).
    pub(crate) fn body_progress(&self) {
        let mut s = self.state();
        if s.phase == Phase::Body {
            s.since = Instant::now();
        }
    }

    /// The body is read (or refused): the request is being worked on.
    pub(crate) fn body_read(&self) {
        let mut s = self.state();
        if s.phase == Phase::Body {
            s.phase = Phase::Working;
            s.since = Instant::now();
            s.waiting = false;
        }
    }

    /// The answer is handed to the connection: the idle deadline starts.
    pub(crate) fn answered(&self) {
        self.set(Phase::Idle);
        self.attention.notify_one();
    }

    pub(crate) fn evicted(&self) -> bool {
        self.state().evicted
    }

    /// When this connection's current state runs out, if it can.
    pub(crate) fn deadline(&self, policy: &ConnPolicy) -> Option<Instant> {
        let s = *self.state();
        match s.phase {
            Phase::Opened | Phase::Head => Some(s.since + policy.head_timeout),
            // read_body answers 408 at body_timeout; this only catches a body nobody reads.
            Phase::Body => Some(s.since + policy.body_timeout + Duration::from_secs(2)),
            Phase::Working => None,
            Phase::Idle => Some(s.since + policy.idle_timeout),
        }
    }

    pub(crate) fn expiry(&self, policy: &ConnPolicy, now: Instant) -> Expiry {
        if self.deadline(policy).is_none_or(|d| now < d) {
            return Expiry::No;
        }
        match self.state().phase {
            Phase::Head => Expiry::SlowHead,
            _ => Expiry::Quiet,
        }
    }

    /// Whether closing it now cuts no request in work: it waits, or reads slowly, or idles.
    pub(crate) fn may_be_cut(&self) -> bool {
        self.state().phase != Phase::Working
    }

    /// Its rank as a candidate to close: lower goes first. `None` when it is not one.
    fn candidacy(&self, now: Instant, grace: Duration) -> Option<(u8, Instant)> {
        let s = *self.state();
        if s.evicted || s.phase == Phase::Working {
            return None;
        }
        if !s.waiting && now.saturating_duration_since(s.since) < grace {
            // Not read yet: what it sent may be a whole request.
            return None;
        }
        // Connections that never finished a request go before idle ones that did.
        let idle = u8::from(s.phase == Phase::Idle);
        Some((idle, s.since))
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its source holds its cap and none of them may be closed yet.
    SourceFull(Source),
    /// All connections are taken and none may be closed yet.
    Full,
}

/// Counts of what the policy did, logged at most every [`REPORT_EVERY`] while it acts.
#[derive(Debug, Default, Clone, Copy)]
struct Report {
    refused: u64,
    evicted: u64,
    timed_out: u64,
}

const REPORT_EVERY: Duration = Duration::from_secs(10);

struct Registry {
    next_id: u64,
    slots: Vec<Arc<Slot>>,
    report: Report,
    reported: Option<Instant>,
}

/// The open connections of every listener, under one [`ConnPolicy`].
pub struct Connections {
    policy: ConnPolicy,
    registry: Mutex<Registry>,
}

/// An admitted connection's place; dropping it (the connection ended) frees the place.
pub struct Ticket {
    slot: Arc<Slot>,
    conns: Arc<Connections>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut r = self.conns.registry();
        if let Some(i) = r.slots.iter().position(|s| s.id == self.slot.id) {
            r.slots.swap_remove(i);
        }
    }
}

impl Connections {
    pub fn new(policy: ConnPolicy) -> Arc<Connections> {
        Arc::new(Connections {
            policy,
            registry: Mutex::new(Registry {
                next_id: 0,
                slots: Vec::new(),
                report: Report::default(),
                reported: None,
            }),
        })
    }

    pub fn policy(&self) -> &ConnPolicy {
        &self.policy
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open connections now (those being closed to make room not counted).
    pub fn open(&self) -> usize {
        self.registry()
            .slots
            .iter()
            .filter(|s| !s.evicted())
            .count()
    }

    /// Admits a connection from `peer`, closing another one if a cap is reached (see the module comment).
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Ticket, Refused> {
        let now = Instant::now();
        let source = Source::of(peer.ip());
        let mut r = self.registry();
        let mut per_source: HashMap<Source, usize> = HashMap::new();
        for s in r.slots.iter().filter(|s| !s.evicted()) {
            *per_source.entry(s.source).or_default() += 1;
        }
        let total: usize = per_source.values().sum();
        let mine = per_source.get(&source).copied().unwrap_or(0);
        let victim = if mine >= self.policy.max_per_source {
            let v = self.pick(&r.slots, now, |s| s.source == source, |_| 0);
            Some(v.ok_or(Refused::SourceFull(source)))
        } else if total >= self.policy.max_total {
            // From the source that holds the most.
            let v = self.pick(
                &r.slots,
                now,
                |_| true,
                |s| usize::MAX - per_source.get(&s.source).copied().unwrap_or(0),
            );
            Some(v.ok_or(Refused::Full))
        } else {
            None
        };
        let victim = match victim {
            Some(Err(refused)) => {
                r.report.refused += 1;
                self.maybe_report(&mut r, now);
                return Err(refused);
            }
            Some(Ok(v)) => Some(v),
            None => None,
        };
        if let Some(v) = victim {
            v.state().evicted = true;
            v.attention.notify_one();
            r.report.evicted += 1;
            self.maybe_report(&mut r, now);
        }
        r.next_id += 1;
        let slot = Arc::new(Slot {
            id: r.next_id,
            source,
            state: Mutex::new(SlotState {
                phase: Phase::Opened,
                since: now,
                evicted: false,
                waiting: false,
            }),
            attention: Notify::new(),
        });
        r.slots.push(slot.clone());
        Ok(Ticket {
            slot,
            conns: self.clone(),
        })
    }

    /// The connection to close among those `within` selects: by `first` (lower goes first), then
    /// never-answered before idle, then the one longest in its state.
    fn pick(
        &self,
        slots: &[Arc<Slot>],
        now: Instant,
        within: impl Fn(&Slot) -> bool,
        first: impl Fn(&Slot) -> usize,
    ) -> Option<Arc<Slot>> {
        slots
            .iter()
            .filter(|s| within(s))
            .filter_map(|s| {
                s.candidacy(now, self.policy.grace)
                    .map(|(idle, since)| ((first(s), idle, since), s))
            })
            .min_by_key(|(rank, _)| *rank)
            .map(|(_, s)| s.clone())
    }

    /// A request head that ran out of time.
    pub(crate) fn note_timeout(&self) {
        let mut r = self.registry();
        r.report.timed_out += 1;
        self.maybe_report(&mut r, Instant::now());
    }

    /// One log line per [`REPORT_EVERY`] while the policy acts, never one per connection: under attack a
    /// line per connection would itself be the flood.
    fn maybe_report(&self, r: &mut Registry, now: Instant) {
        if r.reported
            .is_some_and(|t| now.duration_since(t) < REPORT_EVERY)
        {
            return;
        }
        let Report {
            refused,
            evicted,
            timed_out,
        } = std::mem::take(&mut r.report);
        let mut per_source: HashMap<Source, usize> = HashMap::new();
        for s in &r.slots {
            *per_source.entry(s.source).or_default() += 1;
        }
        let busiest = per_source
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(s, n)| format!("; busiest source {s} holds {n}"))
            .unwrap_or_default();
        log::warn!(
            "connections: {} open of {}{busiest}; since the last report {refused} refused, {evicted} closed to make room, {timed_out} too slow",
            r.slots.len(),
            self.policy.max_total,
        );
        r.reported = Some(now);
    }
}

impl Ticket {
    pub(crate) fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }

    pub(crate) fn conns(&self) -> &Arc<Connections> {
        &self.conns
    }
}

#[cfg(test)]
mod tests;
