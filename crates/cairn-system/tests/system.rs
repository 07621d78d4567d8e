//! The system rules on the host, over a real settings store and a recording fake machine: what is applied to
//! the interface and when, across rollbacks, daemon restarts and power cuts.

use cairn_system::host::{HostCall, Recorder, Workstation};
use cairn_system::{Facts, Mode, NetworkSettings, PowerAction, System, SystemError};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Bench {
    _dir: tempfile::TempDir,
    store: cairn_store::Store,
}

fn bench() -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let store = cairn_store::Store::open(&dir.path().join("settings.db")).unwrap();
    Bench { _dir: dir, store }
}

fn facts() -> Facts {
    Facts {
        interface: "lan0".into(),
        default_hostname: "boxname".into(),
    }
}

/// The daemon starting on `store` with `host` (a new process: a fresh `System`).
fn start(store: &cairn_store::Store, host: &Arc<Recorder>, window: Duration) -> System {
    let system = System::new(store.clone(), host.clone(), facts()).unwrap();
    system.set_trial_window(window);
    system.restore_at_start();
    system
}

fn fixed(address: &str) -> NetworkSettings {
    NetworkSettings {
        mode: Mode::Static,
        address: Some(address.parse().unwrap()),
        prefix: Some(24),
        gateway: Some("192.168.1.1".parse().unwrap()),
        dns: vec![],
    }
}

/// Polls `what` until it holds or `within` passes.
fn eventually(within: Duration, what: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if what() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    what()
}

#[test]
fn an_unconfirmed_change_is_applied_then_rolled_back_by_itself() {
    let b = bench();
    let host = Arc::new(Recorder::default());
    let system = start(&b.store, &host, Duration::from_millis(300));
    let trial = system.change_network(fixed("192.168.1.20")).unwrap();
    assert_eq!(
        host.interface(),
        Some(fixed("192.168.1.20")),
        "applied at once"
    );
    assert_eq!(system.network().pending.unwrap().settings, trial.settings);
    assert!(
        eventually(Duration::from_secs(3), || host.interface()
            == Some(NetworkSettings::default())),
        "the previous settings (DHCP) are applied again: {:?}",
        host.calls()
    );
    assert!(system.network().pending.is_none());
    assert_eq!(system.confirmed_network().mode, Mode::Dhcp);
}

#[test]
fn a_confirmed_change_stays_and_a_late_rollback_never_undoes_it() {
    let b = bench();
    let host = Arc::new(Recorder::default());
    let system = start(&b.store, &host, Duration::from_millis(200));
    system.change_network(fixed("192.168.1.20")).unwrap();
    assert_eq!(system.confirm_network().unwrap(), fixed("192.168.1.20"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(host.interface(), Some(fixed("192.168.1.20")));
    assert_eq!(system.confirmed_network(), fixed("192.168.1.20"));
    assert!(matches!(
        system.confirm_network(),
        Err(SystemError::NothingToConfirm)
    ));
}

#[test]
fn a_daemon_restart_during_a_trial_keeps_the_trial_until_its_deadline() {
    let b = bench();
    let first = Arc::new(Recorder::default());
    let system = start(&b.store, &first, Duration::from_secs(2));
    system.change_network(fixed("192.168.1.20")).unwrap();
    // The daemon restarts in the same boot: the interface still carries the trial settings.
    drop(system);
    let second = Arc::new(Recorder::default());
    let restarted = start(&b.store, &second, Duration::from_secs(2));
    assert!(restarted.network().pending.is_some(), "still confirmable");
    assert!(
        second.interface().is_none(),
        "the trial settings are not applied again, nor rolled back early: {:?}",
        second.calls()
    );
    // Unconfirmed, the restarted daemon itself rolls back when the time is up.
    assert!(eventually(Duration::from_secs(5), || second.interface()
        == Some(NetworkSettings::default())));
    assert!(restarted.network().pending.is_none());
}

#[test]
fn a_daemon_restart_after_the_deadline_rolls_back_at_once() {
    let b = bench();
    let first = Arc::new(Recorder::default());
    // A window under a second: the deadline (in whole seconds) is already over at the restart.
    let system = start(&b.store, &first, Duration::from_millis(100));
    let static_a = fixed("192.168.1.20");
    system.change_network(static_a.clone()).unwrap();
    system.confirm_network().unwrap();
    system.change_network(fixed("192.168.1.30")).unwrap();
    drop(system);
    let second = Arc::new(Recorder::default());
    let restarted = start(&b.store, &second, Duration::from_secs(100));
    assert!(restarted.network().pending.is_none());
    assert_eq!(second.interface(), Some(static_a));
}

#[test]
fn a_power_cut_during_a_trial_brings_back_the_confirmed_settings() {
    let b = bench();
    let host = Arc::new(Recorder::default());
    let system = start(&b.store, &host, Duration::from_secs(60));
    let confirmed = fixed("192.168.1.20");
    system.change_network(confirmed.clone()).unwrap();
    system.confirm_network().unwrap();
    system.change_network(fixed("192.168.1.30")).unwrap();
    host.reboot();
    let after = start(&b.store, &host, Duration::from_secs(60));
    assert!(after.network().pending.is_none(), "the trial is over");
    assert_eq!(host.interface(), Some(confirmed));
    assert_eq!(
        host.calls()
            .iter()
            .filter(|c| matches!(c, HostCall::Network(_)))
            .count(),
        1,
        "applied once: {:?}",
        host.calls()
    );
}

#[test]
fn invalid_settings_are_refused_and_nothing_is_applied_or_stored() {
    let b = bench();
    let host = Arc::new(Recorder::default());
    let system = start(&b.store, &host, Duration::from_secs(60));
    let mut bad = fixed("192.168.1.20");
    bad.gateway = Some("10.9.9.9".parse().unwrap());
    assert!(matches!(
        system.change_network(bad),
        Err(SystemError::NetworkInvalid(_))
    ));
    assert!(host.interface().is_none());
    assert!(system.network().pending.is_none());
}

#[test]
fn the_host_name_defaults_from_the_board_and_a_new_one_is_stored_then_applied() {
    let b = bench();
    let host = Arc::new(Recorder::default());
    let system = start(&b.store, &host, Duration::from_secs(60));
    assert_eq!(system.hostname(), "boxname");
    assert_eq!(host.calls(), vec![HostCall::Hostname("boxname".into())]);
    assert_eq!(system.set_hostname(" Attic-NAS ").unwrap(), "attic-nas");
    assert!(matches!(
        system.set_hostname("attic nas"),
        Err(SystemError::HostnameInvalid(_))
    ));
    assert_eq!(system.hostname(), "attic-nas");
    assert_eq!(
        system.own_names(),
        vec!["attic-nas", "attic-nas.local", "localhost"]
    );
    host.reboot();
    start(&b.store, &host, Duration::from_secs(60));
    assert_eq!(host.calls(), vec![HostCall::Hostname("attic-nas".into())]);
}

#[test]
fn power_goes_to_the_machine_only_where_the_daemon_controls_it() {
    let b = bench();
    let host = Arc::new(Recorder::default());
    let system = start(&b.store, &host, Duration::from_secs(60));
    system.power(PowerAction::Reboot).unwrap();
    assert_eq!(
        host.calls().last(),
        Some(&HostCall::Power(PowerAction::Reboot))
    );
    let workstation = System::new(b.store.clone(), Arc::new(Workstation), facts()).unwrap();
    assert!(matches!(
        workstation.power(PowerAction::PowerOff),
        Err(SystemError::PowerUnavailable)
    ));
}
