//! The box's own certificate: a fresh ECDSA P-256 key and a self-signed certificate for the box's names.

use crate::{CertError, Identity, Source};
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};

/// The names a generated certificate is for: host names and addresses, as the box knows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoxNames {
    /// The host name first (it becomes the subject's common name), then NAME.local and others.
    pub hosts: Vec<String>,
    pub addresses: Vec<std::net::IpAddr>,
}

/// A new key and self-signed certificate. Valid from 2024 (a box whose clock starts at 1970 still makes
/// one that clients accept) to the end of 9999, RFC 5280's "no well-defined expiration": a box on a LAN
/// has no one to renew it, and its owner trusts it by fingerprint, not by date.
pub fn generate(names: &BoxNames) -> Result<Identity, CertError> {
    let fail = |e: rcgen::Error| CertError::Generate(e.to_string());
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let mut sans: Vec<String> = Vec::new();
    for n in names
        .hosts
        .iter()
        .cloned()
        .chain(names.addresses.iter().map(|a| a.to_string()))
    {
        if !sans.contains(&n) {
            sans.push(n);
        }
    }
    let mut params = CertificateParams::new(sans).map_err(fail)?;
    let cn = names.hosts.first().map(String::as_str).unwrap_or("cairn");
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Cairn NAS (self-signed)");
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(9999, 12, 31);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key).map_err(fail)?;
    Identity::from_pem(&cert.pem(), &key.serialize_pem(), Source::Generated, None)
}
