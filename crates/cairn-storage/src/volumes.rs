//! Volumes as Cairn records them, and the rules a new volume must pass before any disk is touched.
//! Pure: the checks run over a snapshot of the disks, so every refusal is tested on the host.

use crate::{DiskRole, DiskView, StorageError};
use serde::{Deserialize, Serialize};

/// The smallest disk Cairn builds a volume on: below this the filesystem's own overhead dominates.
pub const MIN_DISK_BYTES: u64 = 64 * 1024 * 1024;

/// The md core's module name: loaded, like a level's driver, only where the board builds it as a module.
pub const MD_CORE_MODULE: &str = "md_mod";

/// How a volume spreads data over its disks.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Single,
    Raid0,
    Raid1,
    Raid5,
    Raid6,
    Raid10,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Single => "single",
            Level::Raid0 => "raid0",
            Level::Raid1 => "raid1",
            Level::Raid5 => "raid5",
            Level::Raid6 => "raid6",
            Level::Raid10 => "raid10",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        [
            Level::Single,
            Level::Raid0,
            Level::Raid1,
            Level::Raid5,
            Level::Raid6,
            Level::Raid10,
        ]
        .into_iter()
        .find(|l| l.name() == s)
    }

    /// Whether `n` disks make this level, and if not the rule in words.
    pub fn check_count(self, n: usize) -> Result<(), &'static str> {
        let ok = match self {
            Level::Single => n == 1,
            Level::Raid0 | Level::Raid1 => n >= 2,
            Level::Raid5 => n >= 3,
            Level::Raid6 => n >= 4,
            Level::Raid10 => n >= 4 && n.is_multiple_of(2),
        };
        if ok {
            return Ok(());
        }
        Err(match self {
            Level::Single => "exactly 1 disk",
            Level::Raid0 | Level::Raid1 => "at least 2 disks",
            Level::Raid5 => "at least 3 disks",
            Level::Raid6 => "at least 4 disks",
            Level::Raid10 => "an even number of disks, at least 4",
        })
    }

    /// mdadm's `--level`; a single disk is a one-disk mirror so a second disk can be added later.
    pub fn md_level(self) -> &'static str {
        match self {
            Level::Single | Level::Raid1 => "1",
            Level::Raid0 => "0",
            Level::Raid5 => "5",
            Level::Raid6 => "6",
            Level::Raid10 => "10",
        }
    }

    /// The kernel module the level needs, loaded only when a volume uses it.
    pub fn module(self) -> &'static str {
        match self {
            Level::Single | Level::Raid1 => "raid1",
            Level::Raid0 => "raid0",
            Level::Raid5 | Level::Raid6 => "raid456",
            Level::Raid10 => "raid10",
        }
    }

    /// How many disks may fail without losing data.
    pub fn redundancy(self, disks: usize) -> usize {
        match self {
            Level::Single | Level::Raid0 => 0,
            Level::Raid1 => disks.saturating_sub(1),
            Level::Raid5 => 1,
            Level::Raid6 => 2,
            Level::Raid10 => 1,
        }
    }

    /// Usable bytes from `n` disks whose smallest holds `smallest` bytes.
    pub fn usable_bytes(self, n: u64, smallest: u64) -> u64 {
        match self {
            Level::Single => smallest,
            Level::Raid0 => smallest * n,
            Level::Raid1 => smallest,
            Level::Raid5 => smallest * n.saturating_sub(1),
            Level::Raid6 => smallest * n.saturating_sub(2),
            Level::Raid10 => smallest * n / 2,
        }
    }
}

/// A disk as it was when it joined a volume, so a pulled or dead disk can still be named by bay and serial.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DiskSnapshot {
    pub id: String,
    pub serial: String,
    pub model: String,
    pub size_bytes: u64,
    pub slot: Option<u32>,
}

impl DiskSnapshot {
    /// "bay 2 (Virtual disk, serial CAIRN-BAY2)": how owners find the disk to pull.
    pub fn describe(&self) -> String {
        describe(self.slot, &self.model, &self.serial, &self.id)
    }
}

pub(crate) fn describe(slot: Option<u32>, model: &str, serial: &str, id: &str) -> String {
    let place = match slot {
        Some(n) => format!("bay {n}"),
        None => format!("disk {id}"),
    };
    if serial.is_empty() {
        format!("{place} ({model})")
    } else {
        format!("{place} ({model}, serial {serial})")
    }
}

