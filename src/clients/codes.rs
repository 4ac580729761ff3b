//! Authorization codes (RFC 6749 §4.1.2, RFC 7636) and PKCE.
//!
//! - A code is `sgo_` + 32 random bytes; only its SHA-256 is stored.
//! - It is bound to the client, the exact redirect URI, the S256 code
//!   challenge, the account, the granted scopes, and a fingerprint (SHA-256)
//!   of the account's password hash at login: a password change between the
//!   login and the exchange makes the code worthless, so a login racing a
//!   password change never yields tokens that outlive the change.
//! - It lives `code_ttl_secs` and is **single-use**: [`redeem`] locks the
//!   code's row (`FOR UPDATE`), so two concurrent exchanges are serialized
//!   and the second finds it used. Presenting a used code again revokes
//!   every token issued from it — the refresh token's whole family and
//!   the access tokens issued with any of it (RFC 6749 §4.1.2, RFC 9700
//!   §4.2.4).
//! - Wrong client, wrong redirect URI, wrong verifier, expired code: the
//!   same "invalid" answer (`invalid_grant`), and the code is not spent
//!   (a stolen code without its verifier is useless anyway).
//! - The cleanup sweep ([`crate::tokens::sweep`]) deletes a code that was
//!   never exchanged once it expires; an exchanged one stays while the
//!   refresh token it issued exists, so a replay is detected as long as
//!   there is something to revoke.

use std::time::Duration;

use base64::Engine;
use deadpool_postgres::{Pool, Transaction};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::secret::{self, Secret};
use super::store::ClientScope;
use crate::db::{classify, DbError};
use crate::tokens::issue::IssueError;
use crate::tokens::{revoke, TokenHash};

/// `S256` (RFC 7636 §4.2): the only method accepted.
pub const S256: &str = "S256";

/// A code challenge we accept: BASE64URL(SHA-256(verifier)), which is
/// always 43 characters (RFC 7636 §4.2).
pub fn is_challenge(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `code-verifier = 43*128unreserved` (RFC 7636 §4.1).
pub fn is_verifier(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The S256 challenge of a verifier.
pub fn challenge_of(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Does `verifier` match `challenge`? Constant time in their contents.
pub fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    is_verifier(verifier)
        && bool::from(
            challenge_of(verifier)
                .as_bytes()
                .ct_eq(challenge.as_bytes()),
        )
}

/// The fingerprint of a password hash that a code is bound to.
pub fn password_check(phc: &str) -> String {
    secret::hash_hex(phc)
}

/// What a new code is bound to.
#[derive(Debug)]
pub struct NewCode<'a> {
    pub client_pk: i32,
    pub account_id: i32,
    pub redirect_uri: &'a str,
    pub code_challenge: &'a str,
    pub scope_ids: &'a [i32],
    /// The password hash the user was just verified against.
    pub password_hash: &'a str,
    pub ttl: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Random(#[from] secret::RandomError),
}

impl From<tokio_postgres::Error> for CodeError {
    fn from(e: tokio_postgres::Error) -> Self {
        CodeError::Db(classify(e))
    }
}

impl From<deadpool_postgres::PoolError> for CodeError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        CodeError::Db(DbError::from(e))
    }
}

const CREATE: &str = "
WITH c AS (
    INSERT INTO authorization_codes
        (code, client_pk, account_id, redirect_uri, code_challenge, password_check, expires, created)
    VALUES ($1, $2, $3, $4, $5, $6, scopegate_unix_now() + $7, scopegate_unix_now())
    RETURNING code_id
), s AS (
    INSERT INTO authorization_code_scopes (code_id, scope_id) SELECT c.code_id, x FROM c, unnest($8::INT[]) AS x
)
SELECT code_id FROM c";

/// A new code (in clear, to put in the redirect; only its hash is stored),
/// living `ttl` from the database's clock (`docs/security.md`, "Clocks").
pub async fn create(pool: &Pool, new: NewCode<'_>) -> Result<Secret, CodeError> {
    let code = secret::new_code()?;
    let ttl = i64::try_from(new.ttl.as_secs()).unwrap_or(600);
    let mut ids = new.scope_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let conn = pool.get().await?;
    let stmt = conn.prepare_cached(CREATE).await?;
    conn.query_one(
        &stmt,
        &[
            &secret::hash_hex(code.expose()),
            &new.client_pk,
            &new.account_id,
            &new.redirect_uri,
            &new.code_challenge,
            &password_check(new.password_hash),
            &ttl,
            &ids,
        ],
    )
    .await?;
    Ok(code)
}

/// What presenting a code yields.
pub enum Redeem<'a> {
    /// Valid: issue the tokens on [`Exchange::tx`], then [`Exchange::finish`].
    Ready(Exchange<'a>),
    /// Unknown, expired, another client's, another redirect URI, a wrong
    /// verifier, or the account is inactive or changed its password.
    Invalid,
    /// Already used: what it issued is now revoked (the access tokens'
    /// hashes, for the caller's cache).
    Reused { revoked: Vec<TokenHash> },
}

