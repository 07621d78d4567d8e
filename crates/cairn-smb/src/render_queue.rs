//! One renderer at a time. A change through the API, the repair timer and the storage manager all ask for a
//! render; asks that arrive while one runs are folded into the next, which reads the settings when it starts.
//! So renders never overlap, never apply older settings after newer ones (a disabled user is never enabled
//! again by a render that read the settings before the change), and a burst of changes costs a few renders.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A request's place in line: served once a render that started after it has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// The bookkeeping of requests and renders, without threads or time, so the rules are tested on their own.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Coalescer {
    requested: u64,
    served: u64,
    running: bool,
}

impl Coalescer {
    /// Records a request; the ticket says when it is served.
    pub fn request(&mut self) -> Ticket {
        self.requested += 1;
        Ticket(self.requested)
    }

    /// The render to run now, if one is due and none is running. It serves every request made so far,
    /// because it reads the settings after this point; requests made while it runs wait for the next one.
    pub fn start(&mut self) -> Option<Ticket> {
        if self.running || self.served == self.requested {
            return None;
        }
        self.running = true;
        Some(Ticket(self.requested))
    }

    /// The render that `start` returned `upto` for has finished (applied, or failed and logged: the repair
    /// timer tries again).
    pub fn finish(&mut self, upto: Ticket) {
        self.running = false;
        self.served = self.served.max(upto.0);
    }

    /// Whether a render that started after `ticket` was taken has finished.
    pub fn served(&self, ticket: Ticket) -> bool {
        self.served >= ticket.0
    }
}

/// The shared queue: cheap to clone, one worker thread runs [`RenderQueue::run`], anyone may request.
#[derive(Debug, Clone, Default)]
pub struct RenderQueue {
    shared: Arc<(Mutex<Coalescer>, Condvar)>,
}

impl RenderQueue {
    pub fn new() -> RenderQueue {
        RenderQueue::default()
    }

    fn state(&self) -> MutexGuard<'_, Coalescer> {
        self.shared.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks for a render without waiting for it (the timer, the storage manager).
    pub fn request(&self) -> Ticket {
        let ticket = self.state().request();
        self.shared.1.notify_all();
        ticket
    }

    /// Waits until `ticket` is served or `deadline` passes; returns whether it was served.
    pub fn wait(&self, ticket: Ticket, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        let mut state = self.state();
        while !state.served(ticket) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .1
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Asks for a render and waits until one that reads the settings as they are now has been applied, so
    /// a client told "done" finds the change served.
    pub fn request_and_wait(&self, deadline: Duration) -> bool {
        let ticket = self.request();
        self.wait(ticket, deadline)
    }

    /// The worker: runs `render` whenever requests are due, one at a time, and at least every
    /// `repair_every` to put back files changed behind Cairn's back. Never returns.
    pub fn run(&self, mut render: impl FnMut(), repair_every: Duration) -> ! {
        let mut state = self.state();
        loop {
            if let Some(upto) = state.start() {
                drop(state);
                render();
                state = self.state();
                state.finish(upto);
                self.shared.1.notify_all();
                continue;
            }
            let (next, timeout) = self
                .shared
                .1
                .wait_timeout(state, repair_every)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            if timeout.timed_out() {
                state.request();
            }
        }
    }
}