/// A volume in Cairn's store: what it should be, never how it is (the kernel says that).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeRecord {
    pub name: String,
    pub level: Level,
    /// The md array's UUID (mdadm's colon form): how the array is found and assembled at boot.
    pub uuid: String,
    /// The md device number (`/dev/md<minor>`) this box uses for it.
    pub md_minor: u32,
    /// Member disks, in the order they joined.
    pub disks: Vec<DiskSnapshot>,
    pub created_s: u64,
    #[serde(default)]
    pub last_scrub_s: Option<u64>,
    #[serde(default)]
    pub last_mismatches: Option<u64>,
    /// The state last reported in the event log, so each change is logged once.
    #[serde(default)]
    pub last_state: String,
    /// A replace under way, written before any tool touches a disk and cleared in the same write that swaps the
    /// member: one left behind (power cut, tool failure) is completed or undone from what the disks say at the
    /// next start or change, so the new disk never ends up held by the array without being named here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacing: Option<Replacing>,
    /// The owner confirmed deleting the volume: written before its array is stopped and its disks cleared,
    /// so a delete cut off part way is finished at the next start instead of leaving a half-erased volume.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
}

/// The write-ahead intent of a replace: which member goes, which disk comes in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Replacing {
    /// The member being replaced (its id; the same as `with` for a member replacing itself).
    pub failed: String,
    /// The disk coming in, as it was when the replace started (it joins the member list as this).
    pub with: DiskSnapshot,
    /// Its kernel name then (names change between boots: the id finds it again).
    pub device: String,
    /// Whether the old member was healthy, so it is copied off while it stays in service (md hot replace).
    pub hot: bool,
}

/// What the owner asked to build.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub name: String,
    pub level: String,
    pub disks: Vec<String>,
    /// The volume's name again: the owner's consent to erase disks that hold data.
    #[serde(default)]
    pub confirm: Option<String>,
}

/// A checked request: the disks to use, and which of them hold data that will be erased.
#[derive(Debug, Clone)]
pub struct CreatePlan {
    pub name: String,
    pub level: Level,
    pub disks: Vec<DiskView>,
    pub erase: Vec<DiskView>,
    pub usable_bytes: u64,
}

/// Checks a create request against the disks as they are now; nothing is touched.
pub fn check_create(
    req: &CreateRequest,
    disks: &[DiskView],
    taken_names: &[String],
) -> Result<CreatePlan, StorageError> {
    cairn_accounts::validate_user_name(&req.name)
        .map_err(|e| StorageError::InvalidName(e.to_string()))?;
    if req.name == cairn_accounts::SYSTEM_VOLUME || taken_names.contains(&req.name) {
        return Err(StorageError::VolumeExists(req.name.clone()));
    }
    let level =
        Level::parse(&req.level).ok_or_else(|| StorageError::InvalidLevel(req.level.clone()))?;
    level
        .check_count(req.disks.len())
        .map_err(|rule| StorageError::DiskCount {
            level: level.name(),
            rule,
            got: req.disks.len(),
        })?;
    let mut chosen: Vec<DiskView> = Vec::new();
    for id in &req.disks {
        if chosen.iter().any(|d| d.disk.id == *id) {
            return Err(StorageError::DiskTwice(id.clone()));
        }
        let d = disks
            .iter()
            .find(|d| d.disk.id == *id)
            .ok_or_else(|| StorageError::NoSuchDisk(id.clone()))?;
        match d.disk.role {
            DiskRole::Boot => return Err(StorageError::BootMedium(d.describe())),
            _ if d.in_use.is_some() => {
                return Err(StorageError::DiskInUse {
                    disk: d.describe(),
                    by: d.in_use.clone().unwrap_or_default(),
                })
            }
            _ => {}
        }
        if d.disk.size_bytes < MIN_DISK_BYTES {
            return Err(StorageError::DiskTooSmall {
                disk: d.describe(),
                min_mib: MIN_DISK_BYTES / (1024 * 1024),
            });
        }
        chosen.push(d.clone());
    }
    let erase: Vec<DiskView> = chosen
        .iter()
        .filter(|d| d.disk.role != DiskRole::Free)
        .cloned()
        .collect();
    let unreadable: Vec<&DiskView> = chosen
        .iter()
        .filter(|d| d.disk.role == DiskRole::Unreadable)
        .collect();
    if !unreadable.is_empty() {
        // Its own confirmation: the volume's name (consent to erase data Cairn can see) does not cover a disk
        // whose contents nobody could read. The token also covers the other disks of the same request.
        let token = unreadable_token(&unreadable);
        if req.confirm.as_deref() != Some(token.as_str()) {
            return Err(unreadable_refusal(&unreadable, &erase, &token));
        }
    } else if !erase.is_empty() && req.confirm.as_deref() != Some(req.name.as_str()) {
        let what = erase.iter().map(holds).collect::<Vec<_>>().join("; ");
        return Err(StorageError::ConfirmRequired {
            volume: req.name.clone(),
            what: format!("Creating this volume erases everything on these disks: {what}"),
        });
    }
    let smallest = chosen.iter().map(|d| d.disk.size_bytes).min().unwrap_or(0);
    Ok(CreatePlan {
        name: req.name.clone(),
        level,
        usable_bytes: level.usable_bytes(chosen.len() as u64, smallest),
        disks: chosen,
        erase,
    })
}

