//! The host name: stored lowercase in the settings, applied to the kernel, the default from board data.

use crate::{System, SystemError};

pub(crate) const HOSTNAME_KEY: &str = "hostname";

/// RFC 1123 label: what DHCP, mDNS and SMB all accept.
pub fn validate_hostname(name: &str) -> Result<(), SystemError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(SystemError::HostnameInvalid(name.to_string()))
    }
}

impl System {
    /// The stored host name, or the board's default on a new box. A damaged record reads as the default
    /// (and is logged) rather than leaving the box nameless.
    pub fn hostname(&self) -> String {
        match self.inner.table.get::<String>(HOSTNAME_KEY) {
            Ok(Some(name)) => name,
            Ok(None) => self.inner.facts.default_hostname.clone(),
            Err(e) => {
                log::error!("stored host name unreadable, using the default: {e}");
                self.inner.facts.default_hostname.clone()
            }
        }
    }

    /// Stores a new host name durably, then applies it to the running box. Case is folded: names are
    /// case-insensitive on every protocol that uses them.
    pub fn set_hostname(&self, name: &str) -> Result<String, SystemError> {
        let name = name.trim().to_ascii_lowercase();
        validate_hostname(&name)?;
        self.inner.table.put(HOSTNAME_KEY, &name)?;
        self.inner.store.commit()?;
        self.inner.host.set_hostname(&name);
        Ok(name)
    }

    /// The names this box answers to (for the API's Host check): its name, NAME.local and localhost.
    pub fn own_names(&self) -> Vec<String> {
        let name = self.hostname();
        vec![
            name.clone(),
            format!("{name}.local"),
            "localhost".to_string(),
        ]
    }
}

impl System {
    /// The box's addresses as known now: those of its LAN interface, the static one even before it is
    /// applied, and loopback (a forwarded port or a tunnel reaches the box as 127.0.0.1).
    pub fn addresses(&self) -> Vec<std::net::IpAddr> {
        let mut all = self.inner.host.addresses(&self.inner.facts.interface);
        if let Some(a) = self.confirmed_network().address {
            all.push(a.into());
        }
        all.push(std::net::Ipv4Addr::LOCALHOST.into());
        all.push(std::net::Ipv6Addr::LOCALHOST.into());
        let mut seen = Vec::new();
        all.retain(|a| {
            let new = !seen.contains(a);
            seen.push(*a);
            new
        });
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_follow_rfc_1123_labels() {
        for good in ["cairn", "nas-2", "a", &"x".repeat(63)] {
            assert!(validate_hostname(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-nas",
            "nas-",
            "my nas",
            "nas.local",
            "näs",
            &"x".repeat(64),
        ] {
            assert!(
                matches!(validate_hostname(bad), Err(SystemError::HostnameInvalid(_))),
                "{bad}"
            );
        }
    }
}
