//! The walk over every route in the table, on a box with real objects: each `{name}` and `{id}` is replaced
//! by a user, group, share, volume, job or session that exists, so every handler does its real work. No
//! route may answer 5xx, 405 or "not found"; reads answer 2xx/3xx; changes answer 2xx/3xx or a refusal with
//! a documented code. Destructive routes act on throwaway objects and sessions of their own, so the walk
//! never saws off its own branch.

mod common;

use cairn_api::{public_routes, routes};
use cairn_qemu::{HttpClient, HttpResponse};
use cairn_system::host::HostCall;
use cairn_system::{Mode, PowerAction};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The bays: `vault` is a mirror on A and B; C replaces B (healthy) and H replaces A (failed); D and E carry
/// throwaway volumes; F and G take the volumes the walk creates (and scrubs); I and J come from another box
/// with the volumes the walk imports.
const BAYS: &[&str] = &["A", "B", "C", "D", "E", "F", "G", "H", "I", "J"];
const FOUND: &[(&str, &str)] = &[("found-api", "I"), ("found-html", "J")];

/// The only refusals the walk expects, each with its code: every other change must succeed.
const REFUSED: &[(&str, &str, u16, &str)] = &[
    ("POST", "/api/v1/setup", 409, "setup.already_done"),
    // Repair and format belong to the console's control socket, never the network.
    ("POST", "/api/v1/config/repair", 403, "config.console_only"),
    ("POST", "/api/v1/config/format", 403, "config.console_only"),
    // A reset would end the walk's own sessions: the walk sends it unconfirmed, and has none to undo.
    (
        "POST",
        "/api/v1/system/reset",
        409,
        "reset.confirm_required",
    ),
    ("POST", "/system/reset", 409, "reset.confirm_required"),
    (
        "POST",
        "/api/v1/system/reset/undo",
        409,
        "reset.nothing_to_undo",
    ),
    ("POST", "/system/reset/undo", 409, "reset.nothing_to_undo"),
    // The backup file's passphrase goes in a header the walk does not send.
    (
        "POST",
        "/api/v1/system/restore",
        400,
        "backup.passphrase_missing",
    ),
];
const ALICE_PASSWORD: &str = "alice password";

/// A logged-in browser and its token.
#[derive(Clone)]
struct Session {
    client: HttpClient,
    csrf: String,
}

impl Session {
    fn login(server: &Server, user: &str, password: &str) -> Session {
        let client = HttpClient::new(server.port);
        let r = client
            .post_json(
                "/api/v1/session",
                &json!({"username": user, "password": password}),
                &[],
            )
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let csrf = r.json().unwrap()["csrf_token"]
            .as_str()
            .unwrap()
            .to_string();
        Session { client, csrf }
    }

    fn send(&self, method: &str, path: &str, body: &Value) -> HttpResponse {
        self.client
            .request(
                method,
                path,
                &[
                    ("content-type", "application/json"),
                    ("x-csrf-token", &self.csrf),
                ],
                serde_json::to_vec(body).unwrap(),
            )
            .unwrap()
    }

