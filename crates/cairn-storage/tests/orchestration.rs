//! The storage manager's orchestration on the host, over the md simulator (`tools::fake`): create, fail,
//! replace, scrub, the monitor's pass, and the power going off between any two steps of a create or a
//! replace. The simulator changes sysfs, /proc/mounts and the disks' superblocks as the kernel and mdadm
//! would, and the manager reads them back exactly as on the box; the QEMU scenario (tests/tests/storage.rs)
//! runs the same paths with real mdadm.

mod common;

use cairn_storage::tools::fake::{PowerOff, STRANGER_BYTE};
use cairn_storage::{Storage, StorageError};
use common::{every_disk_is_free_or_recorded, request, wait_for, Bench};
use std::panic::AssertUnwindSafe;

const DAY_S: u64 = 24 * 3600;

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Waits until the create job has handed over to the kernel (or failed, or the power went off).
fn wait_build(b: &Bench, s: &Storage, job: &str) {
    wait_for("the create job to hand over to the kernel", || {
        let j = s.job(job).unwrap();
        b.fake.crashed() || j.state != "running" || j.message.starts_with("Building redundancy")
    });
}

/// A mirror `media` on bays 1 and 2 (`A`, `B`), built and in sync; bays 3 and 4 (`C`, `D`) are free.
fn mirror() -> (Bench, Storage) {
    let b = Bench::with_blank_disks(&["A", "B", "C", "D"]);
    let s = b.storage();
    let job = s
        .create(request("media", "raid1", &["A", "B"], None))
        .unwrap();
    wait_build(&b, &s, &job.id);
    b.fake.finish_sync(0);
    assert_eq!(s.job(&job.id).unwrap().state, "done");
    (b, s)
}

fn member_state(s: &Storage, volume: &str, disk: &str) -> &'static str {
    s.volume(volume)
        .unwrap()
        .members
        .iter()
        .find(|m| m.id == disk)
        .map(|m| m.state)
        .unwrap_or("not a member")
}

fn messages(s: &Storage) -> Vec<String> {
    s.events(100)
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect()
}

#[test]
fn create_wipes_only_its_disks_builds_formats_mounts_and_is_done_once_the_kernel_synced() {
    let b = Bench::with_blank_disks(&["A", "B", "C"]);
    let s = b.storage();
    let job = s
        .create(request("media", "raid1", &["A", "B"], None))
        .unwrap();
    assert_eq!(
        (job.kind.as_str(), job.state.as_str()),
        ("create", "running")
    );
    wait_build(&b, &s, &job.id);

    let v = s.volume("media").unwrap();
    assert_eq!((v.state, v.mounted), ("creating", true), "{v:?}");
    let j = s.job(&job.id).unwrap();
    assert_eq!(j.state, "running", "the kernel is still syncing the copies");
    assert_eq!(
        b.methods_since(0),
        [
            "load_module",
            "load_module",
            "zero_superblock",
            "wipe_ends",
            "zero_superblock",
            "wipe_ends",
            "create_array",
            "array_uuid",
            "mkfs_ext4",
            "mount"
        ]
    );
    assert_eq!(b.wiped_since(0), ["vda", "vda", "vdb", "vdb"]);

    b.fake.finish_sync(0);
    let j = s.job(&job.id).unwrap();
    assert_eq!(
        (j.state.as_str(), j.message.as_str()),
        ("done", "The volume is ready and redundant.")
    );
    let v = s.volume("media").unwrap();
    assert_eq!(
        (v.state, v.mounted, v.problem.as_deref()),
        ("clean", true, None)
    );
    let record = &b.volume_records()[0];
    assert!(!record.uuid.is_empty());
    assert_eq!(record.uuid, v.uuid);
    let members: Vec<(&str, &str)> = v.members.iter().map(|m| (m.id.as_str(), m.state)).collect();
    assert_eq!(members, [("A", "in_sync"), ("B", "in_sync")]);
    let c = s
        .disks()
        .unwrap()
        .into_iter()
        .find(|d| d.disk.id == "C")
        .unwrap();
    assert!(c.volume.is_none() && c.in_use.is_none(), "{c:?}");
}

#[test]
fn raid_drivers_are_loaded_only_when_the_board_builds_them_as_modules() {
    let b = Bench::with_blank_disks(&["A", "B"]);
    let s = b.storage();
    let job = s
        .create(request("media", "raid1", &["A", "B"], None))
        .unwrap();
    wait_build(&b, &s, &job.id);
    assert_eq!(b.fake.modules(), ["md_mod", "raid1"]);

    let b = Bench::with_blank_disks(&["A", "B", "C"]);
    let mut built_in = b.board.clone();
    built_in.modules.on_demand.clear();
    let s = b.storage_on(built_in);
    let job = s
        .create(request("media", "raid5", &["A", "B", "C"], None))
        .unwrap();
    wait_build(&b, &s, &job.id);
    assert!(b.fake.modules().is_empty(), "{:?}", b.fake.modules());
    assert!(s.volume("media").unwrap().mounted);
}

