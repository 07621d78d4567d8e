//! Why a system change was refused; the API maps each variant (and each network rule) to a code and a hint.

use std::net::Ipv4Addr;

/// A refusal (nothing was changed) or a settings store failure.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("{0:?} is not a valid host name")]
    HostnameInvalid(String),
    #[error("{0}")]
    NetworkInvalid(NetworkRule),
    #[error("there is no network change waiting for confirmation")]
    NothingToConfirm,
    #[error("this daemon does not control the machine's power")]
    PowerUnavailable,
    #[error("system settings: {0}")]
    Store(#[from] cairn_store::StoreError),
}

/// The rule a network setting broke: each has its own advice for the owner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkRule {
    #[error("at most three DNS servers can be set")]
    TooManyDns,
    #[error("DHCP mode takes no address, prefix or gateway")]
    DhcpTakesNoAddress,
    #[error("static mode needs an address and a prefix length")]
    StaticNeedsAddress,
    #[error("prefix length {0} is not usable for a LAN")]
    PrefixUnusable(u8),
    #[error("{0} cannot be the box's address")]
    AddressUnusable(Ipv4Addr),
    #[error("{address}/{prefix} is the network or broadcast address")]
    NetworkOrBroadcast { address: Ipv4Addr, prefix: u8 },
    #[error("the gateway {gateway} is not on the network {address}/{prefix}")]
    GatewayOffNetwork {
        gateway: Ipv4Addr,
        address: Ipv4Addr,
        prefix: u8,
    },
    #[error("an address is not written as four numbers like 192.168.1.20")]
    NotAnAddress,
}
