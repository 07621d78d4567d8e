//! HTTPS on the LAN, on one boot of the aarch64 box: the dashboard over TLS with the certificate whose
//! fingerprint the console and the System page report (the client pins it, as an owner comparing
//! fingerprints would), a `Secure` session cookie from a login over HTTPS and none from one over HTTP, a
//! mismatched key refused with its code, and an uploaded certificate served from the next connection and
//! after a reboot.

use cairn_e2e::*;
use cairn_qemu::{fingerprint_sha256, workspace_root, BootDisk, BootOptions, Machine, Manifest};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const BOARD: &str = "qemu-aarch64-virt";

fn fixture(name: &str) -> String {
    let path = workspace_root()
        .join("crates/cairn-api/tests/fixtures/tls")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The served certificate as `cairn ctl --json certificate` prints it on the serial console.
fn console_certificate(m: &mut Machine) -> Value {
    let out = m
        .serial("cairn ctl --json certificate 2>&1", Duration::from_secs(30))
        .unwrap();
    let json = out
        .find('{')
        .zip(out.rfind('}'))
        .and_then(|(s, e)| serde_json::from_str::<Value>(&out[s..=e]).ok());
    json.unwrap_or_else(|| panic!("`cairn ctl --json certificate` printed {out:?}"))
}

/// The fingerprint the System page shows.
fn page_fingerprint(admin: &cairn_qemu::HttpClient) -> String {
    let page = admin.get("/system").unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    let text = page.text();
    let start = text
        .find(r#"id="tls-fingerprint">"#)
        .unwrap_or_else(|| panic!("no fingerprint on the System page: {text}"))
        + r#"id="tls-fingerprint">"#.len();
    let end = start + text[start..].find('<').unwrap();
    text[start..end].to_string()
}

fn pem_fingerprint(pem: &str) -> String {
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    use base64::Engine;
    fingerprint_sha256(
        &base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
}

#[test]
fn the_dashboard_over_tls_with_the_reported_fingerprint_secure_cookies_and_the_owners_certificate()
{
    let (manifest, dir) = Manifest::load(BOARD).unwrap_or_else(|e| panic!("{e}"));
    let disk = BootDisk::flash(&manifest, &dir).unwrap();
    let options = BootOptions {
        forward: vec![443],
        ..BootOptions::default()
    };
    let started = Instant::now();
    let mut m = Machine::boot(BOARD, &disk, &options).unwrap();
    m.wait_healthy(started, Duration::from_secs(180)).unwrap();
    let admin = m.http();
    setup_through_form(&admin);

    // The fingerprint, as the console and the System page report it, made on first boot.
    let console = console_certificate(&mut m);
    let generated = console["fingerprint_sha256"].as_str().unwrap().to_string();
    assert_eq!(console["source"], "generated", "{console}");
    assert!(
        console["names"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "cairn.local"),
        "{console}"
    );
    assert_eq!(page_fingerprint(&admin), generated);
    let mode = m
        .serial("stat -c %a /config/cairn/tls.pem", Duration::from_secs(10))
        .unwrap();
    assert_eq!(mode.trim(), "600", "the key is readable by root only");

    // The dashboard over TLS, for a client that trusts exactly that certificate.
    let tls = m.https(&generated).unwrap();
    assert_eq!(tls.get("/login").unwrap().status, 200);
    let login = tls
        .post_json(
            "/api/v1/session",
            &json!({"username": ADMIN, "password": ADMIN_PASSWORD}),
            &[],
        )
        .unwrap();
    assert_eq!(login.status, 200, "{}", login.text());
    let cookie = login.header("set-cookie").unwrap().to_string();
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "a session made over HTTPS: {cookie}"
    );
    let home = tls.get("/").unwrap();
    assert_eq!(home.status, 200);
    assert!(home.text().contains("Hello, owner"), "{}", home.text());
    let plain = m.http();
    let r = plain
        .post_json(
            "/api/v1/session",
            &json!({"username": ADMIN, "password": ADMIN_PASSWORD}),
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        !r.header("set-cookie").unwrap().contains("Secure"),
        "a session made over HTTP cannot be Secure"
    );
    // Another certificate than the reported one is not accepted by the pinning client.
    let stranger = m.https(&"AB:".repeat(32)).unwrap();
    assert!(stranger.get("/login").is_err());

    // A key of another certificate is refused with its code; the served certificate stays.
    let (owner_crt, owner_key) = (fixture("owner.crt"), fixture("owner.key"));
    let r = send(
        &tls,
        "PUT",
        "/api/v1/system/certificate",
        json!({"certificate": owner_crt, "key": fixture("other.key")}),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(
        r.json().unwrap()["error"]["code"],
        "certificate.key_mismatch"
    );
    assert_eq!(console_certificate(&mut m)["fingerprint_sha256"], generated);

    // The owner's own certificate: served from the next connection on.
    let r = send(
        &tls,
        "PUT",
        "/api/v1/system/certificate",
        json!({"certificate": owner_crt, "key": owner_key}),
    );
    let uploaded = expect(&r, 200)["fingerprint_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(uploaded, pem_fingerprint(&owner_crt));
    // The same browser, now trusting the owner's certificate, with the session it made over HTTPS.
    let owners = m.https(&uploaded).unwrap();
    owners.set_cookie("cairn_session", &tls.cookie("cairn_session").unwrap());
    assert_eq!(owners.get("/api/v1/session").unwrap().status, 200);
    assert!(m.https(&generated).unwrap().get("/login").is_err());

    // ... and after a reboot.
    let mark = m.mark();
    let r = send(&admin, "POST", "/api/v1/system/reboot", json!({}));
    assert_eq!(r.status, 202, "{}", r.text());
    m.wait_console(&starting_line(&m), mark, Duration::from_secs(180))
        .unwrap();
    m.wait_healthy(Instant::now(), Duration::from_secs(180))
        .unwrap();
    let after = console_certificate(&mut m);
    assert_eq!(after["fingerprint_sha256"], uploaded.as_str(), "{after}");
    assert_eq!(after["source"], "uploaded");
    let r = owners.get("/api/v1/session").unwrap();
    assert_eq!(
        r.status,
        200,
        "the HTTPS session survives too: {}",
        r.text()
    );
    assert_eq!(page_fingerprint(&admin), uploaded);

    // The way back: a new certificate of the box's own, reported on the console.
    let r = send(&owners, "DELETE", "/api/v1/system/certificate", json!({}));
    let fresh = expect(&r, 200)["fingerprint_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(fresh, generated);
    assert_eq!(
        console_certificate(&mut m)["fingerprint_sha256"],
        fresh.as_str()
    );
    assert_eq!(m.https(&fresh).unwrap().get("/login").unwrap().status, 200);
}
