//! The walking skeleton on both boards: first boot, setup, login and logout, reboot, power-off.
//! One boot per board carries every step, to keep the suite fast.

use cairn_e2e::*;
use cairn_qemu::{BootDisk, BootOptions, Machine, Manifest};
use std::time::{Duration, Instant};

fn first_boot_to_poweroff(board: &str, boot_deadline: Duration) {
    let (manifest, dir) = Manifest::load(board).unwrap_or_else(|e| panic!("{e}"));
    let disk = BootDisk::flash(&manifest, &dir).unwrap();
    let started = Instant::now();
    let mut m = Machine::boot(board, &disk, &BootOptions::default()).unwrap();
    let (took, health) = m.wait_healthy(started, boot_deadline).unwrap();
    eprintln!(
        "{board}: healthy {took:?} after QEMU start (U-Boot's share {:?})",
        m.u_boot_time()
    );
    booted_through_u_boot(&mut m, 0);
    assert_eq!(health["board"], board);
    assert_eq!(health["version"], manifest.version);
    assert_eq!(health["setup_done"], false);
    assert!(health["uptime_s"].is_u64());

    let browser = m.http();
    // Before setup: only the setup page is served.
    for path in ["/", "/login", "/anything"] {
        let r = browser.get(path).unwrap();
        assert_eq!(
            (r.status, r.header("location")),
            (303, Some("/setup")),
            "GET {path} before setup"
        );
    }
    let r = browser.get("/setup").unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("Create administrator"),
        "setup page: {}",
        r.text()
    );
    let prefilled = r
        .text()
        .lines()
        .any(|l| l.contains("type=\"password\"") && l.contains("value="));
    assert!(!prefilled, "the setup page must not offer a password");
    for (method, path) in [
        ("GET", "/api/v1/session"),
        ("POST", "/api/v1/session"),
        ("GET", "/api/v1/system"),
    ] {
        let r = browser
            .request(
                method,
                path,
                &[("content-type", "application/json")],
                b"{}".to_vec(),
            )
            .unwrap();
        assert_eq!(r.status, 409, "{method} {path} before setup: {}", r.text());
        assert_eq!(r.json().unwrap()["error"]["code"], "setup.required");
    }

    // Setup through the form, as a person would; it logs the administrator in.
    assert_eq!(setup_through_form(&browser), "/");
    let home = browser.get("/").unwrap();
    assert_eq!(home.status, 200);
    assert!(home.text().contains("Hello, owner"), "{}", home.text());
    let again = browser
        .fresh()
        .post_json(
            "/api/v1/setup",
            &serde_json::json!({"username": "intruder", "password": "another password"}),
            &[],
        )
        .unwrap();
    assert_eq!(again.status, 409);
    assert_eq!(again.json().unwrap()["error"]["code"], "setup.already_done");

    // Logout through the page's form, with its CSRF token; a missing token is refused.
    let token = browser.get("/api/v1/session").unwrap().json().unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let refused = browser.post_form("/logout", &[]).unwrap();
    assert_eq!(refused.status, 403, "logout without CSRF token");
    let out = browser
        .post_form("/logout", &[("csrf_token", &token)])
        .unwrap();
    assert_eq!((out.status, out.header("location")), (303, Some("/login")));
    assert_eq!(browser.get("/api/v1/session").unwrap().status, 401);
    assert_eq!(browser.get("/").unwrap().header("location"), Some("/login"));

    // Login: wrong password refused with a code, right one works.
    let wrong = browser
        .post_json(
            "/api/v1/session",
            &serde_json::json!({"username": ADMIN, "password": "wrong password"}),
            &[],
        )
        .unwrap();
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.json().unwrap()["error"]["code"],
        "session.bad_credentials"
    );
    let csrf = login_api(&browser, ADMIN, ADMIN_PASSWORD);

    // Reboot through the API: the administrator and the session survive.
    let no_token = browser
        .post_json("/api/v1/system/reboot", &serde_json::json!({}), &[])
        .unwrap();
    assert_eq!(no_token.status, 403);
    let mark = m.mark();
    let r = browser
        .post_json(
            "/api/v1/system/reboot",
            &serde_json::json!({}),
            &[("x-csrf-token", &csrf)],
        )
        .unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    m.wait_console(
        "config partition unmounted cleanly",
        mark,
        Duration::from_secs(60),
    )
    .unwrap();
    m.wait_console(&starting_line(&m), mark, boot_deadline)
        .unwrap();
    let (_, health) = m.wait_healthy(Instant::now(), boot_deadline).unwrap();
    booted_through_u_boot(&mut m, mark);
    assert_eq!(
        health["setup_done"], true,
        "the administrator must survive a reboot"
    );
    let session = browser.get("/api/v1/session").unwrap();
    assert_eq!(
        session.status,
        200,
        "the session must survive a reboot: {}",
        session.text()
    );
    assert_eq!(session.json().unwrap()["user"]["name"], ADMIN);
    let second = browser.fresh();
    login_api(&second, ADMIN, ADMIN_PASSWORD);

    // Power-off: QEMU exits and the config filesystem is clean.
    let csrf = browser.get("/api/v1/session").unwrap().json().unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = browser
        .post_json(
            "/api/v1/system/poweroff",
            &serde_json::json!({}),
            &[("x-csrf-token", &csrf)],
        )
        .unwrap();
    assert_eq!(r.status, 202);
    m.wait_exit(Duration::from_secs(60)).unwrap();
    let config = tempfile_path(board);
    extract_config_partition(&m, &disk, &config);
    assert_ext4_clean(&config);
    let _ = std::fs::remove_file(&config);
    let boot = std::env::temp_dir().join(format!("cairn-boot-{board}-{}.vfat", std::process::id()));
    let size = m.board.partitions[0].size_mib;
    assert_eq!(m.board.partitions[0].name, "boot");
    disk.extract(1, u64::from(size), &boot).unwrap();
    let fsck = std::process::Command::new("fsck.fat")
        .arg("-n")
        .arg(&boot)
        .output()
        .expect("fsck.fat (dosfstools) is installed");
    let report =
        String::from_utf8_lossy(&fsck.stdout).into_owned() + &String::from_utf8_lossy(&fsck.stderr);
    let _ = std::fs::remove_file(&boot);
    assert!(
        fsck.status.success() && !report.contains("irty"),
        "the boot partition must be clean after power-off: {report}"
    );
}

