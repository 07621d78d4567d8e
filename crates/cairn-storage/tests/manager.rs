//! The storage manager's reading side on the host: a sysfs tree shaped like the kernel's, disks as files with
//! real superblock bytes (captured from a RAID 5 member in the image), and a real store. Orchestration is in
//! tests/orchestration.rs (over the md simulator) and in the QEMU scenario (tests/tests/storage.rs, real
//! mdadm); here are the rules owners meet first: what each disk is called, which arrays are "found", and what
//! is refused before any tool runs.

mod common;

use cairn_storage::{CreateRequest, DiskRole, Level, StorageError, VolumeRecord};
use common::{ext4, gpt, member, request, Bench};

#[test]
fn each_disk_is_named_by_bay_with_what_it_holds_and_arrays_from_elsewhere_are_found() {
    let b = Bench::new();
    b.disk("vde", 0, "", &[]);
    b.disk("vda", 1, "BLANK", &[]);
    b.disk("vdb", 2, "OLDFS", &ext4());
    b.disk("vdc", 3, "MOVED-A", &member(0x11, "cairn:photos"));
    b.disk("vdd", 4, "MOVED-B", &member(0x11, "cairn:photos"));
    b.disk("vdf", 5, "LINUX", &member(0x22, "debian:0"));
    let s = b.storage();
    let disks = s.disks().unwrap();
    let by_id = |id: &str| disks.iter().find(|d| d.disk.id == id).unwrap();
    assert_eq!(
        disks
            .iter()
            .filter(|d| d.disk.role == DiskRole::Boot)
            .count(),
        1
    );
    assert_eq!(
        (by_id("BLANK").disk.role, by_id("BLANK").disk.slot),
        (DiskRole::Free, Some(1))
    );
    assert_eq!(by_id("OLDFS").disk.role, DiskRole::Foreign);
    assert_eq!(
        by_id("OLDFS").holds.as_deref(),
        Some("an ext2/3/4 filesystem")
    );
    assert_eq!(by_id("MOVED-A").disk.role, DiskRole::Member);
    assert_eq!(by_id("MOVED-A").volume.as_deref(), Some("photos"));
    assert!(
        by_id("MOVED-A").in_use.is_none(),
        "a found array's disk is not running anywhere"
    );
    assert_eq!(by_id("LINUX").volume.as_deref(), Some("found-22cef75c"));

    let volumes = s.volumes().unwrap();
    let photos = volumes.iter().find(|v| v.name == "photos").unwrap();
    assert_eq!(
        (photos.state, photos.origin, photos.level.as_str()),
        ("found", Some("cairn"), "raid5")
    );
    assert_eq!(photos.disks, ["MOVED-A", "MOVED-B"]);
    assert!(
        photos.problem.as_deref().unwrap().contains("2 of 4 disks"),
        "{:?}",
        photos.problem
    );
    let linux = volumes.iter().find(|v| v.name == "found-22cef75c").unwrap();
    assert_eq!(linux.origin, Some("linux"));
}

