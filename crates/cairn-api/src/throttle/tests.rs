use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const LAN_HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2));
const OWNERS_PC: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 15));

fn src(ip: IpAddr) -> Source {
    Source::of(ip)
}

/// `n` wrong attempts at `account` from `ip`, each admitted and answered at `now`.
fn wrong(l: &mut Ledger, account: &str, ip: IpAddr, n: u32, now: Instant) {
    for _ in 0..n {
        assert_eq!(l.wait(account, src(ip), now), None, "{account} held back");
        l.count(account, src(ip), now);
        l.wrong(account, src(ip), now);
    }
}

#[test]
fn five_attempts_pass_then_the_wait_doubles_to_its_cap() {
    let mut l = Ledger::new(ThrottlePolicy::LOGIN);
    let now = Instant::now();
    wrong(&mut l, "owner", LAN_HOST, 4, now);
    assert_eq!(l.wait("owner", src(LAN_HOST), now), None, "four are free");
    let mut waits = vec![];
    for _ in 0..12 {
        l.count("owner", src(LAN_HOST), now);
        waits.push(l.wait("owner", src(LAN_HOST), now).unwrap().as_secs());
    }
    assert_eq!(
        waits,
        [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300, 300],
        "the fifth attempt earns the first wait"
    );
}

#[test]
fn the_wait_runs_from_the_answer_not_from_admission() {
    let mut l = Ledger::new(ThrottlePolicy::LOGIN);
    let t0 = Instant::now();
    wrong(&mut l, "owner", LAN_HOST, 4, t0);
    l.count("owner", src(LAN_HOST), t0);
    // The hash took 3 s: the 2 s wait it earned starts when the answer is known.
    let answered = t0 + Duration::from_secs(3);
    l.wrong("owner", src(LAN_HOST), answered);
    assert_eq!(
        l.wait("owner", src(LAN_HOST), answered + Duration::from_secs(1)),
        Some(Duration::from_secs(1))
    );
}

#[test]
fn one_hosts_guesses_never_hold_back_the_owner_from_another_address() {
    let mut l = Ledger::new(ThrottlePolicy::LOGIN);
    let now = Instant::now();
    for _ in 0..9 {
        l.count("owner", src(LAN_HOST), now);
    }
    assert!(l.wait("owner", src(LAN_HOST), now).is_some());
    assert_eq!(l.wait("owner", src(OWNERS_PC), now), None);
    assert_eq!(
        l.wait("alice", src(OWNERS_PC), now),
        None,
        "nor anyone else from there"
    );
}

#[test]
fn guesses_spread_over_many_names_hold_back_their_source() {
    let mut l = Ledger::new(ThrottlePolicy::LOGIN);
    let now = Instant::now();
    for i in 0..10 {
        wrong(&mut l, &format!("guess{i}"), LAN_HOST, 1, now);
    }
    assert!(l.wait("never-tried", src(LAN_HOST), now).is_some());
    assert_eq!(l.wait("never-tried", src(OWNERS_PC), now), None);
}

#[test]
fn a_right_password_forgets_only_that_accounts_attempts() {
    let mut l = Ledger::new(ThrottlePolicy::LOGIN);
    let now = Instant::now();
    for i in 0..7 {
        wrong(&mut l, &format!("guess{i}"), LAN_HOST, 1, now);
    }
    wrong(&mut l, "owner", LAN_HOST, 2, now);
    l.count("owner", src(LAN_HOST), now);
    l.right("owner", src(LAN_HOST));
    // Seven attempts at other names still count: three more (ten in all) and the source waits.
    wrong(&mut l, "guess7", LAN_HOST, 2, now);
    assert_eq!(l.wait("guess8", src(LAN_HOST), now), None);
    wrong(&mut l, "guess8", LAN_HOST, 1, now);
    assert!(
        l.wait("guess9", src(LAN_HOST), now).is_some(),
        "the owner's login wiped the source's other failures"
    );
    assert_eq!(
        l.wait("owner", src(LAN_HOST), now + Duration::from_secs(2)),
        None,
        "the source's wait ends"
    );
}

