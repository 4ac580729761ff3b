//! Issuing a new access + refresh pair in Postgres.
//!
//! A pair is one statement (data-modifying CTEs): the access token, the
//! refresh token (its `family_id` is its own id for the first of a family),
//! the account links, the scope links and the `refresh_token_tokens` link
//! between the two. Only SHA-256 hashes of the tokens reach the database.
//!
//! [`issue`] runs on whatever connection or transaction it is given; the
//! caller decides what must hold while it runs. A login issues inside a
//! transaction that holds the account row `FOR SHARE` and has confirmed the
//! verified password hash is still the account's (the password grant in `oauth::token`);
//! a refresh issues inside [`super::rotate`]'s transaction.

use deadpool_postgres::GenericClient;

use super::{generate, hash, hash_hex, secs, Kind};
use crate::config::TokenConfig;
use crate::db::{classify, DbError};

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

/// Why issuing, rotating, revoking or looking up a token failed.
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

impl From<deadpool_postgres::PoolError> for IssueError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        IssueError::Db(DbError::from(e))
    }
}

/// The scopes a new pair carries: their ids (linked to both tokens) and
/// their values (the `scope` of the answer). Which scopes an account may
/// be granted is the caller's business (`accounts::scopes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    ids: Vec<i32>,
    scope: String,
}

impl Grant {
    /// A grant of these `(id, value)` scopes (duplicates are dropped).
    pub fn new<'a>(scopes: impl IntoIterator<Item = (i32, &'a str)>) -> Grant {
        let mut ids = Vec::new();
        let mut values = Vec::new();
        for (id, value) in scopes {
            ids.push(id);
            values.push(value);
        }
        ids.sort_unstable();
        ids.dedup();
        values.sort_unstable();
        values.dedup();
        Grant {
            ids,
            scope: values.join(" "),
        }
    }

    /// The scope values, sorted, space-separated (RFC 6749 §3.3 form).
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The scope ids, sorted.
    pub fn ids(&self) -> &[i32] {
        &self.ids
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
    INSERT INTO access_tokens (token, expires, created, client_pk)
    VALUES ($1, scopegate_unix_now() + $2, scopegate_unix_now(), $9)
    RETURNING token_id, expires
), n AS (
    SELECT nextval(pg_get_serial_sequence('refresh_tokens', 'refresh_token_id')) AS id
), r AS (
    INSERT INTO refresh_tokens (refresh_token_id, refresh_token, expires, created, family_id, parent_id, client_pk)
    SELECT n.id, $3, scopegate_unix_now() + $4, scopegate_unix_now(), COALESCE($5::BIGINT, n.id), $6::BIGINT, $9 FROM n
    RETURNING refresh_token_id
), at AS (
    INSERT INTO account_tokens (account_id, token_id) SELECT $7, token_id FROM a
), art AS (
    INSERT INTO account_refresh_tokens (account_id, refresh_token_id) SELECT $7, refresh_token_id FROM r
), ts AS (
    INSERT INTO token_scopes (token_id, scope_id) SELECT a.token_id, s FROM a, unnest($8::INT[]) AS s
), rts AS (
    INSERT INTO refresh_token_scopes (token_id, scope_id) SELECT r.refresh_token_id, s FROM r, unnest($8::INT[]) AS s
), rtt AS (
    INSERT INTO refresh_token_tokens (refresh_token_id, access_token_id) SELECT r.refresh_token_id, a.token_id FROM a, r
)
SELECT a.token_id, r.refresh_token_id, a.expires FROM a, r";

/// What [`issue`] created, besides the pair.
#[derive(Debug, Clone, Copy)]
pub struct IssuedIds {
    pub access_token_id: i64,
    pub refresh_token_id: i64,
    /// UNIX seconds (the database's clock).
    pub access_expires: i64,
}

pub(super) fn new_token(kind: Kind) -> Result<String, IssueError> {
    generate(kind).map_err(|e| IssueError::Random(e.to_string()))
}

/// Issue a new access + refresh pair for `account_id` carrying `grant`, in
/// one statement on `client` (a connection or a transaction). Lifetimes
/// start at the database's clock (`docs/security.md`, "Clocks").
/// `oauth_client`: the OAuth client (its integer id) the pair is issued
/// through, if any; both tokens record it.
pub async fn issue<C: GenericClient>(
    client: &C,
    account_id: i32,
    grant: &Grant,
    ttl: &TokenConfig,
    lineage: Option<Lineage>,
    oauth_client: Option<i32>,
) -> Result<(IssuedPair, IssuedIds), IssueError> {
    let access = new_token(Kind::Access)?;
    let refresh = new_token(Kind::Refresh)?;
    let stmt = client.prepare_cached(ISSUE).await?;
    let row = client
        .query_one(
            &stmt,
            &[
                &hash_hex(&hash(&access)),
                &secs(ttl.access_ttl),
                &hash_hex(&hash(&refresh)),
                &secs(ttl.refresh_ttl),
                &lineage.map(|l| l.family_id),
                &lineage.map(|l| l.parent_id),
                &account_id,
                &grant.ids,
                &oauth_client,
            ],
        )
        .await?;
    let ids = IssuedIds {
        access_token_id: row.try_get(0)?,
        refresh_token_id: row.try_get(1)?,
        access_expires: row.try_get(2)?,
    };
    Ok((
        IssuedPair {
            access_token: access,
            refresh_token: refresh,
            expires_in: secs(ttl.access_ttl),
            scope: grant.scope.clone(),
        },
        ids,
    ))
}

/// A freshly issued access token without a refresh token (the
/// client_credentials grant, RFC 6749 §4.4.3).
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedAccess {
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// Granted scopes, sorted, space-separated.
    pub scope: String,
}

impl std::fmt::Debug for IssuedAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedAccess")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

const ISSUE_ACCESS: &str = "
WITH a AS (
    INSERT INTO access_tokens (token, expires, created, client_pk)
    VALUES ($1, scopegate_unix_now() + $2, scopegate_unix_now(), $3)
    RETURNING token_id
), at AS (
    INSERT INTO account_tokens (account_id, token_id) SELECT $4, token_id FROM a
), ts AS (
    INSERT INTO token_scopes (token_id, scope_id) SELECT a.token_id, s FROM a, unnest($5::INT[]) AS s
)
SELECT token_id FROM a";

/// Issue an access token alone for `account_id` through `oauth_client`,
/// carrying `grant`, in one statement.
pub async fn issue_access<C: GenericClient>(
    client: &C,
    account_id: i32,
    grant: &Grant,
    ttl: &TokenConfig,
    oauth_client: i32,
) -> Result<IssuedAccess, IssueError> {
    let access = new_token(Kind::Access)?;
    let stmt = client.prepare_cached(ISSUE_ACCESS).await?;
    client
        .query_one(
            &stmt,
            &[
                &hash_hex(&hash(&access)),
                &secs(ttl.access_ttl),
                &oauth_client,
                &account_id,
                &grant.ids,
            ],
        )
        .await?;
    Ok(IssuedAccess {
        access_token: access,
        expires_in: secs(ttl.access_ttl),
        scope: grant.scope.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_sorted_and_unique() {
        let g = Grant::new([(2, "b"), (1, "a"), (2, "b")]);
        assert_eq!(g.scope(), "a b");
        assert_eq!(g.ids(), &[1, 2]);
        assert_eq!(Grant::new([]).scope(), "");
    }
}
