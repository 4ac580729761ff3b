//! The token cache's memory and the cold path's database work, measured
//! in this process through the library's `Validator` (the gateway's
//! authenticate phase calls exactly that) with a pool built as the
//! gateway builds it:
//!
//! - bytes per cached token: N distinct valid tokens (inserted in bulk)
//!   validated into the cache (and each one's identity header made once,
//!   as the gateway does); the heap those validations left allocated,
//!   counted by the allocator ([`crate::heap`]: mimalloc, like
//!   scopegate's), and this process's RSS before and after;
//! - database round trips and queries for one cold token, counted by a
//!   relay of its own in front of Postgres: the very first token (new
//!   connection, statement prepared) and the steady state after it.

use std::sync::Arc;

use scopegate::config::{Config, EnvOverrides, Secret};
use scopegate::testing::insert_token;
use scopegate::tokens::cache::Validator;
use scopegate::tokens::{generate, hash, hash_hex, Kind};
use serde::Serialize;

use crate::cpu::own_memory;
use crate::pgrelay::{Relay, Snapshot};
use crate::rounds::median;
use crate::targets::Database;

/// Connections in the validator's pool (the gateway's default `pool_size`).
const POOL: usize = 16;
/// Tokens validated one by one for the cold-path count.
const COLD: usize = 5;

#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    pub tokens: usize,
    pub cached_entries: u64,
    pub rss_before: u64,
    pub rss_after: u64,
    /// RSS growth per token.
    pub bytes_per_token: f64,
    /// Heap growth per token, counted by the allocator.
    pub heap_bytes_per_token: f64,
    /// moka's own cost per entry (a 16-byte key, an 8-byte value,
    /// per-entry expiry, the token cache's hasher), by RSS and by heap.
    pub moka_bytes_per_entry: f64,
    pub moka_heap_bytes_per_entry: f64,
    /// The first cold token: the pool's first connection and the
    /// statement's preparation included.
    pub first_cold: Snapshot,
    /// Each later cold token.
    pub cold: Vec<Snapshot>,
    pub cold_round_trips: f64,
    pub cold_queries: f64,
}

/// `n` valid tokens with the scope `bench:read` for one account, inserted
/// with a few bulk statements.
async fn bulk_tokens(db: &Database, n: usize) -> Vec<String> {
    let url = Secret::new(db.direct_url.clone());
    let tls = scopegate::db::DbTls::from_url(&url).expect("TLS settings");
    let pool = scopegate::db::pool(&url, &tls, 2).expect("a pool");
    // Creates the account and the scope.
    insert_token(&pool, "memory", &["bench:read"], 86_400).await;
    let conn = pool.get().await.expect("a connection");
    let account: i32 = conn
        .query_one(
            "SELECT account_id FROM accounts WHERE username = 'memory'",
            &[],
        )
        .await
        .expect("the account")
        .get(0);
    let scope: i32 = conn
        .query_one(
            "SELECT scope_id FROM scopes WHERE scope_value = 'bench:read'",
            &[],
        )
        .await
        .expect("the scope")
        .get(0);
    let tokens: Vec<String> = (0..n)
        .map(|_| generate(Kind::Access).expect("random bytes"))
        .collect();
    let now = scopegate::db::unix_now();
    let stmt = "WITH t AS (
            INSERT INTO access_tokens (token, expires, created)
            SELECT h, $2, $3 FROM unnest($1::text[]) AS h RETURNING token_id
        ), a AS (
            INSERT INTO account_tokens (account_id, token_id) SELECT $4, token_id FROM t
        )
        INSERT INTO token_scopes (token_id, scope_id) SELECT token_id, $5 FROM t";
    for chunk in tokens.chunks(10_000) {
        let hashes: Vec<String> = chunk.iter().map(|t| hash_hex(&hash(t))).collect();
        conn.execute(stmt, &[&hashes, &(now + 86_400), &now, &account, &scope])
            .await
            .expect("insert tokens in bulk");
    }
    drop(conn);
    pool.close();
    tokens
}