#[test]
fn a_create_whose_array_cannot_be_made_is_dropped_and_leaves_its_disks_free() {
    let b = Bench::with_blank_disks(&["A", "B"]);
    let s = b.storage();
    b.fake.refuse(
        "create_array",
        "mdadm: cannot open /dev/vdb: Device or resource busy",
    );
    let job = s
        .create(request("media", "raid1", &["A", "B"], None))
        .unwrap();
    wait_build(&b, &s, &job.id);
    let j = s.job(&job.id).unwrap();
    assert_eq!(
        (j.state.as_str(), j.message.as_str()),
        ("failed", "Creating the RAID array failed.")
    );
    assert!(b.volume_records().is_empty());
    every_disk_is_free_or_recorded(&s).unwrap();
    // The job is recorded failed just before its event is logged.
    wait_for("the failure in the event log", || {
        s.events(1).unwrap()[0].level == "error"
    });
    let e = s.events(1).unwrap().remove(0);
    assert!(e.detail.contains("Device or resource busy"), "{e:?}");
}

#[test]
fn failing_a_member_takes_it_out_and_is_refused_once_no_redundancy_is_left() {
    let (b, s) = mirror();
    let from = b.fake.call_count();
    let v = s.fail("media", "A", "the test").unwrap();
    assert_eq!(v.state, "degraded");
    assert_eq!(member_state(&s, "media", "A"), "removed");
    assert_eq!(b.methods_since(from), ["fail", "remove"]);
    assert!(b.wiped_since(from).is_empty());
    assert!(messages(&s)[0].contains("was marked failed by the test"));

    let from = b.fake.call_count();
    let e = s.fail("media", "B", "the test").unwrap_err();
    assert!(
        matches!(&e, StorageError::Refused(m) if m.contains("no redundancy left")),
        "{e:?}"
    );
    assert!(b.methods_since(from).is_empty(), "nothing ran");
    assert_eq!(member_state(&s, "media", "B"), "in_sync");
}

#[test]
fn replacing_a_healthy_member_keeps_it_in_service_while_the_new_disk_is_filled() {
    let (b, s) = mirror();
    let from = b.fake.call_count();
    let job = s.replace("media", "A", "C", None).unwrap();
    assert_eq!(
        (job.kind.as_str(), job.state.as_str()),
        ("rebuild", "running")
    );
    assert_eq!(
        b.methods_since(from),
        ["zero_superblock", "wipe_ends", "add", "hot_replace"]
    );
    assert_eq!(
        b.wiped_since(from),
        ["vdc", "vdc"],
        "only the new disk is cleared"
    );
    assert_eq!(s.volume("media").unwrap().state, "rebuilding");
    assert_eq!(member_state(&s, "media", "C"), "rebuilding");

    b.fake.finish_sync(0);
    assert_eq!(s.job(&job.id).unwrap().state, "done");
    let v = s.volume("media").unwrap();
    assert_eq!(
        (v.state, v.disks.clone()),
        ("clean", vec!["C".to_string(), "B".to_string()])
    );
}

#[test]
fn replacing_a_member_the_kernel_failed_takes_it_out_and_rebuilds_onto_the_new_disk() {
    let (b, s) = mirror();
    b.fake.break_disk("vda");
    assert_eq!(s.volume("media").unwrap().state, "degraded");
    assert_eq!(member_state(&s, "media", "A"), "faulty");
    let from = b.fake.call_count();
    let job = s.replace("media", "A", "C", None).unwrap();
    assert_eq!(
        b.methods_since(from),
        ["zero_superblock", "wipe_ends", "fail", "remove", "add"]
    );
    assert_eq!(b.wiped_since(from), ["vdc", "vdc"]);
    assert_eq!(s.volume("media").unwrap().state, "rebuilding");
    b.fake.finish_sync(0);
    assert_eq!(s.job(&job.id).unwrap().state, "done");
    assert_eq!(s.volume("media").unwrap().state, "clean");
}

#[test]
fn replacing_a_pulled_member_fails_it_out_first_and_rebuilds_onto_the_new_disk() {
    let (b, s) = mirror();
    b.fake.pull("vda");
    assert_eq!(member_state(&s, "media", "A"), "missing");
    let from = b.fake.call_count();
    let job = s.replace("media", "A", "C", None).unwrap();
    assert_eq!(
        b.methods_since(from),
        ["fail_detached", "zero_superblock", "wipe_ends", "add"]
    );
    assert_eq!(b.wiped_since(from), ["vdc", "vdc"]);
    b.fake.finish_sync(0);
    assert_eq!(s.job(&job.id).unwrap().state, "done");
    let v = s.volume("media").unwrap();
    assert_eq!(
        (v.state, v.disks.clone()),
        ("clean", vec!["C".to_string(), "B".to_string()])
    );
}

