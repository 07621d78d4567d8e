use super::*;
use cairn_bootenv::BootState;
use serde_json::json;
use std::path::Path;

const TRIES: u8 = 3;
const SIZE: usize = 0x4000;
/// A boot of the committed slot A that proved healthy.
const A_COMMITTED: Outcome = Outcome::Committed {
    slot: Slot::A,
    trial: false,
};

/// Scripted probes: each check answers what the test set, and every call is counted.
struct Fake {
    healthy_after: Option<usize>,
    rounds: usize,
    settings_available: bool,
    config: Option<ConfigState>,
    volumes: Vec<String>,
    smb: bool,
    versions: [Option<String>; 2],
    reboots: usize,
}

impl Fake {
    fn healthy() -> Fake {
        Fake {
            healthy_after: Some(0),
            rounds: 0,
            settings_available: true,
            config: Some(ConfigState::Mounted {
                device: "/dev/vda4".into(),
            }),
            volumes: vec![],
            smb: true,
            versions: [Some("0.1.0".into()), Some("0.2.0".into())],
            reboots: 0,
        }
    }

    fn never_healthy() -> Fake {
        Fake {
            healthy_after: None,
            ..Fake::healthy()
        }
    }
}

impl Probes for Fake {
    fn dashboard(&mut self) -> Result<Value, String> {
        self.rounds += 1;
        match self.healthy_after {
            Some(n) if self.rounds > n => Ok(
                json!({"version": "0.2.0", "settings": {"available": self.settings_available, "message": "the settings database does not open"}}),
            ),
            _ => Err("connect 127.0.0.1:80: connection refused".into()),
        }
    }
    fn config_state(&mut self) -> Option<ConfigState> {
        self.config.clone()
    }
    fn assembled_volumes(&mut self) -> Vec<String> {
        self.volumes.clone()
    }
    fn smb_listening(&mut self) -> bool {
        self.smb
    }
    fn watchdog_fed(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn slot_version(&mut self, slot: Slot) -> Option<String> {
        self.versions[slot.index()].clone()
    }
    fn wait(&mut self, time: Duration) {
        std::thread::sleep(time);
    }
    fn reboot(&mut self) {
        self.reboots += 1;
    }
}

struct TestBox {
    _dir: tempfile::TempDir,
    commit: Commit,
}

impl TestBox {
    /// A box whose boot state is `state` (in copy 1; copy 2 absent, as the first write leaves it).
    fn with(state: BootState) -> TestBox {
        let dir = tempfile::tempdir().unwrap();
        let files = BootFiles::at(
            [
                dir.path().join("boot/env-1/cairn.env"),
                dir.path().join("boot/env-2/cairn.env"),
            ],
            SIZE,
        );
        files.reset(&state).unwrap();
        std::fs::remove_file(files.paths()[1]).unwrap();
        let commit = Commit {
            files,
            tries: TRIES,
            firmware_dir: dir.path().join("config/cairn/firmware"),
            deadline: Duration::from_millis(200),
            poll: Duration::from_millis(10),
            never_healthy: None,
        };
        TestBox { _dir: dir, commit }
    }

    fn state(&self) -> BootState {
        self.commit.files.load().unwrap().state
    }

    fn run(&self, slot: Slot, probes: &mut Fake) -> (Outcome, Vec<String>) {
        let mut lines = Vec::new();
        let booted = Some(Booted { slot, trial: false });
        let outcome = self.commit.run(booted, probes, &mut |l| lines.push(l));
        (outcome, lines)
    }

    /// Power-on under the model of U-Boot's script: one slot picked, its try counted down and stored.
    fn power_on(&self) -> Slot {
        loop {
            let current = self.commit.files.load().unwrap();
            let mut next = current.state.clone();
            let picked = next.uboot_pick(TRIES);
            self.commit.files.store(&current, &next).unwrap();
            if let Some(slot) = picked {
                return slot;
            }
        }
    }

    fn firmware_file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.commit.firmware_dir.join(name)).ok()
    }

    fn last_update(&self) -> Option<Value> {
        self.firmware_file(record::LAST_UPDATE)
            .map(|t| serde_json::from_str(&t).unwrap())
    }
}

fn assert_boot_state(b: &TestBox, order: &[Slot], left: [u8; 2], trial: Option<Slot>) {
    let after = b.state();
    assert_eq!(
        (after.order.as_slice(), after.left, after.trial),
        (order, left, trial)
    );
}