#[test]
fn refusals_come_before_any_disk_is_touched() {
    let b = Bench::new();
    b.disk("vde", 0, "", &[]);
    b.disk("vda", 1, "BLANK", &[]);
    b.disk("vdb", 2, "OLDFS", &ext4());
    b.disk("vdc", 3, "MOVED-A", &member(0x11, "cairn:photos"));
    let s = b.storage();
    let before: Vec<u8> = std::fs::read(b.root.join("dev/vdb")).unwrap();
    let boot_id = s
        .disks()
        .unwrap()
        .into_iter()
        .find(|d| d.disk.role == DiskRole::Boot)
        .unwrap()
        .disk
        .id;
    type Expect = fn(&StorageError) -> bool;
    let cases: Vec<(CreateRequest, Expect)> = vec![
        (request("media", "raid5", &["BLANK", "OLDFS"], None), |e| {
            matches!(e, StorageError::DiskCount { .. })
        }),
        (request("media", "raid1", &["BLANK", &boot_id], None), |e| {
            matches!(e, StorageError::BootMedium(_))
        }),
        (request("media", "raid1", &["BLANK", "OLDFS"], None), |e| {
            matches!(e, StorageError::ConfirmRequired { .. })
        }),
        (
            request("media", "raid1", &["BLANK", "MOVED-A"], Some("wrong")),
            |e| matches!(e, StorageError::ConfirmRequired { .. }),
        ),
        (
            request("photos", "raid1", &["BLANK", "OLDFS"], Some("photos")),
            |e| matches!(e, StorageError::VolumeExists(_)),
        ),
        (request("Media", "raid1", &["BLANK", "OLDFS"], None), |e| {
            matches!(e, StorageError::InvalidName(_))
        }),
        (request("media", "raid1", &["BLANK", "GONE"], None), |e| {
            matches!(e, StorageError::NoSuchDisk(_))
        }),
    ];
    for (req, ok) in cases {
        let what = format!("{req:?}");
        let e = s.create(req).expect_err(&what);
        assert!(ok(&e), "{what}: {e:?}");
    }
    assert!(
        s.volumes().unwrap().iter().all(|v| v.state == "found"),
        "no volume was recorded"
    );
    assert_eq!(
        std::fs::read(b.root.join("dev/vdb")).unwrap(),
        before,
        "a refused request wrote to a disk"
    );
    assert!(
        b.fake.calls().is_empty(),
        "a refusal ran {:?}",
        b.fake.calls()
    );
    assert!(matches!(s.job("12"), Err(StorageError::NoSuchJob(_))));
    assert!(matches!(s.job("../x"), Err(StorageError::NoSuchJob(_))));
}

#[test]
fn a_recorded_volume_whose_disks_are_gone_is_missing_and_never_recreated() {
    let b = Bench::new();
    b.disk("vde", 0, "", &[]);
    b.disk("vda", 1, "STILL-HERE", &member(0x33, "cairn:vault"));
    let s = b.storage();
    let record = VolumeRecord {
        name: "vault".into(),
        level: Level::Raid1,
        uuid: "33cef75c:3273207a:3e100ad7:3714c3ca".into(),
        md_minor: 0,
        disks: vec![
            common::snapshot("STILL-HERE", 1),
            common::snapshot("PULLED", 2),
        ],
        created_s: 1,
        last_scrub_s: None,
        last_mismatches: None,
        last_state: "clean".into(),
        replacing: None,
        deleting: false,
    };
    b.save_volume_record(&record);
    let v = s.volume("vault").unwrap();
    assert_eq!(v.state, "missing");
    assert!(
        v.problem.as_deref().unwrap().contains("never re-created"),
        "{:?}",
        v.problem
    );
    let pulled = v.members.iter().find(|m| m.id == "PULLED").unwrap();
    assert_eq!(
        (pulled.state, pulled.description.as_str()),
        ("missing", "bay 2 (Virtual disk, serial PULLED)")
    );
    // Its remaining disk belongs to it, not to a "found" array, and cannot be taken for a new volume, even with consent: delete the volume first.
    let here = s
        .disks()
        .unwrap()
        .into_iter()
        .find(|d| d.disk.id == "STILL-HERE")
        .unwrap();
    assert_eq!(here.volume.as_deref(), Some("vault"));
    assert!(s.volumes().unwrap().iter().all(|v| v.state != "found"));
    let e = s
        .create(request("other", "single", &["STILL-HERE"], Some("other")))
        .unwrap_err();
    assert!(matches!(e, StorageError::DiskInUse { .. }), "{e:?}");
    // Deleting it needs its name, and shares on it block it.
    assert!(matches!(
        s.delete("vault", None, &[]),
        Err(StorageError::ConfirmRequired { .. })
    ));
    assert!(matches!(
        s.delete("vault", Some("vault"), &["docs".to_string()]),
        Err(StorageError::HasShares { .. })
    ));
}

