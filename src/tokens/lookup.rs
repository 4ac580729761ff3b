//! What the database says about a token: [`find_access`] for the
//! validation cache's fills (one round trip per cold token, through a
//! prepared statement) and introspection; [`find_refresh`] for
//! introspection; [`access_is_live`] for a re-check under a caller's lock.
//!
//! Expiry is decided by the database's clock (`scopegate_unix_now()`,
//! `docs/security.md`, "Clocks"): each query says whether the token is
//! unexpired *now* by that clock, and how long it has left, so no
//! gateway's wall clock enters the decision.

use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};

use super::issue::IssueError;
use super::{hash_hex, TokenHash};
use crate::db::{classify, DbError};

/// What the database says about an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    pub token_id: i64,
    pub account_id: i32,
    pub username: String,
    pub account_active: bool,
    pub token_active: bool,
    /// UNIX seconds.
    pub expires: i64,
    pub created: i64,
    /// Milliseconds until `expires` by the database's clock when it
    /// answered (zero or less: expired).
    pub left_ms: i64,
    /// The scopes granted to the token at issuance, sorted.
    pub scopes: Vec<String>,
    /// The `client_id` of the OAuth client it was issued through.
    pub client_id: Option<String>,
}

impl AccessRecord {
    /// Usable as of the answer: token active and unexpired (by the
    /// database's clock), account active.
    pub fn is_valid(&self) -> bool {
        self.token_active && self.account_active && self.left_ms > 0
    }

    /// How long the token had left when the database answered.
    pub fn remaining(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.left_ms).unwrap_or(0))
    }
}

const FIND_ACCESS: &str = "
SELECT t.token_id, a.account_id, a.username, a.is_active, t.active, t.expires, t.created,
       COALESCE(array_agg(s.scope_value ORDER BY s.scope_value)
                FILTER (WHERE s.scope_value IS NOT NULL), '{}') AS scopes,
       c.client_id,
       (t.expires * 1000 - floor(extract(epoch FROM statement_timestamp()) * 1000))::BIGINT AS left_ms
  FROM access_tokens t
  JOIN account_tokens at ON at.token_id = t.token_id
  JOIN accounts a ON a.account_id = at.account_id
  LEFT JOIN clients c ON c.client_pk = t.client_pk
  LEFT JOIN token_scopes ts ON ts.token_id = t.token_id
  LEFT JOIN scopes s ON s.scope_id = ts.scope_id
 WHERE t.token = $1
 GROUP BY t.token_id, a.account_id, c.client_id";

/// Look an access token up by its hash. `Ok(None)`: no such token.
///
/// Bounded by `deadline` as a whole (waiting for a pooled connection
/// included): a database that does not answer in time is
/// [`DbError::Unavailable`], so a hung server never hangs a request
/// (`docs/operations.md`, "Token cache consistency"). A connection whose
/// query overran is closed rather than returned to the pool, where its
/// late answer would be read by the next query.
pub async fn find_access(
    pool: &Pool,
    hash: &TokenHash,
    deadline: Duration,
) -> Result<Option<AccessRecord>, DbError> {
    let started = tokio::time::Instant::now();
    let late = || DbError::Unavailable(format!("no answer within {} ms", deadline.as_millis()));
    let conn = match tokio::time::timeout(deadline, pool.get()).await {
        Ok(conn) => conn?,
        Err(_) => return Err(late()),
    };
    let query = async {
        let stmt = conn.prepare_cached(FIND_ACCESS).await.map_err(classify)?;
        conn.query_opt(&stmt, &[&hash_hex(hash)])
            .await
            .map_err(classify)
    };
    let row = match tokio::time::timeout_at(started + deadline, query).await {
        Ok(row) => row?,
        Err(_) => {
            drop(deadpool_postgres::Object::take(conn));
            return Err(late());
        }
    };
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(AccessRecord {
        token_id: row.try_get(0)?,
        account_id: row.try_get(1)?,
        username: row.try_get(2)?,
        account_active: row.try_get(3)?,
        token_active: row.try_get(4)?,
        expires: row.try_get(5)?,
        created: row.try_get(6)?,
        scopes: row.try_get(7)?,
        client_id: row.try_get(8)?,
        left_ms: row.try_get(9)?,
    }))
}

/// Is the access token `token_id` usable now (active, unexpired)? For a
/// caller that must re-check, inside its own transaction and locks, a token
/// it validated earlier (perhaps from the cache).
pub async fn access_is_live<C: GenericClient>(client: &C, token_id: i64) -> Result<bool, DbError> {
    let stmt = client
        .prepare_cached(
            "SELECT active AND expires > scopegate_unix_now() FROM access_tokens WHERE token_id = $1",
        )
        .await
        .map_err(classify)?;
    let row = client
        .query_opt(&stmt, &[&token_id])
        .await
        .map_err(classify)?;
    match row {
        Some(r) => r.try_get(0).map_err(classify),
        None => Ok(false),
    }
}

/// What introspection says about a refresh token.
#[derive(Debug, Clone)]
pub struct RefreshRecord {
    pub account_id: i32,
    pub username: String,
    /// Usable now: active, not rotated, unexpired, account active.
    pub active: bool,
    pub expires: i64,
    pub created: i64,
    pub scopes: Vec<String>,
    /// The `client_id` it was issued through.
    pub client_id: Option<String>,
}

const FIND_REFRESH: &str = "
SELECT a.account_id, a.username,
       (r.active AND r.rotated_at IS NULL AND a.is_active AND r.expires > scopegate_unix_now()),
       r.expires, r.created,
       COALESCE(ARRAY(SELECT s.scope_value FROM refresh_token_scopes rts JOIN scopes s ON s.scope_id = rts.scope_id
                       WHERE rts.token_id = r.refresh_token_id ORDER BY s.scope_value), '{}'),
       c.client_id
  FROM refresh_tokens r
  JOIN account_refresh_tokens ar ON ar.refresh_token_id = r.refresh_token_id
  JOIN accounts a ON a.account_id = ar.account_id
  LEFT JOIN clients c ON c.client_pk = r.client_pk
 WHERE r.refresh_token = $1";

/// Look a refresh token up by its hash (for introspection).
pub async fn find_refresh(
    pool: &Pool,
    token_hash: &TokenHash,
) -> Result<Option<RefreshRecord>, IssueError> {
    let conn = pool.get().await?;
    let stmt = conn.prepare_cached(FIND_REFRESH).await?;
    let Some(row) = conn.query_opt(&stmt, &[&hash_hex(token_hash)]).await? else {
        return Ok(None);
    };
    Ok(Some(RefreshRecord {
        account_id: row.try_get(0)?,
        username: row.try_get(1)?,
        active: row.try_get(2)?,
        expires: row.try_get(3)?,
        created: row.try_get(4)?,
        scopes: row.try_get(5)?,
        client_id: row.try_get(6)?,
    }))
}
