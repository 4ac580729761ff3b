//! A per-key rate limit: the generic cell rate algorithm (GCRA), one
//! "theoretical arrival time" per key in an atomic, kept in a bounded moka
//! cache whose entries idle out once their bucket is full again, so memory
//! stays bounded however many keys show up.
//!
//! `rate` events per second per key, with a burst of twice that. Users:
//! the budget of invalid token lookups per client address (`tokens`) and
//! the introspection limit per caller (`oauth`); a leaf, it names neither.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A rate per key.
pub struct RateLimit<K> {
    /// Key -> theoretical arrival time, in nanoseconds since `base`.
    buckets: moka::sync::Cache<K, Arc<AtomicU64>>,
    base: Instant,
    /// Nanoseconds one event costs (1 / rate).
    interval: u64,
    /// How far ahead of now the arrival time may run (the burst).
    tolerance: u64,
}

impl<K: Hash + Eq + Send + Sync + 'static> RateLimit<K> {
    /// `rate` events per second per key (at least 1), burst `2 * rate`;
    /// at most `max_keys` keys tracked at once (least recently used go
    /// first).
    pub fn new(rate: u32, max_keys: u64) -> RateLimit<K> {
        let rate = u64::from(rate.max(1));
        // At least 1 ns, so a rate past a billion is a billion, not free.
        let interval = (1_000_000_000 / rate).max(1);
        let tolerance = interval * (2 * rate - 1);
        RateLimit {
            buckets: moka::sync::Cache::builder()
                .max_capacity(max_keys)
                // A bucket untouched this long is full again: forget it.
                .time_to_idle(Duration::from_nanos(tolerance + interval))
                .build(),
            base: Instant::now(),
            interval,
            tolerance,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// `Err(seconds)` when an arrival time `tat` is too far ahead of `now`:
    /// over the rate, retry after that long (at least 1 s).
    fn verdict(&self, tat: u64, now: u64) -> Result<(), u32> {
        let ahead = tat.saturating_sub(now);
        if ahead <= self.tolerance {
            Ok(())
        } else {
            let wait = ahead - self.tolerance;
            Err(u32::try_from(wait.div_ceil(1_000_000_000).max(1)).unwrap_or(u32::MAX))
        }
    }

    /// May `key` have an event now? Spends nothing (see [`Self::spend`]).
    /// `Err(seconds)`: over the rate, retry after that long.
    pub fn check(&self, key: &K) -> Result<(), u32> {
        match self.buckets.get(key) {
            None => Ok(()),
            Some(tat) => self.verdict(tat.load(Ordering::Relaxed), self.now()),
        }
    }

    /// Count one event of `key`, whether or not it was within the rate.
    pub fn spend(&self, key: K) {
        let cell = self.buckets.get_with(key, || Arc::new(AtomicU64::new(0)));
        let now = self.now();
        let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
            Some(tat.max(now).saturating_add(self.interval))
        });
    }

    /// Check and spend in one step: an event within the rate is counted;
    /// one over it is refused (`Err(seconds)`) and not counted, so a caller
    /// that keeps knocking is let in again as soon as the rate allows.
    pub fn take(&self, key: K) -> Result<(), u32> {
        let cell = self.buckets.get_with(key, || Arc::new(AtomicU64::new(0)));
        let now = self.now();
        let mut refused = Ok(());
        let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
            refused = self.verdict(tat, now);
            refused
                .is_ok()
                .then(|| tat.max(now).saturating_add(self.interval))
        });
        refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_allows_a_burst_of_twice_the_rate_then_refuses() {
        let r = RateLimit::new(5, 10);
        for i in 0..10 {
            assert_eq!(r.take("a"), Ok(()), "event {i}");
        }
        let wait = r.take("a").expect_err("over the rate after 10");
        assert!((1..=2).contains(&wait), "{wait}");
        // Refusals are not counted: the next check sees the same wait.
        assert_eq!(r.check(&"a"), Err(wait));
        // Another key has its own bucket.
        assert_eq!(r.take("b"), Ok(()));
    }

    #[test]
    fn take_recovers_at_the_rate() {
        let r = RateLimit::new(1000, 10);
        let start = Instant::now();
        while r.take(1u8).is_ok() {}
        let burst_took = start.elapsed();
        // One event's worth (1 ms) later, one more is allowed.
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(r.take(1u8), Ok(()), "after {burst_took:?}");
    }

    #[test]
    fn check_and_spend_agree_with_take() {
        let r = RateLimit::new(2, 10);
        for _ in 0..4 {
            assert_eq!(r.check(&'k'), Ok(()));
            r.spend('k');
        }
        assert!(r.check(&'k').is_err());
        assert!(r.take('k').is_err());
    }
}
