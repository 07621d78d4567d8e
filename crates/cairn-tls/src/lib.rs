//! The box's TLS identity: its private key and certificate chain, kept on the config partition.
//!
//! Owns making one on first boot (a fresh ECDSA P-256 key and a self-signed certificate for the box's names,
//! with `rcgen`), checking one the owner uploads (it parses, the key is the first certificate's, the chain is
//! in order, it is valid now), storing either durably with the key readable by root only, and handing the
//! current one to rustls for every new connection, so a replacement is served from the next handshake on.
//! Knows nothing of HTTP or sockets: the API serves it and maps [`CertError`] to codes.
//!
//! Tested on the host (generation, the checks with their refusals, durable storage, a handshake through
//! the resolver); the QEMU scenario `tests/tests/https.rs` covers the box.
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

mod error;
mod generate;
mod identity;
pub mod stored;

pub use error::CertError;
pub use generate::{generate, BoxNames};
pub use identity::{fingerprint, format_time, CertificateInfo, Identity, Source};

use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// The served identity and where it is kept. Shared by the TLS listener (reads it at each handshake) and the
/// API (replaces it).
#[derive(Debug)]
pub struct Certificates {
    path: PathBuf,
    current: RwLock<Arc<Identity>>,
    /// Serialises replacements, so the file and the served identity always agree.
    replacing: Mutex<()>,
}

impl Certificates {
    /// The identity stored in `dir`, or a new one for `names` made and stored there on first boot. A stored
    /// file that cannot be served is kept aside (`tls.pem.damaged`) and replaced by a new one, so the box
    /// always serves HTTPS; a new one that cannot be stored is served anyway and the failure logged.
    pub fn open(dir: &Path, names: &BoxNames) -> Result<Certificates, CertError> {
        let path = dir.join(stored::FILE);
        let identity = match stored::load(&path) {
            Ok(Some(identity)) => identity,
            Ok(None) => Self::fresh(&path, names)?,
            Err(e) => {
                log::error!("the stored TLS certificate cannot be served ({e}); making a new one");
                let aside = path.with_extension("pem.damaged");
                if let Err(e) = std::fs::rename(&path, &aside) {
                    log::error!("cannot keep {} aside: {e}", path.display());
                }
                Self::fresh(&path, names)?
            }
        };
        log::info!(
            "TLS certificate ({}): SHA-256 {}",
            identity.info.source.as_str(),
            identity.info.fingerprint_sha256
        );
        Ok(Certificates {
            path,
            current: RwLock::new(Arc::new(identity)),
            replacing: Mutex::new(()),
        })
    }

    fn fresh(path: &Path, names: &BoxNames) -> Result<Identity, CertError> {
        let identity = generate(names)?;
        if let Err(e) = stored::store(path, &identity) {
            log::error!("the new TLS certificate is served but not stored: {e}");
        }
        Ok(identity)
    }

    /// The identity served now.
    pub fn current(&self) -> Arc<Identity> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Checks the owner's chain and key (`now_s`: seconds since the epoch), stores them durably and serves
    /// them from the next connection on. Refused, nothing changes. Blocking (it syncs the disk).
    pub fn install(
        &self,
        chain_pem: &str,
        key_pem: &str,
        now_s: i64,
    ) -> Result<CertificateInfo, CertError> {
        let identity = Identity::from_pem(chain_pem, key_pem, Source::Uploaded, Some(now_s))?;
        self.replace(identity)
    }

    /// Goes back to a certificate of the box's own, freshly made for `names`. Blocking.
    pub fn regenerate(&self, names: &BoxNames) -> Result<CertificateInfo, CertError> {
        self.replace(generate(names)?)
    }

    fn replace(&self, identity: Identity) -> Result<CertificateInfo, CertError> {
        let _one_at_a_time = self.replacing.lock().unwrap_or_else(|p| p.into_inner());
        stored::store(&self.path, &identity)?;
        let info = identity.info.clone();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(identity);
        log::info!(
            "TLS certificate replaced ({}): SHA-256 {}",
            info.source.as_str(),
            info.fingerprint_sha256
        );
        Ok(info)
    }

    /// A rustls server configuration (ring, TLS 1.2 and 1.3, HTTP/1.1) that presents the current identity
    /// at each handshake.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, CertError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CertError::Generate(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Current(self.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Hands rustls whatever identity is current when a client says hello.
#[derive(Debug)]
struct Current(Arc<Certificates>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified_key())
    }
}

#[cfg(test)]
mod tests;
