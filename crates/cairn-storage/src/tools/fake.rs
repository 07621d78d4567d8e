//! A small md simulator for host tests: it changes a fixture tree (`Paths { sys, dev, proc, data }`) the way
//! the kernel and mdadm would, so the manager reads back sysfs, /proc/mounts and disk heads exactly as on the
//! box. Arrays get `sys/block/mdN/md/*` attributes, `holders/mdN` under each member and a real md 1.2
//! superblock at 4 KiB in each member's file under `dev/` (so assembly after a "reboot" finds them by UUID and
//! leaves stale members out by their event count). A filesystem lives with its array: unmounting or a power
//! cut shelves the mount point's files, mounting brings them back, so a file written to a volume is found
//! again only if the right array is assembled and mounted.
//!
//! The test drives time: [`Fake::finish_sync`] ends a resync, rebuild or scrub, [`Fake::pull`] and
//! [`Fake::insert`] move disks, [`Fake::power_cut`] forgets everything running (disk files keep their bytes).
//! Every call is recorded, and [`Fake::crash_after`] makes a later call panic (the power goes off before it
//! takes effect) so a test can cut power between any two steps.

use super::{Fsck, Tools, HOMEHOST};
use crate::contents::{parse_md_superblock, MemberRole};
use crate::manager::Paths;
use crate::volumes::Level;
use crate::StorageError;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// md's superblock feature bit for a device that is replacing another (`MD_FEATURE_REPLACEMENT`).
const MD_FEATURE_REPLACEMENT: u32 = 16;

/// The panic payload of a call made after the power went off.
#[derive(Debug)]
pub struct PowerOff;

/// One call the manager made, with its arguments as given (paths as strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: &'static str,
    pub args: Vec<String>,
}

impl Call {
    /// Whether an argument names device `name` (`vdb` matches `/…/dev/vdb`).
    pub fn names(&self, name: &str) -> bool {
        self.args
            .iter()
            .any(|a| a == name || Path::new(a).file_name().is_some_and(|f| f == name))
    }

    /// Whether the call erases what is on a disk (its superblock or its ends).
    pub fn wipes(&self) -> bool {
        matches!(self.method, "zero_superblock" | "wipe_ends")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InSync,
    Spare,
    Faulty,
}

#[derive(Debug, Clone)]
struct Member {
    dev: String,
    dev_number: u32,
    /// The slot an in-sync member fills.
    slot: u32,
    state: State,
    /// False once the device left the box (md keeps the member until it is failed out).
    exists: bool,
    /// The member a hot-replace spare takes over from.
    replaces: Option<String>,
}

#[derive(Debug, Clone)]
struct Array {
    uuid: [u8; 16],
    name: String,
    level: i32,
    raid_disks: u32,
    events: u64,
    members: Vec<Member>,
    sync_action: String,
    mismatch_cnt: u64,
    component_kib: u64,
    next_dev_number: u32,
}

impl Array {
    fn in_sync(&self) -> u32 {
        self.members
            .iter()
            .filter(|m| m.state == State::InSync)
            .count() as u32
    }

    fn degraded(&self) -> u32 {
        self.raid_disks.saturating_sub(self.in_sync())
    }

    fn redundancy(&self) -> u32 {
        match self.level {
            1 => self.raid_disks.saturating_sub(1),
            5 | 10 => 1,
            6 => 2,
            _ => 0,
        }
    }

    fn uuid_text(&self) -> String {
        self.uuid
            .chunks(4)
            .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>())
            .collect::<Vec<_>>()
            .join(":")
    }

    fn level_name(&self) -> &'static str {
        match self.level {
            0 => "raid0",
            1 => "raid1",
            5 => "raid5",
            6 => "raid6",
            10 => "raid10",
            _ => "linear",
        }
    }

    fn data_disks(&self) -> u64 {
        let n = self.raid_disks as u64;
        match self.level {
            0 => n,
            1 => 1,
            5 => n - 1,
            6 => n - 2,
            _ => n / 2,
        }
    }
}

#[derive(Default)]
struct Machine {
    calls: Vec<Call>,
    /// Calls started so far (recorded or not).
    started: usize,
    crash_at: Option<usize>,
    crashed: bool,
    refuse: Option<(&'static str, String)>,
    arrays: BTreeMap<u32, Array>,
    uuids_made: u32,
    /// Arrays (by UUID text) that carry a filesystem.
    filesystems: BTreeSet<String>,
    /// Mount point → UUID of the array mounted there.
    mounts: BTreeMap<PathBuf, String>,
    /// Mismatches the next scrub of an array finds.
    mismatches: BTreeMap<u32, u64>,
    modules: Vec<String>,
    /// A disk to swap for a stranger when a chosen call returns ([`Fake::swap_after`]).
    swap: Option<Swap>,
}

#[derive(Debug, Clone)]
struct Swap {
    method: &'static str,
    device: String,
    disk: String,
    serial: String,
}

/// The byte a disk swapped in by [`Fake::swap_after`] is filled with, so a test can tell it was never written.
pub const STRANGER_BYTE: u8 = 0x5a;

/// The machine while one call runs; a swap due when that call returns happens as it ends.
struct Session<'a> {
    machine: MutexGuard<'a, Machine>,
    fake: &'a Fake,
    swap: Option<Swap>,
}

