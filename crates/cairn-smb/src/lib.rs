//! File sharing over SMB: renders the kernel ksmbd server's files from Cairn's accounts and shares.
//!
//! Owns `ksmbd.conf`, the user database `ksmbdpwd.db` (NT hashes taken from the same user record the dashboard
//! checks), the `/etc/passwd` and `/etc/group` entries the server maps users to, and the share folders. Files
//! are written atomically (a uniquely named new file, fsync, rename, fsync of the folder) only when their
//! content changed, then ksmbd is told to reload. Renders are serialised and coalesced by [`RenderQueue`].
//!
//! SMB is a side door to the box, so it opens to as few as possible: only an enabled account that some served
//! share lets in (directly or through a group) has an SMB credential; an administrator without grants has
//! none, so their password cannot be guessed over NTLM. Unknown names are never mapped to the guest (a wrong
//! password for a known name and any password for an unknown one both fail the logon alike); guests of a
//! guest share sign in anonymously.
//!
//! Rendering is a pure function tested on the host; names reach these files only after `cairn-accounts`
//! validated them against a grammar that has no `[`, `;`, `#`, newline or path separator, and this crate
//! checks that again before writing. The real server is exercised by the QEMU SMB tests (`tests/owners.rs`).
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

mod render_queue;

pub use render_queue::{Coalescer, RenderQueue, Ticket};

use cairn_accounts::{Group, Level, Share, User};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The unix account every share's files belong to: access is enforced by the server's lists, not by modes.
pub const FILES_USER: &str = "nas-files";
pub const FILES_UID: u32 = 990;

/// Where things live on the box.
#[derive(Debug, Clone)]
pub struct Layout {
    /// ksmbd.conf and ksmbdpwd.db (on tmpfs: re-rendered at every start).
    pub config_dir: PathBuf,
    /// passwd and group (what /etc/passwd and /etc/group link to).
    pub etc_dir: PathBuf,
    /// Root of the `system` volume: share folders are made below it.
    pub system_volume: PathBuf,
    /// Mounted data volumes and their roots. A share on a volume not listed here (missing, being created)
    /// is left out of the server's configuration and no folder is made for it on the root filesystem.
    pub volumes: BTreeMap<String, PathBuf>,
    /// Base passwd/group with the system accounts, from the image.
    pub base_passwd: PathBuf,
    pub base_group: PathBuf,
}

impl Layout {
    /// Where a share's folder is, when its volume is available.
    pub fn share_dir(&self, share: &Share) -> Option<PathBuf> {
        if share.volume == cairn_accounts::SYSTEM_VOLUME {
            Some(self.system_volume.join(&share.path))
        } else {
            self.volumes
                .get(&share.volume)
                .map(|root| root.join(&share.path))
        }
    }

    /// The image's layout.
    pub fn on_box() -> Layout {
        Layout {
            config_dir: PathBuf::from("/run/ksmbd"),
            etc_dir: PathBuf::from("/run/cairn"),
            system_volume: PathBuf::from("/config/shares"),
            volumes: BTreeMap::new(),
            base_passwd: PathBuf::from("/etc/cairn/passwd.base"),
            base_group: PathBuf::from("/etc/cairn/group.base"),
        }
    }
}

/// The files, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub conf: String,
    pub pwddb: String,
    pub passwd: String,
    pub group: String,
}

