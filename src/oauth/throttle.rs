//! Login throttling (`docs/configuration.md`, "`[login]`").
//!
//! At most `max_failures` failed password checks per **username**, and
//! `max_failures_per_ip` per **client address**, within a sliding window of
//! `window_secs`; the next attempt is answered `429` with `Retry-After`
//! (the seconds until the oldest failure in the window leaves it). The
//! address budget is the larger one: one NAT or load balancer carries many
//! users, whose typos must not lock each other out. The check happens
//! before the database lookup and before any hashing, so throttled
//! attempts cost nothing.
//!
//! - Only **recorded failures** count against a budget: correct logins
//!   never throttle each other, however many run at once.
//! - Attempts **in flight** are counted beside them, so that a burst of
//!   concurrent guesses cannot all pass the check before the first one
//!   fails: when the failures plus the attempts in flight reach a budget,
//!   a new attempt *waits* (at most [`MAX_WAIT`]) for one of them to be
//!   decided, instead of being refused. A failure then counts, a success
//!   resets the username's window, and an attempt that could not be decided
//!   (database or hashing pool unavailable) just leaves — when its
//!   [`Attempt`] is dropped without a verdict, so an early return (`?`)
//!   can never leave anything behind.
//! - 429 answers are not failures: a locked-out user is unlocked when the
//!   window passes, however hard an attacker keeps knocking. A refused
//!   attempt creates nothing: a slot (a username's or an address's window)
//!   exists only once a failure is recorded in it, so a throttled address
//!   cannot flood the maps and push a victim's counter out.
//! - Addresses: IPv4 per address, IPv6 per /64 (one host usually owns a
//!   whole /64); the client address of the request (the peer, or behind a
//!   trusted proxy the address it vouches for: `crate::gateway::forwarded`).
//! - The state is **in memory, per replica**: N replicas allow up to N ×
//!   the budgets per window. Memory is bounded: at most [`MAX_TRACKED`]
//!   usernames and as many addresses (least recently used evicted), each
//!   with at most its budget of timestamps, dropped after a window without
//!   activity; the attempts in flight are bounded by the requests in flight.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use moka::sync::Cache;
use tokio::sync::Notify;

/// Usernames (and, separately, addresses) tracked at most.
pub const MAX_TRACKED: u64 = 100_000;

/// How long an attempt waits for attempts in flight to be decided before
/// it is answered 429 (`Retry-After: 1`). A password check takes tens of
/// milliseconds; this is for a hashing pool under a storm.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Window {
    failures: VecDeque<Instant>,
}

impl Window {
    /// Forget failures older than `window`; the failures left.
    fn prune(&mut self, now: Instant, window: Duration) -> usize {
        while self.failures.front().is_some_and(|t| *t + window <= now) {
            self.failures.pop_front();
        }
        self.failures.len()
    }
}

type Slot = Arc<Mutex<Window>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent counters:
    // keep going.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Attempts admitted and not yet decided, by username and by address.
/// Entries exist only while their count is above zero.
#[derive(Default)]
struct InFlight {
    users: HashMap<String, usize>,
    addrs: HashMap<IpAddr, usize>,
}

fn count<K, Q>(map: &HashMap<K, usize>, key: &Q) -> usize
where
    K: Borrow<Q> + Hash + Eq,
    Q: Hash + Eq + ?Sized,
{
    map.get(key).copied().unwrap_or(0)
}

fn release<K: Hash + Eq>(map: &mut HashMap<K, usize>, key: K) {
    if let std::collections::hash_map::Entry::Occupied(mut e) = map.entry(key) {
        *e.get_mut() -= 1;
        if *e.get() == 0 {
            e.remove();
        }
    }
}

struct Shared {
    users: Cache<String, Slot>,
    addrs: Cache<IpAddr, Slot>,
    /// Also the lock under which admissions and verdicts are decided, so
    /// none sees a failure neither recorded nor in flight.
    in_flight: Mutex<InFlight>,
    /// Woken whenever an attempt is decided.
    decided: Notify,
    max_failures: usize,
    max_failures_per_ip: usize,
    window: Duration,
    max_wait: Duration,
}

pub struct Throttle {
    shared: Arc<Shared>,
}

/// A password check in progress. Tell the throttle how it ended
/// ([`Throttle::failed`], [`Throttle::succeeded`]); dropped without a
/// verdict, it was not decided and leaves no trace.
#[must_use = "a dropped attempt counts as undecided: report failed or succeeded"]
pub struct Attempt {
    shared: Arc<Shared>,
    user: Option<String>,
    addr: IpAddr,
    /// A verdict was given: nothing left to release on drop.
    settled: bool,
}

/// What [`Shared::admit`] decided.
enum Admission {
    Admitted,
    /// A budget is spent: refuse, with the time until it has room again.
    Over(Duration),
    /// Failures plus attempts in flight reach a budget: wait for a verdict.
    Full,
}

impl Shared {
    /// Failures of `slot` in the window, and how long until the oldest
    /// leaves it.
    fn failures(&self, slot: Option<Slot>, now: Instant) -> (usize, Duration) {
        let Some(slot) = slot else {
            return (0, Duration::ZERO);
        };
        let mut w = lock(&slot);
        let n = w.prune(now, self.window);
        let wait = w.failures.front().map_or(Duration::ZERO, |oldest| {
            (*oldest + self.window).saturating_duration_since(now)
        });
        (n, wait)
    }