#[test]
fn a_member_that_dropped_out_and_came_back_is_replaced_by_itself_without_confirmation() {
    let (b, s) = mirror();
    b.fake.pull("vdb");
    s.tick();
    b.fake.insert("vdb");
    assert_eq!(
        member_state(&s, "media", "B"),
        "removed",
        "back in the box, out of the array"
    );
    let from = b.fake.call_count();
    let job = s.replace("media", "B", "B", None).unwrap();
    assert_eq!(
        b.methods_since(from),
        ["zero_superblock", "wipe_ends", "add"]
    );
    assert_eq!(
        b.wiped_since(from),
        ["vdb", "vdb"],
        "only its stale copy is cleared"
    );
    b.fake.finish_sync(0);
    assert_eq!(s.job(&job.id).unwrap().state, "done");
    let v = s.volume("media").unwrap();
    assert_eq!(
        (v.state, v.disks.clone()),
        ("clean", vec!["A".to_string(), "B".to_string()])
    );
}

#[test]
fn a_member_on_a_partition_replacing_itself_clears_only_that_partition_never_the_whole_disk() {
    // A raid5 made elsewhere on partition 5 of four disks (as NAS vendors lay them out), recorded as a volume.
    let b = Bench::new();
    b.disk("vde", 0, "", &[]);
    let ids = ["P-A", "P-B", "P-C", "P-D"];
    for (i, id) in ids.iter().enumerate() {
        let disk = format!("vd{}", (b'a' + i as u8) as char);
        b.disk(&disk, i as u32 + 1, id, &common::gpt());
        b.partition(&disk, &format!("{disk}1"), &[]);
        b.partition(&disk, &format!("{disk}5"), &common::member(0x44, "nas:2"));
    }
    b.save_volume_record(&cairn_storage::VolumeRecord {
        name: "nas".into(),
        level: cairn_storage::Level::Raid5,
        uuid: "44cef75c:3273207a:3e100ad7:3714c3ca".into(),
        md_minor: 0,
        disks: ids
            .iter()
            .zip(1..)
            .map(|(id, bay)| common::snapshot(id, bay))
            .collect(),
        created_s: 1,
        last_scrub_s: None,
        last_mismatches: None,
        last_state: String::new(),
        replacing: None,
        deleting: false,
    });
    let s = b.storage();
    s.start();
    assert!(b
        .fake
        .calls()
        .iter()
        .any(|c| c.method == "assemble" && c.names("vdb5")));
    let table = std::fs::read(b.root.join("dev/vdb")).unwrap();
    b.fake.break_disk("vdb5");
    let from = b.fake.call_count();
    let job = s.replace("nas", "P-B", "P-B", None).unwrap();
    assert_eq!(
        b.wiped_since(from),
        ["vdb5", "vdb5"],
        "only the member partition is cleared"
    );
    assert!(
        b.fake.calls()[from..].iter().all(|c| !c.names("vdb")),
        "the whole disk was handed to a tool: {:?}",
        &b.fake.calls()[from..]
    );
    assert_eq!(
        std::fs::read(b.root.join("dev/vdb")).unwrap(),
        table,
        "the partition table was touched"
    );
    assert_eq!(member_state(&s, "nas", "P-B"), "rebuilding");
    assert_eq!(s.job(&job.id).unwrap().state, "running");
    b.fake.finish_sync(0);
    assert_eq!(s.job(&job.id).unwrap().state, "done");
    assert_eq!(member_state(&s, "nas", "P-B"), "in_sync");
}

#[test]
fn a_replace_that_failed_after_the_new_disk_was_added_is_finished_by_asking_again() {
    let (b, s) = mirror();
    b.fake
        .refuse("hot_replace", "mdadm: Cannot replace /dev/vda: Device busy");
    let e = s.replace("media", "A", "C", None).unwrap_err();
    assert!(matches!(e, StorageError::Tool { .. }), "{e:?}");
    let from = b.fake.call_count();
    let job = s
        .replace("media", "A", "C", None)
        .unwrap_or_else(|e| panic!("asking again: {e}"));
    assert_eq!(
        b.methods_since(from),
        ["hot_replace"],
        "the disk already in the array is neither wiped nor added again"
    );
    assert_eq!(member_state(&s, "media", "C"), "rebuilding");
    b.fake.finish_sync(0);
    assert_eq!(s.job(&job.id).unwrap().state, "done");
    let v = s.volume("media").unwrap();
    assert_eq!(
        (v.state, v.disks.clone()),
        ("clean", vec!["C".to_string(), "B".to_string()])
    );
}