#[test]
fn arrays_on_partitions_are_found_with_the_partitions_to_assemble() {
    let b = Bench::new();
    b.disk("vde", 0, "", &[]);
    b.disk("vda", 1, "SYNO-A", &gpt());
    b.partition("vda", "vda1", &[]);
    b.partition("vda", "vda5", &member(0x44, "nas:2"));
    b.disk("vdb", 2, "SYNO-B", &gpt());
    b.partition("vdb", "vdb1", &[]);
    b.partition("vdb", "vdb5", &member(0x44, "nas:2"));
    b.disk("vdc", 3, "JUST-GPT", &gpt());
    let s = b.storage();
    let disks = s.disks().unwrap();
    let a = disks.iter().find(|d| d.disk.id == "SYNO-A").unwrap();
    assert_eq!(a.disk.role, DiskRole::Member);
    assert!(
        a.holds.as_deref().unwrap().contains("(on vda5)"),
        "{:?}",
        a.holds
    );
    let plain = disks.iter().find(|d| d.disk.id == "JUST-GPT").unwrap();
    assert_eq!(plain.disk.role, DiskRole::Foreign);
    let found: Vec<_> = s
        .volumes()
        .unwrap()
        .into_iter()
        .filter(|v| v.state == "found")
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].name.as_str(), found[0].origin),
        ("found-44cef75c", Some("linux"))
    );
    assert_eq!(found[0].disks, ["SYNO-A", "SYNO-B"]);
}

#[test]
fn a_disk_that_cannot_be_read_is_unreadable_with_its_error_and_never_built_on_without_its_confirmation(
) {
    let b = Bench::with_blank_disks(&["BLANK", "FAILING"]);
    b.fail_reads("vdb");
    let s = b.storage();
    let disks = s.disks().unwrap();
    let bad = disks.iter().find(|d| d.disk.id == "FAILING").unwrap();
    assert_eq!(bad.disk.role, DiskRole::Unreadable, "{bad:?}");
    let error = bad.read_error.as_deref().unwrap();
    assert!(
        error.contains("bytes 0..") && error.contains("os error 21"),
        "{error}"
    );
    assert!(
        bad.holds.as_deref().unwrap().contains(error),
        "{:?}",
        bad.holds
    );
    assert!(bad.in_use.is_none(), "it may be chosen, with consent");
    // Refused without its confirmation, and with the volume's name (consent for data Cairn can see).
    for confirm in [None, Some("media")] {
        let e = s
            .create(request("media", "raid1", &["BLANK", "FAILING"], confirm))
            .unwrap_err();
        let StorageError::UnreadableConfirmRequired { what, token } = &e else {
            panic!("{confirm:?}: {e:?}");
        };
        assert_eq!(token, "erase unreadable FAILING");
        assert!(what.contains("bay 2") && what.contains(error), "{what}");
    }
    assert!(
        b.fake.calls().is_empty(),
        "a refusal ran {:?}",
        b.fake.calls()
    );
    assert!(b.volume_records().is_empty());
    // With the words it asked for, the create goes ahead.
    s.create(request(
        "media",
        "raid1",
        &["BLANK", "FAILING"],
        Some("erase unreadable FAILING"),
    ))
    .unwrap();
    assert_eq!(b.volume_records().len(), 1);
}

#[test]
fn the_last_sector_is_read_on_a_disk_not_sized_in_whole_4k_blocks() {
    // A backup GPT header (or anything) in the last sector of a disk 256 KiB + 3 sectors long: the md 1.0
    // block read from its 4 KiB-aligned start stops 1.5 KiB before it.
    let b = Bench::with_blank_disks(&["ODD-SIZE"]);
    let mut bytes = vec![0u8; 256 * 1024 + 3 * 512];
    let last = bytes.len() - 100;
    bytes[last] = 0x45;
    std::fs::write(b.root.join("dev/vda"), bytes).unwrap();
    let s = b.storage();
    let d = s
        .disks()
        .unwrap()
        .into_iter()
        .find(|d| d.disk.id == "ODD-SIZE")
        .unwrap();
    assert_eq!(d.disk.role, DiskRole::Foreign, "{d:?}");
}
