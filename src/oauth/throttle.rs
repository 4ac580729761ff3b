//! Login throttling (CONTRACT §2 `[login]`, attack case O2).
//!
//! At most `max_failures` failed logins per **username** and per **client
//! address** within a sliding window of `window_secs`; the next attempt is
//! answered `429` with `Retry-After` (the seconds until the oldest failure
//! in the window leaves it). The check happens before the database lookup
//! and before any hashing, so throttled attempts cost nothing.
//!
//! - An attempt is recorded as a failure *when it starts* (atomically with
//!   the check), so a burst of concurrent guesses cannot all slip past the
//!   check before the first one fails. A success removes its record from
//!   the address and resets the username's window; an attempt that could
//!   not be decided (database or hashing pool unavailable) removes both,
//!   when its [`Attempt`] is dropped without a verdict: an early return
//!   (`?`) can never leave a provisional failure behind.
//! - 429 answers are not failures: a locked-out user is unlocked when the
//!   window passes, however hard an attacker keeps knocking.
//! - Addresses: IPv4 per address, IPv6 per /64 (one host usually owns a
//!   whole /64); the client address of the request (the peer, or behind a
//!   trusted proxy the address it vouches for: `crate::gateway::forwarded`).
//! - The state is **in memory, per replica**: N replicas allow up to N ×
//!   `max_failures` guesses per window. Memory is bounded: at most
//!   [`MAX_TRACKED`] usernames and as many addresses (least recently used
//!   evicted), each with at most `max_failures` timestamps, dropped after a
//!   window without activity.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use moka::future::Cache;

/// Usernames (and, separately, addresses) tracked at most.
pub const MAX_TRACKED: u64 = 100_000;

#[derive(Default)]
struct Window {
    failures: VecDeque<Instant>,
}

impl Window {
    fn prune(&mut self, now: Instant, window: Duration) {
        while self.failures.front().is_some_and(|t| *t + window <= now) {
            self.failures.pop_front();
        }
    }

    fn remove(&mut self, at: Instant) {
        if let Some(i) = self.failures.iter().rposition(|t| *t == at) {
            self.failures.remove(i);
        }
    }
}

type Slot = Arc<Mutex<Window>>;

fn lock(slot: &Slot) -> MutexGuard<'_, Window> {
    // A panic while holding this lock leaves a consistent deque: keep going.
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct Throttle {
    users: Cache<String, Slot>,
    addrs: Cache<IpAddr, Slot>,
    max_failures: usize,
    window: Duration,
}

/// A login attempt in progress (recorded as a provisional failure). Tell
/// the throttle how it ended ([`Throttle::failed`], [`Throttle::succeeded`]);
/// dropped without a verdict, it was not decided and its records go.
#[must_use = "a dropped attempt counts as undecided: report failed or succeeded"]
pub struct Attempt {
    user: Option<Slot>,
    addr: Slot,
    at: Instant,
    /// A verdict was given: nothing left to undo on drop.
    settled: bool,
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if let Some(user) = &self.user {
            lock(user).remove(self.at);
        }
        lock(&self.addr).remove(self.at);
    }
}

impl Throttle {
    pub fn new(max_failures: u32, window: Duration) -> Throttle {
        let idle = window.max(Duration::from_secs(1));
        Throttle {
            users: Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_idle(idle)
                .build(),
            addrs: Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_idle(idle)
                .build(),
            max_failures: usize::try_from(max_failures).unwrap_or(usize::MAX).max(1),
            window,
        }
    }