impl std::ops::Deref for Session<'_> {
    type Target = Machine;
    fn deref(&self) -> &Machine {
        &self.machine
    }
}

impl std::ops::DerefMut for Session<'_> {
    fn deref_mut(&mut self) -> &mut Machine {
        &mut self.machine
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if let Some(swap) = self.swap.take() {
            self.fake.swap_now(&swap);
        }
    }
}

/// The simulator. Share it as `Arc<Fake>` between the test and `Storage::with_tools`.
pub struct Fake {
    paths: Paths,
    machine: Mutex<Machine>,
    gate: Mutex<Gate>,
    gate_changed: std::sync::Condvar,
}

/// A call held before it takes effect ([`Fake::hold`]), as a long tool run is.
#[derive(Default)]
struct Gate {
    method: Option<&'static str>,
    waiting: bool,
}

fn tool_err(step: &str, detail: impl Into<String>) -> StorageError {
    StorageError::Tool {
        step: step.into(),
        detail: detail.into(),
    }
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn minor_of(md: &Path) -> u32 {
    name_of(md)
        .strip_prefix("md")
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX)
}

/// The step words the real tools use, so events read the same.
fn step_of(method: &str) -> &'static str {
    match method {
        "load_module" => "loading the RAID driver",
        "zero_superblock" => "clearing old RAID labels",
        "create_array" => "creating the RAID array",
        "array_uuid" => "reading the new array",
        "assemble" => "assembling the RAID array",
        "fail" => "marking the disk failed",
        "remove" => "removing the disk from the array",
        "add" => "adding the new disk",
        "hot_replace" => "replacing the disk",
        "stop" => "stopping the RAID array",
        "fail_detached" => "failing a removed disk",
        "mkfs_ext4" => "creating the filesystem",
        "fsck" => "checking the filesystem",
        "mount" => "mounting the filesystem",
        "unmount" => "unmounting the filesystem",
        _ => "changing the machine",
    }
}

impl Fake {
    pub fn new(paths: &Paths) -> Fake {
        Fake {
            paths: paths.clone(),
            machine: Mutex::new(Machine::default()),
            gate: Mutex::new(Gate::default()),
            gate_changed: std::sync::Condvar::new(),
        }
    }

