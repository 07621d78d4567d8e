//! A person in a browser: setup, login, a user and a share, a mirror, a firmware update from the System page,
//! logout, the user's own page. Headless Chromium
//! drives the real image under QEMU; screenshots land in target/screenshots/ for a human to look at.

use cairn_e2e::webdriver::Browser;
use cairn_e2e::ConsoleOnFailure;
use cairn_qemu::{workspace_root, BootDisk, BootOptions, Machine, Manifest};
use std::time::{Duration, Instant};

#[test]
fn owner_sets_up_adds_a_user_and_a_share_and_the_user_sees_it() {
    let board = "qemu-aarch64-virt";
    let (manifest, dir) = Manifest::load(board).unwrap_or_else(|e| panic!("{e}"));
    let disk = BootDisk::flash(&manifest, &dir).unwrap();
    let started = Instant::now();
    let disks_dir = workspace_root().join("target/e2e-disks/browser");
    let _ = std::fs::remove_dir_all(&disks_dir);
    let options = BootOptions {
        data_disks: cairn_qemu::blank_data_disks(&disks_dir, 2, 128).unwrap(),
        ..BootOptions::default()
    };
    let mut m = Machine::boot(board, &disk, &options).unwrap();
    let _log = ConsoleOnFailure(m.console_handle(), "browser");
    m.wait_healthy(started, Duration::from_secs(120)).unwrap();
    let shots = workspace_root().join("target/screenshots");
    let base = format!("http://127.0.0.1:{}", m.http_port);
    let b = Browser::start();

    b.open(&format!("{base}/"));
    assert!(
        b.url().ends_with("/setup"),
        "a new box shows setup: {}",
        b.url()
    );
    b.screenshot(&shots.join("1-setup.png"));
    b.fill("input[name=username]", "owner");
    b.fill("input[name=email]", "owner@example.org");
    b.fill("input[name=password]", "correct horse battery");
    b.fill("input[name=password_again]", "correct horse battery");
    b.click("button[type=submit]");
    b.wait_text("Hello, owner");
    b.screenshot(&shots.join("2-home.png"));

    b.open(&format!("{base}/users"));
    b.fill("input[name=name]", "carol");
    b.fill("input[name=full_name]", "Carol Jones");
    b.fill("input[name=email]", "carol@example.org");
    b.fill("input[name=password]", "carol password");
    b.click("form[action='/users'] button[type=submit]");
    b.wait_url("/users/carol");
    b.screenshot(&shots.join("3-user.png"));

    b.open(&format!("{base}/shares"));
    b.fill("input[name=name]", "family");
    b.fill("input[name=description]", "Family photos");
    b.click("form[action='/shares'] button[type=submit]");
    b.wait_url("/shares/family");
    b.select("user:carol", "write");
    b.click("form[action='/shares/family'] button[type=submit]");
    b.wait_url("saved=1");
    b.screenshot(&shots.join("4-share.png"));

    // Storage: a mirror on the two disks, built while the page shows its progress.
    b.open(&format!("{base}/storage"));
    b.wait_text("CAIRN-BAY2");
    b.fill("input[name=name]", "photos");
    b.select("level", "raid1");
    b.click("input[value='CAIRN-BAY1']");
    b.click("input[value='CAIRN-BAY2']");
    b.click("form[action='/storage/volumes'] button[type=submit]");
    b.wait_url("done=created");
    let until = Instant::now() + Duration::from_secs(120);
    while !b.text().contains("raid1 · clean") {
        assert!(
            Instant::now() < until,
            "the mirror never became clean: {}",
            b.text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    b.screenshot(&shots.join("6-storage.png"));

    // A firmware update from the System page: the bundle uploaded with its progress, the new firmware's
    // migrations listed, Reboot; the box comes back on slot B with the new version and keeps it.
    let bundle = cairn_e2e::update_bundle(board);
    b.open(&format!("{base}/system"));
    b.fill("input[name=bundle]", bundle.to_str().unwrap());
    b.click("form[data-firmware-upload] button[type=submit]");
    b.wait_text("Reboot now");
    b.open(&format!("{base}/system"));
    b.wait_text("runs after a reboot");
    b.screenshot(&shots.join("7-firmware-installed.png"));
    let mark = m.mark();
    b.click("form[data-firmware-reboot] button");
    m.wait_console("cairn: booting slot B", mark, Duration::from_secs(300))
        .unwrap();
    m.wait_healthy(Instant::now(), Duration::from_secs(300))
        .unwrap();
    let until = Instant::now() + Duration::from_secs(300);
    loop {
        b.open(&format!("{base}/system"));
        let text = b.text();
        if text.contains("installed, healthy and kept") {
            assert!(text.contains(cairn_e2e::UPDATE_VERSION), "{text}");
            break;
        }
        assert!(
            Instant::now() < until,
            "the update was never committed: {text}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    b.screenshot(&shots.join("8-firmware-committed.png"));

    b.click("nav button");
    b.wait_url("/login");
    b.fill("input[name=username]", "carol");
    b.fill("input[name=password]", "carol password");
    b.click("button[type=submit]");
    // Logging in navigates asynchronously: wait for the user's own page.
    b.wait_url("/me");
    b.wait_text("My account: carol");
    let text = b.text();
    assert!(text.contains("My account: carol"), "{text}");
    assert!(
        text.contains("family") && text.contains("Read and write"),
        "{text}"
    );
    assert!(
        !text.contains("Users\n") && !text.contains("Shares\nSystem"),
        "no administration links for a user: {text}"
    );
    b.screenshot(&shots.join("5-self-service.png"));
}
