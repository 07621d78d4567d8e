//! How much each share's folder holds, measured in the background and kept with its time.
//!
//! Counting a folder walks every entry in it: seconds to minutes on a big volume of a small box. No request
//! waits for that walk: one walker thread (never more, and not one of the runtime's few blocking threads
//! that logins and settings commits need) measures every share in a round, periodically
//! ([`REFRESH_EVERY`]) and when asked; the Shares page shows the last figures with their age and asks for a
//! new round when they are older than [`STALE_AFTER`]; the API asks for a round and waits for it at most
//! [`FRESH_WAIT`], else answers the last figure with its time.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// Entries walked at most when measuring one share (beyond: shown as a floor).
const WALK_LIMIT: usize = 100_000;
/// Every share is measured again this often while nobody asks.
const REFRESH_EVERY: Duration = Duration::from_secs(15 * 60);
/// A page shown with figures older than this asks for a new round (and shows the old ones meanwhile).
const STALE_AFTER: Duration = Duration::from_secs(60);
/// How long the API waits for a round it asked for before answering the last figure.
const FRESH_WAIT: Duration = Duration::from_secs(2);

/// Every share by name with the folder it names, if its volume is mounted; `None` when there is nothing to
/// measure any more (the app is gone).
pub(crate) type Places = Option<Vec<(String, Option<PathBuf>)>>;

/// How much a share's folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShareUsage {
    /// Bytes counted; `complete` is false when the count stopped at its limit (then a floor).
    Counted { bytes: u64, complete: bool },
    /// The volume is mounted but the folder is not made yet.
    NoFolder,
    /// The share's volume is not mounted (missing, being created).
    VolumeUnavailable,
}

/// A share's usage and when it was measured (seconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Figure {
    pub usage: ShareUsage,
    pub measured_s: u64,
}

#[derive(Default)]
struct State {
    figures: BTreeMap<String, Figure>,
    /// Highest round someone asked for; rounds are numbered from 1.
    wanted: u64,
    /// The round being walked.
    running: Option<u64>,
    /// The last round finished.
    done: u64,
}

/// The figures and the walker that makes them; one per app (shared with its walker thread).
#[derive(Default)]
pub(crate) struct ShareUsages {
    state: Mutex<State>,
    wake: Condvar,
    /// The last round finished, for requests waiting on one.
    rounds: OnceLock<tokio::sync::watch::Sender<u64>>,
    walker: OnceLock<()>,
}

impl ShareUsages {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn rounds(&self) -> &tokio::sync::watch::Sender<u64> {
        self.rounds.get_or_init(|| tokio::sync::watch::channel(0).0)
    }

    /// Asks for a round that starts after now; returns its number.
    fn ask(&self) -> u64 {
        let mut s = self.state();
        // A round already walking may have passed the folder that changed: the next one is wanted.
        let round = s.running.unwrap_or(s.done) + 1;
        s.wanted = s.wanted.max(round);
        self.wake.notify_one();
        round
    }
}

impl ShareUsages {
    /// Starts the walker the first time figures are wanted; `places` says where the shares are each round.
    pub(crate) fn start(self: &Arc<Self>, places: impl Fn() -> Places + Send + 'static) {
        self.walker.get_or_init(|| {
            let usages = self.clone();
            if let Err(e) = std::thread::Builder::new()
                .name("share-usage".into())
                .spawn(move || walk_rounds(&usages, places))
            {
                log::error!("share usage will not be measured: {e}");
            }
        });
    }

    /// The last figures of `names` (`None`: not measured yet), for a page: answers at once, and asks for a
    /// new round when a figure is missing or older than [`STALE_AFTER`].
    pub(crate) fn last(&self, names: &[&str]) -> Vec<Option<Figure>> {
        let now = cairn_accounts::now_s();
        let figures: Vec<Option<Figure>> = {
            let s = self.state();
            names.iter().map(|n| s.figures.get(*n).copied()).collect()
        };
        let stale = figures
            .iter()
            .any(|f| f.is_none_or(|f| now.saturating_sub(f.measured_s) > STALE_AFTER.as_secs()));
        if stale {
            self.ask();
        }
        figures
    }

    /// A figure of share `name` measured after this call if the walker gets to it within [`FRESH_WAIT`],
    /// else the last one (`None`: never measured).
    pub(crate) async fn fresh(&self, name: &str) -> Option<Figure> {
        let round = self.ask();
        let mut rounds = self.rounds().subscribe();
        let _ = tokio::time::timeout(FRESH_WAIT, rounds.wait_for(|done| *done >= round)).await;
        self.state().figures.get(name).copied()
    }
}

