//! Access-token validation: a bounded moka cache in front of Postgres, with
//! the consistency rules of `docs/operations.md` ("Token cache
//! consistency").
//!
//! - **Key**: the first 128 bits of the token's SHA-256 ([`CacheKey`]).
//!   **Value**: the identity (account id, username, scopes, client id),
//!   the token's expiry as a monotonic deadline, when the database last
//!   confirmed it, and the revocation epoch ([`super::revocations`]) it is
//!   good as of.
//! - **Never past expiry**: checked on every hit, and entries expire from
//!   the cache at the token's expiry. The database says how long the token
//!   has left by its own clock ([`lookup`], `docs/security.md`, "Clocks"),
//!   and that is converted to a monotonic [`Instant`] when the entry is
//!   filled: this process's wall clock is never read, so neither its skew
//!   nor a jump of it can extend a token's life.
//! - **Trust window**: while the push listener ([`super::listener`]) is
//!   live, revocations arrive as they commit and a hit is trusted until the
//!   token expires; without it, a hit older than `max_staleness` is
//!   re-checked against the database on use. Losing or regaining the
//!   listener marks every entry for re-check (kept, not evicted).
//! - **Revocations** ([`Validator::revoke`]): recorded under a new epoch,
//!   and the affected entries dropped. An entry whose epoch is behind is
//!   checked against what was revoked since, so a revocation racing a
//!   cache fill can never leave the revoked token trusted.
//! - **Outage**: when the database cannot answer (or not within
//!   `db_deadline`), an entry confirmed less than `outage_grace` ago
//!   still passes, unless a revocation concerning it is known; anything
//!   else is 503, never 401 (we cannot tell) and never 200 (we cannot
//!   vouch).
//! - **Single flight**: concurrent misses for one token share one query
//!   (`try_get_with`), and so does its error; concurrent re-checks of one
//!   stale entry are serialized per key (`and_try_compute_with`), and a
//!   re-check that finds the entry already re-checked by a predecessor does
//!   not query again.
//! - **Negative cache and budget**: unknown/invalid tokens are remembered
//!   for `negative_ttl`, and the lookups that found them are counted
//!   against the client's address ([`super::budget`]). The cache holds at
//!   most `max_entries` entries of both kinds, so token spraying cannot
//!   grow memory without bound.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::ops::compute::Op;
use moka::Expiry;

use super::budget::LookupBudget;
use super::identity::Identity;
use super::listener::ListenerStats;
use super::lookup::{self, AccessRecord};
use super::revocations::{Revocations, Target, Verdict};
use super::{hash, is_well_formed, Kind, TokenHash};
use crate::config::CacheConfig;
use crate::db::{DbError, DbPool};

/// The cache's key: the first 128 bits of the token's SHA-256.
///
/// Half the digest, because moka keeps the key in an allocation of its own
/// per entry (32 bytes less per cached token). 128 bits keep the cache
/// exact in practice: for a random token to land on the key of one of `n`
/// cached ones takes `2^128 / n` tries (guessing a 128-bit secret), a
/// chosen one a second preimage of SHA-256 truncated to 128 bits (2^128
/// work), and two of a billion issued tokens share a key with probability
/// below 10^-20. The database is always asked by the whole digest.
type CacheKey = u128;

fn cache_key(hash: &TokenHash) -> CacheKey {
    u128::from_le_bytes(std::array::from_fn(|i| hash[i]))
}

/// A monotonic instant as nanoseconds since the validator was made: 8
/// bytes where an [`Instant`] takes 16, and a cached token holds three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Stamp(u64);

