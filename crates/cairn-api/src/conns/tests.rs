use super::*;

fn peer(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 40000)
}

fn policy(total: usize, per_source: usize) -> ConnPolicy {
    ConnPolicy {
        max_total: total,
        max_per_source: per_source,
        grace: Duration::ZERO,
        ..ConnPolicy::LAN
    }
}

#[test]
fn sources_are_ipv4_addresses_and_ipv6_64s_and_mapped_ipv4_counts_as_ipv4() {
    let of = |s: &str| Source::of(s.parse().unwrap());
    assert_eq!(of("192.168.1.5"), of("::ffff:192.168.1.5"));
    assert_ne!(of("::ffff:192.168.1.5"), of("::ffff:192.168.1.6"));
    assert_eq!(
        of("2001:db8:1:2::1"),
        of("2001:db8:1:2:ffff:ffff:ffff:ffff")
    );
    assert_ne!(of("2001:db8:1:2::1"), of("2001:db8:1:3::1"));
    assert_eq!(of("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    assert_eq!(of("::ffff:10.0.2.2").to_string(), "10.0.2.2");
}

#[test]
fn a_source_at_its_cap_loses_its_oldest_waiting_connection_first() {
    let conns = Connections::new(policy(100, 3));
    let a: Vec<Ticket> = (0..3)
        .map(|_| conns.admit(peer("10.0.0.1")).unwrap())
        .collect();
    // The oldest has answered a request and idles; the others never finished one.
    a[0].slot().request_started(false);
    a[0].slot().answered();
    a[2].slot().request_started(false);
    let b = conns.admit(peer("10.0.0.1")).unwrap();
    assert!(
        a[1].slot().evicted(),
        "the never-answered waiting one goes first"
    );
    assert!(!a[0].slot().evicted() && !a[2].slot().evicted());
    b.slot().request_started(false);
    let c = conns.admit(peer("10.0.0.1")).unwrap();
    assert!(a[0].slot().evicted(), "then the idle one");
    c.slot().request_started(true);
    c.slot().body_read();
    assert_eq!(
        conns.admit(peer("10.0.0.1")).err(),
        Some(Refused::SourceFull(Source::of("10.0.0.1".parse().unwrap()))),
        "connections at work are never cut"
    );
    assert!(!a[2].slot().evicted() && !b.slot().evicted() && !c.slot().evicted());
    assert_eq!(conns.open(), 3);
    // Another source is not touched by this one's cap.
    assert!(conns.admit(peer("10.0.0.2")).is_ok());
}

#[test]
fn the_global_cap_takes_from_the_source_holding_the_most() {
    let conns = Connections::new(policy(4, 3));
    let big: Vec<Ticket> = (0..3)
        .map(|_| conns.admit(peer("10.0.0.1")).unwrap())
        .collect();
    let small = conns.admit(peer("10.0.0.2")).unwrap();
    let owner = conns.admit(peer("10.0.0.3")).unwrap();
    assert!(big[0].slot().evicted(), "the biggest source's oldest");
    assert!(!small.slot().evicted() && !owner.slot().evicted());
    drop(big);
    assert_eq!(conns.open(), 2);
}

#[test]
fn young_connections_are_spared_and_then_the_newcomer_is_refused() {
    let conns = Connections::new(ConnPolicy {
        max_total: 10,
        max_per_source: 2,
        grace: Duration::from_secs(60),
        ..ConnPolicy::LAN
    });
    let _a = conns.admit(peer("10.0.0.1")).unwrap();
    let _b = conns.admit(peer("10.0.0.1")).unwrap();
    assert!(matches!(
        conns.admit(peer("10.0.0.1")),
        Err(Refused::SourceFull(_))
    ));
}

#[test]
fn deadlines_follow_the_phase() {
    let conns = Connections::new(ConnPolicy::LAN);
    let t = conns.admit(peer("10.0.0.1")).unwrap();
    let s = t.slot();
    let later = |d: Duration| Instant::now() + d;
    assert_eq!(s.expiry(&ConnPolicy::LAN, Instant::now()), Expiry::No);
    assert_eq!(
        s.expiry(&ConnPolicy::LAN, later(Duration::from_secs(11))),
        Expiry::Quiet,
        "nothing was ever asked: closed without an answer"
    );
    s.bytes_arrived();
    assert_eq!(
        s.expiry(&ConnPolicy::LAN, later(Duration::from_secs(11))),
        Expiry::SlowHead
    );
    s.request_started(true);
    assert_eq!(
        s.expiry(&ConnPolicy::LAN, later(Duration::from_secs(11))),
        Expiry::No,
        "the body reader answers 408 itself"
    );
    s.body_read();
    assert_eq!(s.deadline(&ConnPolicy::LAN), None);
    s.answered();
    assert_eq!(
        s.expiry(&ConnPolicy::LAN, later(Duration::from_secs(29))),
        Expiry::No
    );
    assert_eq!(
        s.expiry(&ConnPolicy::LAN, later(Duration::from_secs(31))),
        Expiry::Quiet
    );
}
