//! Who the client is when scopegate sits behind load balancers
//! (`docs/security.md`, "Client address").
//!
//! From a peer that is not a trusted proxy, the client is the peer and
//! every `X-Forwarded-For` it sends is a lie to discard. From a trusted
//! proxy, the client is the right-most `X-Forwarded-For` entry that is not
//! itself trusted: entries to its left were written by whoever the client
//! is and prove nothing (nginx's `real_ip_recursive`). The chain the
//! trusted proxy sent is kept, so the upstream's `X-Forwarded-For` extends
//! it with the peer (nginx's `$proxy_add_x_forwarded_for`).

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderValue};

/// The client address, and the inbound `X-Forwarded-For` chain when the
/// peer is trusted (`None` otherwise, or when it sent none).
pub fn client_address(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: impl Fn(IpAddr) -> bool,
) -> (IpAddr, Option<HeaderValue>) {
    if !trusted(peer) {
        return (peer, None);
    }
    let chain = joined(headers);
    let mut client = peer;
    if let Some(s) = chain.as_ref().and_then(|c| c.to_str().ok()) {
        for entry in s.rsplit(',') {
            match parse_entry(entry.trim()) {
                Some(ip) => {
                    client = ip;
                    if !trusted(ip) {
                        break;
                    }
                }
                // An entry we cannot read: the last hop we could vouch
                // for is as far as we go.
                None => break,
            }
        }
    }
    (client, chain)
}

/// Every `X-Forwarded-For` field as one comma-separated list.
fn joined(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut all = headers.get_all("x-forwarded-for").iter();
    let first = all.next()?;
    let Some(second) = all.next() else {
        return Some(first.clone());
    };
    let mut v = first.as_bytes().to_vec();
    for more in std::iter::once(second).chain(all) {
        v.extend_from_slice(b", ");
        v.extend_from_slice(more.as_bytes());
    }
    HeaderValue::from_bytes(&v).ok()
}

/// An address as proxies write it: `192.0.2.1`, `2001:db8::1`, `[2001:db8::1]`.
fn parse_entry(e: &str) -> Option<IpAddr> {
    let e = e
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(e);
    e.parse().ok()
}

/// The `X-Forwarded-For` the upstream receives: the trusted chain with the
/// peer appended, or `None` to send the client address alone.
pub fn extended_chain(chain: Option<&HeaderValue>, peer: IpAddr) -> Option<HeaderValue> {
    let chain = chain?;
    let peer = peer.to_string();
    let mut v = Vec::with_capacity(chain.len() + 2 + peer.len());
    v.extend_from_slice(chain.as_bytes());
    v.extend_from_slice(b", ");
    v.extend_from_slice(peer.as_bytes());
    HeaderValue::from_bytes(&v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// 10.0.0.0/8 stands for the load balancers.
    fn lb(a: IpAddr) -> bool {
        matches!(a, IpAddr::V4(v4) if v4.octets()[0] == 10)
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let (client, chain) = client_address(ip("198.51.100.7"), &xff(&["1.2.3.4"]), lb);
        assert_eq!(client, ip("198.51.100.7"));
        assert_eq!(chain, None);
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_entry_is_the_client() {
        // The client forged 6.6.6.6 on the left; 203.0.113.9 is what our
        // outer balancer saw; 10.0.0.2 is the inner balancer.
        let h = xff(&["6.6.6.6, 203.0.113.9", "10.0.0.2"]);
        let (client, chain) = client_address(ip("10.0.0.1"), &h, lb);
        assert_eq!(client, ip("203.0.113.9"));
        assert_eq!(chain.unwrap(), "6.6.6.6, 203.0.113.9, 10.0.0.2");
        let out = extended_chain(Some(&xff(&["6.6.6.6"])["x-forwarded-for"]), ip("10.0.0.1"));
        assert_eq!(out.unwrap(), "6.6.6.6, 10.0.0.1");
    }

    #[test]
    fn edge_cases() {
        // No header: the trusted peer itself.
        let (client, chain) = client_address(ip("10.0.0.1"), &HeaderMap::new(), lb);
        assert_eq!((client, chain), (ip("10.0.0.1"), None));
        // Every entry trusted: the left-most.
        let (client, _) = client_address(ip("10.0.0.1"), &xff(&["10.0.0.5, 10.0.0.6"]), lb);
        assert_eq!(client, ip("10.0.0.5"));
        // Garbage stops the walk at the last address we could vouch for.
        let (client, _) = client_address(ip("10.0.0.1"), &xff(&["1.2.3.4, junk, 10.0.0.6"]), lb);
        assert_eq!(client, ip("10.0.0.6"));
        let (client, _) = client_address(ip("10.0.0.1"), &xff(&["junk"]), lb);
        assert_eq!(client, ip("10.0.0.1"));
        // IPv6, bare or bracketed.
        let (client, _) = client_address(ip("10.0.0.1"), &xff(&["[2001:db8::1]"]), lb);
        assert_eq!(client, ip("2001:db8::1"));
        assert_eq!(extended_chain(None, ip("10.0.0.1")), None);
    }
}
