//! The refresh grant: rotation, reuse detection and the grace window.
//!
//! ## Two phases, one transaction
//! The scopes of the new pair are the presented token's, limited to what
//! the account still holds *now* — a question for the `accounts` module, which
//! this module does not import. So rotation is split in two, around the
//! caller's question, on one transaction:
//! 1. [`present`] opens the transaction, takes the family's locks (the
//!    account row `FOR SHARE`, the family root and the presented token
//!    `FOR UPDATE`; see [`super`]) and says what it found: unknown, expired or
//!    revoked ([`Presented::Invalid`]); a replay within the grace window
//!    ([`Presented::Replayed`]); an already-rotated token presented again
//!    ([`Presented::Reused`]: the family is revoked and committed before
//!    [`present`] returns); or a token that may rotate
//!    ([`Presented::Current`]).
//! 2. With a [`Rotation`], the caller computes the account's held scopes
//!    on [`Rotation::client`] (the same transaction, so under the same
//!    locks), chooses the grant, and calls [`Rotation::rotate`], which
//!    issues the successor pair, marks the token rotated and commits.
//!    Dropping a [`Rotation`] instead rolls back: the token stays usable
//!    (a refused scope does not consume it).
//!
//! Concurrent refreshes of one family are serialized by the root's lock:
//! the first rotates the token, the others find it already rotated. An
//! account-wide revocation (which locks the account row `FOR UPDATE`) or a
//! family revocation waits for a refresh in flight and then sees its new
//! pair, or runs first and the refresh finds its token revoked. A rotated token
//! presented again is a replay (RFC 9700 §4.14.2): the whole family is
//! revoked, unless the grace window applies.
//!
//! ## Grace window
//! With `refresh_reuse_grace_secs` > 0, the successor pair is stored in
//! `successor_sealed`, encrypted with ChaCha20-Poly1305 under
//! SHA-256(`"scopegate-grace-v1"` ‖ old refresh token) ([`seal`]). Only a
//! client that holds the old token can decrypt it, so a leaked table still
//! grants nothing; a duplicate refresh within the window gets the *same*
//! pair, so two racing clients never hold two different live pairs. It
//! gets it only while that pair's refresh token is itself unused: once the
//! successor has been rotated (or revoked), presenting the old token again
//! is reuse and revokes the family, window or not. The sealed pair is
//! erased once the window has passed ([`sweep_sealed`]).

mod seal;

use deadpool_postgres::{Client, Pool, Transaction};

use super::issue::{issue, Grant, IssueError, IssuedPair, Lineage};
use super::revoke::{lock_member, revoke_family};
use super::{hash, secs, TokenHash};
use crate::config::TokenConfig;
use seal::{seal, unseal, SealedPair};

/// What presenting a refresh token found.
pub enum Presented<'a> {
    /// It may rotate: choose the scopes, then [`Rotation::rotate`].
    Current(Rotation<'a>),
    /// A duplicate within the grace window: the same pair as the first time.
    Replayed(IssuedPair),
    /// Unknown, expired, revoked, or the account is inactive.
    Invalid,
    /// An already-rotated token was presented again: the family is revoked
    /// (committed). The hashes of the access tokens revoked with it.
    Reused { revoked: Vec<TokenHash> },
}

impl std::fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presented::Current(r) => f
                .debug_struct("Current")
                .field("account_id", &r.account_id)
                .finish_non_exhaustive(),
            Presented::Replayed(p) => f.debug_tuple("Replayed").field(p).finish(),
            Presented::Invalid => f.write_str("Invalid"),
            Presented::Reused { revoked } => f
                .debug_struct("Reused")
                .field("revoked", &revoked.len())
                .finish(),
        }
    }
}

