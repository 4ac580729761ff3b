//! The per-address budget of database lookups that turn out invalid
//! (`cache.invalid_lookups_per_ip`; `docs/security.md`, "Token spraying").
//!
//! Every uncached token costs a database query. A client that sprays random
//! tokens would make one query each; so lookups that find nothing valid are
//! counted against the client's address, at `rate` per second with a burst
//! of twice that. An address over its budget gets 429 for any token that is
//! not in the cache, without a query, until the budget refills. Cached
//! tokens never ask the budget, and valid cold tokens never spend it, so a
//! backend relaying many users' fresh tokens is never throttled.
//!
//! The bucket is [`crate::rate::RateLimit`] (GCRA in a bounded moka
//! cache): memory stays bounded however many addresses spray. IPv6
//! addresses are counted per /64, the block one host usually controls.

use std::net::IpAddr;

use crate::rate::RateLimit;

/// Addresses tracked at once (least recently used ones go first).
const MAX_ADDRESSES: u64 = 100_000;

/// The budget of invalid lookups per client address.
pub struct LookupBudget(RateLimit<IpAddr>);

impl LookupBudget {
    /// `rate` invalid lookups per second per address, burst `2 * rate`.
    pub fn new(rate: u32) -> LookupBudget {
        LookupBudget(RateLimit::new(rate, MAX_ADDRESSES))
    }

    /// May `client` make a lookup now? `Err(seconds)`: over budget, retry
    /// after that long.
    pub fn check(&self, client: IpAddr) -> Result<(), u32> {
        self.0.check(&key(client))
    }

    /// A lookup by `client` found no valid token: spend one from its budget.
    pub fn spend(&self, client: IpAddr) {
        self.0.spend(key(client));
    }
}

/// The unit an address is counted in: itself (IPv4), or its /64 (IPv6).
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let net = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(net.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn a_burst_of_twice_the_rate_then_refused() {
        let b = LookupBudget::new(5);
        let a = ip("192.0.2.1");
        for i in 0..10 {
            assert_eq!(b.check(a), Ok(()), "lookup {i}");
            b.spend(a);
        }
        let wait = b.check(a).expect_err("over budget after 10");
        assert!((1..=2).contains(&wait), "{wait}");
        // Another address has its own budget.
        assert_eq!(b.check(ip("192.0.2.2")), Ok(()));
    }

    #[test]
    fn the_budget_refills_at_the_rate() {
        let b = LookupBudget::new(1000);
        let a = ip("192.0.2.1");
        // 100 past the burst of 2000: refused for ~100 ms.
        let start = Instant::now();
        for _ in 0..2100 {
            b.spend(a);
        }
        if start.elapsed() < Duration::from_millis(50) {
            assert!(b.check(a).is_err());
        }
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(b.check(a), Ok(()));
    }

    #[test]
    fn ipv6_is_counted_per_64() {
        let b = LookupBudget::new(1);
        b.spend(ip("2001:db8::1"));
        b.spend(ip("2001:db8::2"));
        b.spend(ip("2001:db8::3"));
        assert!(b.check(ip("2001:db8::ffff")).is_err());
        assert_eq!(b.check(ip("2001:db8:0:1::1")), Ok(()));
        assert_eq!(key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }
}