#[test]
fn ipv6_sources_count_by_their_64() {
    let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
    let same_64: IpAddr = "2001:db8:1:2:ffff:1234:5678:9abc".parse().unwrap();
    let next_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(src(a), src(same_64));
    assert_ne!(src(a), src(next_64));
    assert_eq!(src(a).to_string(), "2001:db8:1:2::/64");
    let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 2, 2).to_ipv6_mapped());
    assert_eq!(src(mapped), src(LAN_HOST), "IPv4 over a dual-stack socket");
    assert_ne!(
        src(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        src(IpAddr::V4(Ipv4Addr::LOCALHOST))
    );

    let mut l = Ledger::new(ThrottlePolicy::LOGIN);
    let now = Instant::now();
    wrong(&mut l, "owner", a, 5, now);
    assert!(l.wait("owner", src(same_64), now).is_some());
    assert_eq!(l.wait("owner", src(next_64), now), None);
}

#[test]
fn rotating_names_and_addresses_cannot_grow_the_state_past_its_cap() {
    let mut l = Ledger::new(ThrottlePolicy {
        capacity: 10,
        ..ThrottlePolicy::LOGIN
    });
    let start = Instant::now();
    for i in 0..1000u32 {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        l.count(
            &format!("name{i}"),
            src(ip),
            start + Duration::from_millis(i.into()),
        );
    }
    assert_eq!(l.len(), (10, 10));
    // The least recently counted went; the newest are still there.
    let last = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + 999));
    l.count("name999", src(last), start + Duration::from_secs(2));
    assert_eq!(l.len(), (10, 10));
}

/// A gate on a machine with cores enough for every permit the queue asks for.
fn gate(queue: HashQueue) -> Arc<Throttle> {
    Arc::new(Throttle::on_cores(ThrottlePolicy::LOGIN, queue, 64))
}

const ROOMY: HashQueue = HashQueue {
    concurrent: 4,
    waiting: 64,
    wait: Duration::from_secs(30),
};

#[tokio::test]
async fn of_parallel_attempts_from_one_source_one_is_checked_and_the_rest_refused_at_once() {
    let t = gate(ROOMY);
    let started = Instant::now();
    // Forty arrive while the first is being checked (each kept, so none ends before the others arrive).
    let mut all = Vec::new();
    for _ in 0..40 {
        all.push(t.admit("owner", LAN_HOST, "login").await);
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refusals wait for nothing"
    );
    let admitted: Vec<Attempt> = all.into_iter().filter_map(Result::ok).collect();
    assert_eq!(admitted.len(), 1);
    assert_eq!(t.remembered(), (1, 1), "one attempt counted");
    assert_eq!(
        t.admit("owner", LAN_HOST, "login").await.err(),
        Some(Refusal::InFlight)
    );
    assert!(
        t.admit("alice", LAN_HOST, "login").await.is_err(),
        "one check per source, whatever the account"
    );
    drop(admitted);
    assert!(t.admit("owner", LAN_HOST, "login").await.is_ok());
}

#[tokio::test]
async fn an_attempt_is_counted_before_its_password_is_checked() {
    let t = gate(ROOMY);
    for _ in 0..5 {
        let a = t.admit("owner", LAN_HOST, "login").await.unwrap();
        drop(a); // the check never reported back (a dropped connection): it still counted
    }
    match t.admit("owner", LAN_HOST, "login").await {
        Err(Refusal::Throttled(wait)) => assert!(wait <= Duration::from_secs(2)),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(t.remembered(), (1, 1), "a refusal adds nothing");
}

#[tokio::test]
async fn the_owner_queues_behind_another_sources_check_of_the_same_account() {
    let t = gate(ROOMY);
    let theirs = t.admit("owner", LAN_HOST, "login").await.unwrap();
    let t2 = t.clone();
    let mine = tokio::spawn(async move { t2.admit("owner", OWNERS_PC, "login").await.is_ok() });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!mine.is_finished(), "one check per account at a time");
    theirs.finish(Verdict::Wrong);
    assert!(mine.await.unwrap(), "admitted once the other check ended");
    assert_eq!(t.account_slots(), 0, "an idle account's slot is forgotten");
}

