use super::*;
use rcgen::{CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256};
use std::os::unix::fs::PermissionsExt;

/// 2026-01-01, a "now" inside the test certificates' validity.
const NOW: i64 = 1_767_225_600;

fn names() -> BoxNames {
    BoxNames {
        hosts: vec!["cairn".into(), "cairn.local".into(), "localhost".into()],
        addresses: vec!["10.0.2.15".parse().unwrap(), "127.0.0.1".parse().unwrap()],
    }
}

/// A self-signed pair for `name`, valid in the given years.
fn pair(name: &str, from_year: i32, to_year: i32) -> (String, String) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(from_year, 1, 1);
    params.not_after = rcgen::date_time_ymd(to_year, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A leaf signed by a CA: (leaf PEM, CA PEM, leaf key PEM).
fn leaf_and_ca() -> (String, String, String) {
    let mut ca_params = CertificateParams::new(vec![]).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Owner's CA");
    ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["nas.example.org".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    (leaf.pem(), ca.pem(), leaf_key.serialize_pem())
}

#[test]
fn a_generated_certificate_is_ecdsa_p256_self_signed_for_the_box_names_and_long_valid() {
    let id = generate(&names()).unwrap();
    assert_eq!(id.info.source, Source::Generated);
    assert_eq!(
        id.info.names,
        [
            "cairn",
            "cairn.local",
            "localhost",
            "10.0.2.15",
            "127.0.0.1"
        ]
    );
    assert!(id.info.subject.contains("CN=cairn"), "{}", id.info.subject);
    assert_eq!(id.info.subject, id.info.issuer, "self-signed");
    assert_eq!(id.info.not_after_s, 253_402_214_400, "9999-12-31");
    assert!(id.info.not_before_s < NOW);
    let der = &id.certified_key().cert[0];
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let spki = cert.public_key();
    assert_eq!(
        spki.algorithm.algorithm,
        x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
    );
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .unwrap();
    assert_eq!(curve, x509_parser::oid_registry::OID_EC_P256);
    // As browsers show it: 32 bytes in uppercase hex pairs joined by colons.
    assert_eq!(id.info.fingerprint_sha256.len(), 32 * 3 - 1);
    assert_eq!(id.info.fingerprint_sha256, fingerprint(der));
    assert!(id.key_pem().contains("BEGIN PRIVATE KEY"));
    // Each box makes its own key.
    assert_ne!(
        generate(&names()).unwrap().info.fingerprint_sha256,
        id.info.fingerprint_sha256
    );
}

#[test]
fn a_matching_pair_is_accepted_with_its_chain() {
    let (leaf, ca, key) = leaf_and_ca();
    let id = Identity::from_pem(&format!("{leaf}{ca}"), &key, Source::Uploaded, Some(NOW)).unwrap();
    assert_eq!(id.info.chain_length, 2);
    assert_eq!(id.info.names, ["nas.example.org"]);
    assert!(id.info.issuer.contains("Owner's CA"), "{}", id.info.issuer);
    assert_eq!(id.chain_pem(), format!("{leaf}{ca}").replace("\r\n", "\n"));
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    let (cert, _) = pair("a.example.org", 2024, 2030);
    let (_, other_key) = pair("b.example.org", 2024, 2030);
    let e = Identity::from_pem(&cert, &other_key, Source::Uploaded, Some(NOW)).unwrap_err();
    assert!(matches!(e, CertError::KeyMismatch), "{e}");
    // The key of the CA is not the leaf's either.
    let (leaf, ca, _) = leaf_and_ca();
    let (_, _, wrong) = leaf_and_ca();
    let e = Identity::from_pem(&format!("{leaf}{ca}"), &wrong, Source::Uploaded, Some(NOW))
        .unwrap_err();
    assert!(matches!(e, CertError::KeyMismatch), "{e}");
}

#[test]
fn an_upload_outside_its_validity_is_refused_with_the_date() {
    let (cert, key) = pair("old.example.org", 2020, 2022);
    match Identity::from_pem(&cert, &key, Source::Uploaded, Some(NOW)) {
        Err(CertError::Expired { not_after }) => assert_eq!(not_after, "2022-01-01 00:00 UTC"),
        other => panic!("{other:?}"),
    }
    let (cert, key) = pair("future.example.org", 2030, 2040);
    assert!(matches!(
        Identity::from_pem(&cert, &key, Source::Uploaded, Some(NOW)),
        Err(CertError::NotYetValid { .. })
    ));
    // Without a clock to check against (a stored one at start) it is served as it is.
    assert!(Identity::from_pem(&cert, &key, Source::Uploaded, None).is_ok());
}

#[test]
fn uploads_that_are_not_a_certificate_and_a_key_are_refused_by_what_is_missing() {
    let (cert, key) = pair("a.example.org", 2024, 2030);
    let check = |c: &str, k: &str| Identity::from_pem(c, k, Source::Uploaded, Some(NOW));
    assert!(matches!(check("", &key), Err(CertError::NoCertificate)));
    assert!(matches!(check(&key, &key), Err(CertError::NoCertificate)));
    assert!(matches!(check(&cert, ""), Err(CertError::NoKey)));
    assert!(matches!(check(&cert, &cert), Err(CertError::NoKey)));
    assert!(matches!(
        check(&cert, &format!("{key}{key}")),
        Err(CertError::SeveralKeys(2))
    ));
    let cut = &cert[..cert.len() - 40];
    assert!(matches!(check(cut, &key), Err(CertError::Pem(_))));
    let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        check(garbage, &key),
        Err(CertError::Unreadable { index: 1, .. })
    ));
}

