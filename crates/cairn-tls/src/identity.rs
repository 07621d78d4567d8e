//! A certificate chain with its key, checked: parses, the key is the first certificate's, the chain is in
//! order, and (for an upload) valid now. What the pages show about it comes from the certificate itself.

use crate::CertError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::net::IpAddr;
use std::sync::Arc;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Where the served certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Made by the box itself (first boot, or the owner went back to one).
    Generated,
    /// The owner's own, uploaded.
    Uploaded,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Generated => "generated",
            Source::Uploaded => "uploaded",
        }
    }
}

/// What an owner checks about the served certificate: the fingerprint a browser shows, names, dates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// SHA-256 of the first certificate's DER, as browsers show it: `AB:CD:...`.
    pub fingerprint_sha256: String,
    pub source: Source,
    pub subject: String,
    pub issuer: String,
    /// The names and addresses the certificate is for (its subject alternative names).
    pub names: Vec<String>,
    /// Validity, in seconds since the epoch (UTC).
    pub not_before_s: i64,
    pub not_after_s: i64,
    /// Certificates in the chain, the first one included.
    pub chain_length: usize,
}

/// A checked chain and key, ready to serve and to store.
#[derive(Clone)]
pub struct Identity {
    certified: Arc<CertifiedKey>,
    key: Arc<PrivateKeyDer<'static>>,
    pub info: CertificateInfo,
}

impl std::fmt::Debug for Identity {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("info", &self.info)
            .finish()
    }
}

/// The SHA-256 fingerprint of DER bytes in the form browsers show: uppercase hex pairs joined by colons.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A certificate date as the pages show it (`2025-06-01 12:00 UTC`); dates before 1970 read as 1970.
pub fn format_time(seconds: i64) -> String {
    cairn_system::clock::utc(seconds.max(0) as u64)
}

/// One PEM block with Unix line endings.
fn encode(tag: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(tag, der.to_vec()), config)
}

fn read_chain(chain_pem: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem(e.to_string()))?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate);
    }
    Ok(chain)
}

fn read_key(key_pem: &str) -> Result<PrivateKeyDer<'static>, CertError> {
    let mut keys = PrivateKeyDer::pem_slice_iter(key_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem(e.to_string()))?;
    match keys.len() {
        0 => Err(CertError::NoKey),
        1 => Ok(keys.remove(0)),
        n => Err(CertError::SeveralKeys(n)),
    }
}

fn names_of(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return vec![];
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => Some(IpAddr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                16 => Some(IpAddr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

impl Identity {
    /// Checks a chain (first certificate first) and its key, both PEM, as stored or as uploaded; `now_s`
    /// (seconds since the epoch) for the validity check, `None` to skip it (a stored one is served as is).
    pub fn from_pem(
        chain_pem: &str,
        key_pem: &str,
        source: Source,
        now_s: Option<i64>,
    ) -> Result<Identity, CertError> {
        let chain = read_chain(chain_pem)?;
        let key = read_key(key_pem)?;
        let parsed = chain
            .iter()
            .enumerate()
            .map(|(i, der)| {
                X509Certificate::from_der(der)
                    .map(|(_, c)| c)
                    .map_err(|e| CertError::Unreadable {
                        index: i + 1,
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (i, pair) in parsed.windows(2).enumerate() {
            if pair[0].issuer().as_raw() != pair[1].subject().as_raw() {
                return Err(CertError::ChainOrder { index: i + 1 });
            }
        }
        let provider = rustls::crypto::ring::default_provider();
        let signing = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| CertError::KeyUnsupported(e.to_string()))?;
        let certified = CertifiedKey::new(chain.clone(), signing.clone());
        match certified.keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(CertError::KeyMismatch)
            }
            Err(e) => return Err(CertError::KeyUnsupported(e.to_string())),
        }
        let leaf = &parsed[0];
        let validity = leaf.validity();
        let (not_before_s, not_after_s) = (
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        );
        if let Some(now) = now_s {
            if now < not_before_s {
                return Err(CertError::NotYetValid {
                    not_before: format_time(not_before_s),
                });
            }
            if now > not_after_s {
                return Err(CertError::Expired {
                    not_after: format_time(not_after_s),
                });
            }
        }
        let info = CertificateInfo {
            fingerprint_sha256: fingerprint(&chain[0]),
            source,
            subject: leaf.subject().to_string(),
            issuer: leaf.issuer().to_string(),
            names: names_of(leaf),
            not_before_s,
            not_after_s,
            chain_length: chain.len(),
        };
        Ok(Identity {
            certified: Arc::new(certified),
            key: Arc::new(key),
            info,
        })
    }

    /// The chain and key for rustls.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.certified.clone()
    }

    /// The chain as PEM, certificates only, whatever else the upload held (public: every client gets it).
    pub fn chain_pem(&self) -> String {
        self.certified
            .cert
            .iter()
            .map(|c| encode("CERTIFICATE", c.as_ref()))
            .collect()
    }

    /// The key as PEM, in the encoding it came in (PKCS#8, SEC1 or PKCS#1). Secret: only for storing it.
    pub(crate) fn key_pem(&self) -> String {
        let tag = match &*self.key {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        encode(tag, self.key.secret_der())
    }
}