#[tokio::test]
async fn hashing_beyond_its_bound_is_refused_as_busy_without_counting() {
    let t = gate(HashQueue {
        concurrent: 2,
        waiting: 1,
        wait: Duration::from_millis(200),
    });
    let ip = |n: u8| IpAddr::V4(Ipv4Addr::new(10, 0, 3, n));
    // The last two have guessed before (a clean source would be let past a full queue).
    for n in [3, 4] {
        t.admit("earlier", ip(n), "login")
            .await
            .unwrap()
            .finish(Verdict::Wrong);
    }
    let _a = t.admit("a", ip(1), "login").await.unwrap();
    let _b = t.admit("b", ip(2), "login").await.unwrap();
    let t2 = t.clone();
    let queued = tokio::spawn(async move { t2.admit("c", ip(3), "login").await.err() });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    assert!(matches!(
        t.admit("d", ip(4), "login").await.err(),
        Some(Refusal::Busy(_))
    ));
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "the queue is full: refused at once"
    );
    assert!(
        matches!(queued.await.unwrap(), Some(Refusal::Busy(_))),
        "a waiter gives up after the bounded wait"
    );
    assert_eq!(t.remembered(), (4, 4), "refusals for busy count nothing");
    assert_eq!(t.waiting.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_right_password_reported_by_the_check_clears_its_account() {
    let t = gate(ROOMY);
    for _ in 0..4 {
        t.admit("owner", OWNERS_PC, "login")
            .await
            .unwrap()
            .finish(Verdict::Wrong);
    }
    t.admit("owner", OWNERS_PC, "login")
        .await
        .unwrap()
        .finish(Verdict::Right);
    assert_eq!(t.remembered(), (0, 0));
}

#[test]
fn hashing_takes_at_most_half_the_cores() {
    let q = HashQueue::LOGIN;
    assert_eq!(
        [1, 2, 3, 4, 8].map(|cores| q.permits(cores)),
        [1, 1, 1, 2, 2]
    );
}

#[tokio::test]
async fn a_clean_source_goes_ahead_of_guessers_waiting_for_hashing() {
    let t = gate(HashQueue {
        concurrent: 1,
        waiting: 2,
        wait: Duration::from_secs(5),
    });
    let ip = |n: u8| IpAddr::V4(Ipv4Addr::new(10, 0, 3, n));
    // Two guessers with something counted, one checking now, one waiting; the queue is full for guessers.
    for n in [1, 2] {
        let a = t.admit("target", ip(n), "login").await.unwrap();
        a.finish(Verdict::Wrong);
    }
    let running = t.admit("target", ip(1), "login").await.unwrap();
    let t2 = t.clone();
    let guesser = tokio::spawn(async move { t2.admit("x", ip(2), "login").await.is_ok() });
    let t3 = t.clone();
    let third = tokio::spawn(async move { t3.admit("y", ip(3), "login").await.is_ok() });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t4 = t.clone();
    let owner = tokio::spawn(async move { t4.admit("owner", OWNERS_PC, "login").await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(running);
    let owner = tokio::time::timeout(Duration::from_secs(2), owner)
        .await
        .expect("the owner went ahead")
        .unwrap()
        .expect("admitted");
    assert!(
        !guesser.is_finished(),
        "the guesser waits for the owner's check"
    );
    drop(owner);
    assert!(guesser.await.unwrap());
    assert!(
        third.await.unwrap(),
        "a fresh source's first try is clean too"
    );
}
