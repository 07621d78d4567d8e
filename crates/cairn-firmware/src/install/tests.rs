//! The whole install against temporary files: success, every refusal, and a stop after every step.

use super::testing::*;
use super::*;
use cairn_bootenv::BootState;
use std::fs;

fn run(b: &mut TestBox, bundle: &[u8], options: Options) -> Result<Installed, InstallError> {
    let mut steps = |_: &Step| true;
    install(
        &b.layout,
        &b.settings,
        &["ca68a636:5e4e790c:c0836396:010fd571".to_string()],
        &mut &bundle[..],
        options,
        &mut steps,
    )
}

fn b_untouched(b: &TestBox) {
    assert_eq!(
        fs::read(&b.layout.root_b).unwrap(),
        vec![0u8; SLOT_BYTES as usize]
    );
    assert_eq!(
        b.boot_state(),
        BootState::factory(3),
        "the boot state was not written"
    );
    assert!(!b.layout.boot_dir.join("slot-b").exists());
}

fn b_not_bootable(b: &TestBox) {
    let v = b.boot_state();
    assert!(
        !v.order.contains(&Slot::B) && v.left_of(Slot::B) == 0,
        "{v:?}"
    );
    let s = status::status(&b.layout);
    assert_ne!(s.slots[1].state, "good");
    assert!(s.pending.is_none());
}

