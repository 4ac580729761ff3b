//! Revoking tokens: one access token, a refresh token's whole family, or
//! every token of an account.
//!
//! Revocation marks rows inactive (and erases sealed grace-window pairs)
//! and returns the hashes of the access tokens it revoked, so the caller
//! can drop them from this replica's cache at once.
//!
//! Family and account revocation take the locks of the module
//! documentation ([`super`]) before they pick the rows to kill, so a
//! refresh in flight on the same family either commits first (and its new
//! pair is revoked too) or runs afterwards (and finds its token revoked).
//! Both therefore need a transaction, which their signatures require.

use deadpool_postgres::{Pool, Transaction};

use super::issue::IssueError;
use super::{hash_hex, parse_hash_hex, TokenHash};

fn hashes(rows: &[tokio_postgres::Row]) -> Vec<TokenHash> {
    rows.iter()
        .filter_map(|r| r.try_get::<_, String>(0).ok())
        .filter_map(|h| parse_hash_hex(&h))
        .collect()
}

/// A refresh token as a member of its family.
pub(super) struct Member {
    pub id: i64,
    pub family_id: i64,
}

const FIND_MEMBER_BY_HASH: &str = "
SELECT r.refresh_token_id, COALESCE(r.family_id, r.refresh_token_id)
  FROM refresh_tokens r
  JOIN account_refresh_tokens ar ON ar.refresh_token_id = r.refresh_token_id
  JOIN accounts a ON a.account_id = ar.account_id
 WHERE r.refresh_token = $1";

const FIND_MEMBER: &str = "
SELECT r.refresh_token_id, COALESCE(r.family_id, r.refresh_token_id)
  FROM refresh_tokens r
  JOIN account_refresh_tokens ar ON ar.refresh_token_id = r.refresh_token_id
  JOIN accounts a ON a.account_id = ar.account_id
 WHERE r.refresh_token = $1
   FOR SHARE OF a";

/// The refresh token with this hash and its family, with the family's
/// locks of [`super`] taken in their order and held until `tx` ends: the
/// account row `FOR SHARE` (by the statement that finds the token), then
/// the family root `FOR UPDATE`.
pub(super) async fn lock_member(
    tx: &Transaction<'_>,
    token_hash: &TokenHash,
) -> Result<Option<Member>, IssueError> {
    let find = tx.prepare_cached(FIND_MEMBER).await?;
    let row = tx.query_opt(&find, &[&hash_hex(token_hash)]).await?;
    lock_found(tx, row).await
}

/// As [`lock_member`], for a token `caller` may revoke ([`MAY_REVOKE`]).
async fn lock_revocable(
    tx: &Transaction<'_>,
    token_hash: &TokenHash,
    caller: Option<i32>,
) -> Result<Option<Member>, IssueError> {
    let sql = format!("{} AND {MAY_REVOKE} FOR SHARE OF a", FIND_MEMBER_BY_HASH);
    let find = tx.prepare_cached(&sql).await?;
    let row = tx
        .query_opt(&find, &[&hash_hex(token_hash), &caller])
        .await?;
    lock_found(tx, row).await
}

/// The member a locking lookup found, with its family root locked too.
async fn lock_found(
    tx: &Transaction<'_>,
    row: Option<tokio_postgres::Row>,
) -> Result<Option<Member>, IssueError> {
    let Some(row) = row else {
        return Ok(None);
    };
    let member = Member {
        id: row.try_get(0)?,
        family_id: row.try_get(1)?,
    };
    lock_root(tx, member.family_id).await?;
    Ok(Some(member))
}