    fn machine(&self) -> MutexGuard<'_, Machine> {
        self.machine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every call so far that took effect, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.machine().calls.clone()
    }

    /// How many calls were made so far (the numbering [`Fake::crash_after`] counts in).
    pub fn call_count(&self) -> usize {
        self.machine().started
    }

    /// Kernel modules loaded so far.
    pub fn modules(&self) -> Vec<String> {
        self.machine().modules.clone()
    }

    /// Lets `n` more calls through; the one after panics with [`PowerOff`] before taking effect, and so does
    /// every call until [`Fake::power_cut`].
    pub fn crash_after(&self, n: usize) {
        let mut m = self.machine();
        m.crash_at = Some(m.started + n);
    }

    /// A hot-swap: when the next call of `method` naming `device` returns (it took effect), the disk in
    /// `disk`'s bay is replaced by another one, under the same kernel name: it reports `serial` and holds
    /// only [`STRANGER_BYTE`]s, so a test sees whether anything wrote to it afterwards.
    pub fn swap_after(&self, method: &'static str, device: &str, disk: &str, serial: &str) {
        self.machine().swap = Some(Swap {
            method,
            device: device.into(),
            disk: disk.into(),
            serial: serial.into(),
        });
    }

    fn swap_now(&self, swap: &Swap) {
        let dir = self.paths.sys.join("block").join(&swap.disk);
        std::fs::write(dir.join("serial"), format!("{}\n", swap.serial)).expect("sysfs serial");
        let node = self.paths.dev.join(&swap.disk);
        let len = std::fs::metadata(&node).map(|m| m.len()).unwrap_or(0);
        std::fs::write(&node, vec![STRANGER_BYTE; len as usize]).expect("disk file");
    }

    /// The next call of `method` waits, before it takes effect, until [`Fake::release`]: a tool that runs
    /// for a long time (a filesystem check of a big volume), during which a test does other things.
    pub fn hold(&self, method: &'static str) {
        self.gate.lock().unwrap_or_else(|p| p.into_inner()).method = Some(method);
    }

    /// Waits until a held call is waiting (panics after 10 s).
    pub fn wait_held(&self) {
        let gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        let (gate, timeout) = self
            .gate_changed
            .wait_timeout_while(gate, Duration::from_secs(10), |g| !g.waiting)
            .unwrap_or_else(|p| p.into_inner());
        assert!(!timeout.timed_out() || gate.waiting, "no held call came");
    }

    /// Lets the held call go on.
    pub fn release(&self) {
        let mut gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        gate.method = None;
        self.gate_changed.notify_all();
    }

    /// A held call waits here, outside the machine's lock.
    fn pass_gate(&self, method: &'static str) {
        let mut gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        if gate.method != Some(method) {
            return;
        }
        gate.waiting = true;
        self.gate_changed.notify_all();
        while gate.method == Some(method) {
            gate = self
                .gate_changed
                .wait(gate)
                .unwrap_or_else(|p| p.into_inner());
        }
        gate.waiting = false;
    }

    /// Whether a call found the power off.
    pub fn crashed(&self) -> bool {
        self.machine().crashed
    }

    /// The next call of `method` fails with `detail` as the tool's words.
    pub fn refuse(&self, method: &'static str, detail: &str) {
        self.machine().refuse = Some((method, detail.into()));
    }

    /// Sets how many mismatches the next scrub of `/dev/md<minor>` finds.
    pub fn set_mismatches(&self, minor: u32, n: u64) {
        self.machine().mismatches.insert(minor, n);
    }

    /// The kernel finishes what it was doing on `/dev/md<minor>`: a resync, a rebuild (spares become in sync,
    /// a hot-replaced member faulty) or a scrub (counting the mismatches set before).
    pub fn finish_sync(&self, minor: u32) {
        let mut m = self.machine();
        let pending = m.mismatches.remove(&minor).unwrap_or(0);
        let Some(a) = m.arrays.get_mut(&minor) else {
            return;
        };
        match a.sync_action.as_str() {
            "check" => a.mismatch_cnt = pending,
            "recover" => {
                let spares: Vec<usize> = (0..a.members.len())
                    .filter(|&i| a.members[i].state == State::Spare && a.members[i].exists)
                    .collect();
                for i in spares {
                    if let Some(old) = a.members[i].replaces.take() {
                        if let Some(o) = a.members.iter().position(|x| x.dev == old) {
                            a.members[i].slot = a.members[o].slot;
                            a.members[i].state = State::InSync;
                            a.members[o].state = State::Faulty;
                        }
                    } else if let Some(slot) = (0..a.raid_disks).find(|s| {
                        !a.members
                            .iter()
                            .any(|x| x.state == State::InSync && x.slot == *s)
                    }) {
                        a.members[i].slot = slot;
                        a.members[i].state = State::InSync;
                    }
                }
            }
            _ => {}
        }
        a.sync_action = "idle".into();
        a.events += 1;
        let a = a.clone();
        self.write_array(minor, &a);
    }

    /// A disk fails under the kernel (I/O errors): md marks its member faulty and keeps it in the array.
    pub fn break_disk(&self, disk: &str) {
        let mut m = self.machine();
        let mut changed = vec![];
        for (minor, a) in m.arrays.iter_mut() {
            if let Some(mem) = a.members.iter_mut().find(|x| x.dev == disk) {
                mem.state = State::Faulty;
                a.events += 1;
                changed.push((*minor, a.clone()));
            }
        }
        for (minor, a) in changed {
            self.write_array(minor, &a);
        }
    }

    /// Pulls a disk out of its bay: it leaves sysfs and `dev/` (its bytes are kept for [`Fake::insert`]);
    /// an array it runs in keeps it as a member whose device no longer exists, as the kernel does.
    pub fn pull(&self, disk: &str) {
        let link = self.paths.sys.join("block").join(disk);
        let target = std::fs::read_link(&link).expect("a disk in the box");
        // The device is gone with everything stacked on it; a disk put back comes with empty holders.
        if let Ok(holders) = std::fs::read_dir(link.join("holders")) {
            for h in holders.flatten() {
                let _ = std::fs::remove_dir(h.path());
            }
        }
        std::fs::remove_file(&link).expect("sysfs link");
        let away = self.pulled_dir();
        std::fs::create_dir_all(&away).expect("shelf");
        std::fs::write(
            away.join(format!("{disk}.link")),
            target.to_string_lossy().as_bytes(),
        )
        .expect("shelf");
        std::fs::rename(self.paths.dev.join(disk), away.join(disk)).expect("disk file");
        let mut m = self.machine();
        let mut changed = vec![];
        for (minor, a) in m.arrays.iter_mut() {
            if let Some(mem) = a.members.iter_mut().find(|x| x.dev == disk) {
                mem.exists = false;
                changed.push((*minor, a.clone()));
            }
        }
        for (minor, a) in changed {
            self.write_array(minor, &a);
        }
    }

    /// Puts a pulled disk back, under the same kernel name, with the bytes it had.
    pub fn insert(&self, disk: &str) {
        let away = self.pulled_dir();
        let target = std::fs::read_to_string(away.join(format!("{disk}.link"))).expect("pulled");
        std::os::unix::fs::symlink(target, self.paths.sys.join("block").join(disk))
            .expect("sysfs link");
        std::fs::rename(away.join(disk), self.paths.dev.join(disk)).expect("disk file");
    }

    /// The power goes off and comes back: every array stops (holders go), every mount goes (its files stay
    /// with the array's filesystem), calls work again. Disk files keep their bytes.
    pub fn power_cut(&self) {
        let mut m = self.machine();
        m.crash_at = None;
        m.crashed = false;
        m.refuse = None;
        let mounts: Vec<(PathBuf, String)> = std::mem::take(&mut m.mounts).into_iter().collect();
        for (dir, uuid) in mounts {
            self.shelve(&dir, &uuid);
            self.drop_mount_line(&dir);
        }
        let arrays: Vec<(u32, Array)> = std::mem::take(&mut m.arrays).into_iter().collect();
        for (minor, a) in arrays {
            self.clear_array(minor, &a);
        }
    }

    fn pulled_dir(&self) -> PathBuf {
        self.paths.dev.join(".fake-pulled")
    }

    fn shelf(&self, uuid: &str) -> PathBuf {
        self.paths.dev.join(".fake-fs").join(uuid.replace(':', ""))
    }

    /// Moves a mount point's files onto the array's filesystem shelf.
    fn shelve(&self, dir: &Path, uuid: &str) {
        let shelf = self.shelf(uuid);
        let _ = std::fs::create_dir_all(&shelf);
        move_entries(dir, &shelf);
    }

    fn drop_mount_line(&self, dir: &Path) {
        let mounts = self.paths.proc.join("mounts");
        let text = std::fs::read_to_string(&mounts).unwrap_or_default();
        let dir = dir.to_string_lossy();
        let kept: String = text
            .lines()
            .filter(|l| l.split_whitespace().nth(1) != Some(&dir))
            .map(|l| format!("{l}\n"))
            .collect();
        let _ = write_whole(&mounts, kept.as_bytes());
    }

    /// Counts a call; panics instead when the power is off; fails it when the test asked for that.
    fn call(&self, method: &'static str, args: &[&Path]) -> Result<Session<'_>, StorageError> {
        self.pass_gate(method);
        let mut m = self.machine();
        let n = m.started;
        m.started += 1;
        if m.crashed || m.crash_at == Some(n) {
            m.crashed = true;
            drop(m);
            // Not a bug: the simulated power went off. No panic hook runs, so test output stays clean.
            std::panic::resume_unwind(Box::new(PowerOff));
        }
        let call = Call {
            method,
            args: args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
        };
        let swap = m
            .swap
            .take_if(|s| s.method == method && call.names(&s.device));
        m.calls.push(call);
        if m.refuse.as_ref().is_some_and(|(r, _)| *r == method) {
            let (_, detail) = m.refuse.take().unwrap_or(("", String::new()));
            return Err(tool_err(step_of(method), detail));
        }
        Ok(Session {
            machine: m,
            fake: self,
            swap,
        })
    }

    /// The array a device runs in, if any.
    fn holder(m: &Machine, dev: &str) -> Option<u32> {
        m.arrays
            .iter()
            .find(|(_, a)| a.members.iter().any(|x| x.dev == dev))
            .map(|(minor, _)| *minor)
    }

    fn disk_sectors(&self, dev: &str) -> u64 {
        std::fs::read_to_string(self.paths.sys.join("block").join(dev).join("size"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Writes what the kernel shows of an array: sysfs attributes, holders, superblocks on its members.
    fn write_array(&self, minor: u32, a: &Array) {
        let block = self.paths.sys.join("block").join(format!("md{minor}"));
        let md = block.join("md");
        let _ = std::fs::remove_dir_all(&block);
        std::fs::create_dir_all(&md).expect("sysfs");
        let busy = a.sync_action != "idle";
        let component_sectors = a.component_kib * 2;
        let attrs = [
            ("array_state", "clean".to_string()),
            ("uuid", a.uuid_text()),
            ("level", a.level_name().to_string()),
            ("degraded", a.degraded().to_string()),
            ("sync_action", a.sync_action.clone()),
            (
                "sync_completed",
                if busy {
                    format!("0 / {component_sectors}")
                } else {
                    "none".into()
                },
            ),
            (
                "sync_speed",
                if busy { "1000".into() } else { "none".into() },
            ),
            ("component_size", a.component_kib.to_string()),
            ("mismatch_cnt", a.mismatch_cnt.to_string()),
        ];
        for (name, value) in attrs {
            std::fs::write(md.join(name), format!("{value}\n")).expect("sysfs");
        }
        std::fs::write(
            block.join("size"),
            format!("{}\n", component_sectors * a.data_disks()),
        )
        .expect("sysfs");
        for mem in &a.members {
            let dir = md.join(format!("dev-{}", mem.dev));
            std::fs::create_dir_all(&dir).expect("sysfs");
            let state = match mem.state {
                State::InSync => "in_sync",
                State::Spare => "spare",
                State::Faulty => "faulty",
            };
            std::fs::write(dir.join("state"), format!("{state}\n")).expect("sysfs");
            let holders = self.paths.sys.join("block").join(&mem.dev).join("holders");
            if holders.exists() {
                let _ = std::fs::create_dir_all(holders.join(format!("md{minor}")));
            }
            // md writes superblocks to working members only: a faulty one keeps its stale copy.
            if mem.exists && mem.state != State::Faulty {
                let _ = self.write_superblock(a, mem);
            }
        }
    }

    /// Takes an array out of sysfs and its members' holders.
    fn clear_array(&self, minor: u32, a: &Array) {
        let _ = std::fs::remove_dir_all(self.paths.sys.join("block").join(format!("md{minor}")));
        for mem in &a.members {
            self.clear_holder(&mem.dev, minor);
        }
    }

    fn clear_holder(&self, dev: &str, minor: u32) {
        let _ = std::fs::remove_dir(
            self.paths
                .sys
                .join("block")
                .join(dev)
                .join("holders")
                .join(format!("md{minor}")),
        );
    }

    /// An md 1.2 superblock at 4 KiB: the fields `contents::parse_md_superblock` reads, as mdadm lays them out.
    fn write_superblock(&self, a: &Array, mem: &Member) -> std::io::Result<()> {
        let max_dev = a.next_dev_number.max(a.raid_disks);
        let mut sb = vec![0u8; 256 + 2 * max_dev as usize];
        sb[0..4].copy_from_slice(&0xa92b_4efcu32.to_le_bytes());
        sb[4..8].copy_from_slice(&1u32.to_le_bytes());
        sb[16..32].copy_from_slice(&a.uuid);
        let name = a.name.as_bytes();
        sb[32..32 + name.len().min(32)].copy_from_slice(&name[..name.len().min(32)]);
        sb[72..76].copy_from_slice(&a.level.to_le_bytes());
        sb[92..96].copy_from_slice(&a.raid_disks.to_le_bytes());
        sb[136..144].copy_from_slice(&(a.component_kib * 2).to_le_bytes());
        sb[160..164].copy_from_slice(&mem.dev_number.to_le_bytes());
        sb[200..208].copy_from_slice(&a.events.to_le_bytes());
        // resync_offset: where an unfinished resync resumes after a restart; all ones when the copies agree.
        let resync_from: u64 = if a.sync_action == "resync" {
            0
        } else {
            u64::MAX
        };
        sb[208..216].copy_from_slice(&resync_from.to_le_bytes());
        sb[220..224].copy_from_slice(&max_dev.to_le_bytes());
        // A hot-replace spare holds the slot it takes over and the replacement feature bit, so md resumes the
        // copy after a restart.
        let replacing = |x: &Member| {
            x.replaces
                .as_ref()
                .and_then(|old| a.members.iter().find(|o| o.dev == *old))
                .map(|o| o.slot)
        };
        if mem.state == State::Spare && replacing(mem).is_some() {
            sb[8..12].copy_from_slice(&MD_FEATURE_REPLACEMENT.to_le_bytes());
        }
        for i in 0..max_dev {
            let role: u16 = match a.members.iter().find(|x| x.dev_number == i) {
                Some(x) if x.state == State::InSync => x.slot as u16,
                Some(x) if x.state == State::Spare && replacing(x).is_some() => {
                    replacing(x).unwrap_or(0) as u16
                }
                Some(x) if x.state == State::Spare => 0xffff,
                _ => 0xfffe,
            };
            let at = 256 + 2 * i as usize;
            sb[at..at + 2].copy_from_slice(&role.to_le_bytes());
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.paths.dev.join(&mem.dev))?;
        f.seek(SeekFrom::Start(4096))?;
        f.write_all(&sb)
    }

    /// Whether the superblock on `dev` marks a hot-replace spare (md's replacement feature bit).
    fn is_replacement(&self, dev: &Path) -> bool {
        superblock_field(dev, 8, 4).is_some_and(|f| f as u32 & MD_FEATURE_REPLACEMENT != 0)
    }

    /// Whether the superblock on `dev` says a resync was under way (`resync_offset` short of all ones).
    fn resync_pending(&self, dev: &Path) -> bool {
        superblock_field(dev, 208, 8).is_some_and(|f| f != u64::MAX)
    }

    fn read_superblock(&self, dev: &Path) -> Option<crate::contents::MdSuperblock> {
        let bytes = std::fs::read(dev).ok()?;
        parse_md_superblock(bytes.get(4096..)?, "1.2")
    }
}

/// A little-endian field of `len` bytes at `at` in the md 1.2 superblock on `dev`.
fn superblock_field(dev: &Path, at: usize, len: usize) -> Option<u64> {
    let bytes = std::fs::read(dev).ok()?;
    let field = bytes.get(4096 + at..4096 + at + len)?;
    Some(
        field
            .iter()
            .rev()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
    )
}

/// Replaces a file's contents in one step, as the kernel's /proc/mounts changes: a reader in another thread
/// never sees it half written.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("fake-new");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Moves every entry of `from` into `to` (same filesystem).
fn move_entries(from: &Path, to: &Path) {
    if let Ok(entries) = std::fs::read_dir(from) {
        for e in entries.flatten() {
            let _ = std::fs::rename(e.path(), to.join(e.file_name()));
        }
    }
}

fn parse_uuid(text: &str) -> [u8; 16] {
    let hex: Vec<u8> = text
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect::<String>()
        .as_bytes()
        .chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap_or("0"), 16).unwrap_or(0))
        .collect();
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(hex) {
        *o = b;
    }
    out
}

impl Tools for Fake {
    fn load_module(&self, name: &str) -> Result<(), StorageError> {
        let mut m = self.call("load_module", &[Path::new(name)])?;
        m.modules.push(name.into());
        Ok(())
    }

    fn zero_superblock(&self, dev: &Path) -> Result<(), StorageError> {
        let m = self.call("zero_superblock", &[dev])?;
        if Self::holder(&m, &name_of(dev)).is_some() {
            return Err(tool_err(
                step_of("zero_superblock"),
                format!("Couldn't open {} for write - not zeroing", dev.display()),
            ));
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(dev)
            .map_err(|e| tool_err(step_of("zero_superblock"), e.to_string()))?;
        f.seek(SeekFrom::Start(4096))
            .and_then(|_| f.write_all(&[0u8; 4096]))
            .map_err(|e| tool_err(step_of("zero_superblock"), e.to_string()))
    }

    fn wipe_ends(&self, dev: &Path) -> Result<(), StorageError> {
        let _m = self.call("wipe_ends", &[dev])?;
        let io = |e: std::io::Error| StorageError::Io(e.to_string());
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(dev)
            .map_err(io)?;
        let size = f.seek(SeekFrom::End(0)).map_err(io)?;
        let len = size.min(1024 * 1024);
        let zeros = vec![0u8; len as usize];
        f.seek(SeekFrom::Start(0)).map_err(io)?;
        f.write_all(&zeros).map_err(io)?;
        f.seek(SeekFrom::Start(size - len)).map_err(io)?;
        f.write_all(&zeros).map_err(io)
    }

    fn create_array(
        &self,
        md: &Path,
        name: &str,
        level: Level,
        devices: &[PathBuf],
    ) -> Result<(), StorageError> {
        let mut args: Vec<&Path> = vec![md, Path::new(name), Path::new(level.name())];
        args.extend(devices.iter().map(|d| d.as_path()));
        let mut m = self.call("create_array", &args)?;
        let step = step_of("create_array");
        let minor = minor_of(md);
        if m.arrays.contains_key(&minor) {
            return Err(tool_err(
                step,
                format!("{} is already active", md.display()),
            ));
        }
        let mut members = vec![];
        for (i, d) in devices.iter().enumerate() {
            let dev = name_of(d);
            if !d.exists() || Self::holder(&m, &dev).is_some() {
                return Err(tool_err(
                    step,
                    format!("cannot open {}: Device or resource busy", d.display()),
                ));
            }
            members.push(Member {
                dev,
                dev_number: i as u32,
                slot: i as u32,
                state: State::InSync,
                exists: true,
                replaces: None,
            });
        }
        let smallest = members
            .iter()
            .map(|x| self.disk_sectors(&x.dev) / 2)
            .min()
            .unwrap_or(0);
        m.uuids_made += 1;
        let mut uuid = [0u8; 16];
        uuid[0..4].copy_from_slice(&[0xfa, 0x4e, 0x00, 0x00]);
        uuid[4..8].copy_from_slice(&m.uuids_made.to_be_bytes());
        uuid[8..12].copy_from_slice(&minor.to_be_bytes());
        let n = devices.len() as u32;
        let a = Array {
            uuid,
            name: format!("{HOMEHOST}:{name}"),
            level: level.md_level().parse().unwrap_or(1),
            raid_disks: n,
            events: 1,
            members,
            // Mirrors and parity arrays first make their copies agree; striping has nothing to sync.
            sync_action: if n > 1 && level != Level::Raid0 {
                "resync".into()
            } else {
                "idle".into()
            },
            mismatch_cnt: 0,
            component_kib: smallest.saturating_sub(1024),
            next_dev_number: n,
        };
        self.write_array(minor, &a);
        m.arrays.insert(minor, a);
        Ok(())
    }

    fn array_uuid(&self, md: &Path) -> Result<String, StorageError> {
        let m = self.call("array_uuid", &[md])?;
        m.arrays
            .get(&minor_of(md))
            .map(|a| a.uuid_text())
            .ok_or_else(|| tool_err(step_of("array_uuid"), "cannot open: No such device"))
    }

    fn assemble(&self, md: &Path, uuid: &str, devices: &[PathBuf]) -> Result<(), StorageError> {
        let mut args: Vec<&Path> = vec![md, Path::new(uuid)];
        args.extend(devices.iter().map(|d| d.as_path()));
        let mut m = self.call("assemble", &args)?;
        let step = step_of("assemble");
        let minor = minor_of(md);
        if m.arrays.contains_key(&minor) {
            return Err(tool_err(
                step,
                format!("{} is already active", md.display()),
            ));
        }
        let want = parse_uuid(uuid);
        let found: Vec<(String, crate::contents::MdSuperblock)> = devices
            .iter()
            .filter_map(|d| Some((name_of(d), self.read_superblock(d)?)))
            .filter(|(dev, sb)| parse_uuid(&sb.uuid) == want && Self::holder(&m, dev).is_none())
            .collect();
        let replacement: BTreeSet<String> = devices
            .iter()
            .filter(|d| self.is_replacement(d))
            .map(|d| name_of(d))
            .collect();
        let Some(newest) = found.iter().map(|(_, sb)| sb.events).max() else {
            return Err(tool_err(step, "no devices found for the array"));
        };
        let first = &found[0].1;
        let mut a = Array {
            uuid: want,
            name: first.name.clone(),
            level: first.level,
            raid_disks: first.raid_disks,
            events: newest + 1,
            members: vec![],
            sync_action: "idle".into(),
            mismatch_cnt: 0,
            component_kib: first.member_data_bytes / 1024,
            next_dev_number: 0,
        };
        // Members with an older event count missed changes: mdadm leaves them out ("non-fresh").
        for (i, (dev, sb)) in found.iter().enumerate() {
            if sb.events < newest {
                continue;
            }
            let (state, slot) = match sb.role {
                MemberRole::Active(s) if replacement.contains(dev) => (State::Spare, s as u32),
                MemberRole::Active(s) => (State::InSync, s as u32),
                MemberRole::Spare => (State::Spare, 0),
                _ => continue,
            };
            a.members.push(Member {
                dev: dev.clone(),
                dev_number: i as u32,
                slot,
                state,
                exists: true,
                replaces: None,
            });
        }
        a.next_dev_number = found.len() as u32;
        // A replacement resumes copying from the member in the slot it takes over.
        for i in 0..a.members.len() {
            if !replacement.contains(&a.members[i].dev) {
                continue;
            }
            let slot = a.members[i].slot;
            let old = a
                .members
                .iter()
                .find(|x| x.state == State::InSync && x.slot == slot)
                .map(|x| x.dev.clone());
            if old.is_some() {
                a.sync_action = "recover".into();
            } else {
                a.members[i].slot = 0;
            }
            a.members[i].replaces = old;
        }
        if a.in_sync() + a.redundancy() < a.raid_disks {
            return Err(tool_err(
                step,
                format!(
                    "{} assembled from {} drives - not enough to start the array",
                    md.display(),
                    a.in_sync()
                ),
            ));
        }
        if a.degraded() > 0 && a.members.iter().any(|x| x.state == State::Spare) {
            a.sync_action = "recover".into();
        } else if a.sync_action == "idle"
            && devices.iter().any(|d| {
                found
                    .iter()
                    .any(|(dev, sb)| *dev == name_of(d) && sb.events == newest)
                    && self.resync_pending(d)
            })
        {
            // A resync cut off by the restart resumes.
            a.sync_action = "resync".into();
        }
        self.write_array(minor, &a);
        m.arrays.insert(minor, a);
        Ok(())
    }

    fn fail(&self, md: &Path, dev: &Path) -> Result<(), StorageError> {
        let mut m = self.call("fail", &[md, dev])?;
        let minor = minor_of(md);
        let name = name_of(dev);
        let a = m
            .arrays
            .get_mut(&minor)
            .ok_or_else(|| tool_err(step_of("fail"), "No such device"))?;
        let mem = a
            .members
            .iter_mut()
            .find(|x| x.dev == name)
            .ok_or_else(|| tool_err(step_of("fail"), format!("{name} is not a member")))?;
        mem.state = State::Faulty;
        mem.replaces = None;
        a.events += 1;
        let a = a.clone();
        self.write_array(minor, &a);
        Ok(())
    }

    fn remove(&self, md: &Path, dev: &Path) -> Result<(), StorageError> {
        let mut m = self.call("remove", &[md, dev])?;
        let minor = minor_of(md);
        let name = name_of(dev);
        let a = m
            .arrays
            .get_mut(&minor)
            .ok_or_else(|| tool_err(step_of("remove"), "No such device"))?;
        let i = a
            .members
            .iter()
            .position(|x| x.dev == name)
            .ok_or_else(|| tool_err(step_of("remove"), format!("{name} is not a member")))?;
        if a.members[i].state == State::InSync {
            return Err(tool_err(step_of("remove"), "Device or resource busy"));
        }
        a.members.remove(i);
        a.events += 1;
        let a = a.clone();
        self.clear_holder(&name, minor);
        self.write_array(minor, &a);
        Ok(())
    }

    fn add(&self, md: &Path, dev: &Path) -> Result<(), StorageError> {
        let mut m = self.call("add", &[md, dev])?;
        let minor = minor_of(md);
        let name = name_of(dev);
        if !dev.exists() || Self::holder(&m, &name).is_some() {
            return Err(tool_err(
                step_of("add"),
                format!("cannot open {}: Device or resource busy", dev.display()),
            ));
        }
        let a = m
            .arrays
            .get_mut(&minor)
            .ok_or_else(|| tool_err(step_of("add"), "No such device"))?;
        a.members.push(Member {
            dev: name,
            dev_number: a.next_dev_number,
            slot: 0,
            state: State::Spare,
            exists: true,
            replaces: None,
        });
        a.next_dev_number += 1;
        if a.degraded() > 0 {
            a.sync_action = "recover".into();
        }
        a.events += 1;
        let a = a.clone();
        self.write_array(minor, &a);
        Ok(())
    }

    fn hot_replace(&self, md: &Path, old: &Path, new: &Path) -> Result<(), StorageError> {
        let mut m = self.call("hot_replace", &[md, old, new])?;
        let minor = minor_of(md);
        let (old, new) = (name_of(old), name_of(new));
        let a = m
            .arrays
            .get_mut(&minor)
            .ok_or_else(|| tool_err(step_of("hot_replace"), "No such device"))?;
        let old_ok = a
            .members
            .iter()
            .any(|x| x.dev == old && x.state == State::InSync);
        let Some(spare) = a
            .members
            .iter_mut()
            .find(|x| x.dev == new && x.state == State::Spare)
        else {
            return Err(tool_err(
                step_of("hot_replace"),
                format!("{new} is not a spare"),
            ));
        };
        if !old_ok {
            return Err(tool_err(
                step_of("hot_replace"),
                format!("{old} is not in sync"),
            ));
        }
        spare.replaces = Some(old);
        a.sync_action = "recover".into();
        a.events += 1;
        let a = a.clone();
        self.write_array(minor, &a);
        Ok(())
    }

    fn stop(&self, md: &Path) -> Result<(), StorageError> {
        let mut m = self.call("stop", &[md])?;
        let minor = minor_of(md);
        let Some(a) = m.arrays.get(&minor) else {
            return Err(tool_err(step_of("stop"), "No such device"));
        };
        let uuid = a.uuid_text();
        if m.mounts.values().any(|u| *u == uuid) {
            return Err(tool_err(
                step_of("stop"),
                format!("Cannot get exclusive access to {}", md.display()),
            ));
        }
        if let Some(a) = m.arrays.remove(&minor) {
            self.clear_array(minor, &a);
        }
        Ok(())
    }

    fn fail_detached(&self, md: &Path, member: &str) -> Result<(), StorageError> {
        let mut m = self.call("fail_detached", &[md, Path::new(member)])?;
        let minor = minor_of(md);
        let Some(a) = m.arrays.get_mut(&minor) else {
            return Err(tool_err(step_of("fail_detached"), "No such device"));
        };
        let gone: Vec<String> = a
            .members
            .iter()
            .filter(|x| !x.exists)
            .map(|x| x.dev.clone())
            .collect();
        a.members.retain(|x| x.exists);
        a.events += 1;
        let a = a.clone();
        for dev in gone {
            self.clear_holder(&dev, minor);
        }
        self.write_array(minor, &a);
        Ok(())
    }

    fn mkfs_ext4(&self, md: &Path, label: &str) -> Result<(), StorageError> {
        let mut m = self.call("mkfs_ext4", &[md, Path::new(label)])?;
        let uuid = m
            .arrays
            .get(&minor_of(md))
            .map(|a| a.uuid_text())
            .ok_or_else(|| tool_err(step_of("mkfs_ext4"), "No such device"))?;
        let shelf = self.shelf(&uuid);
        let _ = std::fs::remove_dir_all(&shelf);
        let _ = std::fs::create_dir_all(&shelf);
        m.filesystems.insert(uuid);
        Ok(())
    }

    fn fsck(&self, md: &Path) -> Result<Fsck, StorageError> {
        let m = self.call("fsck", &[md])?;
        match m.arrays.get(&minor_of(md)) {
            Some(a) if m.filesystems.contains(&a.uuid_text()) => Ok(Fsck::Clean),
            Some(_) => Err(tool_err(step_of("fsck"), "Bad magic number in super-block")),
            None => Err(tool_err(step_of("fsck"), "No such device")),
        }
    }

    fn mount(&self, md: &Path, dir: &Path) -> Result<(), StorageError> {
        let mut m = self.call("mount", &[md, dir])?;
        let uuid = match m.arrays.get(&minor_of(md)) {
            Some(a) if m.filesystems.contains(&a.uuid_text()) => a.uuid_text(),
            Some(_) => return Err(tool_err(step_of("mount"), "EINVAL: Invalid argument")),
            None => {
                return Err(tool_err(
                    step_of("mount"),
                    "ENXIO: No such device or address",
                ))
            }
        };
        if m.mounts.contains_key(dir) || m.mounts.values().any(|u| *u == uuid) {
            return Err(tool_err(step_of("mount"), "EBUSY: Device or resource busy"));
        }
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io("making the mount point", e))?;
        move_entries(&self.shelf(&uuid), dir);
        let mounts = self.paths.proc.join("mounts");
        let mut text = std::fs::read_to_string(&mounts).unwrap_or_default();
        text.push_str(&format!(
            "{} {} ext4 rw,nosuid,nodev,noatime 0 0\n",
            md.display(),
            dir.display()
        ));
        write_whole(&mounts, text.as_bytes()).map_err(|e| StorageError::io("mounting", e))?;
        m.mounts.insert(dir.to_path_buf(), uuid);
        Ok(())
    }

    fn unmount(&self, dir: &Path) -> Result<(), StorageError> {
        let mut m = self.call("unmount", &[dir])?;
        let Some(uuid) = m.mounts.remove(dir) else {
            return Err(tool_err(step_of("unmount"), "EINVAL: Invalid argument"));
        };
        self.shelve(dir, &uuid);
        self.drop_mount_line(dir);
        Ok(())
    }

    fn remove_mount_point(&self, dir: &Path) -> Result<(), StorageError> {
        let _m = self.call("remove_mount_point", &[dir])?;
        std::fs::remove_dir(dir).map_err(|e| StorageError::io("removing the mount point", e))
    }

    fn note_assembly_time(&self, _assembling: Duration, _total: Duration) {}

    fn start_check(&self, md: &Path) -> Result<(), StorageError> {
        let mut m = self.call("start_check", &[md])?;
        let minor = minor_of(md);
        let Some(a) = m.arrays.get_mut(&minor) else {
            return Err(StorageError::io("starting the scrub", "No such device"));
        };
        if a.sync_action != "idle" {
            return Err(StorageError::io(
                "starting the scrub",
                "Device or resource busy",
            ));
        }
        a.sync_action = "check".into();
        let a = a.clone();
        self.write_array(minor, &a);
        Ok(())
    }
}
