//! The config partition's promises, on the real image: it is formatted only when blank, what Cairn does not
//! recognise there is never touched, and a damaged filesystem is repaired with the settings kept. Each case
//! changes the box's disk between boots (its qcow2 overlay, with `qemu-io`), as a failing or foreign medium would.
//! Without its settings the box refuses setup to the network and says why until the owner repairs them at
//! the console; with the partition full, the owner still logs in and changes fail with a code.

use cairn_e2e::*;
use cairn_qemu::{BootDisk, BootOptions, DataDisk, Machine, Manifest};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BOARD: &str = "qemu-aarch64-virt";

/// Where the config partition starts on the boot disk, and its size, in bytes (GPT starts at 1 MiB).
fn config_partition(board: &cairn_board::Board) -> (u64, u64) {
    let mut offset_mib = 1u64;
    for p in &board.partitions {
        if p.name == "config" {
            return (offset_mib << 20, u64::from(p.size_mib) << 20);
        }
        offset_mib += u64::from(p.size_mib);
    }
    panic!("board has no config partition");
}

fn board() -> cairn_board::Board {
    cairn_board::Board::load(
        &cairn_qemu::workspace_root().join(format!("board/{BOARD}/board.toml")),
    )
    .unwrap()
}

/// Writes `bytes` into the box's disk at `offset` (the overlay takes it; the built image stays pristine).
fn write_into(disk: &BootDisk, offset: u64, bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bytes");
    std::fs::write(&file, bytes).unwrap();
    // qemu-io's `write -s FILE` writes a file's content at an offset.
    let out = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c"])
        .arg(format!(
            "write -s {} {offset} {}",
            file.display(),
            bytes.len()
        ))
        .arg(&disk.path)
        .output()
        .expect("run qemu-io");
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("error"),
        "qemu-io: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// SHA-256 of a file, by the host's sha256sum.
fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn boot(disk: &BootDisk) -> Machine {
    boot_with(disk, &BootOptions::default())
}

fn boot_with(disk: &BootDisk, options: &BootOptions) -> Machine {
    let started = Instant::now();
    let mut m = Machine::boot(BOARD, disk, options).unwrap();
    if let Err(e) = m.wait_healthy(started, Duration::from_secs(120)) {
        panic!("{e}\n{}", m.console_log());
    }
    m
}

/// Powers the box off from its console and waits for QEMU to exit (init unmounts everything first).
fn power_off(m: &mut Machine) {
    m.serial("poweroff", Duration::from_secs(20)).ok();
    m.wait_exit(Duration::from_secs(90)).unwrap();
}

#[test]
fn a_config_partition_holding_foreign_bytes_is_left_byte_identical() {
    let (manifest, dir) = Manifest::load(BOARD).unwrap_or_else(|e| panic!("{e}"));
    let disk = BootDisk::flash(&manifest, &dir).unwrap();
    let (offset, size) = config_partition(&board());
    // Not zeros, not ext4: as another system's filesystem or a half-written image would look. The pattern
    // covers the partition's start (what init reads to decide) and a stretch beyond it.
    let foreign: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    write_into(&disk, offset, &foreign);
    let work = tempfile::tempdir().unwrap();
    let before = work.path().join("before.img");
    disk.extract(offset >> 20, size >> 20, &before).unwrap();

    let mut m = boot(&disk);
    let _log = ConsoleOnFailure(m.console_handle(), "foreign config partition");
    m.wait_console("was left untouched", 0, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", m.console_log()));
    assert!(
        !m.console_log().contains("formatting (first boot)"),
        "a partition holding data must never be formatted"
    );
    power_off(&mut m);
    let after = work.path().join("after.img");
    disk.extract(offset >> 20, size >> 20, &after).unwrap();
    assert_eq!(
        sha256(&before),
        sha256(&after),
        "the foreign bytes were changed"
    );
}

/// The group descriptor table's first entry: after the superblock's block (1 KiB blocks: block 2; larger
/// blocks: block 1).
fn first_group_descriptor(partition: &[u8]) -> usize {
    let sb = &partition[1024..2048];
    assert_eq!(&sb[0x38..0x3a], &[0x53, 0xef], "not ext4");
    let block_size = 1024usize << u32::from_le_bytes(sb[24..28].try_into().unwrap());
    let first_data_block = u32::from_le_bytes(sb[20..24].try_into().unwrap()) as usize;
    (first_data_block + 1) * block_size
}

#[test]
fn a_damaged_config_filesystem_is_repaired_and_keeps_the_settings() {
    let (manifest, dir) = Manifest::load(BOARD).unwrap_or_else(|e| panic!("{e}"));
    let disk = BootDisk::flash(&manifest, &dir).unwrap();
    let mut m = boot(&disk);
    {
        let _log = ConsoleOnFailure(m.console_handle(), "first boot");
        setup_through_form(&m.http());
        power_off(&mut m);
    }
    // Damage the filesystem's metadata the way a torn write would: the first group descriptor's free-block
    // count changes, so its checksum no longer matches and the kernel refuses to mount it.
    let (offset, size) = config_partition(&board());
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("config.img");
    disk.extract(offset >> 20, size >> 20, &image).unwrap();
    let bytes = std::fs::read(&image).unwrap();
    let gd = first_group_descriptor(&bytes);
    let damaged = [bytes[gd + 12] ^ 0xff, bytes[gd + 13] ^ 0x0f];
    write_into(&disk, offset + gd as u64 + 12, &damaged);
    disk.extract(offset >> 20, size >> 20, &image).unwrap();
    let fsck = Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        !fsck.status.success(),
        "the damage must be real: e2fsck found nothing"
    );

    let mut m = boot(&disk);
    let _log = ConsoleOnFailure(m.console_handle(), "damaged config partition");
    let console = m.console_log();
    assert!(
        console.contains("does not mount") && console.contains("repaired"),
        "init must check and repair the partition: {console}"
    );
    assert!(
        !console.contains("formatting (first boot)"),
        "never formatted"
    );
    let r = m.http().get("/api/v1/health").unwrap().json().unwrap();
    assert_eq!(
        r["setup_done"], true,
        "the settings survived the repair: {r}"
    );
    login_api(&m.http(), ADMIN, ADMIN_PASSWORD);
    power_off(&mut m);
    disk.extract(offset >> 20, size >> 20, &image).unwrap();
    assert_ext4_clean(&image);
}

/// Runs a console command; returns its output.
fn console(m: &mut Machine, command: &str) -> String {
    m.serial(command, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{command}: {e}\n{}", m.console_log()))
}

/// Bytes free on the config partition as root sees them (statvfs free blocks), read on the box.
fn config_free_bytes(m: &mut Machine) -> u64 {
    let out = console(m, "stat -f -c 'free=%f bsize=%S' /config");
    let field = |name: &str| -> u64 {
        out.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {out}"))
    };
    field("free=") * field("bsize=")
}

/// The SHA-256 the guest computes of a file on the box.
fn guest_sha256(m: &mut Machine, path: &str) -> String {
    let out = console(m, &format!("sha256sum {path}"));
    out.split_whitespace()
        .find(|w| w.len() == 64)
        .unwrap_or_else(|| panic!("no checksum for {path}: {out}"))
        .to_string()
}

/// A stranger on the LAN tries to set the box up as theirs.
fn intruder_setup(client: &cairn_qemu::HttpClient) -> cairn_qemu::HttpResponse {
    client
        .post_json(
            "/api/v1/setup",
            &json!({"username": "intruder", "password": "intruder password"}),
            &[],
        )
        .unwrap()
}

/// With `config` full: a fresh login works, and a rename is refused as full; returns the client and the error.
fn full_but_the_owner_logs_in(m: &Machine) -> (cairn_qemu::HttpClient, serde_json::Value) {
    let owner = m.http();
    login_api(&owner, ADMIN, ADMIN_PASSWORD);
    let e = refused(
        &send(
            &owner,
            "PATCH",
            "/api/v1/system",
            json!({"hostname": "renamed"}),
        ),
        507,
        "settings.full",
    );
    (owner, e)
}

/// Polls health until `ready` holds.
fn wait_health(
    m: &Machine,
    what: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(120);
    let client = m.http().with_timeout(Duration::from_secs(2));
    loop {
        if let Ok(h) = client.get("/api/v1/health").and_then(|r| r.json()) {
            if ready(&h) {
                return h;
            }
        }
        assert!(
            Instant::now() < until,
            "health never showed {what}\n{}",
            m.console_log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn garbage_on_the_config_partition_refuses_setup_until_the_console_repairs_or_formats_it_and_data_stays(
) {
    let (manifest, dir) = Manifest::load(BOARD).unwrap_or_else(|e| panic!("{e}"));
    let disk = BootDisk::flash(&manifest, &dir).unwrap();
    let work = tempfile::tempdir().unwrap();
    let data = DataDisk {
        file: work.path().join("bay1.img"),
        serial: "CAIRN-BAY1".into(),
    };
    cairn_qemu::blank_disk(&data.file, 128).unwrap();
    let options = BootOptions {
        data_disks: vec![data.clone()],
        forward: vec![445],
        ..BootOptions::default()
    };

    // A set-up box with a volume and a file on it.
    let mut m = boot_with(&disk, &options);
    let kept = {
        let _log = ConsoleOnFailure(m.console_handle(), "first boot");
        let admin = m.http();
        setup_through_form(&admin);
        let job = expect(
            &send(
                &admin,
                "POST",
                "/api/v1/volumes",
                json!({"name": "vault", "level": "single", "disks": ["CAIRN-BAY1"]}),
            ),
            202,
        );
        let (j, _) = wait_job(&admin, &job["job"], Duration::from_secs(180));
        assert_eq!(j["state"], "done", "{j}");
        console(
            &mut m,
            "dd if=/dev/urandom of=/data/vault/keep.bin bs=64k count=32 2>/dev/null; sync",
        );
        let kept = guest_sha256(&mut m, "/data/vault/keep.bin");
        // The figure for the boot time the system volume's image adds on a first boot.
        for line in m
            .console_log()
            .lines()
            .filter(|l| l.contains("system volume"))
        {
            eprintln!("first boot: {line}");
        }
        power_off(&mut m);
        kept
    };

    // Something Cairn does not recognise over the partition's head: its superblock and group descriptors.
    let (offset, _) = config_partition(&board());
    let garbage: Vec<u8> = (0..64u32 << 10)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write_into(&disk, offset, &garbage);
    let data_before = sha256(&data.file);

    let mut m = boot_with(&disk, &options);
    let _log = ConsoleOnFailure(m.console_handle(), "config partition overwritten");
    let h = wait_health(&m, "the settings' state", |h| h.get("settings").is_some());
    assert_eq!(h["settings"]["available"], false, "{h}");
    assert_eq!(h["settings"]["code"], "settings.unrecognised", "{h}");
    assert!(
        h["settings"]["hint"]
            .as_str()
            .unwrap()
            .contains("cairn ctl config repair"),
        "{h}"
    );

    // The network cannot set the box up as new, nor log in.
    let stranger = m.http();
    refused(&intruder_setup(&stranger), 503, "settings.unrecognised");
    let page = stranger.get("/setup").unwrap();
    assert_eq!(
        page.status,
        503,
        "the setup page offers no form: {}",
        page.text()
    );
    assert!(
        page.text().contains("cairn ctl config repair"),
        "{}",
        page.text()
    );
    let form = stranger
        .post_form(
            "/setup",
            &[
                ("username", "intruder"),
                ("password", "intruder password"),
                ("password_again", "intruder password"),
            ],
        )
        .unwrap();
    assert_eq!(form.status, 503, "{}", form.text());
    refused(
        &stranger
            .post_json(
                "/api/v1/session",
                &json!({"username": ADMIN, "password": ADMIN_PASSWORD}),
                &[],
            )
            .unwrap(),
        503,
        "settings.unrecognised",
    );
    refused(
        &stranger
            .post_json(
                "/api/v1/config/format",
                &json!({"confirm": "erase-settings"}),
                &[],
            )
            .unwrap(),
        503,
        "settings.unrecognised",
    );
    let mounts = console(&mut m, "cat /proc/mounts");
    assert!(
        !mounts.contains("/data/vault"),
        "no volume is touched while the settings are unavailable: {mounts}"
    );
    assert!(
        !mounts
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("/config") && l.contains(" rw,")),
        "nothing writable stands in for the settings: {mounts}"
    );

    // The console says it, and formats nothing without the typed word.
    let said = console(&mut m, "cairn ctl health 2>&1");
    assert!(
        said.contains("SETTINGS UNAVAILABLE") && said.contains("settings.unrecognised"),
        "{said}"
    );
    let said = console(&mut m, "echo yes | cairn ctl config format 2>&1");
    assert!(
        said.contains("config.confirm_required") && said.contains("erase-settings"),
        "{said}"
    );
    assert_eq!(
        sha256(&data.file),
        data_before,
        "the data disk was written while the settings were unavailable"
    );

    // The console repairs it (e2fsck finds a backup superblock); the daemon starts again on the settings.
    let said = console(&mut m, "cairn ctl config repair 2>&1");
    assert!(said.contains("repaired"), "{said}");
    let h = wait_health(&m, "the settings back", |h| {
        h["settings"]["available"] == true
    });
    assert_eq!(h["setup_done"], true, "the owner's settings came back: {h}");
    let admin = m.http();
    login_api(&admin, ADMIN, ADMIN_PASSWORD);
    refused(&intruder_setup(&stranger), 409, "setup.already_done");
    // The volume comes back with its file unchanged.
    let until = Instant::now() + Duration::from_secs(120);
    while !console(&mut m, "cat /proc/mounts").contains("/data/vault") {
        assert!(
            Instant::now() < until,
            "the volume never mounted again\n{}",
            m.console_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        guest_sha256(&mut m, "/data/vault/keep.bin"),
        kept,
        "the file on the volume changed"
    );

    // A share on the system volume filled over SMB. ksmbd writes from a kernel thread that keeps
    // CAP_SYS_RESOURCE, so ext4's root reserve would not stop it on the config partition itself: the system
    // volume is an allocated image file on config, sized to leave the settings' headroom, and SMB fills the
    // image, not config. The client gets a disk-full error, config keeps its headroom, and changes still work.
    expect(
        &send(
            &admin,
            "POST",
            "/api/v1/shares",
            json!({"name": "scratch", "volume": "system", "access": {"users": {ADMIN: "write"}}}),
        ),
        201,
    );
    let big = work.path().join("big.bin");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(80 << 20)
        .unwrap();
    let port = m.host_port(445).expect("SMB forwarded");
    let (_, out) = smbclient(
        port,
        "scratch",
        Some((ADMIN, ADMIN_PASSWORD)),
        &format!("put {} big.bin", big.display()),
    );
    assert!(
        out.contains("NT_STATUS_DISK_FULL"),
        "the client is told the share is full: {out}"
    );
    let free = config_free_bytes(&mut m);
    let headroom = board().storage.config_headroom_mib << 20;
    eprintln!("config free with a system share full over SMB: {free} bytes (headroom {headroom})");
    // The image was sized at first boot to leave the headroom; settings written since then live in it, so a
    // share full to its last block must leave at least most of it (the old folder on config left 1.3 MiB).
    assert!(
        free >= headroom / 2,
        "config keeps the settings' headroom ({headroom} bytes, at least half of it still free) when a system \
         share is full: {free} free"
    );
    let owner = m.http();
    login_api(&owner, ADMIN, ADMIN_PASSWORD);
    expect(
        &send(
            &owner,
            "PATCH",
            "/api/v1/system",
            json!({"hostname": "shares-full"}),
        ),
        200,
    );
    console(&mut m, "rm -f /config/shares/scratch/big.bin; sync");

    // Filled to its last block from the console (root writes past the reserved blocks): the owner still
    // logs in, and a change fails with a code and a hint instead of half-writing.
    console(&mut m, "dd if=/dev/zero of=/config/fill bs=64k 2>/dev/null; dd if=/dev/zero of=/config/fill2 bs=1k 2>/dev/null; sync");
    let more = console(
        &mut m,
        "dd if=/dev/zero of=/config/more bs=1k count=1 2>&1; rm -f /config/more",
    );
    assert!(
        more.contains("No space left"),
        "the partition is full to its last block: {more}"
    );
    let (owner, e) = full_but_the_owner_logs_in(&m);
    assert!(e["message"].as_str().unwrap().contains("full"), "{e}");
    refused(
        &send(
            &owner,
            "POST",
            "/api/v1/users",
            json!({"name": "alice", "password": "alice password", "role": "user"}),
        ),
        507,
        "settings.full",
    );
    assert_eq!(
        expect(&owner.get("/api/v1/users").unwrap(), 200)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Space freed: changes work again.
    console(&mut m, "rm /config/fill /config/fill2; sync");
    expect(
        &send(
            &owner,
            "PATCH",
            "/api/v1/system",
            json!({"hostname": "renamed"}),
        ),
        200,
    );
    power_off(&mut m);
    drop(_log);

    // Beyond repair: garbage over the head and every backup superblock. The repair says so and formats
    // nothing; the owner formats after typing the word, sets the box up from the console and imports the
    // volume, whose file is unchanged.
    let image = work.path().join("config.img");
    let (_, size) = config_partition(&board());
    disk.extract(offset >> 20, size >> 20, &image).unwrap();
    for at in std::iter::once(0).chain(backup_superblocks(&image)) {
        write_into(&disk, offset + at, &garbage);
    }
    let mut m = boot_with(&disk, &options);
    let _log = ConsoleOnFailure(m.console_handle(), "config partition beyond repair");
    let said = console(&mut m, "cairn ctl config repair 2>&1");
    assert!(said.contains("config.repair_failed"), "{said}");
    let h = wait_health(&m, "the reason", |h| h["settings"]["available"] == false);
    assert_eq!(h["settings"]["code"], "settings.unrecognised", "{h}");
    let said = console(
        &mut m,
        "cairn ctl config format --confirm erase-settings 2>&1",
    );
    assert!(said.contains("formatted"), "{said}");
    let h = wait_health(&m, "new settings", |h| h["settings"]["available"] == true);
    assert_eq!(h["setup_done"], false, "{h}");
    console(
        &mut m,
        &format!("echo '{ADMIN_PASSWORD}' | cairn ctl setup {ADMIN}"),
    );
    let admin = m.http();
    login_api(&admin, ADMIN, ADMIN_PASSWORD);
    let v = import_found_volume(&admin, "vault", "the format");
    assert_eq!(v["state"], "clean", "{v}");
    assert_eq!(
        guest_sha256(&mut m, "/data/vault/keep.bin"),
        kept,
        "the file on the volume changed across the format"
    );
    power_off(&mut m);
}

/// Byte offsets, within the partition, of the ext4 backup superblocks `dumpe2fs` lists.
fn backup_superblocks(image: &Path) -> Vec<u64> {
    let out = Command::new("dumpe2fs").arg(image).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let block_size: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Block size:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("dumpe2fs names the block size");
    let found: Vec<u64> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Backup superblock at "))
        .filter_map(|rest| rest.split(',').next()?.trim().parse::<u64>().ok())
        .map(|block| block * block_size)
        .collect();
    assert!(!found.is_empty(), "no backup superblocks listed: {text}");
    found
}
