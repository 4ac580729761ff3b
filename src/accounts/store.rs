//! Accounts in Postgres (scopes and roles: [`super::catalog`], re-exported
//! here so the admin API has one entry point).
//!
//! Everything here takes usernames in any form and normalizes them
//! ([`super::normalize_username`]); scopes are named by their **value**
//! (`orders:read`), roles by their **name**. Duplicates and unknown names
//! are [`StoreError`]s of their own, so the CLI can exit 2 and the admin
//! API answer 409/404/422.
//!
//! The scopes an account can be granted in a token are its **effective**
//! scopes ([`super::scopes`]). Revoking an account's tokens (on a password
//! change, or `account revoke-tokens`) is [`crate::tokens::revoke`]'s.

use deadpool_postgres::{GenericClient, Pool};
use serde::Serialize;

use super::password::{HashError, Hasher};
use super::scopes::{resolve_scopes, ResolveError};
use super::{check_new_password, normalize_username, InvalidCredential, Password};
use crate::db::{classify, DbError};
use crate::tokens::issue::IssueError;
use crate::tokens::{revoke, TokenHash};

pub use super::catalog::{
    create_role, create_scope, delete_role, delete_scope, list_roles, list_scopes, Role, Scope,
};
pub use super::credentials::*;

/// An account as the admin API and `/oauth/userinfo` show it. `scopes` are
/// the account's own scopes; `roles` its roles' names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: i32,
    pub username: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub is_active: bool,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
}

/// A new account. `password` is hashed before it is stored.
#[derive(Debug)]
pub struct NewAccount {
    pub username: String,
    pub password: Password,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// Scope values.
    pub scopes: Vec<String>,
    /// Role names.
    pub roles: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Invalid(#[from] InvalidCredential),
    #[error("{field}: {message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
    #[error("an account named {0:?} already exists")]
    DuplicateAccount(String),
    #[error("a scope with the value {0:?} already exists")]
    DuplicateScope(String),
    #[error("a scope named {0:?} already exists")]
    DuplicateScopeName(String),
    #[error("a role named {0:?} already exists")]
    DuplicateRole(String),
    #[error("no account named {0:?}")]
    UnknownAccount(String),
    #[error("no scope with the value {0:?} (create it with `scopegate scope create`)")]
    UnknownScope(String),
    #[error("no role named {0:?} (create it with `scopegate role create`)")]
    UnknownRole(String),
    /// An account, scope or role looked up by its id.
    #[error("no {kind} with id {id}")]
    UnknownId { kind: &'static str, id: i32 },
    #[error("{0} is already granted")]
    AlreadyGranted(String),
    #[error("{0} is not granted")]
    NotGranted(String),
    #[error("password hashing: {0}")]
    Hash(#[from] HashError),
    #[error(transparent)]
    Db(DbError),
    #[error("{0}")]
    Random(String),
}

impl StoreError {
    /// A problem with the request (bad value, duplicate, unknown name), as
    /// opposed to the database or the machine failing.
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            StoreError::Hash(_) | StoreError::Db(_) | StoreError::Random(_)
        )
    }
}

crate::db::from_db_errors!(StoreError);

impl From<ResolveError> for StoreError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::Unknown(value) => StoreError::UnknownScope(value),
            ResolveError::Db(e) => StoreError::Db(e),
        }
    }
}

impl From<IssueError> for StoreError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Db(e) => StoreError::Db(e),
            IssueError::Random(e) => StoreError::Random(e),
        }
    }
}