/// A presented refresh token, locked, that may rotate. Holds its
/// transaction open; dropping it rolls back.
pub struct Rotation<'a> {
    tx: Transaction<'a>,
    token: &'a str,
    ttl: &'a TokenConfig,
    token_id: i64,
    family_id: i64,
    account_id: i32,
    /// The OAuth client the token was issued through (the successor is too).
    oauth_client: Option<i32>,
    /// The token's scopes, `(id, value)`, sorted by value.
    scopes: Vec<(i32, String)>,
}

const LOCK_REFRESH: &str = "
SELECT r.refresh_token_id, r.expires > scopegate_unix_now() AS unexpired, scopegate_unix_now() AS now,
       r.active, r.rotated_at, r.family_id, r.successor_sealed,
       r.successor_id, a.account_id, a.is_active, r.client_pk,
       COALESCE(ARRAY(SELECT s.scope_id FROM refresh_token_scopes rts JOIN scopes s ON s.scope_id = rts.scope_id
                       WHERE rts.token_id = r.refresh_token_id ORDER BY s.scope_value), '{}') AS token_scope_ids,
       COALESCE(ARRAY(SELECT s.scope_value FROM refresh_token_scopes rts JOIN scopes s ON s.scope_id = rts.scope_id
                       WHERE rts.token_id = r.refresh_token_id ORDER BY s.scope_value), '{}') AS token_scopes
  FROM refresh_tokens r
  JOIN account_refresh_tokens ar ON ar.refresh_token_id = r.refresh_token_id
  JOIN accounts a ON a.account_id = ar.account_id
 WHERE r.refresh_token_id = $1
   FOR UPDATE OF r";

const SUCCESSOR_UNUSED: &str = "
SELECT active AND rotated_at IS NULL AND expires > scopegate_unix_now() FROM refresh_tokens WHERE refresh_token_id = $1";

/// Phase one: open a transaction on `conn`, lock the refresh token
/// `token` and say what it is (see the module documentation).
/// `oauth_client`: the client presenting it. A token issued through a
/// client may be presented only by that client, and one issued with no
/// client only with none (RFC 6749 §6); anything else is
/// [`Presented::Invalid`] and changes nothing.
pub async fn present<'a>(
    conn: &'a mut Client,
    token: &'a str,
    ttl: &'a TokenConfig,
    oauth_client: Option<i32>,
) -> Result<Presented<'a>, IssueError> {
    let tx = conn.transaction().await?;
    // The locks of the module documentation ([`super`]), in their order,
    // then the token's own row and its state as it is once they are held.
    let Some(member) = lock_member(&tx, &hash(token)).await? else {
        return Ok(Presented::Invalid);
    };
    let lock = tx.prepare_cached(LOCK_REFRESH).await?;
    let Some(row) = tx.query_opt(&lock, &[&member.id]).await? else {
        return Ok(Presented::Invalid);
    };
    let id: i64 = row.try_get("refresh_token_id")?;
    // Expiry and the grace window by the database's clock
    // (`docs/security.md`, "Clocks").
    let unexpired: bool = row.try_get("unexpired")?;
    let now: i64 = row.try_get("now")?;
    let active: bool = row.try_get("active")?;
    let rotated_at: Option<i64> = row.try_get("rotated_at")?;
    let family_id: i64 = row.try_get::<_, Option<i64>>("family_id")?.unwrap_or(id);
    let sealed: Option<Vec<u8>> = row.try_get("successor_sealed")?;
    let account_id: i32 = row.try_get("account_id")?;
    let account_active: bool = row.try_get("is_active")?;
    let successor_id: Option<i64> = row.try_get("successor_id")?;
    let bound_to: Option<i32> = row.try_get("client_pk")?;

    if bound_to != oauth_client {
        return Ok(Presented::Invalid);
    }
    if !active {
        return Ok(Presented::Invalid);
    }
    if let Some(rotated_at) = rotated_at {
        let grace = secs(ttl.refresh_reuse_grace);
        if grace > 0 && now <= rotated_at + grace && account_active && sealed.is_some() {
            // A replay gets the successor pair only while that pair's
            // refresh token is itself unused (not rotated, not revoked,
            // unexpired); once it has moved on, this is reuse. Read under
            // the family's lock, so no refresh of the successor is in flight.
            let successor_unused = match successor_id {
                Some(sid) => tx
                    .query_opt(&tx.prepare_cached(SUCCESSOR_UNUSED).await?, &[&sid])
                    .await?
                    .map(|r| r.try_get::<_, bool>(0))
                    .transpose()?
                    .unwrap_or(false),
                None => false,
            };
            let pair = sealed.as_deref().and_then(|blob| unseal(token, id, blob));
            if let Some(pair) = pair.filter(|_| successor_unused) {
                return Ok(Presented::Replayed(IssuedPair {
                    expires_in: (pair.access_expires - now).max(0),
                    access_token: pair.access_token,
                    refresh_token: pair.refresh_token,
                    scope: pair.scope,
                }));
            }
        }
        let revoked = revoke_family(&tx, family_id).await?;
        tx.commit().await?;
        return Ok(Presented::Reused { revoked });
    }
    if !unexpired || !account_active {
        return Ok(Presented::Invalid);
    }
    let ids: Vec<i32> = row.try_get("token_scope_ids")?;
    let values: Vec<String> = row.try_get("token_scopes")?;
    Ok(Presented::Current(Rotation {
        tx,
        token,
        ttl,
        token_id: id,
        family_id,
        account_id,
        oauth_client: bound_to,
        scopes: ids.into_iter().zip(values).collect(),
    }))
}