fn state(order: &[Slot], left: [u8; 2], trial: Option<Slot>) -> BootState {
    BootState {
        order: order.to_vec(),
        left,
        seq: 0,
        trial,
    }
}

/// After an install of B: B first, on trial.
fn installed_b() -> BootState {
    state(&[Slot::B, Slot::A], [TRIES, TRIES], Some(Slot::B))
}

#[test]
fn healthy_boot_of_a_committed_slot_gives_it_its_tries_back() {
    let b = TestBox::with(BootState::factory(TRIES));
    assert_eq!(b.power_on(), Slot::A);
    assert_eq!(b.state().left_of(Slot::A), TRIES - 1);
    let (outcome, log) = b.run(Slot::A, &mut Fake::healthy());
    assert_eq!(outcome, A_COMMITTED);
    assert_boot_state(&b, &[Slot::A], [TRIES, 0], None);
    assert!(log.iter().any(|l| l.contains("slot A healthy")), "{log:?}");
    assert_eq!(b.last_update(), None, "no update, nothing to show");
}

#[test]
fn healthy_trial_commits_and_records_it_for_the_dashboard() {
    let b = TestBox::with(installed_b());
    assert_eq!(b.power_on(), Slot::B);
    let mut probes = Fake {
        healthy_after: Some(3),
        ..Fake::healthy()
    };
    let (outcome, log) = b.run(Slot::B, &mut probes);
    assert_eq!(
        outcome,
        Outcome::Committed {
            slot: Slot::B,
            trial: true
        }
    );
    assert_eq!(probes.reboots, 0);
    assert_boot_state(&b, &[Slot::B, Slot::A], [TRIES, TRIES], None);
    let last = b.last_update().unwrap();
    assert_eq!(
        (
            last["slot"].as_str(),
            last["version"].as_str(),
            last["outcome"].as_str()
        ),
        (Some("B"), Some("0.2.0"), Some("committed"))
    );
    assert!(last["at"].as_str().unwrap().ends_with('Z'));
    assert!(
        log.iter().any(|l| l.contains("update committed")),
        "{log:?}"
    );
}

#[test]
fn unhealthy_trial_reboots_at_the_deadline_and_leaves_the_counters_to_uboot() {
    let b = TestBox::with(installed_b());
    b.power_on();
    let before = b.state();
    let mut probes = Fake::never_healthy();
    let started = Instant::now();
    let (outcome, log) = b.run(Slot::B, &mut probes);
    assert_eq!(outcome, Outcome::Rebooting { slot: Slot::B });
    assert!(
        started.elapsed() >= b.commit.deadline,
        "not before the deadline"
    );
    assert_eq!(probes.reboots, 1);
    assert_eq!(b.state(), before, "nothing written");
    assert!(
        log.iter()
            .any(|l| l.contains("not healthy") && l.contains("dashboard does not answer")),
        "{log:?}"
    );
}

#[test]
fn a_trial_that_can_never_be_healthy_reboots_at_once_and_a_committed_slot_is_left_running() {
    let mut b = TestBox::with(installed_b());
    b.commit.deadline = Duration::from_secs(3600);
    b.commit.never_healthy = Some("its services start no management daemon".into());
    b.power_on();
    let before = b.state();
    let mut probes = Fake::never_healthy();
    let (outcome, log) = b.run(Slot::B, &mut probes);
    assert_eq!(outcome, Outcome::Rebooting { slot: Slot::B });
    assert_eq!(probes.reboots, 1);
    assert_eq!(
        b.state(),
        before,
        "nothing written: U-Boot's counters decide"
    );
    assert!(
        log.iter().any(|l| l.contains("can never become healthy")),
        "{log:?}"
    );

    // A committed slot is never rebooted, whatever it lacks: it is what the box falls back to.
    let mut b = TestBox::with(BootState::factory(TRIES));
    b.commit.deadline = Duration::from_millis(50);
    b.commit.never_healthy = Some("its services start no management daemon".into());
    b.power_on();
    let mut probes = Fake::never_healthy();
    let (outcome, _) = b.run(Slot::A, &mut probes);
    assert!(matches!(outcome, Outcome::NotHealthy { .. }), "{outcome:?}");
    assert_eq!(probes.reboots, 0);
}