impl Stamp {
    /// How long after `earlier` (zero if it is not earlier).
    fn since(self, earlier: Stamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    fn after(self, d: Duration) -> Stamp {
        Stamp(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }
}

/// The instant [`Stamp`]s count from.
#[derive(Debug, Clone, Copy)]
struct Origin(Instant);

impl Origin {
    fn stamp(self, t: Instant) -> Stamp {
        Stamp(0).after(t.saturating_duration_since(self.0))
    }

    fn now(self) -> Stamp {
        self.stamp(Instant::now())
    }

    /// How long from `now` until `s` (zero if it has passed).
    fn until(self, s: Stamp, now: Instant) -> Duration {
        s.since(self.stamp(now))
    }
}

/// A valid token's identity, as [`Validator::validate`] answers it: shared
/// with the cache entry it came from (one allocation per cached token).
#[derive(Debug, Clone)]
pub struct Caller(Arc<ValidEntry>);

impl std::ops::Deref for Caller {
    type Target = Identity;

    fn deref(&self) -> &Identity {
        &self.0.identity
    }
}

#[derive(Clone, Debug)]
enum Entry {
    Valid(Arc<ValidEntry>),
    /// Unknown, revoked, expired, or inactive account.
    Invalid,
}

#[derive(Debug)]
struct ValidEntry {
    identity: Identity,
    /// The token's expiry, as a monotonic deadline.
    expires_at: Stamp,
    /// When the database last said "valid".
    confirmed: Stamp,
    /// The revocation epoch this answer is good as of: read before the
    /// query that produced it, moved forward when later revocations turn
    /// out not to concern it.
    epoch: AtomicU64,
    /// When the database was last asked about it (successfully or not).
    checked: Stamp,
}

struct EntryExpiry {
    negative_ttl: Duration,
    origin: Origin,
}

impl Expiry<CacheKey, Entry> for EntryExpiry {
    fn expire_after_create(&self, _k: &CacheKey, v: &Entry, now: Instant) -> Option<Duration> {
        Some(match v {
            Entry::Valid(e) => self.origin.until(e.expires_at, now),
            Entry::Invalid => self.negative_ttl,
        })
    }

    fn expire_after_update(
        &self,
        k: &CacheKey,
        v: &Entry,
        now: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(k, v, now)
    }
}

/// Validates access tokens; shared by the gateway and `/oauth/*`.
pub struct Validator {
    cache: Cache<CacheKey, Entry, foldhash::fast::RandomState>,
    origin: Origin,
    pool: DbPool,
    max_staleness: Duration,
    outage_grace: Duration,
    db_deadline: Duration,
    revocations: Revocations,
    budget: LookupBudget,
    /// Is the push listener connected and answering (revocations arrive
    /// as they commit)?
    listener_live: AtomicBool,
    listener_stats: ListenerStats,
    lookups: AtomicU64,
    counts: Counts,
}

/// How validations were answered (for metrics).
#[derive(Debug, Default)]
struct Counts {
    hits: AtomicU64,
    negative_hits: AtomicU64,
    misses: AtomicU64,
    rechecks: AtomicU64,
    throttled: AtomicU64,
    revocations: AtomicU64,
}

/// How validations were answered so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheCounts {
    /// A valid entry answered from memory.
    pub hits: u64,
    /// An entry remembered as invalid answered from memory.
    pub negative_hits: u64,
    /// No entry: the database was asked.
    pub misses: u64,
    /// An entry too old to trust: re-checked against the database.
    pub rechecks: u64,
    /// An uncached token refused without a query: its address was over
    /// its budget of invalid lookups.
    pub throttled: u64,
    /// Revocations applied to the cache (local and pushed).
    pub revocations: u64,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Unknown, malformed, expired or revoked, or its account is inactive:
    /// a 401 `invalid_token`.
    #[error("the access token is unknown, expired or revoked")]
    Invalid,
    /// The database cannot vouch for it right now (and no recent enough
    /// confirmation is cached): a 503, never a 401 and never a pass.
    #[error("the token store cannot be reached")]
    Unavailable,
    /// The client's address spent its budget of invalid lookups and the
    /// token is not cached: a 429, without a query.
    #[error("too many invalid tokens from this address")]
    Throttled { retry_after_secs: u32 },
}

fn unavailable() -> TokenError {
    TokenError::Unavailable
}

impl Validator {
    pub fn new(pool: DbPool, cfg: &CacheConfig) -> Validator {
        let origin = Origin(Instant::now());
        let cache = Cache::builder()
            .max_capacity(cfg.max_entries)
            .expire_after(EntryExpiry {
                negative_ttl: cfg.negative_ttl,
                origin,
            })
            // The key is part of a SHA-256 digest; a per-process random
            // seed keeps anyone from choosing tokens whose keys collide in
            // the table.
            .build_with_hasher(foldhash::fast::RandomState::default());
        Validator {
            cache,
            origin,
            pool,
            max_staleness: cfg.max_staleness,
            outage_grace: cfg.outage_grace,
            db_deadline: cfg.db_deadline,
            revocations: Revocations::default(),
            budget: LookupBudget::new(cfg.invalid_lookups_per_ip),
            listener_live: AtomicBool::new(false),
            listener_stats: ListenerStats::default(),
            lookups: AtomicU64::new(0),
            counts: Counts::default(),
        }
    }