/// Validate `tokens[range]` with `POOL` tasks at once; all must be valid.
async fn validate_all(v: &Arc<Validator>, tokens: &Arc<Vec<String>>, from: usize, to: usize) {
    let tasks: Vec<_> = (0..POOL)
        .map(|k| {
            let (v, tokens) = (v.clone(), tokens.clone());
            tokio::spawn(async move {
                let mut i = from + k;
                while i < to {
                    let caller = v
                        .validate(&tokens[i], std::net::Ipv4Addr::LOCALHOST.into())
                        .await
                        .expect("a bulk-inserted token validates");
                    // As the gateway does for each request: the identity
                    // header values share the entry's buffer, which makes
                    // its reference count on first use.
                    assert!(caller.user_header().is_some(), "an identity header");
                    i += POOL;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a validation task");
    }
}

/// Expire every entry after an hour (a per-entry policy, as the token
/// cache has).
struct HourExpiry;

impl moka::Expiry<u128, u64> for HourExpiry {
    fn expire_after_create(
        &self,
        _key: &u128,
        _value: &u64,
        _now: std::time::Instant,
    ) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(3600))
    }
}

/// RSS and heap bytes per entry of a moka cache holding `n` entries and
/// nothing of ours.
async fn moka_bytes_per_entry(n: usize) -> (f64, f64) {
    let cache: moka::future::Cache<u128, u64, foldhash::fast::RandomState> =
        moka::future::Cache::builder()
            .max_capacity(2 * n as u64)
            .expire_after(HourExpiry)
            .build_with_hasher(Default::default());
    let before = own_memory().rss;
    let ((), heap) = crate::heap::measure(async {
        // Distinct keys are all it takes: the cache's seeded hasher spreads
        // them, and an entry's size does not depend on the key's value.
        for i in 0..n as u64 {
            cache.insert(u128::from(i), i).await;
        }
        cache.run_pending_tasks().await;
    })
    .await;
    let after = own_memory().rss;
    (
        after.saturating_sub(before) as f64 / n as f64,
        heap as f64 / n as f64,
    )
}

pub fn run(db: &Database, n: usize, rt: &tokio::runtime::Runtime) -> MemoryReport {
    let target = db.relay.target();
    rt.block_on(async {
        let tokens = Arc::new(bulk_tokens(db, n + 1 + COLD + 2 * POOL).await);
        let relay = Relay::start(target).await.expect("a relay");
        let url = db.relay_url_to(relay.addr());
        let config = Config::parse(
            &format!(
                "[cache]\nmax_entries = {}\n[database]\npool_size = {POOL}\n",
                2 * tokens.len()
            ),
            "e2e-memory",
            &EnvOverrides::default(),
        )
        .expect("the cache configuration parses");
        let url = Secret::new(url);
        let tls = scopegate::db::DbTls::from_url(&url).expect("TLS settings");
        let pool = scopegate::db::pool(&url, &tls, POOL).expect("a pool");
        let v = Arc::new(Validator::new(pool, &config.cache));

        let cold_one = |i: usize| {
            let (v, tokens, relay) = (&v, &tokens, &relay);
            async move {
                let before = relay.snapshot();
                assert!(
                    v.validate(&tokens[i], std::net::Ipv4Addr::LOCALHOST.into())
                        .await
                        .is_ok(),
                    "a cold token validates"
                );
                relay.snapshot() - before
            }
        };
        let first_cold = cold_one(0).await;
        let mut cold = Vec::new();
        for i in 1..=COLD {
            cold.push(cold_one(i).await);
        }
        // Open every pool connection (and its relay buffers) before the
        // first reading.
        let start = 1 + COLD;
        validate_all(&v, &tokens, start, start + 2 * POOL).await;
        v.run_pending_tasks().await;
        let before = own_memory().rss;
        let ((), heap) = crate::heap::measure(async {
            validate_all(&v, &tokens, start + 2 * POOL, tokens.len()).await;
            v.run_pending_tasks().await;
        })
        .await;
        let after = own_memory().rss;
        let cached = v.entry_count();
        assert!(
            cached as usize >= tokens.len() * 99 / 100,
            "only {cached} of {} tokens stayed cached",
            tokens.len()
        );
        let measured = tokens.len() - start - 2 * POOL;
        let (moka_bytes_per_entry, moka_heap_bytes_per_entry) =
            moka_bytes_per_entry(measured).await;
        MemoryReport {
            tokens: measured,
            cached_entries: cached,
            rss_before: before,
            rss_after: after,
            bytes_per_token: after.saturating_sub(before) as f64 / measured as f64,
            heap_bytes_per_token: heap as f64 / measured as f64,
            moka_bytes_per_entry,
            moka_heap_bytes_per_entry,
            cold_round_trips: median(cold.iter().map(|s| s.round_trips as f64)),
            cold_queries: median(cold.iter().map(|s| s.queries as f64)),
            first_cold,
            cold,
        }
    })
}