#[test]
fn unhealthy_committed_slot_is_not_rebooted() {
    let b = TestBox::with(BootState::factory(TRIES));
    b.power_on();
    let mut probes = Fake {
        smb: false,
        ..Fake::healthy()
    };
    let (outcome, _) = b.run(Slot::A, &mut probes);
    assert!(
        matches!(&outcome, Outcome::NotHealthy { slot: Slot::A, problems } if problems.len() == 1 && problems[0].contains("445")),
        "{outcome:?}"
    );
    assert_eq!(probes.reboots, 0);
    assert_eq!(b.state().left_of(Slot::A), TRIES - 1, "not marked good");
}

#[test]
fn trial_that_never_gets_healthy_falls_back_and_is_recorded_once() {
    let b = TestBox::with(installed_b());
    let mut boots = Vec::new();
    for _ in 0..TRIES {
        let slot = b.power_on();
        boots.push(slot);
        assert_eq!(
            b.run(slot, &mut Fake::never_healthy()).0,
            Outcome::Rebooting { slot }
        );
    }
    let slot = b.power_on();
    boots.push(slot);
    let (outcome, log) = b.run(slot, &mut Fake::healthy());
    assert_eq!(boots, [Slot::B, Slot::B, Slot::B, Slot::A]);
    assert_eq!(outcome, A_COMMITTED);
    assert_boot_state(&b, &[Slot::A], [TRIES, 0], None);
    assert_eq!(b.firmware_file(record::FAILED).as_deref(), Some("0.2.0\n"));
    let last = b.last_update().unwrap();
    assert_eq!(
        (
            last["slot"].as_str(),
            last["version"].as_str(),
            last["outcome"].as_str()
        ),
        (Some("B"), Some("0.2.0"), Some("rolled_back"))
    );
    assert!(
        log.iter().any(|l| l.contains("failed its trial")),
        "{log:?}"
    );

    // Later boots see no failure again, and the record stays as it is.
    let recorded = b.firmware_file(record::LAST_UPDATE);
    for _ in 0..2 {
        let slot = b.power_on();
        assert_eq!(b.run(slot, &mut Fake::healthy()).0, A_COMMITTED);
    }
    assert_eq!(b.firmware_file(record::FAILED).as_deref(), Some("0.2.0\n"));
    assert_eq!(b.firmware_file(record::LAST_UPDATE), recorded);
}

#[test]
fn power_cut_after_the_record_and_before_the_boot_state_write_records_the_failure_once() {
    let b = TestBox::with(state(&[Slot::B, Slot::A], [TRIES - 1, 0], Some(Slot::B)));
    // What a first run got through before the power went out.
    record::rolled_back(&b.commit.firmware_dir, Slot::B, Some("0.2.0")).unwrap();
    let (outcome, _) = b.run(Slot::A, &mut Fake::healthy());
    assert_eq!(outcome, A_COMMITTED);
    assert_eq!(b.firmware_file(record::FAILED).as_deref(), Some("0.2.0\n"));
    assert_eq!(b.state().trial, None);
}

#[test]
fn failed_slot_of_unknown_version_is_noted_without_blocking_a_version() {
    let b = TestBox::with(state(&[Slot::B, Slot::A], [TRIES - 1, 0], Some(Slot::B)));
    let mut probes = Fake {
        versions: [None, None],
        ..Fake::healthy()
    };
    b.run(Slot::A, &mut probes);
    assert_eq!(
        b.firmware_file(record::FAILED).as_deref(),
        Some("# slot B: version unknown\n")
    );
    assert_eq!(b.last_update().unwrap()["version"], Value::Null);
}

#[test]
fn both_boot_state_copies_bad_changes_nothing_and_says_why() {
    let b = TestBox::with(BootState::factory(TRIES));
    std::fs::write(b.commit.files.paths()[0], vec![0; SIZE]).unwrap();
    let mut probes = Fake::never_healthy();
    let (outcome, log) = b.run(Slot::A, &mut probes);
    assert_eq!(outcome, Outcome::BootStateUnusable);
    assert_eq!(probes.reboots, 0);
    assert!(
        log.iter()
            .any(|l| l.contains("neither copy of the boot state is usable") && l.contains("CRC")),
        "{log:?}"
    );
    assert_eq!(
        std::fs::read(b.commit.files.paths()[0]).unwrap(),
        vec![0; SIZE],
        "nothing written"
    );
    assert!(!b.commit.files.paths()[1].exists());
}