    /// Database lookups made so far (a test hook and a metric).
    pub fn db_lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    /// How long a validation query may take before the database counts as
    /// unreachable (`cache.db_deadline_ms`).
    pub fn db_deadline(&self) -> Duration {
        self.db_deadline
    }

    /// How validations were answered so far (a metric).
    pub fn counts(&self) -> CacheCounts {
        let c = &self.counts;
        CacheCounts {
            hits: c.hits.load(Ordering::Relaxed),
            negative_hits: c.negative_hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            rechecks: c.rechecks.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
            revocations: c.revocations.load(Ordering::Relaxed),
        }
    }

    /// Entries currently cached (approximate; moka applies writes lazily).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Apply pending cache maintenance (tests and metrics).
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }

    /// Is the push listener live (cached answers trusted until expiry)?
    pub fn listener_live(&self) -> bool {
        self.listener_live.load(Ordering::SeqCst)
    }

    /// What the push listener did so far.
    pub fn listener_stats(&self) -> &ListenerStats {
        &self.listener_stats
    }

    /// The push listener connected (`true`, after its `LISTEN` took
    /// effect) or was lost (`false`). Either way what happened while it was
    /// not listening is unknown: every entry is marked for re-check.
    pub fn set_listener_live(&self, live: bool) {
        if !live {
            self.listener_live.store(false, Ordering::SeqCst);
        }
        self.revocations.record(Target::All);
        if live {
            self.listener_live.store(true, Ordering::SeqCst);
        }
    }

    /// Forget what we know about a token (it was revoked here).
    pub async fn invalidate(&self, hash: &TokenHash) {
        self.revoke(Target::Token(*hash)).await;
    }

    /// Apply a revocation (made here, or pushed from the database): record
    /// it, then drop the entries it concerns. Call it after the change
    /// committed.
    pub async fn revoke(&self, target: Target) {
        self.counts.revocations.fetch_add(1, Ordering::Relaxed);
        self.revocations.record(target);
        match target {
            Target::Token(h) => self.cache.invalidate(&cache_key(&h)).await,
            Target::Account(id) => {
                let gone: Vec<Arc<CacheKey>> = self
                    .cache
                    .iter()
                    .filter(|(_, v)| matches!(v, Entry::Valid(e) if e.identity.account_id == id))
                    .map(|(k, _)| k)
                    .collect();
                for k in gone {
                    self.cache.invalidate(&*k).await;
                }
            }
            // Kept: marked for re-check by the epoch (an outage still
            // falls under the grace window).
            Target::All => {}
        }
    }

