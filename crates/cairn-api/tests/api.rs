//! The real server on a loopback port, driven like a browser and like an API client. The walk over every
//! route is in `walk.rs`.

mod common;

use cairn_api::{public_routes, routes};
use cairn_qemu::HttpClient;
use common::*;
use serde_json::json;

#[test]
fn the_allow_list_is_short_and_every_entry_is_a_real_route() {
    // Adding a public route is a decision: it must be made here too.
    let expected = [
        ("GET", "/api/v1/health"),
        ("POST", "/api/v1/setup"),
        ("POST", "/api/v1/session"),
        ("GET", "/setup"),
        ("POST", "/setup"),
        ("GET", "/login"),
        ("POST", "/login"),
        ("GET", "/static/cairn.css"),
        ("GET", "/static/cairn.js"),
    ];
    assert_eq!(public_routes(), expected.to_vec());
    for route in public_routes() {
        assert!(
            routes().contains(&route),
            "{route:?} is public but not a route"
        );
    }
}

#[test]
fn changes_without_the_csrf_token_are_refused() {
    let server = start();
    let (c, token) = set_up(&server);
    let r = c
        .post_json("/api/v1/system/reboot", &json!({}), &[])
        .unwrap();
    assert_error(&r, 403, "session.csrf_missing");
    let r = c
        .post_json(
            "/api/v1/system/reboot",
            &json!({}),
            &[("x-csrf-token", "0000")],
        )
        .unwrap();
    assert_error(&r, 403, "session.csrf_missing");
    let r = c.request("DELETE", "/api/v1/session", &[], vec![]).unwrap();
    assert_error(&r, 403, "session.csrf_missing");
    // With the token the request gets through to the rule behind it (no power control on a host).
    let r = c
        .post_json(
            "/api/v1/system/reboot",
            &json!({}),
            &[("x-csrf-token", &token)],
        )
        .unwrap();
    assert_error(&r, 503, "system.power_unavailable");
}

#[test]
fn forged_cookies_open_nothing() {
    let server = start();
    let (c, _) = set_up(&server);
    let real = c.cookie("cairn_session").unwrap();
    let forged = HttpClient::new(server.port);
    let mut flipped = real.clone().into_bytes();
    flipped[0] = if flipped[0] == b'a' { b'b' } else { b'a' };
    for value in [
        String::from_utf8(flipped).unwrap(),
        "x".repeat(64),
        String::new(),
        format!("{real}00"),
        "../../etc".into(),
    ] {
        forged.set_cookie("cairn_session", &value);
        assert_error(
            &forged.get("/api/v1/session").unwrap(),
            401,
            "session.required",
        );
    }
}

#[test]
fn setup_happens_once_and_validates_first() {
    let server = start();
    let c = HttpClient::new(server.port);
    let r = c
        .post_json(
            "/api/v1/setup",
            &json!({"username": "Root;rm", "password": PASSWORD}),
            &[],
        )
        .unwrap();
    assert_error(&r, 400, "name.invalid");
    let r = c
        .post_json(
            "/api/v1/setup",
            &json!({"username": "owner", "password": "short"}),
            &[],
        )
        .unwrap();
    assert_error(&r, 400, "user.password_too_short");
    let r = c
        .post_json(
            "/api/v1/setup",
            &json!({"username": "owner", "password": PASSWORD, "role": "god"}),
            &[],
        )
        .unwrap();
    assert_error(&r, 400, "request.invalid_body");
    assert_eq!(
        c.get("/api/v1/health").unwrap().json().unwrap()["setup_done"],
        false,
        "refused setups leave nothing"
    );
    set_up(&server);
    let r = HttpClient::new(server.port)
        .post_json(
            "/api/v1/setup",
            &json!({"username": "second", "password": PASSWORD}),
            &[],
        )
        .unwrap();
    assert_error(&r, 409, "setup.already_done");
}