#[test]
fn a_boot_without_uboot_leaves_the_boot_state_alone() {
    let b = TestBox::with(BootState::factory(TRIES));
    let mut lines = Vec::new();
    let outcome = b.commit.run(
        Booted::from_cmdline("console=ttyAMA0"),
        &mut Fake::healthy(),
        &mut |l| lines.push(l),
    );
    assert_eq!(outcome, Outcome::NotBootedBySlot);
    assert_eq!(b.state(), BootState::factory(TRIES));
}

#[test]
fn a_trial_waits_for_the_volumes_assembled_before_the_update() {
    let b = TestBox::with(installed_b());
    b.power_on();
    record::write_durably(
        &b.commit.firmware_dir.join(record::EXPECTED_VOLUMES),
        b"ca68a636:5e4e790c:c0836396:010fd571\n",
    )
    .unwrap();
    let mut probes = Fake::healthy();
    let (outcome, log) = b.run(Slot::B, &mut probes);
    assert_eq!(outcome, Outcome::Rebooting { slot: Slot::B });
    assert!(
        log.iter()
            .any(|l| l.contains("ca68a636:5e4e790c:c0836396:010fd571")),
        "{log:?}"
    );
    // sysfs spells the same UUID with dashes.
    probes.volumes = vec!["ca68a636-5e4e-790c-c083-6396010fd571".into()];
    assert_eq!(
        b.run(Slot::B, &mut probes).0,
        Outcome::Committed {
            slot: Slot::B,
            trial: true
        }
    );
}

#[test]
fn settings_that_did_not_open_are_not_healthy() {
    let mut probes = Fake {
        settings_available: false,
        ..Fake::healthy()
    };
    let problems = health_problems(&mut probes, None);
    assert_eq!(
        problems,
        ["the daemon has no settings: the settings database does not open"]
    );
    let mut probes = Fake {
        config: Some(ConfigState::Unavailable {
            device: None,
            why: cairn_store::unavailable::Unavailable::NoPartition,
        }),
        ..Fake::healthy()
    };
    assert!(health_problems(&mut probes, None)[0].contains("config partition is unavailable"));
    let mut probes = Fake {
        config: None,
        ..Fake::healthy()
    };
    assert_eq!(health_problems(&mut probes, None).len(), 1);
    assert!(health_problems(&mut Fake::healthy(), Some(vec![])).is_empty());
}

#[test]
fn deadline_comes_from_the_kernel_command_line_or_the_constant() {
    assert_eq!(
        deadline_from_cmdline("console=ttyAMA0 cairn.commit_deadline=20 quiet"),
        Duration::from_secs(20)
    );
    assert_eq!(deadline_from_cmdline("console=ttyAMA0"), DEADLINE);
    assert_eq!(
        deadline_from_cmdline("cairn.commit_deadline=soon"),
        DEADLINE
    );
}

#[test]
fn running_md_arrays_are_read_from_sysfs() {
    let dir = tempfile::tempdir().unwrap();
    for (name, state, uuid) in [
        ("md0", "clean", "ca68a636-5e4e-790c-c083-6396010fd571"),
        ("md1", "inactive", "11111111-0000-0000-0000-000000000000"),
        ("md127", "active", "22222222-0000-0000-0000-000000000000"),
    ] {
        let md = dir.path().join(name).join("md");
        std::fs::create_dir_all(&md).unwrap();
        std::fs::write(md.join("array_state"), format!("{state}\n")).unwrap();
        std::fs::write(md.join("uuid"), format!("{uuid}\n")).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("vda")).unwrap();
    assert_eq!(
        probes::assembled_md_uuids(dir.path()),
        [
            "22222222-0000-0000-0000-000000000000",
            "ca68a636-5e4e-790c-c083-6396010fd571"
        ]
    );
    assert_eq!(
        uuid_key("CA68A636:5e4e790c:c0836396:010fd571"),
        uuid_key("ca68a636-5e4e-790c-c083-6396010fd571")
    );
    assert!(probes::assembled_md_uuids(Path::new("/nonexistent")).is_empty());
}

#[test]
fn watchdog_feed_is_checked_only_where_the_board_has_one() {
    assert!(probes::Feed::new(false).check().is_ok());
    let feed = probes::Feed::new(true);
    assert!(feed.check().unwrap_err().contains("not armed"));
    feed.armed(Duration::from_millis(10));
    feed.petted();
    assert!(feed.check().is_ok());
    std::thread::sleep(Duration::from_millis(1100));
    assert!(feed.check().unwrap_err().contains("last fed"));
}
