//! The box's TLS certificate: what is served, the owner's own pair, and the way back to one of the box's
//! own. The checks and the storage are `cairn-tls`'s; here the offload (a replacement syncs the disk) and
//! the names a fresh certificate is made for.

use super::blocking;
use crate::app::App;
use crate::error::{Error, RequestError};
use cairn_tls::{BoxNames, CertificateInfo, Certificates};
use serde_json::{json, Value};
use std::sync::Arc;

/// The names a certificate of the box's own is made for: its host names and its addresses as known now.
pub fn box_names(system: &cairn_system::System) -> BoxNames {
    BoxNames {
        hosts: system.own_names(),
        addresses: system.addresses(),
    }
}

fn certificates(app: &App) -> Result<Arc<Certificates>, Error> {
    app.certificates
        .clone()
        .ok_or(Error::Request(RequestError::TlsUnavailable))
}

/// What is served now.
pub(crate) fn current(app: &App) -> Result<CertificateInfo, Error> {
    Ok(certificates(app)?.current().info.clone())
}

/// Checks and serves the owner's chain and key (PEM); refused, the served one stays.
pub(crate) async fn install(
    app: &App,
    chain_pem: String,
    key_pem: String,
) -> Result<CertificateInfo, Error> {
    let certs = certificates(app)?;
    let now = cairn_system::clock::now_s() as i64;
    blocking(move || certs.install(&chain_pem, &key_pem, now)).await
}

/// Serves a fresh certificate of the box's own for its current names.
pub(crate) async fn regenerate(app: &App) -> Result<CertificateInfo, Error> {
    let certs = certificates(app)?;
    let names = box_names(&app.system);
    blocking(move || certs.regenerate(&names)).await
}

/// The answer of `GET /api/v1/system/certificate`.
pub(crate) fn view(info: &CertificateInfo) -> Value {
    let at = |s: i64| cairn_tls::format_time(s);
    json!({
        "fingerprint_sha256": info.fingerprint_sha256,
        "source": info.source.as_str(),
        "subject": info.subject,
        "issuer": info.issuer,
        "names": info.names,
        "not_before": at(info.not_before_s),
        "not_after": at(info.not_after_s),
        "chain_length": info.chain_length,
    })
}
