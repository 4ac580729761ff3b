//! [`Cidr`]: an IP network such as `10.0.0.0/8` or `::1/128`, for
//! `server.trusted_proxies`.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 network: an address whose bits past the prefix length
/// are zero, and that prefix length (RFC 4632 §3.1, RFC 4291 §2.3).
///
/// An IPv4 address and its IPv4-mapped IPv6 form (`::ffff:10.1.2.3`,
/// RFC 4291 §2.5.5.2, which a dual-stack socket reports for IPv4 peers)
/// are the same address to [`Cidr::contains`], whichever form the network
/// is written in.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    /// The network `network/prefix_len`. Refused: a prefix longer than the
    /// address, and host bits set (`10.0.0.1/8`: is `10.0.0.1/32` or
    /// `10.0.0.0/8` meant?).
    pub fn new(network: IpAddr, prefix_len: u8) -> Result<Cidr, String> {
        let max = match network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix_len > max {
            return Err(format!("the prefix length of {network} is at most {max}"));
        }
        let cidr = Cidr {
            network,
            prefix_len,
        };
        let (bits, len) = cidr.as_v6_bits();
        if bits & !mask(len) != 0 {
            let base = Ipv6Addr::from(bits & mask(len));
            let base = match network {
                IpAddr::V4(_) => base.to_ipv4_mapped().map_or(IpAddr::V6(base), IpAddr::V4),
                IpAddr::V6(_) => IpAddr::V6(base),
            };
            return Err(format!(
                "{network}/{prefix_len} has host bits set (the network is {base}/{prefix_len})"
            ));
        }
        Ok(cidr)
    }

    /// The network address, as written.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Is `ip` in this network? IPv4 addresses and their IPv4-mapped IPv6
    /// forms are treated as one: `10.0.0.0/8` contains `::ffff:10.1.2.3`,
    /// and `::ffff:10.0.0.0/104` contains `10.1.2.3`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (net, len) = self.as_v6_bits();
        let ip = match ip {
            IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
            IpAddr::V6(a) => u128::from(a),
        };
        ip & mask(len) == net
    }

    /// The network in the IPv6 space, IPv4 as IPv4-mapped: (bits, prefix
    /// length out of 128).
    fn as_v6_bits(&self) -> (u128, u32) {
        match self.network {
            IpAddr::V4(a) => (
                u128::from(a.to_ipv6_mapped()),
                96 + u32::from(self.prefix_len),
            ),
            IpAddr::V6(a) => (u128::from(a), u32::from(self.prefix_len)),
        }
    }
}

/// The top `len` of 128 bits set.
fn mask(len: u32) -> u128 {
    u128::MAX.checked_shl(128 - len).unwrap_or(0)
}

/// `10.0.0.0/8`, `2001:db8::/32`; a bare address is a single host (`/32`
/// or `/128`).
impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, len) = match s.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or network (e.g. \"10.0.0.0/8\")"))?;
        let prefix_len = match len {
            None => match network {
                IpAddr::V4(_) => 32,
                IpAddr::V6(_) => 128,
            },
            Some(len) if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) => len
                .parse()
                .map_err(|_| format!("{s:?}: the prefix length is too large"))?,
            Some(_) => return Err(format!("{s:?}: the prefix length must be a number")),
        };
        Cidr::new(network, prefix_len).map_err(|e| format!("{s:?}: {e}"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
