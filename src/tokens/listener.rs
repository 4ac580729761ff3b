//! Revocations pushed from the database to every replica (`docs/operations.md`,
//! "Token cache consistency").
//!
//! Triggers in the database (`migrations/V6__revocation_notify.sql`) send
//! a `NOTIFY` on [`CHANNEL`] in the same transaction as every change that
//! can make a cached access token invalid or stale: a token deactivated or
//! deleted, a scope taken from a token, an account deactivated, deleted or
//! its password changed. Whatever wrote it — this replica, another one,
//! the CLI, an operator with `psql` — every replica hears it when it
//! commits, and not before.
//!
//! Each replica keeps one dedicated connection (not from the pool) that
//! `LISTEN`s, and hands what it hears to [`Validator::revoke`]. Payloads:
//! `t:<hash>,<hash>,...` (access tokens by their SHA-256 hex, at most 100
//! per notification, well under Postgres's 8000-byte limit) and
//! `a:<account id>`; anything else is taken as "everything".
//!
//! The connection is proven alive by a `SELECT 1` every [`HEARTBEAT`],
//! answered within the database deadline: Postgres sends a listening
//! session every notification committed before it answers a query, so
//! after each heartbeat nothing older can be missing. When the connection
//! fails or a heartbeat goes unanswered, the listener is down: the cache
//! marks every entry for re-check and falls back to `max_staleness`, and
//! the listener reconnects with backoff. On reconnecting, entries are
//! marked for re-check again (what happened while nobody listened is
//! unknown).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::cache::Validator;
use super::revocations::Target;
use super::{parse_hash_hex, TokenHash};
use crate::config::Secret;
use crate::db::DbTls;

/// The channel the database triggers notify.
pub const CHANNEL: &str = "scopegate_revocations";
/// How often the connection proves it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// `application_name` of the listening session (to find it in
/// `pg_stat_activity`).
pub const APPLICATION_NAME: &str = "scopegate-listener";
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the listener did so far (for metrics and tests).
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Successful `LISTEN`s (the first connection and every reconnection).
    pub connects: AtomicU64,
    /// Connections lost (or heartbeats unanswered).
    pub disconnects: AtomicU64,
    /// Notifications received.
    pub notifications: AtomicU64,
}

/// The running listener; stopped when dropped. What it does is counted
/// in [`Validator::listener_stats`].
pub struct Listener {
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Start listening on the database at `url` (as configured), feeding
/// `validator`. Runs until dropped, reconnecting as needed.
pub fn spawn(url: Secret, tls: DbTls, validator: Arc<Validator>) -> Listener {
    Listener {
        task: tokio::spawn(run(url, tls, validator)),
    }
}

async fn run(url: Secret, tls: DbTls, validator: Arc<Validator>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let stats = validator.listener_stats();
        let outcome = session(&url, &tls, &validator, stats, &mut backoff).await;
        if validator.listener_live() {
            stats.disconnects.fetch_add(1, Ordering::Relaxed);
            validator.set_listener_live(false);
        }
        tracing::warn!(
            target: "scopegate::listener",
            error = %outcome.err().unwrap_or_else(|| "closed".into()),
            retry_in_ms = backoff.as_millis() as u64,
            "revocation listener down; cached answers are re-checked after max_staleness_secs"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: connect, `LISTEN`, then apply notifications and
/// heartbeat until something fails.
async fn session(
    url: &Secret,
    tls: &DbTls,
    validator: &Validator,
    stats: &ListenerStats,
    backoff: &mut Duration,
) -> Result<(), String> {
    let deadline = validator.db_deadline();
    let mut session = crate::db::connect_dedicated(url, tls, APPLICATION_NAME)
        .await
        .map_err(|e| e.to_string())?;
    let client = &session.client;
    let listen = format!("LISTEN {CHANNEL}");
    match tokio::time::timeout(deadline, client.batch_execute(&listen)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("LISTEN not answered in time".into()),
    }
    validator.set_listener_live(true);
    stats.connects.fetch_add(1, Ordering::Relaxed);
    *backoff = MIN_BACKOFF;
    tracing::info!(target: "scopegate::listener", channel = CHANNEL, "revocation listener up");
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            payload = session.notifications.recv() => {
                let Some(notification) = payload else {
                    return Err("connection closed".into());
                };
                stats.notifications.fetch_add(1, Ordering::Relaxed);
                for target in parse(notification.payload()) {
                    validator.revoke(target).await;
                }
            }
            _ = heartbeat.tick() => {
                match tokio::time::timeout(deadline, client.simple_query("SELECT 1")).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(_) => return Err("heartbeat not answered in time".into()),
                }
            }
        }
    }
}

/// The revocations a notification's payload names.
pub fn parse(payload: &str) -> Vec<Target> {
    if let Some(list) = payload.strip_prefix("t:") {
        let hashes: Option<Vec<TokenHash>> = list.split(',').map(parse_hash_hex).collect();
        if let Some(hashes) = hashes {
            return hashes.into_iter().map(Target::Token).collect();
        }
    } else if let Some(id) = payload.strip_prefix("a:") {
        if let Ok(id) = id.parse() {
            return vec![Target::Account(id)];
        }
    }
    // Not ours to understand: assume the worst.
    tracing::warn!(target: "scopegate::listener", "unrecognized notification; re-checking every cached token");
    vec![Target::All]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        let a = "ab".repeat(32);
        let b = "cd".repeat(32);
        assert_eq!(
            parse(&format!("t:{a},{b}")),
            vec![Target::Token([0xab; 32]), Target::Token([0xcd; 32])]
        );
        assert_eq!(parse("a:42"), vec![Target::Account(42)]);
        for odd in ["", "t:", "t:zz", &format!("t:{a},"), "a:x", "hello"] {
            assert_eq!(parse(odd), vec![Target::All], "{odd:?}");
        }
    }
}