#[test]
fn a_scrub_is_a_job_whose_mismatch_count_is_recorded_on_the_volume() {
    let (b, s) = mirror();
    let from = b.fake.call_count();
    b.fake.set_mismatches(0, 8);
    let job = s.scrub("media").unwrap();
    assert_eq!(
        (job.kind.as_str(), job.state.as_str()),
        ("scrub", "running")
    );
    assert_eq!(b.methods_since(from), ["start_check"]);
    assert!(matches!(s.scrub("media"), Err(StorageError::Busy(_))));

    b.fake.finish_sync(0);
    let j = s.job(&job.id).unwrap();
    assert_eq!(
        (j.state.as_str(), j.message.as_str()),
        ("done", "Scrub finished: 8 mismatched blocks.")
    );
    let v = s.volume("media").unwrap();
    assert_eq!(v.last_mismatches, Some(8));
    assert!(v.last_scrub_s.is_some_and(|t| t + 60 > now_s()));
    let e = s.events(1).unwrap().remove(0);
    assert_eq!(e.level, "warning", "mismatches are worth a look: {e:?}");
}

#[test]
fn the_monitor_fails_out_a_pulled_disk_logs_each_state_change_and_closes_the_rebuild() {
    let (b, s) = mirror();
    s.tick();
    assert_eq!(messages(&s)[0], "Volume media is clean.");

    b.fake.pull("vda");
    let from = b.fake.call_count();
    s.tick();
    assert_eq!(b.methods_since(from), ["fail_detached"]);
    let log = messages(&s);
    assert!(log[0].starts_with("Volume media is degraded: "), "{log:?}");
    assert_eq!(
        log[1],
        "bay 1 (Virtual disk, serial A) was removed from the box while part of volume media."
    );
    let from = b.fake.call_count();
    s.tick();
    assert!(
        b.methods_since(from).is_empty(),
        "a pass with nothing new changes nothing"
    );
    assert!(
        messages(&s)[0].starts_with("Volume media is degraded: "),
        "logged once"
    );

    let job = s.replace("media", "A", "C", None).unwrap();
    s.tick();
    assert!(messages(&s)[0].starts_with("Volume media is rebuilding: "));
    b.fake.finish_sync(0);
    s.tick();
    let log = messages(&s);
    assert_eq!(log[0], "Volume media is clean.");
    assert_eq!(
        log[1],
        "Volume media: Rebuild finished: every disk is in sync."
    );
    // Closed by the monitor, not by someone looking at the job.
    let record = b
        .job_records()
        .into_iter()
        .find(|j| j["id"] == job.id.as_str())
        .unwrap();
    assert_eq!(record["state"], "done");
}

#[test]
fn the_monitor_starts_a_scrub_when_the_last_one_is_older_than_thirty_days() {
    let (b, s) = mirror();
    s.tick();
    let mut r = b.volume_records().remove(0);
    r.last_scrub_s = Some(now_s() - 29 * DAY_S);
    b.save_volume_record(&r);
    let from = b.fake.call_count();
    s.tick();
    assert!(
        b.methods_since(from).is_empty(),
        "scrubbed 29 days ago: not due"
    );

    r.last_scrub_s = Some(now_s() - 31 * DAY_S);
    b.save_volume_record(&r);
    s.tick();
    assert_eq!(b.methods_since(from), ["start_check"]);
    let job = s.volume("media").unwrap().job.unwrap();
    assert_eq!(
        (job.kind.as_str(), job.state.as_str()),
        ("scrub", "running")
    );
}

/// What an owner needs after any power cut: no job stuck in a step only the daemon could have finished,
/// every disk free or in a recorded volume, every recorded volume with an array running.
fn after_restart(b: &Bench, s: &Storage, at: usize) {
    for j in b.job_records() {
        assert!(
            j["state"] != "running" || j["step"] == "kernel",
            "power cut at call {at}: job left running in step {}: {j}",
            j["step"]
        );
    }
    every_disk_is_free_or_recorded(s).unwrap_or_else(|e| panic!("power cut at call {at}: {e}"));
    for v in s.volumes().unwrap() {
        // A create the restart handed to the kernel is "creating" while its copies are made, as it is uncut.
        let kernel_builds = v.mounted
            && v.job
                .as_ref()
                .is_some_and(|j| j.kind == "create" && j.state == "running");
        assert!(
            !matches!(v.state, "missing" | "failed" | "creating") || kernel_builds,
            "power cut at call {at}: volume {} is {}: {:?}",
            v.name,
            v.state,
            v.problem
        );
    }
}

