//! Issuing, rotating and revoking tokens in Postgres.
//!
//! - **Issuing** a pair is one statement (data-modifying CTEs): the access
//!   token, the refresh token (its `family_id` is its own id for the first
//!   of a family), the account links, the scope links and the
//!   `refresh_token_tokens` link between the two. Only SHA-256 hashes of the
//!   tokens reach the database.
//! - **Rotation** ([`refresh`]) runs in one transaction that locks the
//!   presented refresh token's row (`SELECT ... FOR UPDATE`), so concurrent
//!   refreshes with one token are serialized: the first rotates it, the
//!   others find it already rotated. A rotated token presented again is a
//!   replay (RFC 9700 §4.14.2): the whole family is revoked, unless the
//!   grace window applies.
//! - **Grace window** (`refresh_reuse_grace_secs` > 0): the successor pair is
//!   stored in `successor_sealed`, encrypted with ChaCha20-Poly1305 under
//!   SHA-256(`"scopegate-grace-v1"` ‖ old refresh token). Only a client that
//!   holds the old token can decrypt it, so a leaked table still grants
//!   nothing; a duplicate refresh within the window gets the *same* pair, so
//!   two racing clients never hold two different live pairs. The sealed
//!   pair is erased once the window has passed ([`sweep_sealed`]).
//! - **Revocation** marks rows inactive and returns the hashes of the
//!   access tokens it revoked, so the caller can drop them from this
//!   replica's cache at once.

mod seal;

use deadpool_postgres::{GenericClient, Pool};

use super::{generate, hash, hash_hex, Kind, TokenHash};
use crate::config::TokenConfig;
use crate::db::{classify, unix_now, DbError};
use seal::{seal, unseal, SealedPair};

/// A scope as stored: its id and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRef {
    pub id: i32,
    pub value: String,
}

/// A freshly issued (or, in the grace window, re-delivered) pair.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Granted scopes, sorted, space-separated.
    pub scope: String,
}

impl std::fmt::Debug for IssuedPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedPair")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the OS random number generator failed: {0}")]
    Random(String),
}

impl From<tokio_postgres::Error> for IssueError {
    fn from(e: tokio_postgres::Error) -> Self {
        IssueError::Db(classify(e))
    }
}

/// The family a new refresh token joins (`None`: it starts one).
#[derive(Debug, Clone, Copy)]
pub struct Lineage {
    pub family_id: i64,
    pub parent_id: i64,
}

const ISSUE: &str = "
WITH a AS (
    INSERT INTO access_tokens (token, expires, created) VALUES ($1, $2, $3)
    RETURNING token_id
), n AS (
    SELECT nextval(pg_get_serial_sequence('refresh_tokens', 'refresh_token_id')) AS id
), r AS (
    INSERT INTO refresh_tokens (refresh_token_id, refresh_token, expires, created, family_id, parent_id)
    SELECT n.id, $4, $5, $3, COALESCE($6::BIGINT, n.id), $7::BIGINT FROM n
    RETURNING refresh_token_id
), at AS (
    INSERT INTO account_tokens (account_id, token_id) SELECT $8, token_id FROM a
), art AS (
    INSERT INTO account_refresh_tokens (account_id, refresh_token_id) SELECT $8, refresh_token_id FROM r
), ts AS (
    INSERT INTO token_scopes (token_id, scope_id) SELECT a.token_id, s FROM a, unnest($9::INT[]) AS s
), rts AS (
    INSERT INTO refresh_token_scopes (token_id, scope_id) SELECT r.refresh_token_id, s FROM r, unnest($9::INT[]) AS s
), rtt AS (
    INSERT INTO refresh_token_tokens (refresh_token_id, access_token_id) SELECT r.refresh_token_id, a.token_id FROM a, r
)
SELECT a.token_id, r.refresh_token_id FROM a, r";

/// What [`issue`] created, besides the pair.
#[derive(Debug, Clone, Copy)]
pub struct IssuedIds {
    pub access_token_id: i64,
    pub refresh_token_id: i64,
    /// UNIX seconds.
    pub access_expires: i64,
}

