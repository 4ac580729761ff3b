//! The cleanup sweep: expired tokens and authorization codes are deleted in
//! small batches so their tables do not grow without bound
//! (`docs/operations.md`, "Cleanup").
//!
//! - An **access token** is deleted once it has expired (its scope, account
//!   and refresh links go with it: the foreign keys cascade).
//! - A **refresh token** is deleted only with its whole family, once every
//!   member of the family has expired: while any member lives, the rotated
//!   ones must stay so that presenting one is still recognized as reuse
//!   (RFC 9700 §4.14.2) and revokes the family.
//! - An **authorization code** that was never exchanged is deleted once it
//!   has expired: it can no longer be exchanged, and presenting it gets the
//!   same `invalid_grant` whether its row exists or not. An exchanged code
//!   stays while the refresh token it issued exists, so presenting it again
//!   still revokes what it issued (RFC 6749 §4.1.2); it goes with that
//!   token's family (the foreign key cascades).
//! - Each statement deletes at most `batch` rows, so a sweep never holds
//!   long locks or a long transaction; a sweep repeats batches until a
//!   batch comes back short, with a bound on the number of batches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;

use crate::db::{classify, DbError, DbPool};

/// Rows deleted per statement.
pub const BATCH: i64 = 1000;
/// Batches per table per sweep, at most (the rest waits for the next one).
const MAX_BATCHES: usize = 100;

/// What one sweep deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub access_tokens: u64,
    pub refresh_tokens: u64,
    pub authorization_codes: u64,
}

/// Running totals, for metrics.
#[derive(Debug, Default)]
pub struct SweepStats {
    pub access_tokens: AtomicU64,
    pub refresh_tokens: AtomicU64,
    pub authorization_codes: AtomicU64,
    pub sweeps: AtomicU64,
    pub failures: AtomicU64,
}

const DELETE_ACCESS: &str = "
DELETE FROM access_tokens
 WHERE token_id IN (SELECT token_id FROM access_tokens WHERE expires < $1 LIMIT $2)";

const DELETE_FAMILIES: &str = "
WITH dead AS (
    SELECT COALESCE(family_id, refresh_token_id) AS family
      FROM refresh_tokens
     GROUP BY COALESCE(family_id, refresh_token_id)
    HAVING max(expires) < $1
     LIMIT $2
)
DELETE FROM refresh_tokens
 WHERE COALESCE(family_id, refresh_token_id) IN (SELECT family FROM dead)";

// A used code whose refresh token is gone was deleted with it; one with
// no refresh token link has nothing left to revoke.
const DELETE_CODES: &str = "
DELETE FROM authorization_codes
 WHERE code_id IN (SELECT code_id FROM authorization_codes
                    WHERE expires < $1 AND (used_at IS NULL OR refresh_token_id IS NULL)
                    LIMIT $2)";

/// Delete what expired before `now` (UNIX seconds), `batch` rows per
/// statement.
pub async fn sweep(pool: &Pool, now: i64, batch: i64) -> Result<Swept, DbError> {
    let conn = pool.get().await?;
    let mut swept = Swept::default();
    for (sql, total) in [
        (DELETE_ACCESS, &mut swept.access_tokens),
        (DELETE_FAMILIES, &mut swept.refresh_tokens),
        (DELETE_CODES, &mut swept.authorization_codes),
    ] {
        let stmt = conn.prepare_cached(sql).await.map_err(classify)?;
        for _ in 0..MAX_BATCHES {
            let n = conn
                .execute(&stmt, &[&now, &batch])
                .await
                .map_err(classify)?;
            *total += n;
            // A family deletion may remove more rows than `batch` families;
            // a short batch of access tokens or codes means they are all gone.
            if n == 0 || (sql != DELETE_FAMILIES && n < batch as u64) {
                break;
            }
        }
    }
    Ok(swept)
}

/// [`sweep`] of what expired before the database's clock: the clock
/// that decides expiry (`docs/security.md`, "Clocks"), so a gateway whose
/// clock runs ahead never deletes a token the others still accept.
async fn sweep_now(pool: &Pool) -> Result<Swept, DbError> {
    let now: i64 = pool
        .get()
        .await?
        .query_one("SELECT scopegate_unix_now()", &[])
        .await
        .map_err(classify)?
        .try_get(0)
        .map_err(classify)?;
    sweep(pool, now, BATCH).await
}

/// One sweep of everything expired by now, counted in `stats` and logged:
/// what the periodic task runs (and what a test runs to see one).
pub async fn run_once(pool: &Pool, stats: &SweepStats) {
    match sweep_now(pool).await {
        Ok(s) => {
            stats.sweeps.fetch_add(1, Ordering::Relaxed);
            stats
                .access_tokens
                .fetch_add(s.access_tokens, Ordering::Relaxed);
            stats
                .refresh_tokens
                .fetch_add(s.refresh_tokens, Ordering::Relaxed);
            stats
                .authorization_codes
                .fetch_add(s.authorization_codes, Ordering::Relaxed);
            if s != Swept::default() {
                tracing::info!(
                    access_tokens = s.access_tokens,
                    refresh_tokens = s.refresh_tokens,
                    authorization_codes = s.authorization_codes,
                    "expired tokens and codes deleted"
                );
            }
        }
        Err(e) => {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "the cleanup sweep failed; retrying later");
        }
    }
}

/// Sweep every `every` until dropped (the task is aborted with its guard).
pub fn spawn(pool: DbPool, every: Duration, stats: std::sync::Arc<SweepStats>) -> SweepTask {
    SweepTask(tokio::spawn(async move {
        // The first sweep one period after start, not at once.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            run_once(&pool, &stats).await;
        }
    }))
}

/// The running sweep; dropping it stops it.
pub struct SweepTask(tokio::task::JoinHandle<()>);

impl Drop for SweepTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}