    /// The id of this browser's own session.
    fn id(&self) -> String {
        let list = self
            .client
            .get("/api/v1/me/sessions")
            .unwrap()
            .json()
            .unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .find(|s| s["current"] == true)
            .expect("the current session is listed")["id"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

fn expect(r: &HttpResponse, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.text());
    r.json().unwrap()
}

/// The kernel finishes whatever md was doing until no job runs any more.
fn settle(b: &RealBox, owner: &Session) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for minor in 0..16 {
            b.fake.finish_sync(minor);
        }
        let jobs = expect(&owner.client.get("/api/v1/jobs").unwrap(), 200);
        let running: Vec<&Value> = jobs
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["state"] == "running")
            .collect();
        if running.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "jobs still running: {running:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A box with an administrator (`owner`), a user (`alice`), a group (`family`), a mirror (`vault`) with a
/// share (`photos`), throwaway objects of each kind for the API's and the dashboard's deletes (`du-api`,
/// `dg-html`, `ds-api`, `dv-html`, ...), and spare sessions of the owner's to revoke and to end.
struct Furnished {
    b: RealBox,
    owner: Session,
    alice: Session,
    /// Revoked by `DELETE /api/v1/me/sessions/{id}` and by `POST /me/sessions/{id}/revoke`.
    revoked_api: Session,
    revoked_html: Session,
    /// Ended by `DELETE /api/v1/session` and by `POST /logout`.
    ending_api: Session,
    ending_html: Session,
    /// The job that built `vault`.
    job: String,
    /// A signed update index served on the host, set as the box's update source.
    update_source: String,
    /// A pending pairing code, removed by `DELETE /api/v1/cloud/pairings/{id}`.
    pairing: String,
}

fn furnished() -> Furnished {
    let b = start_box(BAYS, FOUND);
    let (client, csrf) = set_up(&b.server);
    let owner = Session { client, csrf };
    for name in ["alice", "du-api", "du-html"] {
        let password = if name == "alice" {
            ALICE_PASSWORD
        } else {
            PASSWORD
        };
        let r = owner.send(
            "POST",
            "/api/v1/users",
            &json!({"name": name, "password": password}),
        );
        expect(&r, 201);
    }
    for (name, members) in [
        ("family", json!(["alice"])),
        ("dg-api", json!([])),
        ("dg-html", json!([])),
    ] {
        let r = owner.send(
            "POST",
            "/api/v1/groups",
            &json!({"name": name, "members": members}),
        );
        expect(&r, 201);
    }
    let r = owner.send(
        "POST",
        "/api/v1/volumes",
        &json!({"name": "vault", "level": "raid1", "disks": ["A", "B"]}),
    );
    let job = expect(&r, 202)["job"]["id"].as_str().unwrap().to_string();
    for (name, disk) in [("dv-api", "D"), ("dv-html", "E")] {
        let r = owner.send(
            "POST",
            "/api/v1/volumes",
            &json!({"name": name, "level": "single", "disks": [disk]}),
        );
        expect(&r, 202);
    }
    settle(&b, &owner);
    let j = expect(
        &owner.client.get(&format!("/api/v1/jobs/{job}")).unwrap(),
        200,
    );
    assert_eq!(j["state"], "done", "{j}");
    for name in ["vault", "dv-api", "dv-html"] {
        let v = expect(
            &owner
                .client
                .get(&format!("/api/v1/volumes/{name}"))
                .unwrap(),
            200,
        );
        assert_eq!(
            (v["state"].as_str(), v["mounted"].as_bool()),
            (Some("clean"), Some(true)),
            "{v}"
        );
    }
    let r = owner.send(
        "POST",
        "/api/v1/shares",
        &json!({"name": "photos", "volume": "vault", "access": {"users": {"alice": "write"}, "groups": {"family": "read"}}}),
    );
    expect(&r, 201);
    for name in ["ds-api", "ds-html"] {
        expect(
            &owner.send("POST", "/api/v1/shares", &json!({"name": name})),
            201,
        );
    }
    let index = cairn_firmware::install::index::UpdateIndex {
        format: cairn_firmware::install::index::INDEX_FORMAT,
        boards: Default::default(),
    };
    let port = serve_document(cairn_firmware::install::index::sign_index(
        &index,
        &b.firmware.key,
    ));
    let update_source = format!("http://127.0.0.1:{port}/index.json");
    let r = owner.client.request(
        "PUT",
        "/api/v1/firmware/source",
        &[
            ("content-type", "application/json"),
            ("x-csrf-token", &owner.csrf),
        ],
        serde_json::to_vec(&json!({"url": update_source})).unwrap(),
    );
    expect(&r.unwrap(), 200);
    let r = owner.client.request(
        "POST",
        "/api/v1/cloud/pairings",
        &[
            ("content-type", "application/json"),
            ("x-csrf-token", &owner.csrf),
        ],
        b"{}".to_vec(),
    );
    let pairing = expect(&r.unwrap(), 201)["id"].as_str().unwrap().to_string();
    let s = &b.server;
    Furnished {
        pairing,
        update_source,
        alice: Session::login(s, "alice", ALICE_PASSWORD),
        revoked_api: Session::login(s, "owner", PASSWORD),
        revoked_html: Session::login(s, "owner", PASSWORD),
        ending_api: Session::login(s, "owner", PASSWORD),
        ending_html: Session::login(s, "owner", PASSWORD),
        owner,
        job,
        b,
    }
}

/// Whether a route's parameters should name a throwaway object: it deletes what it names.
fn destroys(method: &str, pattern: &str) -> bool {
    method == "DELETE" || pattern.ends_with("/delete")
}

/// The route's pattern with each `{name}` or `{id}` replaced by a real object of the kind the segment
/// before it names.
fn fill(method: &str, pattern: &str, f: &Furnished) -> String {
    let flavour = if pattern.starts_with("/api/") {
        "api"
    } else {
        "html"
    };
    let doomed = destroys(method, pattern);
    let mut prev = "";
    let mut out = vec![];
    for seg in pattern.split('/') {
        let value = if seg.starts_with('{') {
            match (prev, doomed) {
                ("users", false) => "alice".to_string(),
                ("groups", false) => "family".to_string(),
                ("shares", false) => "photos".to_string(),
                // Scrub the volumes the walk made (single disks, clean), import the ones another box made.
                ("volumes", false) if pattern.ends_with("/scrub") => format!("walk-{flavour}"),
                ("volumes", false) if pattern.ends_with("/import") => format!("found-{flavour}"),
                ("volumes", false) => "vault".to_string(),
                ("users", true) => format!("du-{flavour}"),
                ("groups", true) => format!("dg-{flavour}"),
                ("shares", true) => format!("ds-{flavour}"),
                ("volumes", true) => format!("dv-{flavour}"),
                ("jobs", _) => f.job.clone(),
                ("pairings", _) => f.pairing.clone(),
                ("sessions", _) if flavour == "api" => f.revoked_api.id(),
                ("sessions", _) => f.revoked_html.id(),
                _ => panic!("the walk does not know what {seg} after {prev:?} names in {method} {pattern}: teach fill()"),
            }
        } else {
            seg.to_string()
        };
        prev = seg;
        out.push(value);
    }
    out.join("/")
}

/// Who sends a route's request in the walk, and what body: real changes to real objects.
fn plan<'a>(method: &str, pattern: &str, f: &'a Furnished) -> (Option<&'a Session>, Body) {
    use Body::{Form, Json};
    let owner = Some(&f.owner);
    match (method, pattern) {
        // Logins and setup are made by a browser without a session.
        ("POST", "/api/v1/setup") => (
            None,
            Json(json!({"username": "second", "password": PASSWORD})),
        ),
        ("POST", "/api/v1/session") => (
            None,
            Json(json!({"username": "owner", "password": PASSWORD})),
        ),
        ("POST", "/setup") => (
            None,
            Form(vec![
                ("username", "second"),
                ("password", PASSWORD),
                ("password_again", PASSWORD),
            ]),
        ),
        ("POST", "/login") => (
            None,
            Form(vec![("username", "owner"), ("password", PASSWORD)]),
        ),
        // Ending a session: spare ones, so the walk keeps its own.
        ("DELETE", "/api/v1/session") => (Some(&f.ending_api), Json(json!({}))),
        ("POST", "/logout") => (Some(&f.ending_html), Form(vec![])),
        // A password change ends the user's other sessions: alice's, who has no other.
        ("POST", "/me/password") => (
            Some(&f.alice),
            Form(vec![
                ("current_password", ALICE_PASSWORD),
                ("password", "alice's new password"),
                ("password_again", "alice's new password"),
            ]),
        ),

        ("PATCH", "/api/v1/system") => (owner, Json(json!({"hostname": "walked"}))),
        ("POST", "/api/v1/firmware") => (
            owner,
            Body::Raw(cairn_firmware::install::testing::bundle_for(
                &f.b.firmware,
                "0.2.0",
                "qemu-aarch64-virt",
            )),
        ),
        ("PUT", "/api/v1/firmware/source") => (owner, Json(json!({"url": f.update_source}))),
        ("PUT", "/api/v1/system/certificate") => (
            owner,
            Json(json!({"certificate": OWNER_CRT, "key": OWNER_KEY})),
        ),
        ("PUT", "/api/v1/network") => (
            owner,
            Json(
                json!({"mode": "static", "address": "192.168.1.20", "prefix": 24, "gateway": "192.168.1.1"}),
            ),
        ),
        ("POST", "/api/v1/users") => (
            owner,
            Json(json!({"name": "walker-api", "password": "walker password"})),
        ),
        ("PATCH", "/api/v1/users/{name}") => (owner, Json(json!({"full_name": "Alice Walker"}))),
        ("PATCH", "/api/v1/me") => (owner, Json(json!({"full_name": "The Owner"}))),
        ("POST", "/api/v1/groups") => (
            owner,
            Json(json!({"name": "walkers-api", "members": ["alice"]})),
        ),
        ("PATCH", "/api/v1/groups/{name}") => {
            (owner, Json(json!({"members": ["alice", "walker-api"]})))
        }
        ("POST", "/api/v1/shares") => (owner, Json(json!({"name": "walk-api", "volume": "vault"}))),
        ("PATCH", "/api/v1/shares/{name}") => (
            owner,
            Json(json!({"description": "Walked", "access": {"users": {"alice": "read"}}})),
        ),
        ("POST", "/api/v1/volumes") => (
            owner,
            Json(json!({"name": "walk-api", "level": "single", "disks": ["F"]})),
        ),
        ("DELETE", "/api/v1/volumes/{name}") => (owner, Json(json!({"confirm": "dv-api"}))),
        ("POST", "/api/v1/volumes/{name}/replace") => {
            (owner, Json(json!({"failed": "B", "with": "C"})))
        }
        ("POST", "/api/v1/volumes/{name}/fail") => (owner, Json(json!({"disk": "A"}))),

        ("POST", "/me") => (
            owner,
            Form(vec![
                ("full_name", "The Owner"),
                ("email", "owner@example.org"),
            ]),
        ),
        ("POST", "/users") => (
            owner,
            Form(vec![
                ("name", "walker-html"),
                ("password", "walker password"),
                ("role", "user"),
            ]),
        ),
        ("POST", "/users/{name}") => (
            owner,
            Form(vec![
                ("full_name", "Alice W."),
                ("email", "alice@example.org"),
                ("role", "user"),
                ("enabled", "on"),
            ]),
        ),
        ("POST", "/groups") => (
            owner,
            Form(vec![("name", "walkers-html"), ("members", "alice")]),
        ),
        ("POST", "/groups/{name}") => (owner, Form(vec![("members", "alice walker-html")])),
        ("POST", "/shares") => (
            owner,
            Form(vec![("name", "walk-html"), ("volume", "vault")]),
        ),
        ("POST", "/shares/{name}") => (
            owner,
            Form(vec![
                ("description", "Walked twice"),
                ("user:alice", "write"),
            ]),
        ),
        ("POST", "/system") => (owner, Form(vec![("hostname", "walked-html")])),
        ("POST", "/system/certificate") => (
            owner,
            Form(vec![("certificate", RSA_CRT), ("key", RSA_KEY)]),
        ),
        ("POST", "/system/network") => (owner, Form(vec![("mode", "dhcp")])),
        ("POST", "/api/v1/system/reset") => (
            owner,
            Json(json!({"tier": "network", "confirm": "not-the-name"})),
        ),
        ("POST", "/system/reset") => (
            owner,
            Form(vec![("tier", "settings"), ("confirm", "not-the-name")]),
        ),
        ("POST", "/api/v1/system/backup") => {
            (owner, Json(json!({"passphrase": "walk passphrase"})))
        }
        ("POST", "/system/backup") => (
            owner,
            Form(vec![
                ("passphrase", "walk passphrase"),
                ("passphrase_again", "walk passphrase"),
            ]),
        ),
        ("POST", "/storage/volumes") => (
            owner,
            Form(vec![
                ("name", "walk-html"),
                ("level", "single"),
                ("disk", "G"),
            ]),
        ),
        ("POST", "/storage/volumes/{name}/delete") => (owner, Form(vec![("confirm", "dv-html")])),
        ("POST", "/storage/volumes/{name}/replace") => {
            (owner, Form(vec![("failed", "A"), ("with", "H")]))
        }
        ("POST", "/storage/volumes/{name}/fail") => (owner, Form(vec![("disk", "H")])),
        (_, p) if p.starts_with("/api/") => (owner, Json(json!({}))),
        _ => (owner, Form(vec![])),
    }
}