fn new_token(kind: Kind) -> Result<String, IssueError> {
    generate(kind).map_err(|e| IssueError::Random(e.to_string()))
}

fn scope_string(scopes: &[ScopeRef]) -> String {
    let mut values: Vec<&str> = scopes.iter().map(|s| s.value.as_str()).collect();
    values.sort_unstable();
    values.dedup();
    values.join(" ")
}

/// Issue a new access + refresh pair for `account_id` with `scopes`, in one
/// statement on `client` (a connection or a transaction).
pub async fn issue<C: GenericClient>(
    client: &C,
    account_id: i32,
    scopes: &[ScopeRef],
    ttl: &TokenConfig,
    lineage: Option<Lineage>,
) -> Result<(IssuedPair, IssuedIds), IssueError> {
    let access = new_token(Kind::Access)?;
    let refresh = new_token(Kind::Refresh)?;
    let now = unix_now();
    let access_expires = now + secs(ttl.access_ttl);
    let refresh_expires = now + secs(ttl.refresh_ttl);
    let mut ids: Vec<i32> = scopes.iter().map(|s| s.id).collect();
    ids.sort_unstable();
    ids.dedup();
    let stmt = client.prepare_cached(ISSUE).await?;
    let row = client
        .query_one(
            &stmt,
            &[
                &hash_hex(&hash(&access)),
                &access_expires,
                &now,
                &hash_hex(&hash(&refresh)),
                &refresh_expires,
                &lineage.map(|l| l.family_id),
                &lineage.map(|l| l.parent_id),
                &account_id,
                &ids,
            ],
        )
        .await?;
    let ids = IssuedIds {
        access_token_id: row.try_get(0)?,
        refresh_token_id: row.try_get(1)?,
        access_expires,
    };
    Ok((
        IssuedPair {
            access_token: access,
            refresh_token: refresh,
            expires_in: access_expires - now,
            scope: scope_string(scopes),
        },
        ids,
    ))
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

/// The outcome of presenting a refresh token.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// Rotated: a new pair; the presented token is now dead.
    Issued(IssuedPair),
    /// A duplicate within the grace window: the same pair as the first time.
    Replayed(IssuedPair),
    /// Unknown, expired, revoked, or the account is inactive.
    Invalid,
    /// The requested scope is not within the token's (and the account's).
    InvalidScope,
    /// An already-rotated token was presented again: the family is revoked.
    /// The hashes of the access tokens that were revoked with it.
    Reused { revoked: Vec<TokenHash> },
}

const LOCK_REFRESH: &str = "
SELECT r.refresh_token_id, r.expires, r.active, r.rotated_at, r.family_id, r.successor_sealed,
       r.successor_id, a.account_id, a.is_active,
       COALESCE(ARRAY(SELECT s.scope_id FROM refresh_token_scopes rts JOIN scopes s ON s.scope_id = rts.scope_id
                       WHERE rts.token_id = r.refresh_token_id ORDER BY s.scope_value), '{}') AS token_scope_ids,
       COALESCE(ARRAY(SELECT s.scope_value FROM refresh_token_scopes rts JOIN scopes s ON s.scope_id = rts.scope_id
                       WHERE rts.token_id = r.refresh_token_id ORDER BY s.scope_value), '{}') AS token_scopes
  FROM refresh_tokens r
  JOIN account_refresh_tokens ar ON ar.refresh_token_id = r.refresh_token_id
  JOIN accounts a ON a.account_id = ar.account_id
 WHERE r.refresh_token = $1
   FOR UPDATE OF r";

const ROTATE: &str = "
UPDATE refresh_tokens SET rotated_at = $2, successor_id = $3, successor_sealed = $4
 WHERE refresh_token_id = $1 AND rotated_at IS NULL";