/// A valid code, its row locked until [`Exchange::finish`] marks it used.
pub struct Exchange<'a> {
    tx: Transaction<'a>,
    code_id: i64,
    pub account_id: i32,
    pub scopes: Vec<ClientScope>,
}

impl<'a> Exchange<'a> {
    /// The transaction to issue the tokens in.
    pub fn tx(&self) -> &Transaction<'a> {
        &self.tx
    }

    /// Mark the code used by the pair whose refresh token is
    /// `refresh_token_id`, and commit.
    pub async fn finish(self, refresh_token_id: i64) -> Result<(), DbError> {
        self.tx
            .execute(
                "UPDATE authorization_codes SET used_at = scopegate_unix_now(), refresh_token_id = $2 WHERE code_id = $1",
                &[&self.code_id, &refresh_token_id],
            )
            .await
            .map_err(classify)?;
        self.tx.commit().await.map_err(classify)
    }
}

const LOCK_CODE: &str = "
SELECT k.code_id, k.client_pk, k.account_id, k.redirect_uri, k.code_challenge, k.password_check,
       k.expires > scopegate_unix_now(), k.used_at, k.refresh_token_id, a.is_active, a.password,
       COALESCE(ARRAY(SELECT s.scope_id FROM authorization_code_scopes x JOIN scopes s ON s.scope_id = x.scope_id
                       WHERE x.code_id = k.code_id ORDER BY s.scope_value), '{}'),
       COALESCE(ARRAY(SELECT s.scope_value FROM authorization_code_scopes x JOIN scopes s ON s.scope_id = x.scope_id
                       WHERE x.code_id = k.code_id ORDER BY s.scope_value), '{}')
  FROM authorization_codes k JOIN accounts a ON a.account_id = k.account_id
 WHERE k.code = $1
   FOR UPDATE OF k";

/// Present `code` for `client_pk`, with the `redirect_uri` and
/// `code_verifier` of the token request.
pub async fn redeem<'a>(
    conn: &'a mut deadpool_postgres::Object,
    code: &str,
    client_pk: i32,
    redirect_uri: &str,
    code_verifier: &str,
) -> Result<Redeem<'a>, IssueError> {
    if !secret::is_code(code) {
        return Ok(Redeem::Invalid);
    }
    let tx = conn.transaction().await.map_err(classify)?;
    let stmt = tx.prepare_cached(LOCK_CODE).await.map_err(classify)?;
    let Some(row) = tx
        .query_opt(&stmt, &[&secret::hash_hex(code)])
        .await
        .map_err(classify)?
    else {
        return Ok(Redeem::Invalid);
    };
    let get = |row: &tokio_postgres::Row| -> Result<_, tokio_postgres::Error> {
        Ok((
            row.try_get::<_, i64>(0)?,
            row.try_get::<_, i32>(1)?,
            row.try_get::<_, i32>(2)?,
            row.try_get::<_, String>(3)?,
            row.try_get::<_, String>(4)?,
            row.try_get::<_, String>(5)?,
            row.try_get::<_, bool>(6)?,
            row.try_get::<_, Option<i64>>(7)?,
            row.try_get::<_, Option<i64>>(8)?,
            row.try_get::<_, bool>(9)?,
            row.try_get::<_, String>(10)?,
        ))
    };
    let (
        code_id,
        code_client,
        account_id,
        code_redirect,
        challenge,
        check,
        unexpired,
        used_at,
        issued,
        active,
        phc,
    ) = get(&row).map_err(classify)?;
    if used_at.is_some() {
        let revoked = match issued {
            Some(refresh_id) => revoke::revoke_family_of(&tx, refresh_id).await?,
            None => Vec::new(),
        };
        tx.commit().await.map_err(classify)?;
        return Ok(Redeem::Reused { revoked });
    }
    let valid = code_client == client_pk
        && unexpired
        && code_redirect == redirect_uri
        && verifier_matches(code_verifier, &challenge)
        && active
        && bool::from(
            password_check(&phc)
                .as_bytes()
                .ct_eq(check.trim().as_bytes()),
        );
    if !valid {
        return Ok(Redeem::Invalid);
    }
    let ids: Vec<i32> = row.try_get(11).map_err(classify)?;
    let values: Vec<String> = row.try_get(12).map_err(classify)?;
    Ok(Redeem::Ready(Exchange {
        tx,
        code_id,
        account_id,
        scopes: ids
            .into_iter()
            .zip(values)
            .map(|(id, value)| ClientScope { id, value })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            challenge_of(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(is_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(verifier_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!verifier_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        // `plain` would send the verifier itself as the challenge.
        assert!(!verifier_matches(verifier, verifier));
    }

    #[test]
    fn verifier_and_challenge_syntax() {
        assert!(is_verifier(&"a".repeat(43)));
        assert!(is_verifier(&"a~._-".repeat(20)));
        assert!(!is_verifier(&"a".repeat(42)));
        assert!(!is_verifier(&"a".repeat(129)));
        assert!(!is_verifier(&format!("{} ", "a".repeat(43))));
        assert!(!is_challenge(&"a".repeat(44)));
        assert!(!is_challenge(&format!("{}=", "a".repeat(42))));
    }
}