/// Cuts the power before each call of creating `media` at `level` on `A` and `B`, restarts, and checks the
/// volume is there to use (or to delete), no disk is stray, and the create job says what happened truthfully.
fn power_cut_at_every_step_of_creating(level: &str) {
    for at in 0.. {
        let b = Bench::with_blank_disks(&["A", "B", "C"]);
        let s = b.storage();
        b.fake.crash_after(at);
        let job = s
            .create(request("media", level, &["A", "B"], None))
            .unwrap();
        wait_build(&b, &s, &job.id);
        let crashed = b.fake.crashed();
        let made = b.methods_since(0).contains(&"create_array");
        let formatted = b.methods_since(0).contains(&"mkfs_ext4");
        b.fake.power_cut();
        let s = b.storage();
        s.start();

        after_restart(&b, &s, at);
        assert!(b.wiped_since(0).iter().all(|d| d == "vda" || d == "vdb"));
        let volume = s.volume("media");
        if made {
            let v = volume.unwrap_or_else(|e| panic!("power cut at call {at}: {e}"));
            assert_eq!(v.mounted, formatted, "power cut at call {at}: {v:?}");
        } else {
            assert!(
                matches!(volume, Err(StorageError::NoSuchVolume(_))),
                "power cut at call {at}: a volume whose array never existed stays: {volume:?}"
            );
        }
        let j = s.job(&job.id).unwrap();
        let told_to_delete = messages(&s).iter().any(|m| m.contains("delete the volume"));
        if crashed && formatted {
            // Cut while mounting: the filesystem exists, so the restart checks and mounts it and says so.
            let made_fs = "Creating volume media was interrupted by a restart after its filesystem was made; it is in use";
            if level == "raid1" {
                // The copies were still being made: the kernel goes on, and the job follows it.
                assert_eq!(
                    (j.state.as_str(), j.message.clone()),
                    (
                        "running",
                        format!("{made_fs} and the kernel finishes its redundancy.")
                    ),
                    "power cut at call {at}"
                );
                assert_eq!(s.volume("media").unwrap().state, "creating");
                b.fake.finish_sync(0);
                let j = s.job(&job.id).unwrap();
                assert_eq!(
                    (j.state.as_str(), j.message.as_str()),
                    ("done", "The volume is ready and redundant."),
                    "power cut at call {at}"
                );
                assert_eq!(s.volume("media").unwrap().state, "clean");
            } else {
                // Striping has no copies to make agree: nothing is left to do.
                assert_eq!(
                    (j.state.as_str(), j.message.clone()),
                    ("done", format!("{made_fs} and ready.")),
                    "power cut at call {at}"
                );
            }
            assert!(
                !told_to_delete,
                "power cut at call {at}: {:?}",
                messages(&s)
            );
        } else if crashed && made {
            // Cut before the filesystem was made: nothing on the array to keep.
            assert_eq!(j.state, "failed", "power cut at call {at}: {j:?}");
            assert!(
                j.message
                    .ends_with("delete the volume and create it again."),
                "power cut at call {at}: {j:?}"
            );
        } else if crashed {
            assert_eq!(
                (j.state.as_str(), j.message.as_str()),
                (
                    "failed",
                    "Creating volume media was interrupted before its array existed; its disks are free again."
                ),
                "power cut at call {at}"
            );
        } else {
            // Every call went through: the last round had no power cut before the handover.
            assert_eq!(at, 10);
            break;
        }
    }
}

#[test]
fn a_power_cut_at_any_step_of_creating_a_mirror_leaves_a_volume_to_use_or_to_delete_and_never_a_stray_disk(
) {
    power_cut_at_every_step_of_creating("raid1");
}

#[test]
fn a_power_cut_at_any_step_of_creating_a_stripe_leaves_a_volume_to_use_or_to_delete_and_never_a_stray_disk(
) {
    power_cut_at_every_step_of_creating("raid0");
}

#[derive(Clone, Copy, Debug)]
enum Old {
    Healthy,
    FailedByTheKernel,
    Pulled,
    /// `B` dropped out (pulled and failed out) and came back: it replaces itself.
    CameBack,
}

