//! Where requests come from, as the connection caps and the login throttle count them: one host is one
//! IPv4 address, or one IPv6 /64 (a host can use any address of its /64 at will).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// One host: an IPv4 address, or an IPv6 /64 (IPv4 clients of a dual-stack socket, `::ffff:a.b.c.d`,
/// count as their IPv4 address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    V4(Ipv4Addr),
    V6Net(u64),
}

impl Source {
    /// The source an address counts as.
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4),
                None => Source::V6Net((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::V4(a) => write!(f, "{a}"),
            Source::V6Net(n) => write!(f, "{}/64", std::net::Ipv6Addr::from(u128::from(*n) << 64)),
        }
    }
}
