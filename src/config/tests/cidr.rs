//! [`Cidr`]: parsing and membership.

use super::*;

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

#[test]
fn cidr_parsing() {
    assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
    assert_eq!(cidr("10.1.2.3").to_string(), "10.1.2.3/32");
    assert_eq!(cidr("::1").to_string(), "::1/128");
    assert_eq!(cidr("2001:db8::/32").prefix_len(), 32);
    assert_eq!(cidr("0.0.0.0/0").network(), ip("0.0.0.0"));
    assert_eq!(format!("{:?}", cidr("fe80::/10")), "fe80::/10");
    for bad in [
        "",
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/256",
        "10.0.0.0/-1",
        "10.0.0.0/ 8",
        " 10.0.0.0/8",
        "10.0.0/8",
        "[::1]/128",
        "fe80::1%eth0",
        "10.0.0.1/8",
        "2001:db8::1/32",
        "10.0.0.0/8/8",
    ] {
        assert!(bad.parse::<Cidr>().is_err(), "{bad:?} parsed");
    }
    assert!(Cidr::new(ip("192.168.1.0"), 24).is_ok());
    assert!(Cidr::new(ip("192.168.1.0"), 23).is_err());
}

#[test]
fn cidr_contains() {
    let net = cidr("10.0.0.0/8");
    assert!(net.contains(ip("10.0.0.0")));
    assert!(net.contains(ip("10.255.255.255")));
    assert!(!net.contains(ip("11.0.0.0")));
    assert!(!net.contains(ip("9.255.255.255")));
    let host = cidr("192.168.1.7");
    assert!(host.contains(ip("192.168.1.7")));
    assert!(!host.contains(ip("192.168.1.8")));
    let v6 = cidr("2001:db8::/32");
    assert!(v6.contains(ip("2001:db8:ffff::1")));
    assert!(!v6.contains(ip("2001:db9::1")));
    assert!(!v6.contains(ip("10.0.0.1")));
    assert!(cidr("::1/128").contains(ip("::1")));
    assert!(!cidr("::1/128").contains(ip("127.0.0.1")));
    // IPv4-mapped IPv6 (what a dual-stack socket reports) is the IPv4
    // address, in both directions.
    assert!(net.contains(ip("::ffff:10.1.2.3")));
    assert!(!net.contains(ip("::ffff:11.1.2.3")));
    assert!(host.contains(ip("::ffff:192.168.1.7")));
    let mapped = cidr("::ffff:10.0.0.0/104");
    assert!(mapped.contains(ip("10.1.2.3")));
    assert!(mapped.contains(ip("::ffff:10.1.2.3")));
    assert!(!mapped.contains(ip("11.1.2.3")));
    // A native IPv6 address is not in an IPv4 network.
    assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
    assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
    assert!(cidr("0.0.0.0/0").contains(ip("::ffff:203.0.113.9")));
    assert!(cidr("::/0").contains(ip("2001:db8::1")));
}
