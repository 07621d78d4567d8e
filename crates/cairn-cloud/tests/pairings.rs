//! Pairing codes on a real settings store: all or nothing, bounded, and removable at once.

use cairn_cloud::pairings::{Outgoing, CLOCK_FLOOR_S, MAX_PENDING, MAX_PER_HOUR, VALID_S};
use cairn_cloud::{normalise, CloudError, PairingState, Pairings};
use cairn_store::Store;

const NOW: u64 = CLOCK_FLOOR_S + 1_000_000;

fn pairings() -> (tempfile::TempDir, Store, Pairings) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("settings.db")).unwrap();
    let p = Pairings::new(store.clone()).unwrap();
    (dir, store, p)
}

#[test]
fn a_code_is_stored_with_its_real_expiry_and_only_as_a_hash() {
    let (_d, store, p) = pairings();
    let issued = p.issue(NOW).unwrap();
    assert!(normalise(&issued.code).is_some(), "{}", issued.code);
    assert_eq!(issued.pairing.expires_s, NOW + VALID_S);
    let listed = p.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, PairingState::Pending);
    assert_eq!(listed[0].expires_s, NOW + VALID_S);
    let everything = String::from_utf8_lossy(&store.export().unwrap().to_bytes()).into_owned();
    assert!(
        !everything.contains(&issued.code),
        "the code itself is never stored"
    );
    assert!(!everything.contains(&issued.code.replace('-', "")));
    let outbox = p.outbox().unwrap();
    assert!(
        matches!(&outbox[..], [(_, Outgoing::Offer { id, expires_s, .. })] if *id == issued.pairing.id && *expires_s == NOW + VALID_S)
    );
}

#[test]
fn without_a_known_clock_nothing_is_issued_or_stored() {
    let (_d, _s, p) = pairings();
    for now in [0, 86_400 * 365, CLOCK_FLOOR_S - 1] {
        assert!(matches!(p.issue(now), Err(CloudError::ClockUnknown { .. })));
    }
    assert!(p.list().unwrap().is_empty());
    assert!(p.outbox().unwrap().is_empty());
}

#[test]
fn pending_codes_and_the_rate_are_bounded() {
    let (_d, _s, p) = pairings();
    for i in 0..MAX_PENDING as u64 {
        p.issue(NOW + i).unwrap();
    }
    assert!(matches!(p.issue(NOW + 10), Err(CloudError::TooManyPending)));
    assert_eq!(
        p.list().unwrap().len(),
        MAX_PENDING,
        "a refused issue stores nothing"
    );
    // Expired codes no longer count as waiting, but the hourly rate still does.
    let later = NOW + VALID_S + 1;
    let mut second = vec![];
    for i in 0..(MAX_PER_HOUR - MAX_PENDING) as u64 {
        second.push(p.issue(later + i).unwrap());
    }
    // Removing codes frees their places but not the hour's count.
    p.remove(&second[0].pairing.id).unwrap();
    match p.issue(later + 100) {
        Err(CloudError::RateLimited { retry_after_s }) => {
            assert!(retry_after_s > 0 && retry_after_s <= 3600)
        }
        other => panic!("{other:?}"),
    }
    p.issue(NOW + 3600 + VALID_S + 10).unwrap();
}

#[test]
fn a_pairing_is_removed_at_once_and_the_relay_is_told_to_forget_it() {
    let (_d, _s, p) = pairings();
    let kept = p.issue(NOW).unwrap();
    let gone = p.issue(NOW + 1).unwrap();
    // The offer was sent and acknowledged for the first code; the second's is still queued.
    let (first_key, _) = p.outbox().unwrap().into_iter().next().unwrap();
    p.acknowledge(&first_key).unwrap();
    p.remove(&gone.pairing.id).unwrap();
    p.remove(&kept.pairing.id).unwrap();
    assert!(p.list().unwrap().is_empty());
    let ops: Vec<Outgoing> = p.outbox().unwrap().into_iter().map(|(_, o)| o).collect();
    assert_eq!(
        ops,
        vec![
            Outgoing::Unpair {
                id: gone.pairing.id.clone()
            },
            Outgoing::Unpair {
                id: kept.pairing.id.clone()
            },
        ],
        "the unsent offer went with its pairing; both unpairings wait for the relay"
    );
    assert!(matches!(
        p.remove(&kept.pairing.id),
        Err(CloudError::NoSuchPairing(_))
    ));
    assert!(matches!(
        p.remove("../../etc"),
        Err(CloudError::NoSuchPairing(_))
    ));
}
