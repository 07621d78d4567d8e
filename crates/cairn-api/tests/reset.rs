//! The dashboard's reset, its undo, and a backup restored over HTTP, on a box with the host's recording fake
//! (the reset pin itself is init's, tested under QEMU in `tests/tests/reset.rs`).

mod common;

use cairn_qemu::HttpClient;
use cairn_system::host::HostCall;
use cairn_system::PowerAction;
use common::*;
use serde_json::json;

fn send(
    c: &cairn_qemu::HttpClient,
    token: &str,
    path: &str,
    body: serde_json::Value,
) -> cairn_qemu::HttpResponse {
    c.request(
        "POST",
        path,
        &[
            ("content-type", "application/json"),
            ("x-csrf-token", token),
        ],
        serde_json::to_vec(&body).unwrap(),
    )
    .unwrap()
}

fn reboots(b: &RealBox) -> usize {
    b.host
        .calls()
        .iter()
        .filter(|c| **c == HostCall::Power(PowerAction::Reboot))
        .count()
}

/// A box with its owner logged in and one user, alice.
fn box_with_alice() -> (RealBox, HttpClient, String) {
    let b = start_box(&["A"], &[]);
    let (owner, token) = set_up(&b.server);
    let r = send(
        &owner,
        &token,
        "/api/v1/users",
        json!({"name": "alice", "password": "alice password"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    (b, owner, token)
}

#[test]
fn the_dashboard_reset_needs_the_name_keeps_users_and_undoes() {
    let (b, owner, token) = box_with_alice();
    let r = owner
        .request(
            "PATCH",
            "/api/v1/system",
            &[
                ("content-type", "application/json"),
                ("x-csrf-token", &token),
            ],
            serde_json::to_vec(&json!({"hostname": "attic"})).unwrap(),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // Without the name typed: refused, nothing changed, no restart.
    assert_error(
        &send(
            &owner,
            &token,
            "/api/v1/system/reset",
            json!({"tier": "network", "confirm": "cairn"}),
        ),
        409,
        "reset.confirm_required",
    );
    assert_error(
        &send(
            &owner,
            &token,
            "/api/v1/system/reset",
            json!({"tier": "everything", "confirm": "attic"}),
        ),
        400,
        "reset.tier_invalid",
    );
    assert_eq!(reboots(&b), 0);
    assert_error(
        &send(&owner, &token, "/api/v1/system/reset/undo", json!({})),
        409,
        "reset.nothing_to_undo",
    );

    let r = send(
        &owner,
        &token,
        "/api/v1/system/reset",
        json!({"tier": "network", "confirm": "attic"}),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(reboots(&b), 1, "the box restarts into the reset settings");
    let health = HttpClient::new(b.server.port)
        .get("/api/v1/health")
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(health["admin_password_reset"], true, "{health}");
    assert_eq!(
        login(&HttpClient::new(b.server.port), "owner", PASSWORD).status,
        401
    );
    assert_eq!(
        login(&HttpClient::new(b.server.port), "alice", "alice password").status,
        200
    );

    // Setup from the LAN sets the administrator's password again; the front page offers undo.
    let (again, token) = set_up_as(&b.server, "owner", "new owner password");
    let system = again.get("/api/v1/system").unwrap().json().unwrap();
    assert_eq!(system["hostname"], "cairn", "{system}");
    assert_eq!(system["last_reset"]["tier"], "network", "{system}");
    assert_eq!(system["last_reset"]["trigger"], "dashboard", "{system}");
    assert!(again
        .get("/")
        .unwrap()
        .text()
        .contains("id=\"settings-reset\""));

    let r = send(&again, &token, "/api/v1/system/reset/undo", json!({}));
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(reboots(&b), 2);
    let back = HttpClient::new(b.server.port);
    assert_eq!(
        login(&back, "owner", PASSWORD).status,
        200,
        "the old password is back"
    );
    let system = back.get("/api/v1/system").unwrap().json().unwrap();
    assert_eq!(system["hostname"], "attic", "{system}");
    assert_eq!(system["last_reset"], serde_json::Value::Null, "{system}");
}

#[test]
fn a_backup_restores_a_deleted_user_and_a_wrong_passphrase_changes_nothing() {
    let (b, owner, token) = box_with_alice();
    let r = send(
        &owner,
        &token,
        "/api/v1/system/backup",
        json!({"passphrase": "a backup passphrase"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .header("content-disposition")
        .is_some_and(|d| d.contains("attachment")));
    let file = r.body.clone();
    let r = owner
        .request(
            "DELETE",
            "/api/v1/users/alice",
            &[("x-csrf-token", &token)],
            vec![],
        )
        .unwrap();
    assert!(r.status < 300, "{}", r.text());

    let restore = |query: &str, pass: &str, body: Vec<u8>| {
        owner
            .request(
                "POST",
                &format!("/api/v1/system/restore{query}"),
                &[
                    ("content-type", "application/octet-stream"),
                    ("x-csrf-token", &token),
                    ("x-cairn-passphrase", pass),
                ],
                body,
            )
            .unwrap()
    };
    assert_error(
        &restore("", "the wrong one", file.clone()),
        422,
        "backup.cannot_open",
    );
    assert_error(
        &restore("?parts=disks", "a backup passphrase", file.clone()),
        400,
        "backup.parts_invalid",
    );
    // Anyone but an administrator gets the small body limit.
    let alice_less = HttpClient::new(b.server.port);
    assert_eq!(
        login(&alice_less, "alice", "alice password").status,
        401,
        "alice is gone"
    );
    let dry = restore(
        "?dry_run=1&parts=users",
        "a backup passphrase",
        file.clone(),
    );
    assert_eq!(dry.status, 200, "{}", dry.text());
    let dry = dry.json().unwrap();
    assert_eq!(
        dry["changes"]["users"]["users"]["added"],
        json!(["alice"]),
        "{dry}"
    );
    assert_eq!(
        login(&HttpClient::new(b.server.port), "alice", "alice password").status,
        401,
        "a dry run changes nothing"
    );
    let done = restore("?parts=users", "a backup passphrase", file);
    assert_eq!(done.status, 200, "{}", done.text());
    assert_eq!(done.json().unwrap()["restarting"], false);
    assert_eq!(
        login(&HttpClient::new(b.server.port), "alice", "alice password").status,
        200
    );
    assert_eq!(reboots(&b), 0, "restoring users needs no restart");
}