/// Cuts the power before each call of replacing `A` (in the given condition) with `C` (or `B` with itself) in a
/// mirror holding a file, restarts, and checks the volume comes back with the file and no disk holding data was
/// wiped.
fn power_cut_at_every_step_of_replacing(old: Old) {
    for at in 0.. {
        let (b, s) = mirror();
        std::fs::write(b.root.join("data/media/keep.txt"), "precious").unwrap();
        let (failed, with, blank) = match old {
            Old::Healthy => ("A", "C", "vdc"),
            Old::FailedByTheKernel => {
                b.fake.break_disk("vda");
                ("A", "C", "vdc")
            }
            Old::Pulled => {
                b.fake.pull("vda");
                ("A", "C", "vdc")
            }
            Old::CameBack => {
                b.fake.pull("vdb");
                s.tick();
                b.fake.insert("vdb");
                ("B", "B", "vdb")
            }
        };
        let from = b.fake.call_count();
        b.fake.crash_after(at);
        let replaced =
            std::panic::catch_unwind(AssertUnwindSafe(|| s.replace("media", failed, with, None)));
        let crashed = match replaced {
            Ok(r) => {
                r.unwrap();
                false
            }
            Err(p) => {
                assert!(p.is::<PowerOff>(), "a real panic, not the power cut");
                true
            }
        };
        b.fake.power_cut();
        let s = b.storage();
        s.start();

        let what = format!("{old:?} member, power cut at call {at}");
        after_restart(&b, &s, at);
        let v = s.volume("media").unwrap();
        assert!(v.mounted, "{what}: {v:?}");
        if matches!(old, Old::Healthy) {
            // Both old members still run; the record names the disks the array has.
            assert!(matches!(v.state, "clean" | "rebuilding"), "{what}: {v:?}");
        }
        assert_eq!(
            std::fs::read_to_string(b.root.join("data/media/keep.txt"))
                .ok()
                .as_deref(),
            Some("precious"),
            "{what}: the file is on the volume"
        );
        let wiped = b.wiped_since(from);
        assert!(wiped.iter().all(|d| d == blank), "{what}: wiped {wiped:?}");
        let finished = the_new_disk_is_a_recorded_member_or_free(&s, failed, with, &what);
        let record = b.volume_records().remove(0);
        assert_eq!(record.replacing, None, "{what}: settled at start");
        if !crashed {
            assert!(at > 0);
            break;
        }
        // The owner tries again: it works whether the restart finished the first replace or undid it.
        let job = s.replace("media", failed, with, None).unwrap_or_else(|e| {
            panic!("{what}: replacing again (first one finished: {finished}): {e}")
        });
        assert_eq!(job.kind, "rebuild", "{what}");
        b.fake.finish_sync(0);
        let v = s.volume("media").unwrap();
        assert_eq!(v.state, "clean", "{what}: after the retried replace: {v:?}");
        assert!(
            v.disks.iter().any(|d| d == with)
                && (with == failed || !v.disks.iter().any(|d| d == failed)),
            "{what}: the record names the new disk: {v:?}"
        );
        assert_eq!(member_state(&s, "media", with), "in_sync", "{what}");
    }
}

/// After a restart the new disk is the volume's recorded member (being filled or in sync) or free for use (a disk
/// replacing itself: out of the array, ready to be added again); never held by the array without being named.
/// Whether the replace finished.
fn the_new_disk_is_a_recorded_member_or_free(
    s: &Storage,
    failed: &str,
    with: &str,
    what: &str,
) -> bool {
    let d = s
        .disks()
        .unwrap()
        .into_iter()
        .find(|d| d.disk.id == with)
        .unwrap();
    let recorded = s.volume("media").unwrap().disks;
    match member_state(s, "media", with) {
        "in_sync" | "rebuilding" => {
            assert!(
                with == failed || !recorded.iter().any(|m| m == failed),
                "{what}: {failed} is still recorded beside {with}: {recorded:?}"
            );
            true
        }
        "removed" if with == failed => false,
        "not a member" => {
            assert!(
                d.disk.role == cairn_storage::DiskRole::Free
                    && d.in_use.is_none()
                    && d.volume.is_none(),
                "{what}: {with} is neither the volume's member nor free: {d:?}"
            );
            false
        }
        other => panic!("{what}: {with} is {other} in volume media: {d:?}"),
    }
}

#[test]
fn a_power_cut_at_any_step_of_replacing_a_healthy_member_keeps_the_volume_and_its_data() {
    power_cut_at_every_step_of_replacing(Old::Healthy);
}

#[test]
fn a_power_cut_at_any_step_of_replacing_a_failed_member_keeps_the_volume_and_its_data() {
    power_cut_at_every_step_of_replacing(Old::FailedByTheKernel);
}

#[test]
fn a_power_cut_at_any_step_of_replacing_a_pulled_member_keeps_the_volume_and_its_data() {
    power_cut_at_every_step_of_replacing(Old::Pulled);
}

#[test]
fn a_power_cut_at_any_step_of_a_member_replacing_itself_keeps_the_volume_and_its_data() {
    power_cut_at_every_step_of_replacing(Old::CameBack);
}

#[test]
fn deleting_a_volume_unmounts_it_stops_its_array_and_clears_only_its_own_disks() {
    let (b, s) = mirror();
    std::fs::write(b.root.join("data/media/keep.txt"), "gone").unwrap();
    let from = b.fake.call_count();
    assert!(matches!(
        s.delete("media", Some("other"), &[]),
        Err(StorageError::ConfirmRequired { .. })
    ));
    assert!(b.methods_since(from).is_empty());
    s.delete("media", Some("media"), &[]).unwrap();
    assert_eq!(
        b.methods_since(from),
        [
            "unmount",
            "stop",
            "zero_superblock",
            "wipe_ends",
            "zero_superblock",
            "wipe_ends",
            "remove_mount_point"
        ]
    );
    assert_eq!(b.wiped_since(from), ["vda", "vda", "vdb", "vdb"]);
    assert!(b.volume_records().is_empty());
    assert!(!b.root.join("data/media").exists());
    for d in s
        .disks()
        .unwrap()
        .into_iter()
        .filter(|d| d.disk.slot.is_some())
    {
        assert_eq!(
            (d.disk.role, d.in_use.as_deref()),
            (cairn_storage::DiskRole::Free, None),
            "{d:?}"
        );
    }
}