    fn admit(&self, user: Option<&str>, addr: IpAddr, now: Instant) -> Admission {
        let mut flight = lock(&self.in_flight);
        // Look up, never create: a refused attempt leaves nothing behind.
        let (user_failures, user_wait) = self.failures(user.and_then(|u| self.users.get(u)), now);
        let (addr_failures, addr_wait) = self.failures(self.addrs.get(&addr), now);
        let user_over = user.is_some() && user_failures >= self.max_failures;
        let addr_over = addr_failures >= self.max_failures_per_ip;
        if user_over || addr_over {
            let mut wait = Duration::ZERO;
            if user_over {
                wait = wait.max(user_wait);
            }
            if addr_over {
                wait = wait.max(addr_wait);
            }
            return Admission::Over(wait);
        }
        let user_full =
            user.is_some_and(|u| user_failures + count(&flight.users, u) >= self.max_failures);
        let addr_full = addr_failures + count(&flight.addrs, &addr) >= self.max_failures_per_ip;
        if user_full || addr_full {
            return Admission::Full;
        }
        if let Some(u) = user {
            *flight.users.entry(u.to_owned()).or_default() += 1;
        }
        *flight.addrs.entry(addr).or_default() += 1;
        Admission::Admitted
    }
}

impl Throttle {
    pub fn new(max_failures: u32, max_failures_per_ip: u32, window: Duration) -> Throttle {
        Self::with_max_wait(max_failures, max_failures_per_ip, window, MAX_WAIT)
    }

    fn with_max_wait(
        max_failures: u32,
        max_failures_per_ip: u32,
        window: Duration,
        max_wait: Duration,
    ) -> Throttle {
        let idle = window.max(Duration::from_secs(1));
        let budget = |n: u32| usize::try_from(n).unwrap_or(usize::MAX).max(1);
        Throttle {
            shared: Arc::new(Shared {
                users: Cache::builder()
                    .max_capacity(MAX_TRACKED)
                    .time_to_idle(idle)
                    .build(),
                addrs: Cache::builder()
                    .max_capacity(MAX_TRACKED)
                    .time_to_idle(idle)
                    .build(),
                in_flight: Mutex::new(InFlight::default()),
                decided: Notify::new(),
                max_failures: budget(max_failures),
                max_failures_per_ip: budget(max_failures_per_ip),
                window,
                max_wait,
            }),
        }
    }

    /// Start an attempt for `username` (normalized; `None` when it cannot
    /// be a username at all) from `addr`. `Err(retry_after_secs)` when
    /// either is over its budget, or when the attempts in flight were not
    /// decided within [`MAX_WAIT`].
    pub async fn begin(&self, username: Option<&str>, addr: IpAddr) -> Result<Attempt, u32> {
        let addr = addr_key(addr);
        let deadline = tokio::time::Instant::now() + self.shared.max_wait;
        loop {
            // Registered before the check, so a verdict in between is seen.
            let decided = self.shared.decided.notified();
            tokio::pin!(decided);
            decided.as_mut().enable();
            match self.shared.admit(username, addr, Instant::now()) {
                Admission::Admitted => {
                    return Ok(Attempt {
                        shared: self.shared.clone(),
                        user: username.map(str::to_owned),
                        addr,
                        settled: false,
                    })
                }
                Admission::Over(wait) => return Err(retry_after(wait)),
                Admission::Full => {
                    if tokio::time::timeout_at(deadline, decided).await.is_err() {
                        return Err(1);
                    }
                }
            }
        }
    }

    /// The attempt failed: a failure is recorded for its username and its
    /// address (creating their slots if need be).
    pub fn failed(&self, attempt: Attempt) {
        attempt.settle(|shared, user, addr| {
            let now = Instant::now();
            if let Some(u) = user {
                let slot = shared.users.get_with_by_ref(u, Slot::default);
                lock(&slot).failures.push_back(now);
            }
            let slot = shared.addrs.get_with(addr, Slot::default);
            lock(&slot).failures.push_back(now);
        });
    }

    /// The attempt succeeded: the username starts afresh (the address keeps
    /// its failures).
    pub fn succeeded(&self, attempt: Attempt) {
        attempt.settle(|shared, user, _| {
            if let Some(u) = user {
                shared.users.invalidate(u);
            }
        });
    }

    /// Usernames with a slot (pending cache work is applied first). A test
    /// hook and a metric.
    pub fn tracked_usernames(&self) -> u64 {
        self.shared.users.run_pending_tasks();
        self.shared.users.entry_count()
    }
}

impl Attempt {
    /// Apply `verdict` and leave the attempts in flight, in one step under
    /// the admission lock; then wake whoever waits for a verdict.
    fn settle(mut self, verdict: impl FnOnce(&Shared, Option<&str>, IpAddr)) {
        self.leave(verdict);
    }

    fn leave(&mut self, verdict: impl FnOnce(&Shared, Option<&str>, IpAddr)) {
        if self.settled {
            return;
        }
        self.settled = true;
        {
            let mut flight = lock(&self.shared.in_flight);
            verdict(&self.shared, self.user.as_deref(), self.addr);
            if let Some(u) = self.user.take() {
                release(&mut flight.users, u);
            }
            release(&mut flight.addrs, self.addr);
        }
        self.shared.decided.notify_waiters();
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        // Undecided: it just leaves.
        self.leave(|_, _, _| {});
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
mod tests;