/// Present `token` for a new pair (`requested`: the `scope` parameter,
/// already parsed; `None` keeps the token's scopes).
///
/// Scopes of the new pair: the requested ones (which must be among the
/// token's) or the token's, limited to what the account still holds now
/// (a scope taken from the account since login is not re-granted).
pub async fn refresh(
    pool: &Pool,
    token: &str,
    requested: Option<&[String]>,
    ttl: &TokenConfig,
) -> Result<RefreshOutcome, IssueError> {
    let mut conn = pool.get().await.map_err(DbError::from)?;
    let tx = conn.transaction().await?;
    let lock = tx.prepare_cached(LOCK_REFRESH).await?;
    let Some(row) = tx.query_opt(&lock, &[&hash_hex(&hash(token))]).await? else {
        return Ok(RefreshOutcome::Invalid);
    };
    let id: i64 = row.try_get("refresh_token_id")?;
    let expires: i64 = row.try_get("expires")?;
    let active: bool = row.try_get("active")?;
    let rotated_at: Option<i64> = row.try_get("rotated_at")?;
    let family_id: i64 = row.try_get::<_, Option<i64>>("family_id")?.unwrap_or(id);
    let sealed: Option<Vec<u8>> = row.try_get("successor_sealed")?;
    let account_id: i32 = row.try_get("account_id")?;
    let account_active: bool = row.try_get("is_active")?;
    let successor_id: Option<i64> = row.try_get("successor_id")?;
    let now = unix_now();

    if !active {
        return Ok(RefreshOutcome::Invalid);
    }
    if let Some(rotated_at) = rotated_at {
        let grace = secs(ttl.refresh_reuse_grace);
        if grace > 0 && now <= rotated_at + grace && account_active && sealed.is_some() {
            // A statement of its own: in READ COMMITTED it sees the
            // successor committed by the transaction we waited for (the
            // locking statement's joins still use its older snapshot).
            let successor_active = match successor_id {
                Some(sid) => tx
                    .query_opt(
                        "SELECT active FROM refresh_tokens WHERE refresh_token_id = $1",
                        &[&sid],
                    )
                    .await?
                    .map(|r| r.try_get::<_, bool>(0))
                    .transpose()?
                    .unwrap_or(false),
                None => false,
            };
            let pair = sealed.as_deref().and_then(|blob| unseal(token, id, blob));
            if let Some(pair) = pair.filter(|_| successor_active) {
                return Ok(RefreshOutcome::Replayed(IssuedPair {
                    expires_in: (pair.access_expires - now).max(0),
                    access_token: pair.access_token,
                    refresh_token: pair.refresh_token,
                    scope: pair.scope,
                }));
            }
        }
        let revoked = revoke_family(&tx, family_id).await?;
        tx.commit().await?;
        return Ok(RefreshOutcome::Reused { revoked });
    }
    if expires <= now || !account_active {
        return Ok(RefreshOutcome::Invalid);
    }

    let token_ids: Vec<i32> = row.try_get("token_scope_ids")?;
    let token_values: Vec<String> = row.try_get("token_scopes")?;
    let held = effective_scope_ids(&tx, account_id).await?;
    let available: Vec<ScopeRef> = token_ids
        .into_iter()
        .zip(token_values)
        .map(|(id, value)| ScopeRef { id, value })
        .filter(|s| held.contains(&s.id))
        .collect();
    let Some(scopes) = select_scopes(available, requested) else {
        return Ok(RefreshOutcome::InvalidScope);
    };

    let (pair, ids) = issue(
        &tx,
        account_id,
        &scopes,
        ttl,
        Some(Lineage {
            family_id,
            parent_id: id,
        }),
    )
    .await?;
    let sealed = if ttl.refresh_reuse_grace.is_zero() {
        None
    } else {
        Some(seal(
            token,
            id,
            &SealedPair {
                access_token: pair.access_token.clone(),
                refresh_token: pair.refresh_token.clone(),
                access_expires: ids.access_expires,
                scope: pair.scope.clone(),
            },
        )?)
    };
    let rotate = tx.prepare_cached(ROTATE).await?;
    let n = tx
        .execute(&rotate, &[&id, &now, &ids.refresh_token_id, &sealed])
        .await?;
    if n != 1 {
        // Cannot happen under the row lock; never hand out a second pair.
        tracing::error!(
            refresh_token_id = id,
            "refresh token changed under its row lock"
        );
        return Ok(RefreshOutcome::Invalid);
    }
    tx.commit().await?;
    Ok(RefreshOutcome::Issued(pair))
}