#[test]
fn a_power_cut_at_any_step_of_a_delete_is_finished_by_the_next_start() {
    for at in 0.. {
        let (b, s) = mirror();
        b.fake.crash_after(at);
        let deleted =
            std::panic::catch_unwind(AssertUnwindSafe(|| s.delete("media", Some("media"), &[])));
        let crashed = deleted.is_err();
        b.fake.power_cut();
        let s = b.storage();
        s.start();
        every_disk_is_free_or_recorded(&s)
            .unwrap_or_else(|e| panic!("power cut at call {at}: {e}"));
        // The owner confirmed it: the start finishes it, with no volume left half-erased to delete again.
        assert!(
            !s.exists("media"),
            "power cut at call {at}: the delete was not finished"
        );
        let left: Vec<_> = s
            .disks()
            .unwrap()
            .into_iter()
            .filter(|d| d.disk.slot.is_some() && d.disk.role != cairn_storage::DiskRole::Free)
            .map(|d| d.disk.id)
            .collect();
        assert!(
            left.is_empty(),
            "power cut at call {at}: still not free: {left:?}"
        );
        if !crashed {
            assert!(at > 0);
            break;
        }
    }
}

#[test]
fn a_volume_moved_to_a_new_box_is_found_and_imported_with_its_data() {
    let (b, s) = mirror();
    std::fs::write(b.root.join("data/media/keep.txt"), "precious").unwrap();
    b.fake.power_cut();
    // The new box: the same disks, no records.
    b.store.table("volumes").unwrap().remove("media").unwrap();
    b.store.commit().unwrap();
    drop(s);
    let s = b.storage();
    s.start();
    let found = s.volume("media").unwrap();
    assert_eq!((found.state, found.origin), ("found", Some("cairn")));
    let from = b.fake.call_count();
    let v = s.import("media", Some("photos")).unwrap();
    assert_eq!(
        (v.name.as_str(), v.state, v.mounted),
        ("photos", "clean", true)
    );
    assert_eq!(
        b.methods_since(from),
        ["load_module", "load_module", "assemble", "fsck", "mount"]
    );
    assert!(b.wiped_since(from).is_empty());
    assert_eq!(
        std::fs::read_to_string(b.root.join("data/photos/keep.txt")).unwrap(),
        "precious"
    );
    assert_eq!(b.volume_records()[0].uuid, found.uuid);
}

/// Whether disk file `name` still holds only what the fake's stranger came with (nothing wrote to it).
fn stranger_untouched(b: &Bench, name: &str) -> bool {
    let bytes = std::fs::read(b.root.join("dev").join(name)).unwrap();
    !bytes.is_empty() && bytes.iter().all(|&x| x == STRANGER_BYTE)
}

#[test]
fn a_disk_swapped_while_a_create_clears_the_disks_is_never_written_and_the_create_fails_with_why() {
    let b = Bench::with_blank_disks(&["A", "B"]);
    let s = b.storage();
    // Bay 2's disk is swapped for another the moment bay 1's disk has been cleared, under the same name.
    b.fake.swap_after("wipe_ends", "vda", "vdb", "STRANGER");
    let job = s
        .create(request("media", "raid1", &["A", "B"], None))
        .unwrap();
    wait_for("the create to fail", || {
        s.job(&job.id).unwrap().state == "failed"
    });
    assert!(
        stranger_untouched(&b, "vdb"),
        "the swapped-in disk was written"
    );
    assert!(
        b.fake.calls().iter().all(|c| !c.names("vdb")),
        "a tool was handed the swapped-in disk: {:?}",
        b.fake.calls()
    );
    let j = s.job(&job.id).unwrap();
    assert!(
        j.message.contains("/dev/vdb is no longer bay 2")
            && j.message.contains("disk STRANGER")
            && j.message.contains("nothing was written to it"),
        "{}",
        j.message
    );
    assert!(b.volume_records().is_empty(), "the volume was not dropped");
}

#[test]
fn a_disk_swapped_while_a_replace_clears_it_is_never_erased_or_added_and_the_replace_says_why() {
    let (b, s) = mirror();
    s.fail("media", "B", "test").unwrap();
    b.fake
        .swap_after("zero_superblock", "vdc", "vdc", "STRANGER");
    let from = b.fake.call_count();
    let e = s.replace("media", "B", "C", None).unwrap_err();
    assert!(matches!(e, StorageError::DiskChanged { .. }), "{e:?}");
    assert_eq!(b.methods_since(from), ["zero_superblock"]);
    assert!(
        stranger_untouched(&b, "vdc"),
        "the swapped-in disk was written"
    );
    // The intent left behind is settled by the next look: nothing changed in the array.
    let v = s.volume("media").unwrap();
    assert_eq!(
        (v.state, v.disks.clone()),
        ("degraded", vec!["A".to_string(), "B".to_string()])
    );
    s.scrub("media").unwrap_err();
    assert!(b.volume_records()[0].replacing.is_none());
}