#[test]
fn login_from_another_site_is_refused() {
    let server = start();
    set_up(&server);
    let c = HttpClient::new(server.port);
    let r = login_with(&c, "owner", PASSWORD, &[("origin", "http://evil.example")]);
    assert_error(&r, 403, "request.cross_origin");
    let own = format!("http://127.0.0.1:{}", server.port);
    let r = login_with(&c, "owner", PASSWORD, &[("origin", &own)]);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn session_cookie_is_httponly_and_strict() {
    let server = start();
    let c = HttpClient::new(server.port);
    let r = c
        .post_json(
            "/api/v1/setup",
            &json!({"username": "owner", "password": PASSWORD}),
            &[],
        )
        .unwrap();
    let cookie = r.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/"),
        "{cookie}"
    );
}

#[test]
fn oversized_bodies_are_refused() {
    let server = start();
    let c = HttpClient::new(server.port);
    let big = vec![b'a'; 200 * 1024];
    let r = c
        .request(
            "POST",
            "/api/v1/setup",
            &[("content-type", "application/json")],
            big,
        )
        .unwrap();
    assert_error(&r, 413, "request.too_large");
}

#[test]
fn wrong_password_and_unknown_user_look_the_same() {
    let server = start();
    set_up(&server);
    let c = HttpClient::new(server.port);
    let a = login(&c, "owner", "wrong password");
    let b = login(&c, "ghost", "wrong password");
    assert_error(&a, 401, "session.bad_credentials");
    assert_eq!(a.status, b.status);
    assert_eq!(a.body, b.body);
    assert!(
        c.cookie("cairn_session").is_none(),
        "a refused login sets no session"
    );
}

#[test]
fn every_error_code_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/errors.md"))
        .unwrap();
    for code in cairn_api::ALL_CODES {
        assert!(
            doc.contains(&format!("`{code}`")),
            "error code {code} is not in docs/errors.md"
        );
    }
}

