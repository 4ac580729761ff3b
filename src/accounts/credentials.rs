//! Accounts' credentials in Postgres: logins, password changes and
//! rehashes. Split from [`super::store`] (which re-exports all of it), so
//! each file has one reason to change; the races these functions close are
//! in `docs/security.md` ("Password storage").

use deadpool_postgres::{GenericClient, Pool};

use super::password::{needs_rehash, Hasher};
use super::store::StoreError;
use super::{check_new_password, Password};
use crate::db::{classify, DbError};
use crate::tokens::{lookup, revoke, TokenHash};

/// Set a new password and revoke every token of the account (a password
/// reset ends every session). Returns the revoked access tokens' hashes.
pub async fn set_password(
    pool: &Pool,
    hasher: &Hasher,
    account_id: i32,
    password: Password,
) -> Result<Vec<TokenHash>, StoreError> {
    check_new_password(&password)?;
    let phc = hasher.hash(password).await?;
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    // An OAuth client's service account never gets a password: its
    // password column stays a value no PHC parser accepts.
    let n = tx
        .execute(
            "UPDATE accounts SET password = $2 WHERE account_id = $1
                AND NOT EXISTS (SELECT 1 FROM clients c WHERE c.account_id = $1)",
            &[&account_id, &phc],
        )
        .await?;
    if n == 0 {
        let exists = tx
            .query_opt(
                "SELECT 1 FROM accounts WHERE account_id = $1",
                &[&account_id],
            )
            .await?
            .is_some();
        return Err(if exists {
            StoreError::InvalidField {
                field: "password",
                message: "the service account of an OAuth client cannot have a password".into(),
            }
        } else {
            StoreError::UnknownAccount(format!("#{account_id}"))
        });
    }
    let revoked = revoke::revoke_account(&tx, account_id).await?;
    tx.commit().await?;
    Ok(revoked)
}

/// After a successful login with `password` against `verified_hash`: if
/// that hash was made with other parameters than the current ones
/// ([`needs_rehash`]), hash `password` again on `hasher`'s pool and store
/// it in place of `verified_hash` — a compare-and-swap, so a password
/// changed meanwhile is left alone. `Ok(true)` when a new hash was stored.
pub async fn upgrade_password_hash(
    pool: &Pool,
    hasher: &Hasher,
    account_id: i32,
    verified_hash: &str,
    password: Password,
) -> Result<bool, StoreError> {
    if !needs_rehash(verified_hash) {
        return Ok(false);
    }
    let phc = hasher.hash(password).await?;
    let conn = pool.get().await?;
    let n = conn
        .execute(
            "UPDATE accounts SET password = $3 WHERE account_id = $1 AND password = $2",
            &[&account_id, &verified_hash, &phc],
        )
        .await?;
    Ok(n == 1)
}

/// How [`change_password`] ended.
#[derive(Debug)]
pub enum PasswordChange {
    /// Stored; every token of the account revoked (these access tokens'
    /// hashes were still active).
    Changed(Vec<TokenHash>),
    /// The caller's access token is no longer active (a concurrent change
    /// revoked it): nothing changed.
    TokenRevoked,
    /// The password is no longer the one verified (or the account was
    /// disabled) since it was read: nothing changed.
    Superseded,
}

/// The caller's own password change: like [`set_password`], but only if,
/// under the account row's lock (`FOR UPDATE`), the caller's access token
/// `token_id` is still active and the stored hash is still `verified_hash`
/// (the one its current password was checked against). Of two concurrent
/// changes with one token exactly one succeeds; the other finds its token
/// revoked, or the hash replaced.
pub async fn change_password(
    pool: &Pool,
    hasher: &Hasher,
    account_id: i32,
    token_id: i64,
    verified_hash: &str,
    password: Password,
) -> Result<PasswordChange, StoreError> {
    check_new_password(&password)?;
    let phc = hasher.hash(password).await?;
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let Some(row) = tx
        .query_opt(
            "SELECT password = $2 AND is_active FROM accounts WHERE account_id = $1 FOR UPDATE",
            &[&account_id, &verified_hash],
        )
        .await?
    else {
        return Err(StoreError::UnknownAccount(format!("#{account_id}")));
    };
    if !lookup::access_is_live(&tx, token_id).await? {
        return Ok(PasswordChange::TokenRevoked);
    }
    if !row.try_get::<_, bool>(0)? {
        return Ok(PasswordChange::Superseded);
    }
    tx.execute(
        "UPDATE accounts SET password = $2 WHERE account_id = $1",
        &[&account_id, &phc],
    )
    .await?;
    let revoked = revoke::revoke_account(&tx, account_id).await?;
    tx.commit().await?;
    Ok(PasswordChange::Changed(revoked))
}

/// What a login needs to know about a username.
pub struct LoginRecord {
    pub account_id: i32,
    pub password_hash: String,
    pub is_active: bool,
}

/// One round trip: the account behind a normalized username, with its
/// password hash.
pub async fn find_login<C: GenericClient>(
    client: &C,
    username: &str,
) -> Result<Option<LoginRecord>, DbError> {
    let stmt = client
        .prepare_cached("SELECT account_id, password, is_active FROM accounts WHERE username = $1")
        .await
        .map_err(classify)?;
    let Some(row) = client
        .query_opt(&stmt, &[&username])
        .await
        .map_err(classify)?
    else {
        return Ok(None);
    };
    Ok(Some(LoginRecord {
        account_id: row.try_get(0).map_err(classify)?,
        password_hash: row.try_get(1).map_err(classify)?,
        is_active: row.try_get(2).map_err(classify)?,
    }))
}

/// Lock the account row `FOR SHARE` until `tx` ends and say whether
/// `verified_hash` is still its password and the account is active. A login
/// issues its pair only after this: a password change (which locks the row
/// `FOR UPDATE` and revokes every token of the account) then either
/// committed before — `false`, the login read a superseded hash — or waits
/// for the login's transaction and revokes its pair.
pub async fn confirm_login(
    tx: &deadpool_postgres::Transaction<'_>,
    account_id: i32,
    verified_hash: &str,
) -> Result<bool, DbError> {
    let stmt = tx
        .prepare_cached(
            "SELECT password = $2 AND is_active FROM accounts WHERE account_id = $1 FOR SHARE",
        )
        .await
        .map_err(classify)?;
    let row = tx
        .query_opt(&stmt, &[&account_id, &verified_hash])
        .await
        .map_err(classify)?;
    match row {
        Some(r) => r.try_get(0).map_err(classify),
        None => Ok(false),
    }
}

/// The password hash and activity of an account, by id.
pub async fn password_of<C: GenericClient>(
    client: &C,
    account_id: i32,
) -> Result<Option<(String, bool)>, DbError> {
    let row = client
        .query_opt(
            "SELECT password, is_active FROM accounts WHERE account_id = $1",
            &[&account_id],
        )
        .await
        .map_err(classify)?;
    match row {
        None => Ok(None),
        Some(r) => Ok(Some((
            r.try_get(0).map_err(classify)?,
            r.try_get(1).map_err(classify)?,
        ))),
    }
}