/// The family root `FOR UPDATE` (after the account row, see [`super`]).
async fn lock_root(tx: &Transaction<'_>, family_id: i64) -> Result<(), IssueError> {
    let root = tx
        .prepare_cached("SELECT 1 FROM refresh_tokens WHERE refresh_token_id = $1 FOR UPDATE")
        .await?;
    tx.query_opt(&root, &[&family_id]).await?;
    Ok(())
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
/// with any of them. `tx` must hold the family's locks (see [`super`]).
/// Returns the revoked access tokens' hashes.
pub(super) async fn revoke_family(
    tx: &Transaction<'_>,
    family_id: i64,
) -> Result<Vec<TokenHash>, IssueError> {
    let stmt = tx.prepare_cached(REVOKE_FAMILY).await?;
    let rows = tx.query(&stmt, &[&family_id]).await?;
    Ok(hashes(&rows))
}

/// Who may revoke a token (RFC 7009 §2.1): one issued through a
/// confidential client only that client (`$2`, the authenticated caller's
/// client); any other whoever presents it.
const MAY_REVOKE: &str = "(r.client_pk IS NULL OR r.client_pk = $2
     OR r.client_pk IN (SELECT c.client_pk FROM clients c WHERE c.secret_hash IS NULL))";

/// Revoke an access token by its hash, if `caller` (the authenticated
/// client, if any) may ([`MAY_REVOKE`]). `true` if it did.
pub async fn revoke_access(
    pool: &Pool,
    token_hash: &TokenHash,
    caller: Option<i32>,
) -> Result<bool, IssueError> {
    let conn = pool.get().await?;
    let n = conn
        .execute(
            &format!(
                "UPDATE access_tokens r SET active = FALSE WHERE r.token = $1 AND {MAY_REVOKE}"
            ),
            &[&hash_hex(token_hash), &caller],
        )
        .await?;
    Ok(n > 0)
}

/// Revoke the family of the refresh token with this row id (what an
/// authorization code issued, when the code is used again), taking the
/// family's locks first. Returns the revoked access tokens' hashes.
pub async fn revoke_family_of(
    tx: &Transaction<'_>,
    refresh_token_id: i64,
) -> Result<Vec<TokenHash>, IssueError> {
    let find = tx
        .prepare_cached(
            "SELECT r.refresh_token_id, COALESCE(r.family_id, r.refresh_token_id)
               FROM refresh_tokens r
               JOIN account_refresh_tokens ar ON ar.refresh_token_id = r.refresh_token_id
               JOIN accounts a ON a.account_id = ar.account_id
              WHERE r.refresh_token_id = $1
                FOR SHARE OF a",
        )
        .await?;
    let Some(row) = tx.query_opt(&find, &[&refresh_token_id]).await? else {
        return Ok(Vec::new());
    };
    let member = Member {
        id: row.try_get(0)?,
        family_id: row.try_get(1)?,
    };
    lock_root(tx, member.family_id).await?;
    revoke_family(tx, member.family_id).await
}

/// Revoke a refresh token and, with it, its whole family (every refresh
/// token descended from the same login and every access token issued with
/// them), if `caller` may ([`MAY_REVOKE`]). Returns the revoked access
/// tokens' hashes (empty when unknown or not the caller's to revoke).
pub async fn revoke_refresh(
    pool: &Pool,
    token_hash: &TokenHash,
    caller: Option<i32>,
) -> Result<Vec<TokenHash>, IssueError> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let Some(member) = lock_revocable(&tx, token_hash, caller).await? else {
        return Ok(Vec::new());
    };
    let revoked = revoke_family(&tx, member.family_id).await?;
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

/// Revoke every access and refresh token of an account. Locks the account
/// row `FOR UPDATE` first (held until `tx` ends), so no login or refresh of
/// the account is in flight while the tokens are picked, and none issues
/// before `tx` ends. Returns the hashes of the access tokens that were
/// still active.
pub async fn revoke_account(
    tx: &Transaction<'_>,
    account_id: i32,
) -> Result<Vec<TokenHash>, IssueError> {
    let lock = tx
        .prepare_cached("SELECT 1 FROM accounts WHERE account_id = $1 FOR UPDATE")
        .await?;
    tx.query_opt(&lock, &[&account_id]).await?;
    let stmt = tx.prepare_cached(REVOKE_ACCOUNT).await?;
    let rows = tx.query(&stmt, &[&account_id]).await?;
    Ok(hashes(&rows))
}