    /// Start an attempt for `username` (normalized; `None` when it cannot
    /// be a username at all) from `addr`. `Err(retry_after_secs)` when
    /// either is over the limit.
    pub async fn begin(&self, username: Option<&str>, addr: IpAddr) -> Result<Attempt, u32> {
        let user = match username {
            Some(u) => Some(
                self.users
                    .get_with_by_ref(u, async { Slot::default() })
                    .await,
            ),
            None => None,
        };
        let addr = self
            .addrs
            .get_with(addr_key(addr), async { Slot::default() })
            .await;
        let now = Instant::now();
        // Lock order: username, then address (everywhere).
        let mut user_window = user.as_ref().map(lock);
        let mut addr_window = lock(&addr);
        let mut over = false;
        let mut wait = Duration::ZERO;
        for w in user_window
            .iter_mut()
            .map(|g| &mut **g)
            .chain(std::iter::once(&mut *addr_window))
        {
            w.prune(now, self.window);
            if w.failures.len() >= self.max_failures {
                over = true;
                if let Some(oldest) = w.failures.front() {
                    wait = wait.max((*oldest + self.window).saturating_duration_since(now));
                }
            }
        }
        if over {
            return Err(retry_after(wait));
        }
        if let Some(w) = user_window.as_mut() {
            w.failures.push_back(now);
        }
        addr_window.failures.push_back(now);
        drop(addr_window);
        drop(user_window);
        Ok(Attempt {
            user,
            addr,
            at: now,
            settled: false,
        })
    }

    /// The attempt failed: its records stay.
    pub fn failed(&self, mut attempt: Attempt) {
        attempt.settled = true;
    }

    /// The attempt succeeded: the username starts afresh and the address
    /// forgets this attempt.
    pub fn succeeded(&self, mut attempt: Attempt) {
        if let Some(user) = &attempt.user {
            lock(user).failures.clear();
        }
        lock(&attempt.addr).remove(attempt.at);
        attempt.settled = true;
    }
}

/// Whole seconds, rounded up, at least 1.
fn retry_after(wait: Duration) -> u32 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
}

/// IPv4 (or IPv4-mapped) addresses as they are; IPv6 by /64.
fn addr_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[tokio::test]
    async fn the_attempt_after_max_failures_is_refused() {
        let t = Throttle::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            let a = t.begin(Some("bob"), A).await.unwrap();
            t.failed(a);
        }
        let retry = t.begin(Some("bob"), A).await.err().unwrap();
        assert!((59..=60).contains(&retry), "{retry}");
        // Same user from elsewhere: still refused (per username).
        assert!(t.begin(Some("bob"), B).await.is_err());
        // Another user from the same address: refused too (per address).
        assert!(t.begin(Some("alice"), A).await.is_err());
        // Another user elsewhere: fine.
        let a = t.begin(Some("alice"), B).await.unwrap();
        t.succeeded(a);
    }

    #[tokio::test]
    async fn success_resets_the_username() {
        let t = Throttle::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            let a = t.begin(Some("bob"), A).await.unwrap();
            t.failed(a);
        }
        let a = t.begin(Some("bob"), B).await.unwrap();
        t.succeeded(a);
        for _ in 0..3 {
            let a = t.begin(Some("bob"), B).await.unwrap();
            t.failed(a);
        }
        assert!(t.begin(Some("bob"), B).await.is_err());
    }

    #[tokio::test]
    async fn concurrent_attempts_count_before_they_finish() {
        let t = Throttle::new(2, Duration::from_secs(60));
        let a1 = t.begin(Some("bob"), A).await.unwrap();
        let a2 = t.begin(Some("bob"), A).await.unwrap();
        assert!(t.begin(Some("bob"), A).await.is_err());
        drop(a1); // undecided: as if it never happened
        let a3 = t.begin(Some("bob"), A).await.unwrap();
        t.failed(a2);
        t.failed(a3);
    }

    #[tokio::test]
    async fn the_window_slides() {
        let t = Throttle::new(1, Duration::from_millis(50));
        let a = t.begin(None, A).await.unwrap();
        t.failed(a);
        assert_eq!(t.begin(None, A).await.err(), Some(1));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(t.begin(None, A).await.is_ok());
    }

    #[test]
    fn ipv6_by_64() {
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert_eq!(addr_key(a), addr_key(b));
        let m: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(addr_key(m), A);
    }
}