    /// Validate a bearer token presented by `client`: `Ok` with its
    /// identity, or the rejection.
    pub async fn validate(&self, token: &str, client: IpAddr) -> Result<Caller, TokenError> {
        if !is_well_formed(token, Kind::Access) {
            return Err(TokenError::Invalid);
        }
        let hash = hash(token);
        let key = cache_key(&hash);
        let now = self.origin.now();
        let (entry, filled) = match self.cache.get(&key).await {
            Some(entry) => (entry, false),
            None => {
                if let Err(retry_after_secs) = self.budget.check(client) {
                    self.counts.throttled.fetch_add(1, Ordering::Relaxed);
                    return Err(TokenError::Throttled { retry_after_secs });
                }
                self.counts.misses.fetch_add(1, Ordering::Relaxed);
                // Boxed, like the re-check below: the cold path's state (the
                // pool, the query) would otherwise enlarge every request's
                // future, hits included.
                (Box::pin(self.fill(key, &hash)).await?, true)
            }
        };
        match entry {
            Entry::Valid(e) => {
                if now >= e.expires_at {
                    return Err(TokenError::Invalid);
                }
                if self.trusts(&e, &hash, now) {
                    if !filled {
                        self.counts.hits.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(Caller(e));
                }
                self.counts.rechecks.fetch_add(1, Ordering::Relaxed);
                Box::pin(self.recheck(key, &hash, &e, now)).await
            }
            Entry::Invalid => {
                if filled {
                    self.budget.spend(client);
                } else {
                    self.counts.negative_hits.fetch_add(1, Ordering::Relaxed);
                }
                Err(TokenError::Invalid)
            }
        }
    }

    /// May a cached valid answer be used as is?
    fn trusts(&self, e: &ValidEntry, hash: &TokenHash, now: Stamp) -> bool {
        match self.verdict(e, hash) {
            Verdict::Stands(epoch) => {
                e.epoch.fetch_max(epoch, Ordering::SeqCst);
            }
            Verdict::Recheck | Verdict::Revoked => return false,
        }
        self.listener_live() || now.since(e.confirmed) < self.max_staleness
    }

    /// Ask the database; the answer as a cache entry, good as of the
    /// revocation epoch read before the query.
    async fn lookup(&self, hash: &TokenHash) -> Result<Entry, DbError> {
        let epoch = self.revocations.epoch();
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let asked = self.origin.now();
        let record = lookup::find_access(&self.pool, hash, self.db_deadline).await?;
        Ok(self.entry_from(record, epoch, asked))
    }

    /// `asked`: when the query was sent. The time the token had left when
    /// the database answered is counted from then, so the round trip never
    /// lengthens it.
    fn entry_from(&self, record: Option<AccessRecord>, epoch: u64, asked: Stamp) -> Entry {
        let now = self.origin.now();
        let Some(record) = record.filter(|r| r.is_valid()) else {
            return Entry::Invalid;
        };
        let Some(identity) = Identity::from_record(&record) else {
            // A username that cannot be a header value: refuse, loudly.
            tracing::error!(
                account_id = record.account_id,
                "username is not a valid header value"
            );
            return Entry::Invalid;
        };
        Entry::Valid(Arc::new(ValidEntry {
            identity,
            expires_at: asked.after(record.remaining()),
            confirmed: now,
            epoch: AtomicU64::new(epoch),
            checked: now,
        }))
    }

    /// A miss: one query for all concurrent callers (errors shared too).
    async fn fill(&self, key: CacheKey, hash: &TokenHash) -> Result<Entry, TokenError> {
        self.cache
            .try_get_with(key, self.lookup(hash))
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "token lookup failed");
                unavailable()
            })
    }

    /// A stale hit: re-confirm with the database, once per key at a time.
    ///
    /// `seen` is the entry the caller found too old to trust, at `seen_at`.
    async fn recheck(
        &self,
        key: CacheKey,
        hash: &TokenHash,
        seen: &Arc<ValidEntry>,
        seen_at: Stamp,
    ) -> Result<Caller, TokenError> {
        let outcome = self
            .cache
            .entry(key)
            .and_try_compute_with(|current| async move {
                match current.map(|c| c.into_value()) {
                    // A predecessor in the queue replaced the entry we saw,
                    // or asked the database after we looked: take its
                    // answer (success or failure) as is.
                    Some(Entry::Valid(e)) if !Arc::ptr_eq(&e, seen) || e.checked >= seen_at => {
                        Ok(Op::Nop)
                    }
                    Some(Entry::Invalid) => Ok(Op::Nop),
                    None => self.lookup(hash).await.map(Op::Put).map_err(Arc::new),
                    Some(Entry::Valid(e)) => match self.lookup(hash).await {
                        Ok(fresh) => Ok(Op::Put(fresh)),
                        Err(err) => {
                            tracing::warn!(error = %err, "token re-check failed");
                            // Remember the failed attempt; keep what we knew.
                            Ok(Op::Put(Entry::Valid(Arc::new(ValidEntry {
                                identity: e.identity.clone(),
                                expires_at: e.expires_at,
                                confirmed: e.confirmed,
                                epoch: AtomicU64::new(e.epoch.load(Ordering::SeqCst)),
                                checked: self.origin.now(),
                            }))))
                        }
                    },
                }
            })
            .await;
        let entry = match outcome {
            Ok(r) => r.into_entry().map(|e| e.into_value()),
            Err(e) => {
                tracing::warn!(error = %e, "token lookup failed");
                return Err(unavailable());
            }
        };
        let now = self.origin.now();
        match entry {
            Some(Entry::Valid(e)) => {
                if now >= e.expires_at {
                    return Err(TokenError::Invalid);
                }
                if e.confirmed >= seen_at || (!Arc::ptr_eq(&e, seen) && self.trusts(&e, hash, now))
                {
                    // Confirmed by the database while we waited (by us or
                    // by a predecessor whose answer the usual rules trust).
                    Ok(Caller(e))
                } else if now.since(e.confirmed) < self.outage_grace
                    && !self.known_revoked(&e, hash)
                {
                    // The database could not answer; it vouched recently
                    // enough, and no revocation of it is known since.
                    Ok(Caller(e))
                } else {
                    Err(unavailable())
                }
            }
            Some(Entry::Invalid) => Err(TokenError::Invalid),
            None => Err(unavailable()),
        }
    }

    /// Is a revocation of this token or its account known since the entry
    /// was confirmed? (Losing the listener is not one.)
    fn known_revoked(&self, e: &ValidEntry, hash: &TokenHash) -> bool {
        self.verdict(e, hash) == Verdict::Revoked
    }

    /// What the revocations since `e` was good say of it.
    fn verdict(&self, e: &ValidEntry, hash: &TokenHash) -> Verdict {
        let since = e.epoch.load(Ordering::SeqCst);
        self.revocations.check(since, hash, e.identity.account_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_is_the_digest_s_first_128_bits() {
        let mut h: TokenHash = [0; 32];
        h[0] = 1;
        h[15] = 0x80;
        h[16] = 0xff;
        assert_eq!(cache_key(&h), 1 | (0x80 << 120));
        let mut other = h;
        other[31] = 1;
        assert_eq!(
            cache_key(&other),
            cache_key(&h),
            "the second half is not part of it"
        );
        other[7] = 1;
        assert_ne!(cache_key(&other), cache_key(&h));
    }

    #[test]
    fn stamps_count_from_the_origin_and_saturate() {
        let start = Instant::now();
        let origin = Origin(start);
        let later = start + Duration::from_millis(1500);
        let s = origin.stamp(later);
        assert_eq!(s, Stamp(1_500_000_000));
        assert_eq!(s.since(Stamp(500_000_000)), Duration::from_secs(1));
        assert_eq!(Stamp(1).since(s), Duration::ZERO, "not earlier: zero");
        assert_eq!(origin.until(s, start), Duration::from_millis(1500));
        assert_eq!(
            origin.until(s, later + Duration::from_secs(1)),
            Duration::ZERO
        );
        assert_eq!(s.after(Duration::MAX), Stamp(u64::MAX));
        // An instant before the origin counts as the origin.
        if let Some(before) = start.checked_sub(Duration::from_secs(1)) {
            assert_eq!(origin.stamp(before), Stamp(0));
        }
    }
}