pub(crate) fn check_optional_name(
    field: &'static str,
    s: &Option<String>,
) -> Result<(), StoreError> {
    match s {
        Some(s) if s.chars().count() > 255 || s.chars().any(char::is_control) => {
            Err(StoreError::InvalidField {
                field,
                message: "must be at most 255 characters without control characters".into(),
            })
        }
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Accounts

pub(super) const ACCOUNT_COLUMNS: &str = "
SELECT a.account_id, a.username, a.first_name, a.last_name, a.is_active,
       COALESCE(ARRAY(SELECT s.scope_value FROM account_scopes x JOIN scopes s ON s.scope_id = x.scope_id
                       WHERE x.account_id = a.account_id ORDER BY s.scope_value), '{}'),
       COALESCE(ARRAY(SELECT r.role_name FROM account_roles x JOIN roles r ON r.role_id = x.role_id
                       WHERE x.account_id = a.account_id ORDER BY r.role_name), '{}')
  FROM accounts a";

pub(super) fn account_from(row: &tokio_postgres::Row) -> Result<Account, StoreError> {
    Ok(Account {
        id: row.try_get(0)?,
        username: row.try_get(1)?,
        first_name: row.try_get(2)?,
        last_name: row.try_get(3)?,
        is_active: row.try_get(4)?,
        scopes: row.try_get(5)?,
        roles: row.try_get(6)?,
    })
}

/// Create an account (password hashed on `hasher`), with its scopes and
/// roles, in one transaction.
pub async fn create_account(
    pool: &Pool,
    hasher: &Hasher,
    new: NewAccount,
) -> Result<Account, StoreError> {
    let username = normalize_username(&new.username)?;
    check_new_password(&new.password)?;
    check_optional_name("first_name", &new.first_name)?;
    check_optional_name("last_name", &new.last_name)?;
    // Fail on unknown names before spending a hash on them.
    {
        let conn = pool.get().await?;
        resolve_scopes(&conn, &new.scopes).await?;
        resolve_roles(&conn, &new.roles).await?;
    }
    let phc = hasher.hash(new.password).await?;
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let inserted = tx
        .query_one(
            "INSERT INTO accounts (username, password, first_name, last_name) VALUES ($1, $2, $3, $4)
             RETURNING account_id",
            &[&username, &phc, &new.first_name, &new.last_name],
        )
        .await;
    let id: i32 = match inserted {
        Ok(row) => row.try_get(0)?,
        Err(e) => {
            let e = classify(e);
            return Err(if e.is_unique_violation() {
                StoreError::DuplicateAccount(username)
            } else {
                StoreError::Db(e)
            });
        }
    };
    grant_in(&tx, id, &new.scopes, &new.roles).await?;
    let account = get_account_in(&tx, id)
        .await?
        .ok_or_else(|| StoreError::UnknownAccount(username))?;
    tx.commit().await?;
    Ok(account)
}

async fn grant_in<C: GenericClient>(
    client: &C,
    account_id: i32,
    scopes: &[String],
    roles: &[String],
) -> Result<(), StoreError> {
    let scope_ids = resolve_scopes(client, scopes).await?;
    let role_ids = resolve_roles(client, roles).await?;
    client
        .execute(
            "INSERT INTO account_scopes (account_id, scope_id) SELECT $1, s FROM unnest($2::INT[]) AS s
             ON CONFLICT (account_id, scope_id) DO NOTHING",
            &[&account_id, &scope_ids],
        )
        .await?;
    client
        .execute(
            "INSERT INTO account_roles (account_id, role_id) SELECT $1, r FROM unnest($2::INT[]) AS r
             ON CONFLICT (account_id, role_id) DO NOTHING",
            &[&account_id, &role_ids],
        )
        .await?;
    Ok(())
}

/// The ids of the roles with these names; the first unknown one is an error.
pub async fn resolve_roles<C: GenericClient>(
    client: &C,
    names: &[String],
) -> Result<Vec<i32>, StoreError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT role_id, role_name FROM roles WHERE role_name = ANY($1)",
            &[&names],
        )
        .await?;
    let found: Vec<(i32, String)> = rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    if let Some(missing) = names.iter().find(|n| !found.iter().any(|f| &f.1 == *n)) {
        return Err(StoreError::UnknownRole(missing.clone()));
    }
    Ok(found.into_iter().map(|f| f.0).collect())
}

async fn get_account_in<C: GenericClient>(
    client: &C,
    id: i32,
) -> Result<Option<Account>, StoreError> {
    let row = client
        .query_opt(
            &format!("{ACCOUNT_COLUMNS} WHERE a.account_id = $1"),
            &[&id],
        )
        .await?;
    row.as_ref().map(account_from).transpose()
}

pub async fn get_account(pool: &Pool, id: i32) -> Result<Option<Account>, StoreError> {
    let conn = pool.get().await?;
    get_account_in(&conn, id).await
}

/// Find an account by username (any form; normalized first).
pub async fn find_account(pool: &Pool, username: &str) -> Result<Option<Account>, StoreError> {
    let Ok(username) = normalize_username(username) else {
        return Ok(None);
    };
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            &format!("{ACCOUNT_COLUMNS} WHERE a.username = $1"),
            &[&username],
        )
        .await?;
    row.as_ref().map(account_from).transpose()
}

async fn require_account(pool: &Pool, username: &str) -> Result<Account, StoreError> {
    find_account(pool, username)
        .await?
        .ok_or_else(|| StoreError::UnknownAccount(username.to_owned()))
}

/// Accounts ordered by id, at most `limit`, with ids above `after`.
pub async fn list_accounts(
    pool: &Pool,
    after: Option<i32>,
    limit: i64,
) -> Result<Vec<Account>, StoreError> {
    let conn = pool.get().await?;
    let rows = conn
        .query(
            &format!("{ACCOUNT_COLUMNS} WHERE a.account_id > $1 ORDER BY a.account_id LIMIT $2"),
            &[&after.unwrap_or(0), &limit],
        )
        .await?;
    rows.iter().map(account_from).collect()
}

/// Enable or disable an account. Tokens of a disabled account stop
/// validating (the validator checks `is_active`).
pub async fn set_active(pool: &Pool, username: &str, active: bool) -> Result<Account, StoreError> {
    let account = require_account(pool, username).await?;
    let conn = pool.get().await?;
    conn.execute(
        "UPDATE accounts SET is_active = $2 WHERE account_id = $1",
        &[&account.id, &active],
    )
    .await?;
    Ok(Account {
        is_active: active,
        ..account
    })
}

/// Add scopes (values) and roles (names) to an account; already granted
/// ones are left as they are.
pub async fn grant(
    pool: &Pool,
    username: &str,
    scopes: &[String],
    roles: &[String],
) -> Result<Account, StoreError> {
    let account = require_account(pool, username).await?;
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    grant_in(&tx, account.id, scopes, roles).await?;
    let account = get_account_in(&tx, account.id)
        .await?
        .ok_or_else(|| StoreError::UnknownAccount(username.to_owned()))?;
    tx.commit().await?;
    Ok(account)
}

/// Revoke every token of an account. Returns the revoked access tokens' hashes.
pub async fn revoke_tokens(pool: &Pool, account_id: i32) -> Result<Vec<TokenHash>, StoreError> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let revoked = revoke::revoke_account(&tx, account_id).await?;
    tx.commit().await?;
    Ok(revoked)
}