#[test]
fn a_chain_in_the_wrong_order_is_refused() {
    let (leaf, ca, key) = leaf_and_ca();
    let (other, _) = pair("x.example.org", 2024, 2030);
    assert!(matches!(
        Identity::from_pem(&format!("{leaf}{other}"), &key, Source::Uploaded, Some(NOW)),
        Err(CertError::ChainOrder { index: 1 })
    ));
    // CA first: the key is not the first certificate's.
    assert!(matches!(
        Identity::from_pem(&format!("{ca}{leaf}"), &key, Source::Uploaded, Some(NOW)),
        Err(CertError::ChainOrder { .. } | CertError::KeyMismatch)
    ));
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn first_boot_makes_one_stored_root_only_and_later_starts_keep_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = Certificates::open(dir.path(), &names()).unwrap();
    let file = dir.path().join(stored::FILE);
    assert_eq!(mode(&file), 0o600, "the key is readable by root only");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("Cairn TLS identity, source: generated\n"));
    assert!(text.contains("BEGIN CERTIFICATE") && text.contains("BEGIN PRIVATE KEY"));
    let again = Certificates::open(dir.path(), &names()).unwrap();
    assert_eq!(
        again.current().info.fingerprint_sha256,
        first.current().info.fingerprint_sha256
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, [stored::FILE], "no temporary file is left");
}

#[test]
fn an_installed_pair_is_served_stored_and_kept_across_a_restart_and_a_refused_one_changes_nothing()
{
    let dir = tempfile::tempdir().unwrap();
    let certs = Certificates::open(dir.path(), &names()).unwrap();
    let generated = certs.current().info.clone();
    let (cert, key) = pair("nas.example.org", 2024, 2030);
    let (_, wrong) = pair("nas.example.org", 2024, 2030);
    assert!(matches!(
        certs.install(&cert, &wrong, NOW),
        Err(CertError::KeyMismatch)
    ));
    assert_eq!(certs.current().info, generated);
    let reopened = Certificates::open(dir.path(), &names()).unwrap();
    assert_eq!(reopened.current().info, generated, "nothing stored");

    let info = certs.install(&cert, &key, NOW).unwrap();
    assert_eq!(info.source, Source::Uploaded);
    assert_eq!(certs.current().info, info);
    assert_eq!(mode(&dir.path().join(stored::FILE)), 0o600);
    let reopened = Certificates::open(dir.path(), &names()).unwrap();
    assert_eq!(reopened.current().info, info);

    let back = certs.regenerate(&names()).unwrap();
    assert_eq!(back.source, Source::Generated);
    assert_ne!(back.fingerprint_sha256, generated.fingerprint_sha256);
    assert_eq!(
        Certificates::open(dir.path(), &names())
            .unwrap()
            .current()
            .info,
        back
    );
}

#[test]
fn a_damaged_file_is_kept_aside_and_a_new_certificate_served() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(stored::FILE);
    std::fs::write(&file, "Cairn TLS identity, source: uploaded\ngarbage\n").unwrap();
    let certs = Certificates::open(dir.path(), &names()).unwrap();
    assert_eq!(certs.current().info.source, Source::Generated);
    assert!(dir.path().join("tls.pem.damaged").exists());
    assert_eq!(
        Certificates::open(dir.path(), &names())
            .unwrap()
            .current()
            .info,
        certs.current().info
    );
}

#[test]
fn a_stale_temporary_file_of_another_mode_is_replaced_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tls.pem.new");
    std::fs::write(&tmp, "old").unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
    Certificates::open(dir.path(), &names()).unwrap();
    assert!(!tmp.exists());
    assert_eq!(mode(&dir.path().join(stored::FILE)), 0o600);
}

/// A full handshake in memory with a client that trusts only the certificate of `pin` (the harness's own
/// pinning verifier); whether it succeeded.
fn handshake(server: &Arc<rustls::ServerConfig>, pin: &str) -> bool {
    let mut client = rustls::ClientConnection::new(
        cairn_qemu::pinned_client_config(pin),
        "cairn.local".try_into().unwrap(),
    )
    .unwrap();
    let mut server = rustls::ServerConnection::new(server.clone()).unwrap();
    for _ in 0..10 {
        let mut buf = Vec::new();
        client.write_tls(&mut buf).unwrap();
        server.read_tls(&mut buf.as_slice()).unwrap();
        if server.process_new_packets().is_err() {
            return false;
        }
        let mut buf = Vec::new();
        server.write_tls(&mut buf).unwrap();
        client.read_tls(&mut buf.as_slice()).unwrap();
        if client.process_new_packets().is_err() {
            return false;
        }
        if !client.is_handshaking() && !server.is_handshaking() {
            return true;
        }
    }
    false
}

#[test]
fn the_next_handshake_presents_a_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Arc::new(Certificates::open(dir.path(), &names()).unwrap());
    let config = certs.server_config().unwrap();
    assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
    let first = certs.current().info.fingerprint_sha256.clone();
    assert!(handshake(&config, &first));
    assert!(!handshake(&config, &"00".repeat(32)), "the check can fail");
    let (cert, key) = pair("nas.example.org", 2024, 2030);
    let info = certs.install(&cert, &key, NOW).unwrap();
    assert!(handshake(&config, &info.fingerprint_sha256));
    assert!(!handshake(&config, &first));
}