/// Why rendering or applying failed. Nothing half-written stays behind: each file is replaced whole or not at all.
#[derive(Debug, thiserror::Error)]
pub enum SmbError {
    #[error("refusing to write {what} {value:?} into the SMB configuration")]
    Unsafe { what: &'static str, value: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Only what the account grammar allows may reach a file; checked again here as a last line of defence.
fn safe_name(what: &'static str, value: &str) -> Result<(), SmbError> {
    let ok = !value.is_empty()
        && value.len() <= 32
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(SmbError::Unsafe {
            what,
            value: value.to_string(),
        })
    }
}

fn safe_path(value: &str) -> Result<(), SmbError> {
    let ok = !value.is_empty()
        && value.starts_with('/')
        && !value.split('/').any(|p| p == ".." || p == ".")
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.' | ' '));
    if ok {
        Ok(())
    } else {
        Err(SmbError::Unsafe {
            what: "path",
            value: value.to_string(),
        })
    }
}

/// The server's files for these accounts and shares. `server_name` is the box's host name.
pub fn render<'a>(
    users: &'a [User],
    groups: &'a [Group],
    shares: &'a [Share],
    layout: &Layout,
    server_name: &str,
    base_passwd: &str,
    base_group: &str,
) -> Result<Rendered, SmbError> {
    safe_name("server name", &server_name.to_ascii_lowercase())?;
    let mut enabled: HashSet<&'a str> = HashSet::new();
    for u in users {
        safe_name("user name", &u.name)?;
        if u.enabled {
            enabled.insert(u.name.as_str());
        }
    }
    let members: HashMap<&'a str, &'a Vec<String>> = groups
        .iter()
        .map(|g| (g.name.as_str(), &g.members))
        .collect();
    // Accounts some served share lets in: only these get an SMB credential (see the crate comment).
    let mut granted: BTreeSet<&'a str> = BTreeSet::new();
    let mut conf = String::new();
    conf.push_str(
        "; Written by Cairn from its settings; changes here are overwritten.\n[global]\n",
    );
    conf.push_str(&format!(
        "\tnetbios name = {}\n",
        server_name.to_ascii_uppercase()
    ));
    conf.push_str("\tserver string = Cairn\n");
    conf.push_str("\tserver min protocol = SMB2_10\n");
    conf.push_str("\tguest account = nobody\n");
    // ksmbd.mountd reads [global] only when it starts (a reload re-reads shares and users), so nothing
    // here depends on the shares: a box must not behave differently after a restart than before it.
    // Never `bad user`: it lets an unknown name in as a guest while a known name with a wrong password is
    // refused, telling a stranger which names exist. Guests sign in anonymously (no name) instead, and reach
    // a guest share by its name; they never list the shares or open the server's RPC pipes.
    conf.push_str("\tmap to guest = never\n");
    conf.push_str("\trestrict anonymous = 2\n");
    for share in shares {
        safe_name("share name", &share.name)?;
        let Some(path) = layout.share_dir(share) else {
            continue;
        };
        let path = path.to_string_lossy();
        safe_path(&path)?;
        // Walk only the share's own grants (users, and members of granted groups): linear in the access list.
        let mut levels: BTreeMap<&str, Level> = BTreeMap::new();
        let mut grant = |name: &'a str, level: Level| {
            if enabled.contains(name) {
                let e = levels.entry(name).or_insert(level);
                *e = (*e).max(level);
            }
        };
        for (u, l) in share.access.users.iter() {
            grant(u.as_str(), *l);
        }
        for (g, l) in &share.access.groups {
            for m in members
                .get(g.as_str())
                .map(|v| v.iter())
                .into_iter()
                .flatten()
            {
                grant(m.as_str(), *l);
            }
        }
        let readers: BTreeSet<&str> = levels
            .iter()
            .filter(|(_, l)| **l == Level::Read)
            .map(|(n, _)| *n)
            .collect();
        let writers: BTreeSet<&str> = levels
            .iter()
            .filter(|(_, l)| **l == Level::Write)
            .map(|(n, _)| *n)
            .collect();
        let valid: Vec<&str> = readers.iter().chain(writers.iter()).copied().collect();
        granted.extend(valid.iter().copied());
        conf.push_str(&format!("\n[{}]\n", share.name));
        conf.push_str(&format!("\tpath = {path}\n"));
        conf.push_str("\tbrowseable = yes\n\tread only = yes\n");
        conf.push_str(&format!(
            "\tguest ok = {}\n",
            if share.guest { "yes" } else { "no" }
        ));
        // An empty `valid users` would mean everyone: a share nobody may use lists a user that cannot exist.
        let valid = if valid.is_empty() && !share.guest {
            "-nobody-".to_string()
        } else {
            valid.join(" ")
        };
        if !valid.is_empty() {
            conf.push_str(&format!("\tvalid users = {valid}\n"));
        }
        if !writers.is_empty() {
            conf.push_str(&format!(
                "\twrite list = {}\n",
                writers.iter().copied().collect::<Vec<_>>().join(" ")
            ));
        }
        conf.push_str(&format!(
            "\tforce user = {FILES_USER}\n\tforce group = {FILES_USER}\n"
        ));
        conf.push_str("\tcreate mask = 0664\n\tdirectory mask = 0775\n");
    }
    let mut pwddb = String::new();
    let mut passwd = base_passwd.trim_end().to_string() + "\n";
    passwd.push_str(&format!(
        "{FILES_USER}:x:{FILES_UID}:{FILES_UID}:Cairn share files:/nonexistent:/bin/false\n"
    ));
    let mut group = base_group.trim_end().to_string() + "\n";
    group.push_str(&format!("{FILES_USER}:x:{FILES_UID}:\n"));
    // Every user name was checked above, building `enabled`; `granted` holds only enabled accounts.
    for user in users {
        // A cleared credential (the reset pin's network tier) has no NT hash: no SMB login at all, never an
        // empty password.
        if granted.contains(user.name.as_str()) && !user.credential.nt_hash_hex.is_empty() {
            let hash = unhex(&user.credential.nt_hash_hex)
                .filter(|h| h.len() == 16)
                .ok_or(SmbError::Unsafe {
                    what: "NT hash of",
                    value: user.name.clone(),
                })?;
            pwddb.push_str(&format!("{}:{}\n", user.name, base64(&hash)));
        }
        passwd.push_str(&format!(
            "{}:x:{}:{}::/nonexistent:/bin/false\n",
            user.name, user.uid, user.uid
        ));
        group.push_str(&format!("{}:x:{}:\n", user.name, user.uid));
    }
    for g in groups {
        safe_name("group name", &g.name)?;
        for m in &g.members {
            safe_name("user name", m)?;
        }
        group.push_str(&format!("{}:x:{}:{}\n", g.name, g.gid, g.members.join(",")));
    }
    Ok(Rendered {
        conf,
        pwddb,
        passwd,
        group,
    })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 32 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Standard base64 with padding: the encoding ksmbdpwd.db uses for the NT hash.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Replaces `path` with `content` atomically; returns whether anything changed.