enum Body {
    Json(Value),
    Form(Vec<(&'static str, &'static str)>),
    /// A file upload (`application/octet-stream`).
    Raw(Vec<u8>),
}

fn send(
    who: Option<&Session>,
    server: &Server,
    method: &str,
    path: &str,
    body: &Body,
) -> HttpResponse {
    let client = who
        .map(|s| s.client.clone())
        .unwrap_or_else(|| HttpClient::new(server.port));
    let csrf = who.map(|s| s.csrf.as_str()).unwrap_or("");
    let (content_type, bytes) = match body {
        Body::Json(v) => ("application/json", serde_json::to_vec(v).unwrap()),
        Body::Form(fields) => (
            "application/x-www-form-urlencoded",
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields)
                .finish()
                .into_bytes(),
        ),
        Body::Raw(bytes) => ("application/octet-stream", bytes.clone()),
    };
    let mut headers = vec![("content-type", content_type)];
    if who.is_some() {
        headers.push(("x-csrf-token", csrf));
    }
    let bytes = if method == "GET" { vec![] } else { bytes };
    client.request(method, path, &headers, bytes).unwrap()
}

/// The stable code of a refusal: the JSON body's, or the one a page shows in its problem box.
fn code_of(r: &HttpResponse) -> Option<String> {
    if let Ok(v) = r.json() {
        return v["error"]["code"].as_str().map(str::to_string);
    }
    let text = r.text();
    let problem = &text[text.find(r#"class="problem""#)?..];
    let start = problem.find("<code>")? + "<code>".len();
    let end = problem[start..].find("</code>")?;
    Some(problem[start..start + end].to_string())
}

/// Codes that mean the walk did not get past the gates (session, token, role), so it tested nothing.
const GATE_CODES: &[&str] = &[
    "session.required",
    "session.csrf_missing",
    "session.admin_required",
];

#[test]
fn every_listed_route_is_answered_with_a_session() {
    let f = furnished();
    let docs = documented_codes();
    let mut walked = vec![];
    for (method, pattern) in routes() {
        let path = fill(method, pattern, &f);
        let (who, body) = plan(method, pattern, &f);
        let r = send(who, &f.b.server, method, &path, &body);
        let what = format!(
            "{method} {path} ({pattern}) answered {}: {}",
            r.status,
            r.text()
        );
        assert!(r.status < 500, "{what}");
        assert_ne!(r.status, 405, "{what}");
        assert!(!r.text().contains("request.not_found"), "{what}");
        if method == "GET" {
            assert!((200..400).contains(&r.status), "a read must answer: {what}");
        } else if (400..500).contains(&r.status) {
            let code = code_of(&r).unwrap_or_else(|| panic!("a refusal without a code: {what}"));
            assert!(
                docs.contains(&format!("`{code}`")),
                "undocumented code {code}: {what}"
            );
            assert!(
                !GATE_CODES.contains(&code.as_str()),
                "the walk was stopped at the gate: {what}"
            );
            assert!(
                REFUSED.contains(&(method, pattern, r.status, code.as_str())),
                "a change the walk made in earnest was refused: {what}"
            );
        } else {
            assert!((200..400).contains(&r.status), "{what}");
            assert!(
                !REFUSED.iter().any(|x| (x.0, x.1) == (method, pattern)),
                "expected a refusal: {what}"
            );
        }
        walked.push(format!(
            "{method} {path} → {} {}",
            r.status,
            code_of(&r).unwrap_or_default()
        ));
        if method != "GET" {
            settle(&f.b, &f.owner);
        }
    }
    assert_eq!(walked.len(), routes().len());
    println!("walked: {walked:#?}");

    // The routes did their work on the box.
    let calls = f.b.host.calls();
    let count = |c: &HostCall| calls.iter().filter(|x| *x == c).count();
    assert_eq!(count(&HostCall::Power(PowerAction::Reboot)), 2, "{calls:?}");
    assert_eq!(
        count(&HostCall::Power(PowerAction::PowerOff)),
        2,
        "{calls:?}"
    );
    assert!(
        calls.contains(&HostCall::Hostname("walked".into())),
        "{calls:?}"
    );
    assert!(
        calls.contains(&HostCall::Hostname("walked-html".into())),
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| matches!(c, HostCall::Network(s) if s.mode == Mode::Static)),
        "{calls:?}"
    );
    let owner = &f.owner.client;
    for gone in [
        "/api/v1/users/du-api",
        "/api/v1/users/du-html",
        "/api/v1/groups/dg-api",
        "/api/v1/groups/dg-html",
        "/api/v1/shares/ds-api",
        "/api/v1/shares/ds-html",
        "/api/v1/volumes/dv-api",
        "/api/v1/volumes/dv-html",
    ] {
        assert_eq!(
            owner.get(gone).unwrap().status,
            404,
            "{gone} must be deleted; walked: {walked:#?}"
        );
    }
    for made in [
        "/api/v1/users/walker-api",
        "/api/v1/users/walker-html",
        "/api/v1/groups/walkers-api",
        "/api/v1/groups/walkers-html",
        "/api/v1/shares/walk-api",
        "/api/v1/shares/walk-html",
        "/api/v1/volumes/walk-api",
        "/api/v1/volumes/walk-html",
    ] {
        assert_eq!(
            owner.get(made).unwrap().status,
            200,
            "{made} must exist; walked: {walked:#?}"
        );
    }
    for name in ["found-api", "found-html", "walk-api", "walk-html"] {
        let v = expect(&owner.get(&format!("/api/v1/volumes/{name}")).unwrap(), 200);
        assert_eq!(
            (v["state"].as_str(), v["mounted"].as_bool()),
            (Some("clean"), Some(true)),
            "{v}"
        );
    }
    let jobs = expect(&owner.get("/api/v1/jobs").unwrap(), 200);
    let done = |kind: &str, volume: &str| {
        jobs.as_array()
            .unwrap()
            .iter()
            .filter(|j| {
                (
                    j["kind"].as_str(),
                    j["volume"].as_str(),
                    j["state"].as_str(),
                ) == (Some(kind), Some(volume), Some("done"))
            })
            .count()
    };
    // Two replaces of vault (the API's, healthy; the dashboard's, of a failed member), a scrub of each new
    // volume.
    for (kind, volume, n) in [
        ("rebuild", "vault", 2),
        ("scrub", "walk-api", 1),
        ("scrub", "walk-html", 1),
    ] {
        assert_eq!(
            done(kind, volume),
            n,
            "finished {kind} jobs of {volume}: {jobs}"
        );
    }
    let vault = expect(&owner.get("/api/v1/volumes/vault").unwrap(), 200);
    let members: Vec<(&str, &str)> = vault["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["state"].as_str().unwrap()))
        .collect();
    assert!(
        members.contains(&("C", "in_sync")) && !members.iter().any(|m| m.0 == "A" || m.0 == "B"),
        "vault after two replaces: {vault}"
    );
    for ended in [
        &f.revoked_api,
        &f.revoked_html,
        &f.ending_api,
        &f.ending_html,
    ] {
        assert_eq!(ended.client.get("/api/v1/session").unwrap().status, 401);
    }
    assert_eq!(
        owner.get("/api/v1/session").unwrap().status,
        200,
        "the walk keeps its own session"
    );
    assert_eq!(
        Session::login(&f.b.server, "alice", "alice's new password")
            .client
            .get("/api/v1/me")
            .unwrap()
            .status,
        200
    );
    assert_error(
        &owner.get("/api/v1/nope").unwrap(),
        404,
        "request.not_found",
    );
    assert_error(
        &owner
            .request(
                "PUT",
                "/api/v1/health",
                &[("x-csrf-token", &f.owner.csrf)],
                vec![],
            )
            .unwrap(),
        405,
        "request.method_not_allowed",
    );
}

/// Everything an administrator can read, for telling whether a request changed anything.
fn snapshot(owner: &HttpClient) -> Vec<String> {
    [
        "/api/v1/users",
        "/api/v1/groups",
        "/api/v1/shares",
        "/api/v1/volumes",
        "/api/v1/system",
        "/api/v1/network",
        "/api/v1/me/sessions",
    ]
    .iter()
    .map(|p| {
        let mut v = expect(&owner.get(p).unwrap(), 200);
        // What the clock and the host's own disk (under the fake's mounts) change between two reads.
        let moving = ["uptime_s", "last_used_s", "free_bytes", "used_bytes"];
        if let Some(o) = v.as_object_mut() {
            o.retain(|k, _| !moving.contains(&k.as_str()));
        }
        for item in v.as_array_mut().into_iter().flatten() {
            if let Some(o) = item.as_object_mut() {
                o.retain(|k, _| !moving.contains(&k.as_str()));
            }
        }
        format!("{p}: {v}")
    })
    .collect()
}

#[test]
fn every_route_outside_the_allow_list_needs_a_session() {
    let f = furnished();
    let anonymous = HttpClient::new(f.b.server.port);
    let public = public_routes();
    let before = snapshot(&f.owner.client);
    let mut walked = 0;
    for (method, pattern) in routes() {
        if public.contains(&(method, pattern)) {
            continue;
        }
        let path = fill(method, pattern, &f);
        let (_, body) = plan(method, pattern, &f);
        let r = send(None, &f.b.server, method, &path, &body);
        if path.starts_with("/api/") {
            assert_error(&r, 401, "session.required");
        } else {
            assert_eq!(
                (r.status, r.header("location")),
                (303, Some("/login")),
                "{method} {path}"
            );
        }
        walked += 1;
    }
    assert!(walked > 50, "only {walked} routes need a session?");
    assert_eq!(
        snapshot(&f.owner.client),
        before,
        "a request without a session changed something"
    );
    assert!(f
        .b
        .host
        .calls()
        .iter()
        .all(|c| !matches!(c, HostCall::Power(_))));
    // Unknown routes reveal nothing without a session either.
    let r = anonymous.get("/api/v1/secret-thing").unwrap();
    assert_error(&r, 401, "session.required");
}