/// The scopes to grant: the `requested` values, each of which must be
/// `available` (exact match), or all of `available` when nothing was
/// requested. `None` when a requested scope is not available.
pub fn select_scopes(
    available: Vec<ScopeRef>,
    requested: Option<&[String]>,
) -> Option<Vec<ScopeRef>> {
    let Some(requested) = requested else {
        return Some(available);
    };
    requested
        .iter()
        .map(|value| available.iter().find(|s| &s.value == value).cloned())
        .collect()
}

const EFFECTIVE_SCOPE_IDS: &str = "
SELECT scope_id FROM account_scopes WHERE account_id = $1
UNION
SELECT rs.scope_id FROM account_roles ar JOIN role_scopes rs ON rs.role_id = ar.role_id WHERE ar.account_id = $1";

async fn effective_scope_ids<C: GenericClient>(
    client: &C,
    account_id: i32,
) -> Result<Vec<i32>, IssueError> {
    let stmt = client.prepare_cached(EFFECTIVE_SCOPE_IDS).await?;
    let rows = client.query(&stmt, &[&account_id]).await?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(IssueError::from))
        .collect()
}

/// Parse the database form of a token hash.
pub fn parse_hash_hex(s: &str) -> Option<TokenHash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out).ok()?;
    Some(out)
}

fn hashes(rows: &[tokio_postgres::Row]) -> Vec<TokenHash> {
    rows.iter()
        .filter_map(|r| r.try_get::<_, String>(0).ok())
        .filter_map(|h| parse_hash_hex(&h))
        .collect()
}

const REVOKE_FAMILY: &str = "
WITH fam AS (
    UPDATE refresh_tokens SET active = FALSE, successor_sealed = NULL
     WHERE family_id = $1 OR refresh_token_id = $1
    RETURNING refresh_token_id
)
UPDATE access_tokens t SET active = FALSE
  FROM refresh_token_tokens rtt
 WHERE rtt.access_token_id = t.token_id
   AND rtt.refresh_token_id IN (SELECT refresh_token_id FROM fam)
RETURNING t.token";

/// Revoke every refresh token of a family and every access token issued
/// with any of them. Returns the revoked access tokens' hashes.
pub async fn revoke_family<C: GenericClient>(
    client: &C,
    family_id: i64,
) -> Result<Vec<TokenHash>, IssueError> {
    let stmt = client.prepare_cached(REVOKE_FAMILY).await?;
    let rows = client.query(&stmt, &[&family_id]).await?;
    Ok(hashes(&rows))
}

/// Revoke an access token by its hash. `true` if it existed.
pub async fn revoke_access(pool: &Pool, token_hash: &TokenHash) -> Result<bool, IssueError> {
    let conn = pool.get().await.map_err(DbError::from)?;
    let n = conn
        .execute(
            "UPDATE access_tokens SET active = FALSE WHERE token = $1",
            &[&hash_hex(token_hash)],
        )
        .await?;
    Ok(n > 0)
}

/// Revoke a refresh token and, with it, its whole family (every refresh
/// token descended from the same login and every access token issued with
/// them). Returns the revoked access tokens' hashes (empty when unknown).
pub async fn revoke_refresh(
    pool: &Pool,
    token_hash: &TokenHash,
) -> Result<Vec<TokenHash>, IssueError> {
    let mut conn = pool.get().await.map_err(DbError::from)?;
    let tx = conn.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT COALESCE(family_id, refresh_token_id) FROM refresh_tokens WHERE refresh_token = $1 FOR UPDATE",
            &[&hash_hex(token_hash)],
        )
        .await?;
    let Some(row) = row else {
        return Ok(Vec::new());
    };
    let family: i64 = row.try_get(0)?;
    let revoked = revoke_family(&tx, family).await?;
    tx.commit().await?;
    Ok(revoked)
}

