//! What a network reset (the reset pin's 4–10 s tier) clears of the system's records: the network settings
//! (confirmed and on trial), so the box asks DHCP again, and the host name, so it answers to the board's
//! default. Works on an export of the settings, so the reset crate applies it with every other domain's part in
//! one transaction.

use crate::hostname::HOSTNAME_KEY;
use crate::{network, TABLE};
use cairn_store::snapshot::Export;

/// Removes the network settings and the host name from `export`.
pub fn forget_network(export: &mut Export) {
    export.retain(|tree, key, _| {
        tree != network::TABLE && !(tree == TABLE && key == HOSTNAME_KEY.as_bytes())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_and_host_name_go_everything_else_stays() {
        let mut export = Export::empty(3);
        export.put("network", b"confirmed", b"{\"mode\":\"static\"}".to_vec());
        export.put("network", b"pending", b"{}".to_vec());
        export.put("system", b"hostname", b"\"attic\"".to_vec());
        export.put("system", b"other", b"1".to_vec());
        export.put("accounts", b"u/alice", b"{}".to_vec());
        forget_network(&mut export);
        let left: Vec<(&str, &[u8])> = export
            .records
            .iter()
            .map(|(t, k, _)| (t.as_str(), k.as_slice()))
            .collect();
        assert_eq!(
            left,
            vec![
                ("accounts", b"u/alice".as_slice()),
                ("meta", b"schema_version".as_slice()),
                ("system", b"other".as_slice()),
            ]
        );
    }
}