#[test]
fn the_openapi_document_lists_exactly_the_api_routes() {
    let doc: serde_json::Value =
        serde_json::from_slice(include_bytes!("../static/openapi.json")).unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            if method != "parameters" {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    documented.sort();
    let mut routed: Vec<(String, String)> = routes()
        .iter()
        .filter(|(_, p)| p.starts_with("/api/"))
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    routed.sort();
    assert_eq!(documented, routed);
}

#[test]
fn foreign_host_names_are_refused_but_ip_literals_and_own_names_pass() {
    let server = start();
    let base = HttpClient::new(server.port);
    for host in [
        "evil.example",
        "evil.example:80",
        "cairn.evil.example",
        "127.0.0.1:80:80",
        "",
        "cairn:http",
        "[::1]:http",
        "[cairn]:80",
        "[::1",
    ] {
        let r = base.clone().with_host(host).get("/api/v1/health").unwrap();
        assert_error(&r, 421, "request.bad_host");
    }
    for host in [
        "127.0.0.1",
        "10.0.2.15:8080",
        "[::1]:80",
        "cairn",
        "CAIRN.local",
        "localhost:8080",
    ] {
        let r = base.clone().with_host(host).get("/api/v1/health").unwrap();
        assert_eq!(r.status, 200, "{host}: {}", r.text());
    }
}

#[test]
fn repeated_login_failures_slow_down_without_revealing_accounts() {
    let server = start();
    set_up(&server);
    let c = HttpClient::new(server.port);
    for _ in 0..5 {
        let r = login(&c, "owner", "wrong password");
        assert_error(&r, 401, "session.bad_credentials");
    }
    let r = login(&c, "owner", PASSWORD);
    assert_error(&r, 429, "session.rate_limited");
    assert!(r.header("retry-after").is_some());
}

#[test]
fn of_parallel_wrong_logins_from_one_address_few_are_checked_and_the_rest_refused_with_a_code() {
    let server = start();
    set_up(&server);
    let start_line = std::sync::Arc::new(std::sync::Barrier::new(20));
    let answers: Vec<_> = (0..20)
        .map(|_| {
            let (port, start_line) = (server.port, start_line.clone());
            std::thread::spawn(move || {
                let c = HttpClient::new(port);
                start_line.wait();
                let r = login(&c, "owner", "wrong password");
                let code = r.json().unwrap()["error"]["code"]
                    .as_str()
                    .unwrap()
                    .to_string();
                (r.status, code, r.header("retry-after").map(str::to_string))
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let checked = answers.iter().filter(|(s, _, _)| *s == 401).count();
    assert!(
        (1..=5).contains(&checked),
        "{checked} passwords checked of 20 sent at once: {answers:?}"
    );
    for (status, code, retry) in answers.iter().filter(|(s, _, _)| *s != 401) {
        assert_eq!(*status, 429, "{answers:?}");
        assert!(
            code == "session.login_in_progress" || code == "session.rate_limited",
            "{code}"
        );
        assert!(retry.is_some(), "a refusal says when to retry");
    }
}

#[test]
fn the_current_password_on_patch_me_is_throttled_like_a_login() {
    let server = start();
    let (c, token) = set_up(&server);
    let change = |current: &str| {
        c.request(
            "PATCH",
            "/api/v1/me",
            &[
                ("content-type", "application/json"),
                ("x-csrf-token", &token),
            ],
            serde_json::to_vec(&serde_json::json!({
                "password": "a brand new password",
                "current_password": current,
            }))
            .unwrap(),
        )
        .unwrap()
    };
    for _ in 0..5 {
        assert_error(&change("a guess"), 403, "user.current_password_wrong");
    }
    // A stolen session guesses no faster than a login: even the right password now waits.
    let r = change(PASSWORD);
    assert_error(&r, 429, "session.rate_limited");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "retry-after {wait}");
    // The same count as logins: the owner's account from this address is held back there too.
    assert_error(
        &login(&HttpClient::new(server.port), "owner", PASSWORD),
        429,
        "session.rate_limited",
    );
}

#[test]
fn users_groups_and_shares_round_trip_through_the_api() {
    let server = start();
    let (c, token) = set_up(&server);
    let h = [("x-csrf-token", token.as_str())];
    let r = c
        .post_json(
            "/api/v1/users",
            &json!({"name": "alice", "password": "alice password", "email": "alice@example.org"}),
            &h,
        )
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(
        r.json().unwrap().get("password").is_none(),
        "hashes never leave the box"
    );
    assert!(!r.text().contains("hash"), "{}", r.text());
    let r = c
        .post_json(
            "/api/v1/users",
            &json!({"name": "alice", "password": "alice password"}),
            &h,
        )
        .unwrap();
    assert_error(&r, 409, "user.name_taken");
    let r = c
        .post_json(
            "/api/v1/groups",
            &json!({"name": "family", "members": ["alice"]}),
            &h,
        )
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let r = c.post_json("/api/v1/shares", &json!({"name": "photos", "description": "Family photos", "access": {"users": {"alice": "write"}, "groups": {"family": "read"}}}), &h).unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json().unwrap()["path"], "photos");
    let r = c
        .request(
            "PATCH",
            "/api/v1/users/owner",
            &[
                ("content-type", "application/json"),
                ("x-csrf-token", &token),
            ],
            br#"{"role":"user"}"#.to_vec(),
        )
        .unwrap();
    assert_error(&r, 422, "user.last_admin");
    let r = c
        .request(
            "PATCH",
            "/api/v1/users/owner",
            &[
                ("content-type", "application/json"),
                ("x-csrf-token", &token),
            ],
            br#"{"email":"new@example.org","full_name":"The Owner"}"#.to_vec(),
        )
        .unwrap();
    assert_eq!(r.json().unwrap()["email"], "new@example.org");
    // Alice sees her own record and shares, and nothing an administrator manages.
    let alice = HttpClient::new(server.port);
    let r = login(&alice, "alice", "alice password");
    assert_eq!(r.status, 200);
    let me = alice.get("/api/v1/me").unwrap().json().unwrap();
    assert_eq!(me["shares"]["photos"], "write");
    assert_error(
        &alice.get("/api/v1/users").unwrap(),
        403,
        "session.admin_required",
    );
    assert_error(
        &alice.get("/api/v1/users/owner").unwrap(),
        403,
        "session.admin_required",
    );
    let r = c
        .request("DELETE", "/api/v1/users/alice", &h, vec![])
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_error(&alice.get("/api/v1/me").unwrap(), 401, "session.required");
    let share = c.get("/api/v1/shares/photos").unwrap().json().unwrap();
    assert_eq!(share["access"]["users"], json!({}));
}

#[test]
fn an_unconfirmed_network_change_rolls_back_by_itself_over_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let store = cairn_store::Store::open(&dir.path().join("settings.db")).unwrap();
    let app = app_on(store);
    app.system
        .set_trial_window(std::time::Duration::from_millis(300));
    let server = serve_app(dir, app);
    let (c, token) = set_up(&server);
    let h = [("x-csrf-token", token.as_str())];
    let fixed = json!({"mode": "static", "address": "192.168.1.20", "prefix": 24, "gateway": "192.168.1.1"});
    let r = c
        .request(
            "PUT",
            "/api/v1/network",
            &[("content-type", "application/json"), h[0]],
            fixed.to_string().into_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json().unwrap()["confirm_by"].is_u64());
    let pending = c.get("/api/v1/network").unwrap().json().unwrap();
    assert_eq!(pending["pending"]["address"], "192.168.1.20", "{pending}");
    std::thread::sleep(std::time::Duration::from_millis(900));
    let after = c.get("/api/v1/network").unwrap().json().unwrap();
    assert!(
        after.get("pending").is_none(),
        "the trial must end: {after}"
    );
    assert_eq!(after["mode"], "dhcp", "the previous settings come back");
    assert_error(
        &c.post_json("/api/v1/network/confirm", &json!({}), &h)
            .unwrap(),
        409,
        "network.nothing_to_confirm",
    );
    // Confirmed in time, the change stays.
    c.request(
        "PUT",
        "/api/v1/network",
        &[("content-type", "application/json"), h[0]],
        fixed.to_string().into_bytes(),
    )
    .unwrap();
    assert_eq!(
        c.post_json("/api/v1/network/confirm", &json!({}), &h)
            .unwrap()
            .status,
        200
    );
    std::thread::sleep(std::time::Duration::from_millis(900));
    assert_eq!(
        c.get("/api/v1/network").unwrap().json().unwrap()["mode"],
        "static"
    );
}

/// Every hostile string from `tests/fixtures/hostile/` (one file per case) in every field that takes text.
/// Names, paths and addresses must be refused with a documented code; free text may be kept only verbatim
/// and single-line. Nothing is half-written: the state after a refusal equals the state before.
#[test]
fn hostile_input_in_every_field_is_refused_or_kept_verbatim() {
    let server = start();
    let (c, token) = set_up(&server);
    let h = [("x-csrf-token", token.as_str())];
    assert_eq!(
        c.post_json(
            "/api/v1/users",
            &json!({"name": "alice", "password": "alice password"}),
            &h
        )
        .unwrap()
        .status,
        201
    );
    assert_eq!(
        c.post_json("/api/v1/shares", &json!({"name": "docs"}), &h)
            .unwrap()
            .status,
        201
    );
    let codes =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/errors.md"))
            .unwrap();
    let snapshot = |c: &HttpClient| -> String {
        [
            "/api/v1/users",
            "/api/v1/groups",
            "/api/v1/shares",
            "/api/v1/system",
            "/api/v1/network",
        ]
        .iter()
        .map(|p| {
            let mut v = c.get(p).unwrap().json().unwrap();
            if let Some(o) = v.as_object_mut() {
                o.remove("uptime_s");
            }
            v.to_string()
        })
        .collect()
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 20);
    for case in cases {
        let bad: String = serde_json::from_str(&std::fs::read_to_string(&case).unwrap()).unwrap();
        let label = case.file_name().unwrap().to_string_lossy().to_string();
        // Fields where the value is an identifier, a path or an address: always refused.
        let must_refuse: Vec<(&str, &str, &str, serde_json::Value)> = vec![
            (
                "user.name",
                "POST",
                "/api/v1/users",
                json!({"name": bad, "password": "long enough"}),
            ),
            (
                "user.email",
                "POST",
                "/api/v1/users",
                json!({"name": "bob", "password": "long enough", "email": bad}),
            ),
            ("group.name", "POST", "/api/v1/groups", json!({"name": bad})),
            (
                "group.members",
                "POST",
                "/api/v1/groups",
                json!({"name": "team", "members": [bad]}),
            ),
            ("share.name", "POST", "/api/v1/shares", json!({"name": bad})),
            (
                "share.path",
                "POST",
                "/api/v1/shares",
                json!({"name": "other", "path": bad}),
            ),
            (
                "share.volume",
                "POST",
                "/api/v1/shares",
                json!({"name": "other", "volume": bad}),
            ),
            (
                "share.access",
                "PATCH",
                "/api/v1/shares/docs",
                json!({"access": {"users": {bad.clone(): "write"}}}),
            ),
            (
                "system.hostname",
                "PATCH",
                "/api/v1/system",
                json!({"hostname": bad}),
            ),
            (
                "network.address",
                "PUT",
                "/api/v1/network",
                json!({"mode": "static", "address": bad, "prefix": 24}),
            ),
        ];
        // The few cases where the fixture is a legitimate value for that field.
        let legitimate = [
            ("empty.json", "user.email"),
            ("reserved-root.json", "share.name"),
            ("reserved-root.json", "share.path"),
            ("reserved-root.json", "system.hostname"),
            ("reserved-global.json", "share.path"),
            ("reserved-global.json", "system.hostname"),
            ("uppercase.json", "share.path"),
            ("uppercase.json", "system.hostname"),
            ("space.json", "share.path"),
        ];
        for (field, method, path, body) in must_refuse {
            if legitimate.contains(&(label.as_str(), field)) {
                continue;
            }
            let before = snapshot(&c);
            let r = c
                .request(
                    method,
                    path,
                    &[
                        ("content-type", "application/json"),
                        ("x-csrf-token", &token),
                    ],
                    serde_json::to_vec(&body).unwrap(),
                )
                .unwrap();
            assert!(
                (400..500).contains(&r.status),
                "{label}: {field} {method} {path} {body} was accepted: {}",
                r.text()
            );
            let err = r.json().unwrap();
            let code = err["error"]["code"].as_str().unwrap();
            assert!(
                codes.contains(&format!("`{code}`")),
                "{label}: undocumented code {code}"
            );
            assert!(err["error"]["hint"].as_str().unwrap().len() > 5);
            assert_eq!(
                snapshot(&c),
                before,
                "{label}: {method} {path} left something behind"
            );
        }
        // Free text: refused when it has control characters or is too long, otherwise kept exactly.
        for (method, path, field) in [
            ("PATCH", "/api/v1/users/alice", "full_name"),
            ("PATCH", "/api/v1/shares/docs", "description"),
        ] {
            let r = c
                .request(
                    method,
                    path,
                    &[
                        ("content-type", "application/json"),
                        ("x-csrf-token", &token),
                    ],
                    serde_json::to_vec(&json!({field: bad})).unwrap(),
                )
                .unwrap();
            let control = bad.chars().any(|ch| ch.is_control()) || bad.chars().count() > 128;
            if control {
                assert_eq!(r.status, 400, "{label}: {field} accepted: {}", r.text());
            } else {
                assert_eq!(r.status, 200, "{label}: {field}: {}", r.text());
                assert_eq!(
                    r.json().unwrap()[field],
                    bad,
                    "{label}: {field} must be kept verbatim"
                );
            }
        }
    }
}

#[test]
fn a_form_carries_its_token_in_a_field_and_only_its_own_session_token_counts() {
    let server = start();
    let (c, token) = set_up(&server);
    let form = |c: &HttpClient, fields: &[(&str, &str)]| c.post_form("/me", fields).unwrap();
    // A form without the token, or with a wrong one, is refused with the code on the page.
    for fields in [
        vec![("full_name", "Mallory")],
        vec![("full_name", "Mallory"), ("csrf_token", "")],
        vec![("full_name", "Mallory"), ("csrf_token", "0000")],
    ] {
        let r = form(&c, &fields);
        assert_eq!(r.status, 403, "{fields:?}: {}", r.text());
        assert!(r.text().contains("session.csrf_missing"), "{}", r.text());
    }
    // Off by its last character: still refused.
    let mut near = token.clone().into_bytes();
    let last = near.len() - 1;
    near[last] = if near[last] == b'0' { b'1' } else { b'0' };
    let near = String::from_utf8(near).unwrap();
    let r = c
        .request(
            "PATCH",
            "/api/v1/me",
            &[
                ("content-type", "application/json"),
                ("x-csrf-token", &near),
            ],
            br#"{"full_name":"Mallory"}"#.to_vec(),
        )
        .unwrap();
    assert_error(&r, 403, "session.csrf_missing");
    // Another session's token, even the same user's, does not open this one.
    let other = HttpClient::new(server.port);
    let r = login(&other, "owner", PASSWORD);
    let other_token = r.json().unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(other_token, token);
    let r = c
        .request(
            "PATCH",
            "/api/v1/me",
            &[
                ("content-type", "application/json"),
                ("x-csrf-token", &other_token),
            ],
            br#"{"full_name":"Mallory"}"#.to_vec(),
        )
        .unwrap();
    assert_error(&r, 403, "session.csrf_missing");
    assert_eq!(
        c.get("/api/v1/me").unwrap().json().unwrap()["full_name"],
        ""
    );
    // The form's own token in its field goes through.
    let r = form(
        &c,
        &[
            ("full_name", "The Owner"),
            ("email", ""),
            ("csrf_token", &token),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(
        c.get("/api/v1/me").unwrap().json().unwrap()["full_name"],
        "The Owner"
    );
}

#[test]
fn the_host_check_follows_a_renamed_box() {
    let server = start();
    let (c, token) = set_up(&server);
    let r = c
        .request(
            "PATCH",
            "/api/v1/system",
            &[
                ("content-type", "application/json"),
                ("x-csrf-token", &token),
            ],
            br#"{"hostname":"attic"}"#.to_vec(),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    for host in ["attic", "ATTIC.local:8080", "attic.local."] {
        let r = c.clone().with_host(host).get("/api/v1/health").unwrap();
        assert_eq!(r.status, 200, "{host}: {}", r.text());
    }
    for host in ["cairn", "cairn.local", "attic.evil.example"] {
        let r = c.clone().with_host(host).get("/api/v1/health").unwrap();
        assert_error(&r, 421, "request.bad_host");
    }
}

#[test]
fn failures_spread_over_many_names_slow_down_their_source() {
    let server = start();
    set_up(&server);
    let c = HttpClient::new(server.port);
    for i in 0..10 {
        let r = login(&c, &format!("guess{i}"), "wrong password");
        assert_error(&r, 401, "session.bad_credentials");
    }
    // A name never tried before, with the right password, from the same source: held back all the same.
    let r = login(&c, "owner", PASSWORD);
    assert_error(&r, 429, "session.rate_limited");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=300).contains(&wait), "retry-after {wait}");
    assert!(c.cookie("cairn_session").is_none());
}

#[test]
fn setup_is_offered_to_the_local_network_only() {
    use cairn_api::is_local_network;
    let at = |ip: &str| std::net::SocketAddr::new(ip.parse().unwrap(), 40000);
    for local in [
        "127.0.0.1",
        "10.0.2.2",
        "172.16.0.9",
        "192.168.1.5",
        "169.254.10.1",
        "::1",
        "fd12:3456::1",
        "fe80::1",
        "::ffff:192.168.1.5",
    ] {
        assert!(is_local_network(at(local)), "{local} is on the LAN");
    }
    for remote in [
        "8.8.8.8",
        "172.32.0.1",
        "100.64.0.1",
        "11.0.0.1",
        "2001:db8::1",
        "2a00:1450::1",
        "::ffff:8.8.8.8",
    ] {
        assert!(!is_local_network(at(remote)), "{remote} is not on the LAN");
    }
}

#[test]
fn logging_out_ends_the_session_on_the_box_not_only_in_the_browser() {
    let server = start();
    let (c, token) = set_up(&server);
    let cookie = c.cookie("cairn_session").expect("a session cookie");
    let r = c
        .request(
            "DELETE",
            "/api/v1/session",
            &[("x-csrf-token", &token)],
            vec![],
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // A copy of the cookie kept elsewhere (another tab, a thief) opens nothing any more.
    let kept = c.fresh();
    kept.set_cookie("cairn_session", &cookie);
    assert_error(&kept.get("/api/v1/me").unwrap(), 401, "session.required");
}

#[test]
fn a_json_change_needs_the_header_a_token_in_its_body_does_not_count() {
    let server = start();
    let (c, token) = set_up(&server);
    // A JSON body is not a form: a `csrf_token=` inside it must not stand in for the header.
    let body = format!("{{\"hostname\":\"sneaky\"}}&csrf_token={token}");
    let r = c
        .request(
            "PATCH",
            "/api/v1/system",
            &[("content-type", "application/json")],
            body.into_bytes(),
        )
        .unwrap();
    assert_error(&r, 403, "session.csrf_missing");
}

#[test]
fn each_session_names_the_client_it_was_opened_from() {
    let server = start();
    let (c, _) = set_up(&server);
    let phone = c.fresh();
    let r = phone
        .request(
            "POST",
            "/api/v1/session",
            &[
                ("content-type", "application/json"),
                ("user-agent", "PhoneBrowser/1.0"),
            ],
            json!({"username": "owner", "password": PASSWORD})
                .to_string()
                .into_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let sessions = c.get("/api/v1/me/sessions").unwrap().json().unwrap();
    let clients: Vec<&str> = sessions
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["client"].as_str())
        .collect();
    assert!(
        clients
            .iter()
            .any(|c| c.contains("127.0.0.1") && c.contains("PhoneBrowser/1.0")),
        "{sessions}"
    );
}

#[test]
fn before_setup_only_open_routes_answer() {
    let server = start();
    let c = HttpClient::new(server.port);
    for (method, path) in routes() {
        let r = c
            .request(
                method,
                path,
                &[("content-type", "application/json")],
                b"{}".to_vec(),
            )
            .unwrap();
        let open = matches!(
            (method, path),
            ("GET", "/api/v1/health")
                | ("POST", "/api/v1/setup")
                | ("GET" | "POST", "/setup")
                | ("GET", "/static/cairn.css" | "/static/cairn.js")
        );
        if open {
            continue;
        }
        if path.starts_with("/api/") {
            assert_error(&r, 409, "setup.required");
        } else {
            assert_eq!(
                (r.status, r.header("location")),
                (303, Some("/setup")),
                "{method} {path} before setup"
            );
        }
    }
    assert_error(
        &c.get("/api/v1/nothing-here").unwrap(),
        409,
        "setup.required",
    );
}