pub fn write_atomic(path: &Path, content: &str, mode: u32) -> Result<bool, SmbError> {
    use std::os::unix::fs::OpenOptionsExt;
    if std::fs::read_to_string(path).ok().as_deref() == Some(content) {
        return Ok(false);
    }
    let err = |source| SmbError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = temporary_name(path);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)?;
    Ok(true)
}

/// A name beside `path` that no other writer uses (process id and a per-process counter), so two writers
/// never share, truncate or rename each other's half-written file.
fn temporary_name(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.{}.{n}.cairn-new", std::process::id()))
}

/// Writes what changed, makes missing share folders, and tells a running ksmbd to reload.
pub fn apply(rendered: &Rendered, shares: &[Share], layout: &Layout) -> Result<bool, SmbError> {
    let mut changed = false;
    changed |= write_atomic(&layout.etc_dir.join("passwd"), &rendered.passwd, 0o644)?;
    changed |= write_atomic(&layout.etc_dir.join("group"), &rendered.group, 0o644)?;
    changed |= write_atomic(
        &layout.config_dir.join("ksmbdpwd.db"),
        &rendered.pwddb,
        0o600,
    )?;
    changed |= write_atomic(&layout.config_dir.join("ksmbd.conf"), &rendered.conf, 0o644)?;
    for share in shares {
        let Some(dir) = layout.share_dir(share) else {
            continue;
        };
        if !dir.exists() {
            std::fs::create_dir_all(&dir).map_err(|source| SmbError::Write {
                path: dir.clone(),
                source,
            })?;
            let _ = std::os::unix::fs::chown(&dir, Some(FILES_UID), Some(FILES_UID));
        }
    }
    if changed {
        // Fails harmlessly when the server is not running yet: it reads the files when it starts.
        if let Err(e) = cairn_exec::run(
            "/usr/sbin/ksmbd.control",
            &["--reload"],
            Duration::from_secs(10),
        ) {
            log::info!("ksmbd not reloaded (not running yet?): {e}");
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests;