const REVOKE_ACCOUNT: &str = "
WITH r AS (
    UPDATE refresh_tokens SET active = FALSE, successor_sealed = NULL
     WHERE refresh_token_id IN (SELECT refresh_token_id FROM account_refresh_tokens WHERE account_id = $1)
       AND (active OR successor_sealed IS NOT NULL)
)
UPDATE access_tokens SET active = FALSE
 WHERE token_id IN (SELECT token_id FROM account_tokens WHERE account_id = $1)
   AND active
RETURNING token";

/// Revoke every access and refresh token of an account. Returns the hashes
/// of the access tokens that were still active.
pub async fn revoke_account<C: GenericClient>(
    client: &C,
    account_id: i32,
) -> Result<Vec<TokenHash>, IssueError> {
    let stmt = client.prepare_cached(REVOKE_ACCOUNT).await?;
    let rows = client.query(&stmt, &[&account_id]).await?;
    Ok(hashes(&rows))
}

/// What introspection says about a refresh token.
#[derive(Debug, Clone)]
pub struct RefreshRecord {
    pub account_id: i32,
    pub username: String,
    pub active: bool,
    pub expires: i64,
    pub created: i64,
    pub scopes: Vec<String>,
}

const FIND_REFRESH: &str = "
SELECT a.account_id, a.username, (r.active AND r.rotated_at IS NULL AND a.is_active AND r.expires > $2),
       r.expires, r.created,
       COALESCE(ARRAY(SELECT s.scope_value FROM refresh_token_scopes rts JOIN scopes s ON s.scope_id = rts.scope_id
                       WHERE rts.token_id = r.refresh_token_id ORDER BY s.scope_value), '{}')
  FROM refresh_tokens r
  JOIN account_refresh_tokens ar ON ar.refresh_token_id = r.refresh_token_id
  JOIN accounts a ON a.account_id = ar.account_id
 WHERE r.refresh_token = $1";

/// Look a refresh token up by its hash (for introspection).
pub async fn find_refresh(
    pool: &Pool,
    token_hash: &TokenHash,
) -> Result<Option<RefreshRecord>, IssueError> {
    let conn = pool.get().await.map_err(DbError::from)?;
    let stmt = conn.prepare_cached(FIND_REFRESH).await?;
    let Some(row) = conn
        .query_opt(&stmt, &[&hash_hex(token_hash), &unix_now()])
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(RefreshRecord {
        account_id: row.try_get(0)?,
        username: row.try_get(1)?,
        active: row.try_get(2)?,
        expires: row.try_get(3)?,
        created: row.try_get(4)?,
        scopes: row.try_get(5)?,
    }))
}

/// Erase sealed successor pairs whose grace window has passed. Returns how
/// many were erased.
pub async fn sweep_sealed(pool: &Pool, grace: std::time::Duration) -> Result<u64, IssueError> {
    let conn = pool.get().await.map_err(DbError::from)?;
    let cutoff = unix_now() - secs(grace);
    Ok(conn
        .execute(
            "UPDATE refresh_tokens SET successor_sealed = NULL
              WHERE successor_sealed IS NOT NULL AND rotated_at < $1",
            &[&cutoff],
        )
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_hex_round_trip() {
        let h = hash("sga_abc");
        assert_eq!(parse_hash_hex(&hash_hex(&h)), Some(h));
        assert_eq!(parse_hash_hex("zz"), None);
    }

    #[test]
    fn requested_scopes_must_be_available() {
        let s = |id, v: &str| ScopeRef {
            id,
            value: v.into(),
        };
        let all = vec![s(1, "a"), s(2, "b")];
        assert_eq!(select_scopes(all.clone(), None), Some(all.clone()));
        assert_eq!(
            select_scopes(all.clone(), Some(&["b".into()])),
            Some(vec![s(2, "b")])
        );
        assert_eq!(
            select_scopes(all.clone(), Some(&["b".into(), "c".into()])),
            None
        );
        assert_eq!(select_scopes(all, Some(&["B".into()])), None);
    }

    #[test]
    fn scope_strings_are_sorted_and_unique() {
        let s = |id, v: &str| ScopeRef {
            id,
            value: v.into(),
        };
        assert_eq!(scope_string(&[s(2, "b"), s(1, "a"), s(2, "b")]), "a b");
        assert_eq!(scope_string(&[]), "");
    }
}
