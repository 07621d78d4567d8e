//! Owners' scenarios from the field reports, replayed on one shared aarch64 box. The box's network has no
//! route beyond the host (QEMU `restrict=on`): every local operation here runs "with the internet cable pulled".

use cairn_e2e::*;
use cairn_qemu::{BootOptions, Network};
use serde_json::json;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

static BOX: OnceLock<Mutex<SharedBox>> = OnceLock::new();

fn the_box() -> std::sync::MutexGuard<'static, SharedBox> {
    shared_box(&BOX, "qemu-aarch64-virt", || {
        let disks_dir = cairn_qemu::workspace_root().join("target/e2e-disks/owners");
        let _ = std::fs::remove_dir_all(&disks_dir);
        let data_disks = cairn_qemu::blank_data_disks(&disks_dir, 2, 256).unwrap();
        BootOptions {
            network: Network::Offline,
            forward: vec![445],
            data_disks,
            ..BootOptions::default()
        }
    })
}

/// SMB end to end: a user with write access writes and reads back; one without and a guest are refused.
#[test]
fn smb_share_access_is_enforced_for_users_and_guests() {
    let b = the_box();
    let _log = ConsoleOnFailure(b.machine.console_handle(), "smb");
    let admin = &b.admin.clone();
    expect(
        &send(
            admin,
            "POST",
            "/api/v1/users",
            json!({"name": "writer", "password": "writer password"}),
        ),
        201,
    );
    expect(
        &send(
            admin,
            "POST",
            "/api/v1/users",
            json!({"name": "outsider", "password": "outsider password"}),
        ),
        201,
    );
    expect(
        &send(
            admin,
            "POST",
            "/api/v1/shares",
            json!({"name": "docs", "description": "Documents", "access": {"users": {"writer": "write"}}}),
        ),
        201,
    );
    let port = b.machine.host_port(445).unwrap();
    let dir = std::env::temp_dir().join(format!("cairn-smb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let local = dir.join("hello.txt");
    let back = dir.join("back.txt");
    std::fs::write(&local, "written over SMB\n").unwrap();
    // ksmbd.mountd may still be settling on a fresh box: retry the first connection for a while.
    let until = Instant::now() + Duration::from_secs(30);
    let commands = format!(
        "put {} hello.txt; get hello.txt {}",
        local.display(),
        back.display()
    );
    let (ok, out) = loop {
        let (ok, out) = smbclient(port, "docs", Some(("writer", "writer password")), &commands);
        if ok || Instant::now() > until {
            break (ok, out);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(ok, "writer should read and write: {out}");
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        "written over SMB\n"
    );
    let (ok, out) = smbclient(port, "docs", Some(("outsider", "outsider password")), "ls");
    assert!(
        !ok && out.contains("NT_STATUS_"),
        "a user without access must be refused: {out}"
    );
    let (ok, out) = smbclient(port, "docs", None, "ls");
    assert!(
        !ok && out.contains("NT_STATUS_"),
        "guests must be refused: {out}"
    );
    let (ok, out) = smbclient(port, "docs", Some(("writer", "wrong password")), "ls");
    assert!(!ok && out.contains("NT_STATUS_LOGON_FAILURE"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Field report 5: one credential for the dashboard and SMB; a self-service change moves both at once.
#[test]
fn migrated_style_user_logs_in_everywhere() {
    let b = the_box();
    let _log = ConsoleOnFailure(
        b.machine.console_handle(),
        "migrated_style_user_logs_in_everywhere",
    );
    let admin = &b.admin.clone();
    expect(
        &send(
            admin,
            "POST",
            "/api/v1/users",
            json!({"name": "migrated", "password": "first password", "email": "m@example.org"}),
        ),
        201,
    );
    expect(
        &send(
            admin,
            "POST",
            "/api/v1/shares",
            json!({"name": "mine", "access": {"users": {"migrated": "write"}}}),
        ),
        201,
    );
    let port = b.machine.host_port(445).unwrap();
    let smb_ok = |password: &str| {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let (ok, out) = smbclient(port, "mine", Some(("migrated", password)), "ls");
            if ok || Instant::now() > until || out.contains("NT_STATUS_LOGON_FAILURE") {
                return ok;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    let user = b.machine.http().fresh();
    login_api(&user, "migrated", "first password");
    assert!(smb_ok("first password"), "the same password works for SMB");
    let me = expect(&user.get("/api/v1/me").unwrap(), 200);
    assert_eq!(me["email"], "m@example.org");
    assert_eq!(me["shares"]["mine"], "write");
    let r = send(
        &user,
        "PATCH",
        "/api/v1/me",
        json!({"password": "second password", "current_password": "first password"}),
    );
    expect(&r, 200);
    assert!(smb_ok("second password"), "the new password works for SMB");
    assert!(
        !smb_ok("first password"),
        "the old password no longer works for SMB"
    );
    let fresh = b.machine.http().fresh();
    let old = fresh
        .post_json(
            "/api/v1/session",
            &json!({"username": "migrated", "password": "first password"}),
            &[],
        )
        .unwrap();
    assert_eq!(
        old.status, 401,
        "the old password no longer works for the dashboard"
    );
    login_api(&fresh, "migrated", "second password");
}

/// Field report 1: renaming the box keeps every session and right.
#[test]
fn hostname_change_keeps_sessions() {
    let mut b = the_box();
    let _log = ConsoleOnFailure(b.machine.console_handle(), "hostname_change_keeps_sessions");
    let admin = &b.admin.clone();
    let r = expect(
        &send(
            admin,
            "PATCH",
            "/api/v1/system",
            json!({"hostname": "attic-nas"}),
        ),
        200,
    );
    assert_eq!(r["hostname"], "attic-nas");
    let out = b.machine.http().get("/api/v1/system").unwrap();
    assert_eq!(out.status, 401, "a client without a session still has none");
    // The same session keeps every right: add, edit and delete users and shares.
    expect(
        &send(
            admin,
            "POST",
            "/api/v1/users",
            json!({"name": "renamed-1", "password": "some password"}),
        ),
        201,
    );
    expect(
        &send(
            admin,
            "PATCH",
            "/api/v1/users/renamed-1",
            json!({"full_name": "After Rename"}),
        ),
        200,
    );
    expect(
        &send(
            admin,
            "POST",
            "/api/v1/shares",
            json!({"name": "after-rename"}),
        ),
        201,
    );
    expect(
        &send(admin, "DELETE", "/api/v1/shares/after-rename", json!({})),
        200,
    );
    expect(
        &send(admin, "DELETE", "/api/v1/users/renamed-1", json!({})),
        200,
    );
    // The new name is the box's own (Host checks follow it), the old one no longer is.
    let by_name = b
        .machine
        .http()
        .with_host("attic-nas.local")
        .get("/api/v1/health")
        .unwrap();
    assert_eq!(by_name.status, 200);
    let hostname = b
        .machine
        .serial("hostname", Duration::from_secs(20))
        .unwrap();
    assert_eq!(hostname.trim(), "attic-nas");
    expect(
        &send(
            admin,
            "PATCH",
            "/api/v1/system",
            json!({"hostname": "cairn"}),
        ),
        200,
    );
}

/// Field report 5: every field of an account, the administrator's e-mail included, on one record.
#[test]
fn admin_email_editable_in_one_place() {
    let b = the_box();
    let _log = ConsoleOnFailure(
        b.machine.console_handle(),
        "admin_email_editable_in_one_place",
    );
    let admin = &b.admin.clone();
    let r = expect(
        &send(
            admin,
            "PATCH",
            &format!("/api/v1/users/{ADMIN}"),
            json!({"email": "owner@new.example", "full_name": "Box Owner"}),
        ),
        200,
    );
    assert_eq!(r["email"], "owner@new.example");
    let me = expect(&admin.get("/api/v1/me").unwrap(), 200);
    assert_eq!(
        (me["email"].as_str(), me["full_name"].as_str()),
        (Some("owner@new.example"), Some("Box Owner"))
    );
    let page = admin.get(&format!("/users/{ADMIN}")).unwrap();
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("owner@new.example") && page.text().contains("name=\"email\""),
        "the user page edits the e-mail"
    );
}

/// Every error carries a stable code, a message and a hint, through the API and on the pages.
#[test]
fn errors_have_codes_and_hints() {
    let b = the_box();
    let _log = ConsoleOnFailure(b.machine.console_handle(), "errors_have_codes_and_hints");
    let admin = &b.admin.clone();
    let cases = [
        (
            send(
                admin,
                "POST",
                "/api/v1/users",
                json!({"name": "Bad Name", "password": "long enough"}),
            ),
            400,
            "name.invalid",
        ),
        (
            send(
                admin,
                "POST",
                "/api/v1/users",
                json!({"name": "shorty", "password": "short"}),
            ),
            400,
            "user.password_too_short",
        ),
        (
            send(
                admin,
                "DELETE",
                &format!("/api/v1/users/{ADMIN}"),
                json!({}),
            ),
            422,
            "user.last_admin",
        ),
        (
            send(
                admin,
                "POST",
                "/api/v1/shares",
                json!({"name": "escape", "path": "../../etc"}),
            ),
            400,
            "share.path_invalid",
        ),
        (
            send(admin, "GET", "/api/v1/users/nobody-here", json!({})),
            404,
            "user.not_found",
        ),
        (
            admin.post_json("/api/v1/users", &json!({}), &[]).unwrap(),
            403,
            "session.csrf_missing",
        ),
    ];
    for (r, status, code) in cases {
        let body = expect(&r, status);
        assert_eq!(body["error"]["code"], code);
        assert!(
            body["error"]["message"].as_str().unwrap().len() > 10
                && body["error"]["hint"].as_str().unwrap().len() > 10,
            "{body}"
        );
    }
    let page = admin
        .post_form(
            "/users",
            &[
                ("csrf_token", &b.admin_csrf),
                ("name", "Bad Name"),
                ("password", "long enough"),
            ],
        )
        .unwrap();
    assert_eq!(page.status, 400);
    assert!(
        page.text().contains("name.invalid") && page.text().contains("lowercase letter first"),
        "pages show message, hint and code: {}",
        page.text()
    );
}

/// Field report 2: with no route beyond the LAN, every local operation answers promptly.
#[test]
fn local_admin_works_without_internet() {
    let mut b = the_box();
    let _log = ConsoleOnFailure(
        b.machine.console_handle(),
        "local_admin_works_without_internet",
    );
    let admin = &b.admin.clone();
    let timed = |what: &str, f: &dyn Fn() -> cairn_qemu::HttpResponse, status: u16| {
        let started = Instant::now();
        let r = f();
        assert_eq!(r.status, status, "{what}: {}", r.text());
        // Password hashing under TCG takes ~3 s; a network timeout would take far longer.
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{what} took {:?}",
            started.elapsed()
        );
    };
    timed(
        "add user",
        &|| {
            send(
                admin,
                "POST",
                "/api/v1/users",
                json!({"name": "offline", "password": "offline password"}),
            )
        },
        201,
    );
    timed(
        "edit user",
        &|| {
            send(
                admin,
                "PATCH",
                "/api/v1/users/offline",
                json!({"email": "o@example.org"}),
            )
        },
        200,
    );
    timed(
        "add group",
        &|| {
            send(
                admin,
                "POST",
                "/api/v1/groups",
                json!({"name": "offline-group", "members": ["offline"]}),
            )
        },
        201,
    );
    timed(
        "add share",
        &|| {
            send(
                admin,
                "POST",
                "/api/v1/shares",
                json!({"name": "offline-share", "access": {"groups": {"offline-group": "read"}}}),
            )
        },
        201,
    );
    timed(
        "delete share",
        &|| send(admin, "DELETE", "/api/v1/shares/offline-share", json!({})),
        200,
    );
    timed(
        "delete group",
        &|| send(admin, "DELETE", "/api/v1/groups/offline-group", json!({})),
        200,
    );
    timed(
        "delete user",
        &|| send(admin, "DELETE", "/api/v1/users/offline", json!({})),
        200,
    );
    let route = b.machine.serial("wget -q -T 3 -O - http://192.0.2.1/ >/dev/null 2>&1 && echo reachable || echo unreachable", Duration::from_secs(20)).unwrap();
    assert_eq!(
        route.trim(),
        "unreachable",
        "the box must really have no route out in this scenario"
    );
}

/// Field report 1: DHCP to a static address (the same one), confirmed; then the same session adds, edits
/// and deletes users and shares.
#[test]
fn static_ip_change_keeps_admin_working() {
    let mut b = the_box();
    let _log = ConsoleOnFailure(
        b.machine.console_handle(),
        "static_ip_change_keeps_admin_working",
    );
    let admin = b.admin.clone();
    // QEMU's user network: the box has 10.0.2.15/24 by DHCP, the router is 10.0.2.2, DNS 10.0.2.3.
    let r = expect(
        &send(
            &admin,
            "PUT",
            "/api/v1/network",
            json!({"mode": "static", "address": "10.0.2.15", "prefix": 24, "gateway": "10.0.2.2", "dns": ["10.0.2.3"]}),
        ),
        200,
    );
    let confirm_by = r["confirm_by"].as_u64().unwrap();
    assert!(confirm_by > 0);
    let pending = expect(&admin.get("/api/v1/network").unwrap(), 200);
    assert_eq!(pending["pending"]["mode"], "static");
    expect(
        &send(&admin, "POST", "/api/v1/network/confirm", json!({})),
        200,
    );
    let now = expect(&admin.get("/api/v1/network").unwrap(), 200);
    assert_eq!(now["mode"], "static");
    assert!(now.get("pending").is_none());
    let addr = b
        .machine
        .serial(
            "ip -4 addr show dev eth0 | grep -o 'inet [0-9./]*'",
            Duration::from_secs(20),
        )
        .unwrap();
    assert_eq!(addr.trim(), "inet 10.0.2.15/24");
    expect(
        &send(
            &admin,
            "POST",
            "/api/v1/users",
            json!({"name": "after-static", "password": "some password"}),
        ),
        201,
    );
    expect(
        &send(
            &admin,
            "PATCH",
            "/api/v1/users/after-static",
            json!({"email": "s@example.org"}),
        ),
        200,
    );
    expect(
        &send(
            &admin,
            "POST",
            "/api/v1/shares",
            json!({"name": "static-share", "access": {"users": {"after-static": "read"}}}),
        ),
        201,
    );
    expect(
        &send(&admin, "DELETE", "/api/v1/shares/static-share", json!({})),
        200,
    );
    expect(
        &send(&admin, "DELETE", "/api/v1/users/after-static", json!({})),
        200,
    );
    let r = send(&admin, "POST", "/api/v1/network/confirm", json!({}));
    assert_eq!(
        expect(&r, 409)["error"]["code"],
        "network.nothing_to_confirm"
    );
    let bad = send(
        &admin,
        "PUT",
        "/api/v1/network",
        json!({"mode": "static", "address": "10.0.2.15", "prefix": 24, "gateway": "192.168.9.1"}),
    );
    assert_eq!(expect(&bad, 400)["error"]["code"], "network.invalid");
    // Back to DHCP for the other scenarios.
    expect(
        &send(&admin, "PUT", "/api/v1/network", json!({"mode": "dhcp"})),
        200,
    );
    expect(
        &send(&admin, "POST", "/api/v1/network/confirm", json!({})),
        200,
    );
}

/// Disks are listed by bay with their serials; the boot medium is marked and never free.
#[test]
fn disks_are_listed_and_the_boot_medium_is_never_free() {
    let b = the_box();
    let _log = ConsoleOnFailure(b.machine.console_handle(), "disks");
    let disks = expect(&b.admin.get("/api/v1/disks").unwrap(), 200);
    let disks = disks.as_array().unwrap();
    let boot: Vec<_> = disks.iter().filter(|d| d["role"] == "boot").collect();
    assert_eq!(boot.len(), 1, "{disks:?}");
    // With data disks on PCIe the boot medium is probed last and is not vda: found by its device path.
    assert!(boot[0]["device"].as_str().unwrap().starts_with("vd"));
    let free: Vec<_> = disks.iter().filter(|d| d["role"] == "free").collect();
    assert_eq!(free.len(), 2, "{disks:?}");
    assert_eq!(free[0]["serial"], "CAIRN-BAY1");
    assert_eq!(free[1]["id"], "CAIRN-BAY2");
    assert_eq!(free[0]["size_bytes"], 256u64 * 1024 * 1024);
    // The RAID tools the storage manager will drive are in the image and run (libraries included).
    let mut b = b;
    let v = b
        .machine
        .serial(
            "/sbin/mdadm --version 2>&1; modprobe raid1 && grep -c raid1 /proc/mdstat",
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(
        v.contains("mdadm - v4") && v.trim_end().ends_with('1'),
        "{v}"
    );
}