/// The walker: a round whenever one is wanted or [`REFRESH_EVERY`] passed, until `places` says the app is
/// gone.
fn walk_rounds(usages: &ShareUsages, places: impl Fn() -> Places) {
    loop {
        let round = {
            let mut s = usages.state();
            if s.wanted <= s.done {
                s = usages
                    .wake
                    .wait_timeout_while(s, REFRESH_EVERY, |s| s.wanted <= s.done)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            let round = s.done + 1;
            s.wanted = s.wanted.max(round);
            s.running = Some(round);
            round
        };
        let Some(places) = places() else {
            return;
        };
        let measured_s = cairn_accounts::now_s();
        let figures: BTreeMap<String, Figure> = places
            .into_iter()
            .map(|(name, dir)| {
                let usage = measure(dir);
                (name, Figure { usage, measured_s })
            })
            .collect();
        {
            let mut s = usages.state();
            s.figures = figures;
            s.running = None;
            s.done = round;
        }
        usages.rounds().send_replace(round);
    }
}

fn measure(dir: Option<PathBuf>) -> ShareUsage {
    match dir {
        None => ShareUsage::VolumeUnavailable,
        Some(dir) if !dir.is_dir() => ShareUsage::NoFolder,
        Some(dir) => {
            let (bytes, complete) = cairn_storage::manager::used_bytes(&dir, WALK_LIMIT);
            ShareUsage::Counted { bytes, complete }
        }
    }
}

/// "just now", "12 s ago", "3 min ago": how old a figure is, as the pages say it.
pub(crate) fn age(seconds: u64) -> String {
    match seconds {
        0..=4 => "just now".into(),
        5..=59 => format!("{seconds} s ago"),
        60..=3599 => format!("{} min ago", seconds / 60),
        3600..=86_399 => format!("{} h ago", seconds / 3600),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn folder_with(bytes: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), vec![1u8; bytes]).unwrap();
        dir
    }

    #[test]
    fn a_page_never_waits_for_a_walk_and_sees_the_figure_with_its_time_once_measured() {
        let dir = folder_with(64 * 1024);
        let usages = Arc::new(ShareUsages::default());
        // The walk of each round waits until the test lets it go: a folder that takes long to count.
        let (go, gate) = mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let path = dir.path().to_path_buf();
        usages.start(move || {
            gate.lock().unwrap().recv().ok()?;
            Some(vec![
                ("photos".into(), Some(path.clone())),
                ("gone".into(), None),
            ])
        });
        let started = std::time::Instant::now();
        assert_eq!(usages.last(&["photos", "gone"]), vec![None, None]);
        assert!(started.elapsed() < Duration::from_millis(100));
        go.send(()).unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(10);
        let figures = loop {
            let f = usages.last(&["photos", "gone"]);
            if f[0].is_some() {
                break f;
            }
            assert!(std::time::Instant::now() < until, "never measured");
            std::thread::sleep(Duration::from_millis(10));
        };
        let photos = figures[0].unwrap();
        assert!(
            matches!(photos.usage, ShareUsage::Counted { bytes, complete: true } if bytes >= 64 * 1024),
            "{photos:?}"
        );
        assert!(cairn_accounts::now_s() - photos.measured_s < 5);
        assert_eq!(figures[1].unwrap().usage, ShareUsage::VolumeUnavailable);
        drop(go);
    }

    #[tokio::test]
    async fn the_api_waits_a_moment_for_a_fresh_figure_and_no_longer() {
        let dir = folder_with(0);
        let usages = Arc::new(ShareUsages::default());
        let (slow, walks) = (
            Arc::new(std::sync::atomic::AtomicBool::new(false)),
            Arc::new(std::sync::atomic::AtomicU64::new(0)),
        );
        let (path, is_slow, count) = (dir.path().to_path_buf(), slow.clone(), walks.clone());
        usages.start(move || {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if is_slow.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(FRESH_WAIT * 2);
            }
            Some(vec![("docs".into(), Some(path.clone()))])
        });
        let first = usages
            .fresh("docs")
            .await
            .expect("measured within the wait");
        std::fs::write(dir.path().join("new"), vec![1u8; 32 * 1024]).unwrap();
        let second = usages.fresh("docs").await.expect("measured again");
        match (first.usage, second.usage) {
            (ShareUsage::Counted { bytes: a, .. }, ShareUsage::Counted { bytes: b, .. }) => {
                assert!(
                    b >= a + 32 * 1024,
                    "{a} then {b}: the file written between is counted"
                )
            }
            other => panic!("{other:?}"),
        }
        slow.store(true, std::sync::atomic::Ordering::SeqCst);
        let started = std::time::Instant::now();
        let third = usages.fresh("docs").await;
        assert!(started.elapsed() < FRESH_WAIT + Duration::from_millis(500));
        assert_eq!(
            third,
            Some(second),
            "the last figure, with its time, when a walk takes longer"
        );
        assert!(walks.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(age(0), "just now");
        assert_eq!(age(42), "42 s ago");
        assert_eq!(age(180), "3 min ago");
        assert_eq!(age(7300), "2 h ago");
        assert_eq!(age(200_000), "2 days ago");
    }
}
