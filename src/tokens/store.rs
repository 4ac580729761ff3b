//! Token lookups in Postgres for the validation path: one round trip per
//! cold token (CONTRACT §8), through a prepared statement.

use deadpool_postgres::Pool;

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
    /// The scopes granted to the token at issuance, sorted.
    pub scopes: Vec<String>,
}

impl AccessRecord {
    /// Usable now: token active and unexpired, account active.
    pub fn is_valid(&self, now_unix: i64) -> bool {
        self.token_active && self.account_active && self.expires > now_unix
    }
}

const FIND_ACCESS: &str = "
SELECT t.token_id, a.account_id, a.username, a.is_active, t.active, t.expires, t.created,
       COALESCE(array_agg(s.scope_value ORDER BY s.scope_value)
                FILTER (WHERE s.scope_value IS NOT NULL), '{}') AS scopes
  FROM access_tokens t
  JOIN account_tokens at ON at.token_id = t.token_id
  JOIN accounts a ON a.account_id = at.account_id
  LEFT JOIN token_scopes ts ON ts.token_id = t.token_id
  LEFT JOIN scopes s ON s.scope_id = ts.scope_id
 WHERE t.token = $1
 GROUP BY t.token_id, a.account_id";

/// Look an access token up by its hash. `Ok(None)`: no such token.
pub async fn find_access(pool: &Pool, hash: &TokenHash) -> Result<Option<AccessRecord>, DbError> {
    let conn = pool.get().await?;
    let stmt = conn.prepare_cached(FIND_ACCESS).await.map_err(classify)?;
    let row = conn
        .query_opt(&stmt, &[&hash_hex(hash)])
        .await
        .map_err(classify)?;
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
    }))
}
