//! Why a certificate could not be made, read, checked or stored: each with what the owner can act on.

use std::path::PathBuf;

/// A certificate or key the box will not serve, or could not keep.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("the upload holds no certificate (a PEM block \"BEGIN CERTIFICATE\")")]
    NoCertificate,
    #[error("the upload holds no private key (a PEM block \"BEGIN PRIVATE KEY\", \"BEGIN EC PRIVATE KEY\" or \"BEGIN RSA PRIVATE KEY\")")]
    NoKey,
    #[error("the upload holds {0} private keys; send exactly one")]
    SeveralKeys(usize),
    #[error("the PEM text is damaged: {0}")]
    Pem(String),
    #[error("certificate {index} of the chain cannot be read: {reason}")]
    Unreadable { index: usize, reason: String },
    #[error("the private key cannot be used: {0}")]
    KeyUnsupported(String),
    #[error("the private key does not belong to the first certificate of the chain")]
    KeyMismatch,
    #[error("the certificate is not valid before {not_before}")]
    NotYetValid { not_before: String },
    #[error("the certificate expired on {not_after}")]
    Expired { not_after: String },
    #[error("certificate {index} of the chain was not issued by the one after it")]
    ChainOrder { index: usize },
    #[error("a certificate could not be made: {0}")]
    Generate(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl CertError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
        move |source| CertError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