/// "bay 3 (…) holds an ext2/3/4 filesystem": what a refusal says will be erased.
fn holds(d: &DiskView) -> String {
    format!(
        "{} holds {}",
        d.describe(),
        d.holds.as_deref().unwrap_or("data")
    )
}

/// The confirmation that consents to erasing these unreadable disks: typed by the owner, so it names them.
pub fn unreadable_token(disks: &[&DiskView]) -> String {
    let ids: Vec<&str> = disks.iter().map(|d| d.disk.id.as_str()).collect();
    format!("erase unreadable {}", ids.join(" "))
}

/// The refusal for building on unreadable disks: each with its read error, everything else to be erased, and
/// the words to type.
pub(crate) fn unreadable_refusal(
    unreadable: &[&DiskView],
    erase: &[DiskView],
    token: &str,
) -> StorageError {
    let failed = unreadable
        .iter()
        .map(|d| {
            format!(
                "{} could not be read ({})",
                d.describe(),
                d.read_error.as_deref().unwrap_or("unknown error")
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let others: Vec<String> = erase
        .iter()
        .filter(|d| d.disk.role != DiskRole::Unreadable)
        .map(holds)
        .collect();
    let others = if others.is_empty() {
        String::new()
    } else {
        format!(" It also erases: {}.", others.join("; "))
    };
    StorageError::UnreadableConfirmRequired {
        what: format!(
            "{failed}: it may be failing, and whatever it holds would be erased.{others} To use it anyway, confirm with \"{token}\"."
        ),
        token: token.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Disk;

    fn disk(id: &str, role: DiskRole, mib: u64) -> DiskView {
        DiskView {
            disk: Disk {
                id: id.into(),
                device: format!("vd-{id}"),
                serial: id.into(),
                model: "Virtual disk".into(),
                size_bytes: mib * 1024 * 1024,
                rotational: false,
                slot: Some(id.trim_start_matches("BAY").parse().unwrap_or(0)),
                role,
            },
            volume: None,
            holds: match role {
                DiskRole::Foreign => Some("an ext2/3/4 filesystem".into()),
                _ => None,
            },
            in_use: None,
            smart: "not available".into(),
            read_error: None,
        }
    }

    fn box_disks() -> Vec<DiskView> {
        let mut used = disk("BAY4", DiskRole::Member, 256);
        used.volume = Some("photos".into());
        used.in_use = Some("volume photos".into());
        vec![
            disk("BOOT", DiskRole::Boot, 322),
            disk("BAY1", DiskRole::Free, 256),
            disk("BAY2", DiskRole::Free, 256),
            disk("BAY3", DiskRole::Foreign, 512),
            used,
            disk("BAY5", DiskRole::Free, 32),
        ]
    }

    fn req(level: &str, disks: &[&str], confirm: Option<&str>) -> CreateRequest {
        CreateRequest {
            name: "media".into(),
            level: level.into(),
            disks: disks.iter().map(|s| s.to_string()).collect(),
            confirm: confirm.map(String::from),
        }
    }

    #[test]
    fn disk_counts_per_level() {
        for (level, ok, bad) in [
            (Level::Single, 1, 2),
            (Level::Raid0, 2, 1),
            (Level::Raid1, 2, 1),
            (Level::Raid5, 3, 2),
            (Level::Raid6, 4, 3),
            (Level::Raid10, 4, 5),
        ] {
            assert!(level.check_count(ok).is_ok(), "{level:?} {ok}");
            assert!(level.check_count(bad).is_err(), "{level:?} {bad}");
        }
        assert!(Level::Raid10.check_count(2).is_err());
    }

    const ALL: [Level; 6] = [
        Level::Single,
        Level::Raid0,
        Level::Raid1,
        Level::Raid5,
        Level::Raid6,
        Level::Raid10,
    ];

    #[test]
    fn each_level_is_created_with_its_md_level_number() {
        // md's level numbers (mdadm --level accepts them as written in the superblock); a single disk is a
        // one-disk mirror, so a second disk can join it later.
        let numbers: Vec<&str> = ALL.iter().map(|l| l.md_level()).collect();
        assert_eq!(numbers, ["1", "0", "1", "5", "6", "10"]);
    }

    #[test]
    fn each_level_reads_back_by_name_from_the_superblock_it_creates() {
        // At boot a volume's level comes back from its members' superblocks: what create wrote must name the
        // same level again, a one-disk mirror as single and a two-disk one as raid1.
        for level in ALL {
            let disks = (1..=4).find(|&n| level.check_count(n).is_ok()).unwrap();
            let sb = crate::contents::MdSuperblock {
                uuid: String::new(),
                name: "cairn:media".into(),
                level: level.md_level().parse().unwrap(),
                raid_disks: disks as u32,
                role: crate::contents::MemberRole::Active(0),
                events: 1,
                metadata: "1.2",
                member_data_bytes: 0,
            };
            assert_eq!(Level::parse(&sb.level_name()), Some(level), "{sb:?}");
        }
    }

    #[test]
    fn disks_each_level_may_lose_match_md() {
        // md(4): a mirror keeps working on any one of its disks, raid5 loses one disk, raid6 two, raid10 (near
        // 2 copies) one for sure (a second in the same pair loses data); single and raid0 none.
        for (level, disks, may_fail) in [
            (Level::Single, 1, 0),
            (Level::Raid0, 2, 0),
            (Level::Raid0, 4, 0),
            (Level::Raid1, 2, 1),
            (Level::Raid1, 3, 2),
            (Level::Raid5, 3, 1),
            (Level::Raid5, 5, 1),
            (Level::Raid6, 4, 2),
            (Level::Raid6, 6, 2),
            (Level::Raid10, 4, 1),
            (Level::Raid10, 6, 1),
        ] {
            assert_eq!(level.redundancy(disks), may_fail, "{level:?} of {disks}");
        }
    }

    #[test]
    fn usable_space_per_level_matches_md() {
        // md(4) on equal disks of G bytes: raid0 stripes all n, a mirror holds one copy, raid5 gives one disk
        // to parity and raid6 two, raid10 (near 2) keeps every block twice.
        const G: u64 = 1 << 30;
        for (level, disks, usable) in [
            (Level::Single, 1, G),
            (Level::Raid0, 3, 3 * G),
            (Level::Raid1, 2, G),
            (Level::Raid1, 3, G),
            (Level::Raid5, 3, 2 * G),
            (Level::Raid5, 5, 4 * G),
            (Level::Raid6, 4, 2 * G),
            (Level::Raid6, 5, 3 * G),
            (Level::Raid10, 4, 2 * G),
            (Level::Raid10, 6, 3 * G),
        ] {
            assert_eq!(level.usable_bytes(disks, G), usable, "{level:?} of {disks}");
        }
    }

    #[test]
    fn a_disk_of_exactly_the_minimum_is_accepted_and_one_sector_less_refused() {
        let mut d = box_disks();
        let mut edge = disk("BAY6", DiskRole::Free, 0);
        edge.disk.size_bytes = MIN_DISK_BYTES;
        d.push(edge);
        let plan = check_create(&req("raid1", &["BAY1", "BAY6"], None), &d, &[]).unwrap();
        assert_eq!(plan.usable_bytes, 64 * 1024 * 1024);

        d.last_mut().unwrap().disk.size_bytes = MIN_DISK_BYTES - 512;
        let e = check_create(&req("raid1", &["BAY1", "BAY6"], None), &d, &[]).unwrap_err();
        match &e {
            StorageError::DiskTooSmall { disk, min_mib } => {
                assert!(disk.contains("bay 6"), "{disk}");
                assert_eq!(*min_mib, 64);
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("at least 64 MiB"), "{e}");
    }

    #[test]
    fn too_few_disks_are_refused_with_the_rule() {
        let e =
            check_create(&req("raid5", &["BAY1", "BAY2"], None), &box_disks(), &[]).unwrap_err();
        assert!(
            matches!(
                e,
                StorageError::DiskCount {
                    got: 2,
                    rule: "at least 3 disks",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn the_boot_medium_and_disks_in_use_are_refused_by_name() {
        let e =
            check_create(&req("raid1", &["BAY1", "BOOT"], None), &box_disks(), &[]).unwrap_err();
        assert!(matches!(e, StorageError::BootMedium(_)), "{e:?}");
        let e = check_create(
            &req("raid1", &["BAY1", "BAY4"], Some("media")),
            &box_disks(),
            &[],
        )
        .unwrap_err();
        match e {
            StorageError::DiskInUse { disk, by } => {
                assert!(disk.contains("bay 4") && disk.contains("BAY4"), "{disk}");
                assert_eq!(by, "volume photos");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn foreign_data_needs_the_volume_name_as_confirmation() {
        let e =
            check_create(&req("raid1", &["BAY1", "BAY3"], None), &box_disks(), &[]).unwrap_err();
        match &e {
            StorageError::ConfirmRequired { what, .. } => assert!(
                what.contains("bay 3") && what.contains("ext2/3/4"),
                "{what}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(check_create(
            &req("raid1", &["BAY1", "BAY3"], Some("wrong")),
            &box_disks(),
            &[]
        )
        .is_err());
        let plan = check_create(
            &req("raid1", &["BAY1", "BAY3"], Some("media")),
            &box_disks(),
            &[],
        )
        .unwrap();
        assert_eq!(plan.erase.len(), 1);
        assert_eq!(plan.usable_bytes, 256 * 1024 * 1024);
    }

    #[test]
    fn an_unreadable_disk_needs_its_own_confirmation_naming_the_error() {
        let mut disks = box_disks();
        let mut bad = disk("BAY6", DiskRole::Unreadable, 256);
        bad.read_error =
            Some("reading bytes 0..131072 failed at byte 51200: Input/output error".into());
        disks.push(bad);
        let refusal = |confirm: Option<&str>| match check_create(
            &req("raid1", &["BAY3", "BAY6"], confirm),
            &disks,
            &[],
        ) {
            Err(StorageError::UnreadableConfirmRequired { what, token }) => (what, token),
            other => panic!("{confirm:?}: {other:?}"),
        };
        let (what, token) = refusal(None);
        assert_eq!(token, "erase unreadable BAY6");
        assert!(
            what.contains("bay 6") && what.contains("at byte 51200: Input/output error"),
            "{what}"
        );
        assert!(what.contains("bay 3") && what.contains(&token), "{what}");
        // The volume's name, consent enough for data Cairn can see, is not consent for what nobody could read.
        refusal(Some("media"));
        let plan =
            check_create(&req("raid1", &["BAY3", "BAY6"], Some(&token)), &disks, &[]).unwrap();
        assert_eq!(plan.erase.len(), 2);
    }
    #[test]
    fn unknown_twice_small_and_taken() {
        let d = box_disks();
        assert!(matches!(
            check_create(&req("raid1", &["BAY1", "NOPE"], None), &d, &[]),
            Err(StorageError::NoSuchDisk(_))
        ));
        assert!(matches!(
            check_create(&req("raid1", &["BAY1", "BAY1"], None), &d, &[]),
            Err(StorageError::DiskTwice(_))
        ));
        assert!(matches!(
            check_create(&req("raid1", &["BAY1", "BAY5"], None), &d, &[]),
            Err(StorageError::DiskTooSmall { .. })
        ));
        assert!(matches!(
            check_create(
                &req("raid1", &["BAY1", "BAY2"], None),
                &d,
                &["media".into()]
            ),
            Err(StorageError::VolumeExists(_))
        ));
        assert!(matches!(
            check_create(&req("raid7", &["BAY1", "BAY2"], None), &d, &[]),
            Err(StorageError::InvalidLevel(_))
        ));
        let mut bad = req("raid1", &["BAY1", "BAY2"], None);
        bad.name = "../etc".into();
        assert!(matches!(
            check_create(&bad, &d, &[]),
            Err(StorageError::InvalidName(_))
        ));
        bad.name = "system".into();
        assert!(matches!(
            check_create(&bad, &d, &[]),
            Err(StorageError::InvalidName(_) | StorageError::VolumeExists(_))
        ));
        let plan = check_create(
            &req("raid5", &["BAY1", "BAY2", "BAY3"], Some("media")),
            &d,
            &[],
        )
        .unwrap();
        assert_eq!(plan.usable_bytes, 2 * 256 * 1024 * 1024);
    }
}