const ROTATE: &str = "
UPDATE refresh_tokens SET rotated_at = scopegate_unix_now(), successor_id = $2, successor_sealed = $3
 WHERE refresh_token_id = $1 AND rotated_at IS NULL";

impl<'a> Rotation<'a> {
    /// The account the token belongs to.
    pub fn account_id(&self) -> i32 {
        self.account_id
    }

    /// The transaction holding the locks, for the caller's own questions
    /// (the account's held scopes).
    pub fn client(&self) -> &Transaction<'a> {
        &self.tx
    }

    /// The presented token's scopes, `(id, value)`, sorted by value.
    pub fn token_scopes(&self) -> impl Iterator<Item = (i32, &str)> {
        self.scopes.iter().map(|(id, v)| (*id, v.as_str()))
    }

    /// Phase two: issue the successor pair carrying `grant` (which should
    /// be within [`Rotation::token_scopes`]), mark the presented token
    /// rotated, and commit. `None` (nothing committed) if the token was
    /// rotated under its row lock, which the lock rules out: never hand out
    /// a second pair.
    pub async fn rotate(self, grant: &Grant) -> Result<Option<IssuedPair>, IssueError> {
        let Rotation {
            tx,
            token,
            ttl,
            token_id: id,
            family_id,
            account_id,
            oauth_client,
            scopes: _,
        } = self;
        let (pair, ids) = issue(
            &tx,
            account_id,
            grant,
            ttl,
            Some(Lineage {
                family_id,
                parent_id: id,
            }),
            oauth_client,
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
            .execute(&rotate, &[&id, &ids.refresh_token_id, &sealed])
            .await?;
        if n != 1 {
            tracing::error!(
                refresh_token_id = id,
                "refresh token changed under its row lock"
            );
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(pair))
    }
}

/// The sweeper's statement: erase sealed pairs rotated more than `$1`
/// seconds ago (by the database's clock).
pub const SWEEP_SEALED: &str = "
UPDATE refresh_tokens SET successor_sealed = NULL
 WHERE successor_sealed IS NOT NULL AND rotated_at < scopegate_unix_now() - $1";

/// Erase sealed successor pairs whose grace window has passed. Returns how
/// many were erased.
pub async fn sweep_sealed(pool: &Pool, grace: std::time::Duration) -> Result<u64, IssueError> {
    let conn = pool.get().await?;
    let stmt = conn.prepare_cached(SWEEP_SEALED).await?;
    Ok(conn.execute(&stmt, &[&secs(grace)]).await?)
}