#[test]
fn a_bundle_installs_into_the_inactive_slot_and_is_read_back_and_activated() {
    let mut b = new_box();
    let bundle = bundle_for(&b, "0.2.0", "qemu-aarch64-virt");
    let a_before = fs::read(&b.layout.root_a).unwrap();
    let done = run(&mut b, &bundle, Options::default()).unwrap();
    assert_eq!(done.slot, Slot::B);
    assert_eq!(done.version, "0.2.0");
    let root_b = fs::read(&b.layout.root_b).unwrap();
    assert_eq!(&root_b[..root_bytes().len()], &root_bytes()[..]);
    assert_eq!(
        fs::read(&b.layout.root_a).unwrap(),
        a_before,
        "the running slot is never written"
    );
    assert_eq!(
        fs::read(b.layout.boot_dir.join("slot-b/Image")).unwrap(),
        b"kernel 2"
    );
    assert_eq!(
        fs::read(b.layout.boot_dir.join("slot-b/initrd.img")).unwrap(),
        b"initrd 2"
    );
    assert_eq!(
        fs::read(b.layout.boot_dir.join("slot-a/Image")).unwrap(),
        b"running kernel"
    );
    assert!(fs::read_dir(b.layout.boot_dir.join("slot-b"))
        .unwrap()
        .all(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.')));
    let state = b.boot_state();
    assert_eq!(state.order, [Slot::B, Slot::A]);
    assert_eq!(state.left, [3, 3]);
    assert_eq!(state.trial, Some(Slot::B));
    assert_eq!(*b.settings.snapshots.lock().unwrap(), [Slot::A]);
    assert_eq!(
        fs::read_to_string(b.layout.expected_volumes_file()).unwrap(),
        "ca68a636:5e4e790c:c0836396:010fd571"
    );
    let s = status::status(&b.layout);
    assert_eq!(s.slots[0].state, "booted");
    assert_eq!(s.slots[0].version.as_deref(), Some("0.1.0"));
    assert_eq!(s.slots[1].state, "good");
    assert_eq!(s.slots[1].version.as_deref(), Some("0.2.0"));
    assert_eq!(s.pending.unwrap().version.as_deref(), Some("0.2.0"));
}

#[test]
fn a_tampered_manifest_is_refused_before_anything_is_written() {
    let mut b = new_box();
    let mut bundle = bundle_for(&b, "0.2.0", "qemu-aarch64-virt");
    let at = bundle.windows(5).position(|w| w == b"0.2.0").unwrap();
    bundle[at + 2] = b'9';
    let e = run(&mut b, &bundle, Options::default()).unwrap_err();
    assert!(
        matches!(e, InstallError::Bundle(FirmwareError::BadSignature { .. })),
        "{e}"
    );
    b_untouched(&b);
}

#[test]
fn a_bundle_signed_with_an_unknown_key_is_refused() {
    let mut b = new_box();
    let stranger = keypair();
    let root = root_bytes();
    let m = manifest(
        "0.2.0",
        "qemu-aarch64-virt",
        &[("root", Target::Slot, &root)],
    );
    let bundle = bundle_bytes(&stranger, &m, &[&root]);
    let e = run(&mut b, &bundle, Options::default()).unwrap_err();
    match e {
        InstallError::Bundle(FirmwareError::UnknownKey { key_id }) => {
            assert_eq!(key_id, stranger.key_id().to_string())
        }
        e => panic!("{e}"),
    }
    b_untouched(&b);
}

#[test]
fn wrong_board_below_floor_failed_before_and_no_space_are_refused_before_writing() {
    let mut b = new_box();
    let bundle = bundle_for(&b, "0.2.0", "qemu-armv7-virt");
    let e = run(&mut b, &bundle, Options::default()).unwrap_err();
    assert!(matches!(e, InstallError::WrongBoard { .. }), "{e}");
    let bundle = bundle_for(&b, "0.0.9", "qemu-aarch64-virt");
    let e = run(&mut b, &bundle, Options::default()).unwrap_err();
    assert!(matches!(e, InstallError::BelowFloor { .. }), "{e}");
    fs::create_dir_all(&b.layout.firmware_dir).unwrap();
    fs::write(b.layout.failed_file(), "0.1.5\n0.2.0\n").unwrap();
    let bundle = bundle_for(&b, "0.2.0", "qemu-aarch64-virt");
    let e = run(&mut b, &bundle, Options::default()).unwrap_err();
    assert!(
        matches!(e, InstallError::FailedBefore(v) if v.to_string() == "0.2.0"),
        "{e}"
    );
    b.settings.free = b.settings.size - 1;
    let bundle = bundle_for(&b, "0.3.0", "qemu-aarch64-virt");
    let e = run(&mut b, &bundle, Options::default()).unwrap_err();
    assert!(matches!(e, InstallError::NoSpace { .. }), "{e}");
    b_untouched(&b);
    // The owner may insist on a version that failed before.
    b.settings.free = 10 << 20;
    let bundle = bundle_for(&b, "0.2.0", "qemu-aarch64-virt");
    run(&mut b, &bundle, Options { insist: true }).unwrap();
}

#[test]
fn a_truncated_or_tampered_payload_leaves_the_slot_out_of_the_boot_order() {
    for cut in [true, false] {
        let mut b = new_box();
        // Slot B held an earlier install: it must be out of the boot order before it is written over.
        b.layout.boot.update(|s| s.mark_good(Slot::B, 3)).unwrap();
        let mut bundle = bundle_for(&b, "0.2.0", "qemu-aarch64-virt");
        if cut {
            bundle.truncate(bundle.len() - 200_000);
        } else {
            let n = bundle.len();
            bundle[n - 100_000] ^= 1;
        }
        let e = run(&mut b, &bundle, Options::default()).unwrap_err();
        if cut {
            assert!(
                matches!(e, InstallError::Bundle(FirmwareError::Truncated(_))),
                "{e}"
            );
        } else {
            assert!(
                matches!(e, InstallError::Bundle(FirmwareError::DigestMismatch { ref payload, .. }) if payload == "root"),
                "{e}"
            );
        }
        b_not_bootable(&b);
        let mut part = fs::File::open(&b.layout.root_b).unwrap();
        assert!(
            crate::read_trailer(&mut part, SLOT_BYTES)
                .unwrap()
                .is_none(),
            "no trailer on a half-written slot"
        );
        assert!(!b.layout.boot_dir.join("slot-b/Image").exists());
    }
}

#[test]
fn a_stop_after_any_step_never_leaves_the_slot_bootable_half_written() {
    let names = [
        "Accepted",
        "SlotDisabled",
        "TrailerZeroed",
        "Written",
        "Streamed",
        "Verified",
        "TrailerWritten",
        "SettingsKept",
        "MigrationsPreviewed",
        "Activated",
    ];
    for stop_at in names {
        let b = new_box();
        // A slot B from an earlier install, bootable: the cut must take it out before writing over it.
        let old_b = b.layout.boot.update(|s| s.mark_good(Slot::B, 3)).unwrap();
        assert_eq!(old_b.order, [Slot::A, Slot::B]);
        let bundle = bundle_for(&b, "0.2.0", "qemu-aarch64-virt");
        let mut stop = |s: &Step| !format!("{s:?}").starts_with(stop_at);
        let r = install(
            &b.layout,
            &b.settings,
            &[],
            &mut &bundle[..],
            Options::default(),
            &mut stop,
        );
        assert!(matches!(r, Err(InstallError::Stopped)), "{stop_at}: {r:?}");
        let v = b.boot_state();
        let bootable = v.order.contains(&Slot::B) && v.left_of(Slot::B) > 0;
        if stop_at == "Activated" {
            assert!(bootable);
            assert_eq!(
                fs::read(b.layout.boot_dir.join("slot-b/Image")).unwrap(),
                b"kernel 2"
            );
            let s = status::status(&b.layout);
            assert_eq!(s.slots[1].version.as_deref(), Some("0.2.0"));
        } else if stop_at == "Accepted" {
            assert_eq!(
                v, old_b,
                "nothing was touched yet: the old B stays as it was"
            );
        } else {
            assert!(!bootable, "{stop_at}: {v:?}");
        }
    }
}

#[test]
fn a_migration_dry_run_that_fails_or_drops_leaves_the_slot_unbootable_and_says_why() {
    for (report, says) in [
        (
            serde_json::json!({"ok": false, "dropped": 0, "error": {"code": "migration.would_drop", "message": "step 2 -> 3 would drop accounts u/bob: email"}}),
            "would drop accounts u/bob",
        ),
        (
            serde_json::json!({"ok": false, "dropped": 2, "error": null}),
            "2 setting(s) would be dropped",
        ),
    ] {
        let b = new_box();
        *b.settings.preview.lock().unwrap() = report.clone();
        let bundle = bundle_for(&b, "0.2.0", "qemu-aarch64-virt");
        let r = install(
            &b.layout,
            &b.settings,
            &[],
            &mut &bundle[..],
            Options::default(),
            &mut |_| true,
        );
        match r {
            Err(InstallError::Migration(m)) => assert!(m.contains(says), "{m}"),
            other => panic!("{other:?}"),
        }
        let v = b.boot_state();
        assert!(
            !(v.order.contains(&Slot::B) && v.left_of(Slot::B) > 0),
            "{v:?}"
        );
        assert!(status::status(&b.layout).pending.is_none());
        // The report stays for the owner (and the log) to read.
        let kept: serde_json::Value =
            serde_json::from_slice(&fs::read(b.layout.pending_migration_file()).unwrap()).unwrap();
        assert_eq!(kept, report);
    }
}

#[test]
fn the_pending_update_shows_its_migration_report_for_the_schema_of_the_bundle() {
    let b = new_box();
    let report = serde_json::json!({"dry_run": true, "ok": true, "from": 2, "to": 3, "dropped": 0, "steps": [{"from": 2, "to": 3}]});
    *b.settings.preview.lock().unwrap() = report.clone();
    let bundle = bundle_for(&b, "0.2.0", "qemu-aarch64-virt");
    install(
        &b.layout,
        &b.settings,
        &[],
        &mut &bundle[..],
        Options::default(),
        &mut |_| true,
    )
    .unwrap();
    let signed = crate::SignedManifest::read_from(&mut &bundle[..], crate::Magic::Bundle).unwrap();
    let schema = crate::Manifest::parse(signed.manifest_bytes())
        .unwrap()
        .schema_version;
    assert_eq!(*b.settings.previews.lock().unwrap(), vec![schema]);
    let pending = status::status(&b.layout).pending.unwrap();
    assert_eq!(pending.slot, "b");
    assert_eq!(pending.migration, Some(report));
}

#[test]
fn the_target_slots_old_boot_files_and_a_cut_installs_leftovers_are_removed_first() {
    let b = new_box();
    let dir = b.layout.slot_boot_dir(Slot::B);
    fs::create_dir_all(&dir).unwrap();
    // An earlier version's files and what an install cut mid-write left behind.
    fs::write(dir.join("Image"), b"old kernel").unwrap();
    fs::write(dir.join("old-initrd.img"), b"old initrd").unwrap();
    fs::write(dir.join(".Image.new"), vec![7u8; 4096]).unwrap();
    let running = b.layout.slot_boot_dir(Slot::A);
    fs::create_dir_all(&running).unwrap();
    fs::write(running.join("Image"), b"running kernel").unwrap();
    let bundle = bundle_for(&b, "0.2.0", "qemu-aarch64-virt");
    install(
        &b.layout,
        &b.settings,
        &[],
        &mut &bundle[..],
        Options::default(),
        &mut |_| true,
    )
    .unwrap();
    let mut left: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let signed = crate::SignedManifest::read_from(&mut &bundle[..], crate::Magic::Bundle).unwrap();
    let mut want: Vec<String> = crate::Manifest::parse(signed.manifest_bytes())
        .unwrap()
        .payloads
        .iter()
        .filter(|p| p.target == Target::Boot)
        .map(|p| p.name.to_string())
        .collect();
    want.sort();
    assert_eq!(left, want, "only the new boot files stay");
    // The running slot's files are never touched.
    assert_eq!(fs::read(running.join("Image")).unwrap(), b"running kernel");
}
