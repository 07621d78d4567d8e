//! The identity on the config partition: one file holding the chain and the key, so a replacement is a
//! single atomic rename (never a new certificate beside an old key), readable by root only.

use crate::{CertError, Identity, Source};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The file's name in the daemon's state directory.
pub const FILE: &str = "tls.pem";
/// The first line names the source; PEM readers skip text outside the blocks (RFC 7468).
const HEADER: &str = "Cairn TLS identity, source: ";

/// What is stored at `path`: `None` if nothing is, an error if something is but cannot be served.
pub fn load(path: &Path) -> Result<Option<Identity>, CertError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CertError::io(path)(e)),
    };
    let source = match text.lines().next().and_then(|l| l.strip_prefix(HEADER)) {
        Some("uploaded") => Source::Uploaded,
        _ => Source::Generated,
    };
    // A stored certificate is served as it is, even expired: the owner chose it, and the page says so.
    Identity::from_pem(&text, &text, source, None).map(Some)
}

/// Writes `identity` to `path` durably: a new file (mode 0600) synced, renamed over the old one, and the
/// directory synced, so after a power cut either the old pair or the new one is there, whole.
pub fn store(path: &Path, identity: &Identity) -> Result<(), CertError> {
    let err = CertError::io(path);
    let dir = path.parent().unwrap_or(Path::new("/"));
    let text = format!(
        "{HEADER}{}\n{}{}",
        identity.info.source.as_str(),
        identity.chain_pem(),
        identity.key_pem()
    );
    let tmp = path.with_extension("pem.new");
    // A leftover from a crash may carry other permissions; mode() applies only to a new file.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(CertError::io(&tmp))?;
    // The umask may have narrowed the mode further; make it exactly owner read/write.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(CertError::io(&tmp))?;
    f.write_all(text.as_bytes()).map_err(CertError::io(&tmp))?;
    f.sync_all().map_err(CertError::io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(CertError::io(path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(CertError::io(dir))
}
