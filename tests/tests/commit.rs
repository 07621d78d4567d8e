//! The health-gated commit and the fallback on real boots through U-Boot (aarch64), one box for the scenario:
//! slot A boots with one of its tries spent, init finds it healthy and gives it its tries back; after a reboot
//! U-Boot reads the copy Cairn wrote (its CRC and format accepted by U-Boot's own code) and counts from it.
//! Then the boot state of a trial of slot B that used up its tries is put in place: U-Boot falls back to A,
//! init records the failure once (not again at the next boot), takes B out of the order and commits A; after
//! power-off both copies on the disk parse and the current one shows that.

use cairn_bootenv::{BootFiles, BootState, Env, Slot};
use cairn_qemu::{BootDisk, BootOptions, Machine, Manifest};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BOARD: &str = "qemu-aarch64-virt";
/// Boot and commit under a loaded host: the commit waits for SMB, which comes up after the dashboard.
const COMMIT_WAIT: Duration = Duration::from_secs(240);

/// The sequence number and slot A's tries U-Boot reported writing, in the console from byte `from`.
fn u_boot_write(m: &Machine, from: usize) -> (u64, u8) {
    let log = m.console_log();
    let line = log[from..]
        .lines()
        .find(|l| l.starts_with("cairn: boot state ") && l.contains(" written to "))
        .unwrap_or_else(|| panic!("U-Boot reports the boot state it wrote:\n{}", &log[from..]));
    let hex = |s: &str| {
        u64::from_str_radix(s.trim_start_matches("0x"), 16)
            .unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    let seq = hex(line.split_whitespace().nth(3).unwrap());
    let left = line
        .split("A left ")
        .nth(1)
        .and_then(|r| r.split([',', ' ']).next())
        .unwrap_or_else(|| panic!("{line}"));
    (seq, hex(left) as u8)
}

/// Waits for init's commit of slot A after the console byte `from`; returns the console line.
fn committed(m: &Machine, from: usize) -> String {
    let needle = "commit: slot A healthy";
    if let Err(e) = m.wait_console(needle, from, COMMIT_WAIT) {
        panic!("{e}\n{}", m.console_log());
    }
    let log = m.console_log();
    log[from..]
        .lines()
        .find(|l| l.contains(needle))
        .unwrap()
        .to_string()
}

/// Copies both boot-state files out of the powered-off disk's boot partition (mtools), into `dir`.
fn copies_from_disk(m: &Machine, disk: &BootDisk, dir: &Path) -> BootFiles {
    let boot = &m.board.partitions[0];
    assert_eq!(boot.name, "boot");
    let image = dir.join("boot.vfat");
    disk.extract(1, u64::from(boot.size_mib), &image).unwrap();
    let files = m
        .board
        .boot
        .state_files
        .clone()
        .map(|f| dir.join(f.replace('/', "-")));
    for (inside, out) in m.board.boot.state_files.iter().zip(&files) {
        let image_arg = image.to_str().unwrap();
        let status = Command::new("mcopy")
            .args([
                "-n",
                "-i",
                image_arg,
                &format!("::{inside}"),
                out.to_str().unwrap(),
            ])
            .status()
            .expect("mcopy (mtools, scripts/bootstrap)");
        assert!(status.success(), "mcopy ::{inside}");
    }
    BootFiles::at(files, m.board.boot.state_size as usize)
}

/// A shell command that writes `state` as both boot-state copies on /boot: the 16 KiB copy gzipped on the host
/// (mostly zeros) and written with printf's octal escapes, as the image has no base64.
fn write_state_command(m: &Machine, state: &BootState) -> String {
    let mut env = Env::new();
    state.write_env(&mut env).unwrap();
    let bytes = env.serialize(m.board.boot.state_size as usize).unwrap();
    let mut gzip = Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    gzip.stdin.take().unwrap().write_all(&bytes).unwrap();
    let packed = gzip.wait_with_output().unwrap().stdout;
    let octal: String = packed.iter().map(|b| format!("\\{b:03o}")).collect();
    let files = &m.board.boot.state_files;
    format!(
        "printf '{octal}' | gunzip > /boot/{0} && cp /boot/{0} /boot/{1} && sync",
        files[0], files[1]
    )
}

/// Reboots from the console and waits for init's commit of slot A in the new boot; returns the console mark.
fn reboot_to_commit(m: &mut Machine) -> usize {
    let mark = m.mark();
    m.serial("reboot", Duration::from_secs(20)).ok();
    committed(m, mark);
    mark
}

#[test]
fn aarch64_uboot_boots_commits_and_falls_back_with_the_state_cairn_writes() {
    let (manifest, dir) = Manifest::load(BOARD).unwrap_or_else(|e| panic!("{e}"));
    let disk = BootDisk::flash(&manifest, &dir).unwrap();
    let started = Instant::now();
    let mut m = Machine::boot(BOARD, &disk, &BootOptions::default()).unwrap();
    let tries = m.board.boot.tries;

    let line = committed(&m, 0);
    eprintln!(
        "{BOARD}: committed {:?} after QEMU start: {line}",
        started.elapsed()
    );
    let (first_seq, left) = u_boot_write(&m, 0);
    assert_eq!(left, tries - 1, "U-Boot spent one of slot A's tries");

    // U-Boot reads the copy Cairn wrote (BOOT_SEQ one above its own) and spends a try from the full count.
    let mark = reboot_to_commit(&mut m);
    let (second_seq, left) = u_boot_write(&m, mark);
    assert_eq!(
        second_seq,
        first_seq + 2,
        "U-Boot took Cairn's write (seq {}) as current",
        first_seq + 1
    );
    assert_eq!(left, tries - 1, "slot A had its {tries} tries back");

    // A trial of slot B that used up its tries (B is empty here, so its version is unknown).
    let failed_trial = BootState {
        order: vec![Slot::B, Slot::A],
        left: [tries, 0],
        seq: second_seq + 5,
        trial: Some(Slot::B),
    };
    let command = write_state_command(&m, &failed_trial);
    m.serial(&command, Duration::from_secs(20)).unwrap();
    let mark = reboot_to_commit(&mut m);
    let log = m.console_log();
    assert!(
        log[mark..].contains("cairn: booting slot A"),
        "U-Boot fell back to A"
    );
    assert!(
        log[mark..].contains("failed its trial"),
        "init saw the fallback"
    );
    let firmware = |m: &mut Machine| {
        m.serial(
            "cat /config/cairn/firmware/failed; echo; cat /config/cairn/firmware/last-update",
            Duration::from_secs(20),
        )
        .unwrap()
    };
    let recorded = firmware(&mut m);
    let (failed, last) = recorded
        .split_once("\n\n")
        .unwrap_or_else(|| panic!("{recorded:?}"));
    assert_eq!(failed, "# slot B: version unknown");
    let last: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last:?}"));
    assert_eq!(
        (last["slot"].as_str(), last["outcome"].as_str()),
        (Some("B"), Some("rolled_back")),
        "{last}"
    );

    // The next boot sees no failure: nothing recorded twice.
    let mark = reboot_to_commit(&mut m);
    assert!(!m.console_log()[mark..].contains("failed its trial"));
    assert_eq!(firmware(&mut m), recorded);

    m.serial("poweroff", Duration::from_secs(20)).ok();
    m.wait_exit(Duration::from_secs(60)).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let current = copies_from_disk(&m, &disk, scratch.path())
        .load()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        current.other_bad.is_none(),
        "both copies are valid: {:?}",
        current.other_bad
    );
    let state = current.state;
    assert_eq!(
        (state.order.as_slice(), state.left, state.trial),
        (&[Slot::A][..], [tries, 0], None),
        "{state:?}"
    );
    assert!(
        state.seq > failed_trial.seq + 2,
        "U-Boot's and Cairn's writes followed: {state:?}"
    );
}