/// The boot state as a copy on /boot holds it: `BOOT_*` variables, read in the guest.
fn boot_state(m: &mut Machine, file: &str) -> std::collections::HashMap<String, String> {
    let out = m
        .serial(
            &format!("wc -c < /boot/{file}; tr '\\000' '\\n' < /boot/{file} | grep -ao 'BOOT_[A-Z_]*=.*'"),
            Duration::from_secs(20),
        )
        .unwrap();
    let mut lines = out.lines();
    assert_eq!(
        lines.next().map(str::trim),
        Some(m.board.boot.state_size.to_string().as_str()),
        "size of /boot/{file}: {out}"
    );
    lines
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The box came up through U-Boot and its boot script (console from byte `from`): slot A chosen with one
/// of its tries spent and recorded in the older boot-state copy, the kernel told so, /boot mounted.
fn booted_through_u_boot(m: &mut Machine, from: usize) {
    let log = m.console_log();
    let log = &log[from..];
    let u_boot = log
        .find("U-Boot 20")
        .expect("the console shows U-Boot starting");
    let script = log[u_boot..]
        .find("cairn: booting slot A")
        .map(|at| u_boot + at)
        .expect("U-Boot's boot script chose slot A");
    assert!(
        log[script..].contains("Starting kernel"),
        "U-Boot started the kernel after the script"
    );
    let cmdline = m
        .serial("cat /proc/cmdline", Duration::from_secs(10))
        .unwrap();
    assert!(cmdline.contains(&m.board.kernel.cmdline), "{cmdline}");
    assert!(
        cmdline.split_whitespace().any(|a| a == "cairn.slot=a"),
        "{cmdline}"
    );
    assert!(!cmdline.contains("cairn.trial"), "not on trial: {cmdline}");
    let mounts = m
        .serial("grep ' /boot ' /proc/mounts", Duration::from_secs(10))
        .unwrap();
    assert!(mounts.contains(" /boot vfat rw,"), "/boot: {mounts:?}");

    // U-Boot wrote the copy that was older: the written one holds the newer BOOT_SEQ and one try less.
    let files = m.board.boot.state_files.clone();
    let copies = [boot_state(m, &files[0]), boot_state(m, &files[1])];
    let seq = |c: &std::collections::HashMap<String, String>| {
        u64::from_str_radix(&c["BOOT_SEQ"], 16).expect("BOOT_SEQ is hex")
    };
    let (newer, older) = if seq(&copies[0]) > seq(&copies[1]) {
        (&copies[0], &copies[1])
    } else {
        (&copies[1], &copies[0])
    };
    assert!(seq(newer) > seq(older), "{copies:?}");
    let written = log
        .lines()
        .find(|l| l.starts_with("cairn: boot state ") && l.contains(" written to "))
        .expect("the boot script reports the state it wrote");
    let written_seq = written.split_whitespace().nth(3).unwrap();
    let tries = m.board.boot.tries;
    // A later write by Cairn (its commit) may have followed U-Boot's; U-Boot's own is the one it reported.
    let by_u_boot = copies
        .iter()
        .find(|c| c["BOOT_SEQ"] == written_seq)
        .unwrap_or_else(|| {
            panic!("no copy holds the state U-Boot reported ({written}): {copies:?}")
        });
    let left = u8::from_str_radix(&by_u_boot["BOOT_A_LEFT"], 16).unwrap();
    assert!(left < tries, "U-Boot spent a try of slot A: {by_u_boot:?}");
    assert_eq!(by_u_boot["BOOT_ORDER"], "A", "{by_u_boot:?}");
    assert!(
        written.contains(&format!("A left {left:x}")),
        "{written} vs {by_u_boot:?}"
    );
}

fn tempfile_path(board: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cairn-config-{board}-{}.ext4", std::process::id()))
}

#[test]
fn aarch64_first_boot_setup_login_reboot_poweroff() {
    first_boot_to_poweroff("qemu-aarch64-virt", Duration::from_secs(90));
}

#[test]
fn armv7_first_boot_setup_login_reboot_poweroff() {
    first_boot_to_poweroff("qemu-armv7-virt", Duration::from_secs(180));
}