#[test]
fn a_disk_swapped_after_a_deleted_volume_stopped_keeps_its_bytes() {
    let (b, s) = mirror();
    b.fake.swap_after("stop", "md0", "vdb", "STRANGER");
    let from = b.fake.call_count();
    s.delete("media", Some("media"), &[]).unwrap();
    assert_eq!(b.wiped_since(from), ["vda", "vda"]);
    assert!(
        stranger_untouched(&b, "vdb"),
        "the swapped-in disk was written"
    );
    assert!(
        messages(&s)
            .iter()
            .any(|m| m.contains("/dev/vdb no longer held")),
        "{:?}",
        messages(&s)
    );
}

#[test]
fn a_half_created_volume_whose_job_was_closed_is_dropped_at_the_next_start() {
    // The create's job was closed as failed, but removing its record did not reach the disk.
    let b = Bench::with_blank_disks(&["A", "B"]);
    b.save_volume_record(&cairn_storage::VolumeRecord {
        name: "media".into(),
        level: cairn_storage::Level::Raid1,
        uuid: String::new(),
        md_minor: 0,
        disks: vec![common::snapshot("A", 1), common::snapshot("B", 2)],
        created_s: 1,
        last_scrub_s: None,
        last_mismatches: None,
        last_state: "creating".into(),
        replacing: None,
        deleting: false,
    });
    let s = b.storage();
    s.start();
    assert!(
        !s.exists("media"),
        "the half-created volume holds its disks"
    );
    every_disk_is_free_or_recorded(&s).unwrap();
}

#[test]
fn a_long_filesystem_check_at_start_holds_up_no_request_and_the_volume_is_not_deleted_under_it() {
    let (b, s) = mirror();
    b.fake.power_cut();
    drop(s);
    let s = b.storage();
    b.fake.hold("fsck");
    let starting = {
        let s = s.clone();
        std::thread::spawn(move || s.start())
    };
    b.fake.wait_held();
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let s = s.clone();
        std::thread::spawn(move || {
            let _ = tx.send(s.create(request("other", "raid1", &["C", "D"], None)));
        });
    }
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("a create waited for another volume's filesystem check")
        .unwrap();
    let e = s.delete("media", Some("media"), &[]).unwrap_err();
    assert!(
        matches!(&e, StorageError::Busy(m) if m.contains("being checked")),
        "{e:?}"
    );
    b.fake.release();
    starting.join().unwrap();
    assert!(s.volume("media").unwrap().mounted, "{:?}", messages(&s));
}

#[test]
fn the_monitor_and_a_request_never_overwrite_each_others_record_updates() {
    let (b, s) = mirror();
    s.tick();
    assert_eq!(b.volume_records()[0].last_state, "clean");
    s.fail("media", "B", "test").unwrap();
    // The replace holds the lock in mdadm --add, its intent written and its copy of the record in hand...
    b.fake.hold("add");
    let replacing = {
        let s = s.clone();
        std::thread::spawn(move || s.replace("media", "B", "C", None))
    };
    b.fake.wait_held();
    // ...while the monitor's pass sees the volume degraded and records it.
    let monitor = {
        let s = s.clone();
        std::thread::spawn(move || s.tick())
    };
    wait_for("the monitor to log the volume degraded", || {
        messages(&s)
            .iter()
            .any(|m| m.starts_with("Volume media is degraded"))
    });
    b.fake.release();
    replacing.join().unwrap().unwrap();
    monitor.join().unwrap();
    let r = &b.volume_records()[0];
    let disks: Vec<&str> = r.disks.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(disks, ["A", "C"], "the replace's member swap was lost");
    assert_eq!(r.last_state, "degraded", "the monitor's update was lost");
    assert!(r.replacing.is_none());
}

#[test]
fn a_disk_that_cannot_be_read_replaces_a_member_only_with_the_confirmation_naming_it() {
    let (b, s) = mirror();
    s.fail("media", "B", "test").unwrap();
    b.fail_reads("vdc");
    let from = b.fake.call_count();
    for confirm in [None, Some("media")] {
        let e = s.replace("media", "B", "C", confirm).unwrap_err();
        let StorageError::UnreadableConfirmRequired { what, token } = &e else {
            panic!("{confirm:?}: {e:?}");
        };
        assert_eq!(token, "erase unreadable C");
        assert!(
            what.contains("bay 3") && what.contains("os error 21"),
            "{what}"
        );
    }
    assert!(
        b.methods_since(from).is_empty(),
        "a refusal ran {:?}",
        b.fake.calls()
    );
    assert!(b.volume_records()[0].replacing.is_none());
}
