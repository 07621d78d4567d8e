//! Reading /proc/net/tcp{,6}: whether a local port is in LISTEN state.

/// True when a line of /proc/net/tcp or tcp6 shows `port` listening (state 0A).
pub fn listens_on(table: &str, port: u16) -> bool {
    let want = format!("{port:04X}");
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1).unwrap_or("");
        let state = fields.nth(1).unwrap_or("");
        state == "0A" && local.rsplit_once(':').is_some_and(|(_, p)| p == want)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3456 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:01BD 00000000000000000000000000000000:0000 01 00000000:00000000 00:00000000 00000000     0        0 3457 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn a_listening_port_is_found_and_others_are_not() {
        assert!(listens_on(TCP6, 80));
        assert!(
            !listens_on(TCP6, 445),
            "port 445 is there but not listening"
        );
        assert!(!listens_on(TCP6, 8080));
        assert!(!listens_on("", 80));
    }
}
