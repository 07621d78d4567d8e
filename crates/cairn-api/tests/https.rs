//! HTTPS beside HTTP on the real server: the same routes behind rustls with the box's certificate, `Secure`
//! session cookies for sessions made over TLS, the origin check by scheme, and the owner's own certificate
//! (checked, served from the next connection, refused with a code when the key is another's).

mod common;

use cairn_qemu::{fingerprint_sha256, HttpClient};
use common::*;
use serde_json::json;

/// The served certificate as the API reports it to a logged-in administrator.
fn reported(admin: &HttpClient) -> serde_json::Value {
    let r = admin.get("/api/v1/system/certificate").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().unwrap()
}

fn fingerprint_of_pem(pem: &str) -> String {
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
        .map(|c: rustls::pki_types::CertificateDer<'static>| c.as_ref().to_vec())
        .unwrap();
    fingerprint_sha256(&der)
}

/// The served fingerprint, read by a new login over plain HTTP.
fn served_fingerprint(b: &Server) -> String {
    let c = HttpClient::new(b.port);
    assert_eq!(login(&c, "owner", PASSWORD).status, 200);
    reported(&c)["fingerprint_sha256"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn the_dashboard_answers_over_tls_with_the_certificate_the_box_reports() {
    let b = start_with_tls();
    let (admin, _) = set_up(&b);
    let cert = reported(&admin);
    let fp = cert["fingerprint_sha256"].as_str().unwrap();
    assert_eq!(cert["source"], "generated");
    assert!(cert["names"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "127.0.0.1"));
    assert_eq!(
        admin.get("/api/v1/system").unwrap().json().unwrap()["tls_fingerprint_sha256"],
        fp
    );
    let page = admin.get("/system").unwrap().text();
    assert!(
        page.contains(&format!(r#"id="tls-fingerprint">{fp}</code>"#)),
        "the System page shows the fingerprint"
    );
    let tls = HttpClient::https(b.tls_port, fp);
    let r = tls.get("/api/v1/health").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(tls.get("/login").unwrap().status, 200);
    // A client that pinned another certificate does not get through.
    let wrong = HttpClient::https(b.tls_port, &"00:".repeat(32));
    let e = wrong.get("/api/v1/health").unwrap_err().to_string();
    assert!(e.contains(fp), "{e}");
}

#[test]
fn a_session_made_over_tls_has_a_secure_cookie_and_one_made_over_http_does_not() {
    let b = start_with_tls();
    set_up(&b);
    let fp = served_fingerprint(&b);
    let tls = HttpClient::https(b.tls_port, &fp);
    let cookie = |r: &cairn_qemu::HttpResponse| r.header("set-cookie").unwrap().to_string();
    let over_tls = cookie(&login(&tls, "owner", PASSWORD));
    assert!(over_tls.contains("; Secure"), "{over_tls}");
    assert!(over_tls.contains("HttpOnly") && over_tls.contains("SameSite=Strict"));
    let form = tls
        .post_form("/login", &[("username", "owner"), ("password", PASSWORD)])
        .unwrap();
    assert_eq!(form.status, 303, "{}", form.text());
    assert!(cookie(&form).contains("; Secure"), "{}", cookie(&form));
    // The session works over TLS.
    assert_eq!(tls.get("/api/v1/session").unwrap().status, 200);

    let plain = HttpClient::new(b.port);
    let over_http = cookie(&login(&plain, "owner", PASSWORD));
    assert!(!over_http.contains("Secure"), "{over_http}");
}

#[test]
fn the_origin_of_a_login_must_have_the_scheme_it_came_in_by() {
    let b = start_with_tls();
    set_up(&b);
    let fp = served_fingerprint(&b);
    let tls = HttpClient::https(b.tls_port, &fp);
    let https_origin = format!("https://127.0.0.1:{}", b.tls_port);
    let r = login_with(&tls, "owner", PASSWORD, &[("origin", &https_origin)]);
    assert_eq!(r.status, 200, "{}", r.text());
    // A page of the plain-HTTP origin (which a LAN attacker can write) cannot log in over TLS.
    let http_origin = format!("http://127.0.0.1:{}", b.tls_port);
    let r = login_with(&tls.fresh(), "owner", PASSWORD, &[("origin", &http_origin)]);
    assert_error(&r, 403, "request.cross_origin");
    let plain = HttpClient::new(b.port);
    let r = login_with(
        &plain,
        "owner",
        PASSWORD,
        &[("origin", &format!("https://127.0.0.1:{}", b.port))],
    );
    assert_error(&r, 403, "request.cross_origin");
}

#[test]
fn an_uploaded_certificate_is_served_from_the_next_connection_and_a_key_of_another_is_refused() {
    let b = start_with_tls();
    let (admin, csrf) = set_up(&b);
    let generated = reported(&admin)["fingerprint_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let put = |cert: &str, key: &str| {
        admin
            .request(
                "PUT",
                "/api/v1/system/certificate",
                &[
                    ("content-type", "application/json"),
                    ("x-csrf-token", &csrf),
                ],
                serde_json::to_vec(&json!({"certificate": cert, "key": key})).unwrap(),
            )
            .unwrap()
    };
    let r = put(OWNER_CRT, OTHER_KEY);
    assert_error(&r, 422, "certificate.key_mismatch");
    let r = put(OWNER_CRT, "");
    assert_error(&r, 400, "certificate.key_missing");
    let r = put("not a certificate", OWNER_KEY);
    assert_error(&r, 400, "certificate.missing");
    assert_eq!(reported(&admin)["fingerprint_sha256"], generated.as_str());
    assert_eq!(
        HttpClient::https(b.tls_port, &generated)
            .get("/api/v1/health")
            .unwrap()
            .status,
        200,
        "a refused upload changes nothing"
    );

    let r = put(OWNER_CRT, OWNER_KEY);
    assert_eq!(r.status, 200, "{}", r.text());
    let owner = fingerprint_of_pem(OWNER_CRT);
    let v = r.json().unwrap();
    assert_eq!(v["fingerprint_sha256"], owner.as_str());
    assert_eq!(v["source"], "uploaded");
    assert_eq!(v["names"], json!(["nas.example.org", "127.0.0.1"]));
    assert_eq!(
        HttpClient::https(b.tls_port, &owner)
            .get("/api/v1/health")
            .unwrap()
            .status,
        200
    );
    assert!(HttpClient::https(b.tls_port, &generated)
        .get("/api/v1/health")
        .is_err());

    // The form takes an RSA key in its traditional encoding too, and the page shows the new fingerprint.
    let r = admin
        .post_form(
            "/system/certificate",
            &[
                ("csrf_token", &csrf),
                ("certificate", RSA_CRT),
                ("key", RSA_KEY),
            ],
        )
        .unwrap();
    assert_eq!(r.status, 303, "{}", r.text());
    let rsa = fingerprint_of_pem(RSA_CRT);
    assert!(admin.get("/system").unwrap().text().contains(&rsa));
    let r = admin
        .post_form(
            "/system/certificate",
            &[
                ("csrf_token", &csrf),
                ("certificate", RSA_CRT),
                ("key", OWNER_KEY),
            ],
        )
        .unwrap();
    assert_eq!(r.status, 422);
    assert!(
        r.text().contains("certificate.key_mismatch"),
        "{}",
        r.text()
    );

    // The way back: a new certificate of the box's own.
    let r = admin
        .request(
            "DELETE",
            "/api/v1/system/certificate",
            &[("x-csrf-token", &csrf)],
            vec![],
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let back = r.json().unwrap();
    assert_eq!(back["source"], "generated");
    let fresh = back["fingerprint_sha256"].as_str().unwrap();
    assert_ne!(fresh, generated);
    assert_eq!(
        HttpClient::https(b.tls_port, fresh)
            .get("/api/v1/health")
            .unwrap()
            .status,
        200
    );
}

#[test]
fn a_server_without_tls_says_so_with_a_code() {
    let server = start();
    let (admin, _) = set_up(&server);
    let r = admin.get("/api/v1/system/certificate").unwrap();
    assert_error(&r, 503, "certificate.unavailable");
    assert!(admin
        .get("/system")
        .unwrap()
        .text()
        .contains("does not serve HTTPS"));
}
