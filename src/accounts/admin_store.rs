//! Accounts, scopes and roles by id, and paginated: what the admin API
//! (`docs/http.md`, "Admin API") needs on top of [`super::store`] and
//! [`super::catalog`], whose SQL it reuses. The CLI may use it as well;
//! there is one store layer.
//!
//! Every change that can make an issued token stronger than its account
//! now is returns the hashes of the access tokens concerned, so the caller
//! can drop them from its validation cache at once (`Validator::invalidate`):
//!
//! - deactivating or reactivating an account: its live access tokens (the
//!   validator re-reads `is_active` on the next use);
//! - deleting an account: every access token it had (deleted with it);
//! - deleting a scope: the live access tokens that carried it;
//! - removing a scope or a role from an account, deleting a role, removing
//!   a scope from a role: the scopes the accounts concerned no longer hold
//!   are **stripped** from their issued access and refresh tokens, and the
//!   access tokens that lost one are returned. A token never carries a
//!   scope its account has lost.

use deadpool_postgres::{GenericClient, Pool};

use super::catalog::{role_from, scope_from, Role, Scope, ROLE_COLUMNS, SCOPE_COLUMNS};
use super::scopes::{effective_scope_ids, resolve_scopes};
use super::store::{
    account_from, check_optional_name, resolve_roles, Account, StoreError, ACCOUNT_COLUMNS,
};
use crate::tokens::parse_hash_hex;
use crate::tokens::TokenHash;

/// One page of a list ordered by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The `after` that fetches the next page; `None` on the last one.
    pub next: Option<i32>,
}

impl<T> Page<T> {
    /// The page of `limit` items out of a query that asked for one more
    /// (`LIMIT limit + 1`): whether there is a next page, without a second
    /// query.
    pub fn from_one_more(mut items: Vec<T>, limit: i64, id_of: impl Fn(&T) -> i32) -> Page<T> {
        let more = items.len() as i64 > limit;
        items.truncate(usize::try_from(limit).unwrap_or(0));
        let next = if more { items.last().map(id_of) } else { None };
        Page { items, next }
    }
}

/// Items with ids above `after`, at most `limit` of them.
async fn page<T>(
    pool: &Pool,
    columns: &str,
    id_column: &str,
    after: Option<i32>,
    limit: i64,
    from: fn(&tokio_postgres::Row) -> Result<T, StoreError>,
    id_of: fn(&T) -> i32,
) -> Result<Page<T>, StoreError> {
    let conn = pool.get().await?;
    // One more than asked for: whether there is a next page, without a
    // second query.
    let rows = conn
        .query(
            &format!("{columns} WHERE {id_column} > $1 ORDER BY {id_column} LIMIT $2"),
            &[&after.unwrap_or(i32::MIN), &(limit + 1)],
        )
        .await?;
    let items = rows.iter().map(from).collect::<Result<Vec<T>, _>>()?;
    Ok(Page::from_one_more(items, limit, id_of))
}

fn token_hashes(rows: &[tokio_postgres::Row]) -> Vec<TokenHash> {
    rows.iter()
        .filter_map(|r| r.try_get::<_, String>(0).ok())
        .filter_map(|h| parse_hash_hex(&h))
        .collect()
}

fn unknown(kind: &'static str, id: i32) -> StoreError {
    StoreError::UnknownId { kind, id }
}

// ---------------------------------------------------------------------------
// Accounts

pub async fn list_accounts(
    pool: &Pool,
    after: Option<i32>,
    limit: i64,
) -> Result<Page<Account>, StoreError> {
    page(
        pool,
        ACCOUNT_COLUMNS,
        "a.account_id",
        after,
        limit,
        account_from,
        |a| a.id,
    )
    .await
}

/// What a PATCH of an account may change. `None`: leave as is; for the
/// names, `Some(None)` clears the name.
#[derive(Debug, Default, Clone)]
pub struct AccountChanges {
    pub first_name: Option<Option<String>>,
    pub last_name: Option<Option<String>>,
    pub is_active: Option<bool>,
}

const LIVE_ACCESS_TOKENS: &str = "
SELECT t.token FROM access_tokens t JOIN account_tokens x ON x.token_id = t.token_id
 WHERE x.account_id = $1 AND t.active";

/// Change the names and the activity of an account. Returns the account
/// and, when `is_active` was set, the hashes of its live access tokens.
pub async fn update_account(
    pool: &Pool,
    id: i32,
    changes: &AccountChanges,
) -> Result<(Account, Vec<TokenHash>), StoreError> {
    if let Some(name) = &changes.first_name {
        check_optional_name("first_name", name)?;
    }
    if let Some(name) = &changes.last_name {
        check_optional_name("last_name", name)?;
    }
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let n = tx
        .execute(
            "UPDATE accounts
                SET first_name = CASE WHEN $2 THEN $3 ELSE first_name END,
                    last_name = CASE WHEN $4 THEN $5 ELSE last_name END,
                    is_active = COALESCE($6, is_active)
              WHERE account_id = $1",
            &[
                &id,
                &changes.first_name.is_some(),
                &changes.first_name.clone().flatten(),
                &changes.last_name.is_some(),
                &changes.last_name.clone().flatten(),
                &changes.is_active,
            ],
        )
        .await?;
    if n == 0 {
        return Err(unknown("account", id));
    }
    let tokens = if changes.is_active.is_some() {
        token_hashes(&tx.query(LIVE_ACCESS_TOKENS, &[&id]).await?)
    } else {
        Vec::new()
    };
    let account = account_in(&tx, id).await?;
    tx.commit().await?;
    Ok((account, tokens))
}

async fn account_in<C: GenericClient>(client: &C, id: i32) -> Result<Account, StoreError> {
    let row = client
        .query_opt(
            &format!("{ACCOUNT_COLUMNS} WHERE a.account_id = $1"),
            &[&id],
        )
        .await?
        .ok_or_else(|| unknown("account", id))?;
    account_from(&row)
}

/// Lock an account's row for the rest of the transaction (grants and
/// strips of one account are serialized); unknown ids are an error.
async fn lock_account<C: GenericClient>(client: &C, id: i32) -> Result<(), StoreError> {
    client
        .query_opt(
            "SELECT 1 FROM accounts WHERE account_id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .map(|_| ())
        .ok_or_else(|| unknown("account", id))
}

/// Delete an account with every token it had. Returns the hashes of its
/// access tokens.
pub async fn delete_account(pool: &Pool, id: i32) -> Result<Vec<TokenHash>, StoreError> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    lock_account(&tx, id).await?;
    let rows = tx
        .query(
            "WITH r AS (
                 DELETE FROM refresh_tokens WHERE refresh_token_id IN
                     (SELECT refresh_token_id FROM account_refresh_tokens WHERE account_id = $1)
             )
             DELETE FROM access_tokens WHERE token_id IN
                 (SELECT token_id FROM account_tokens WHERE account_id = $1)
             RETURNING token",
            &[&id],
        )
        .await?;
    tx.execute("DELETE FROM accounts WHERE account_id = $1", &[&id])
        .await?;
    tx.commit().await?;
    Ok(token_hashes(&rows))
}

/// Grant one scope (by value) to an account.
pub async fn grant_scope(pool: &Pool, id: i32, value: &str) -> Result<Account, StoreError> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    lock_account(&tx, id).await?;
    let scope_ids = resolve_scopes(&tx, &[value.to_owned()]).await?;
    let n = tx
        .execute(
            "INSERT INTO account_scopes (account_id, scope_id) SELECT $1, s FROM unnest($2::INT[]) AS s
             ON CONFLICT (account_id, scope_id) DO NOTHING",
            &[&id, &scope_ids],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::AlreadyGranted(format!("scope {value:?}")));
    }
    let account = account_in(&tx, id).await?;
    tx.commit().await?;
    Ok(account)
}

/// Take one scope (by value) from an account, and from its tokens unless
/// one of its roles still grants it. Returns the access tokens that lost it.
pub async fn revoke_scope(pool: &Pool, id: i32, value: &str) -> Result<Vec<TokenHash>, StoreError> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    lock_account(&tx, id).await?;
    let n = tx
        .execute(
            "DELETE FROM account_scopes
              WHERE account_id = $1
                AND scope_id = (SELECT scope_id FROM scopes WHERE scope_value = $2)",
            &[&id, &value],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::NotGranted(format!("scope {value:?}")));
    }
    let stripped = strip_tokens(&tx, &[id]).await?;
    tx.commit().await?;
    Ok(stripped)
}

/// Grant one role (by name) to an account.
pub async fn grant_role(pool: &Pool, id: i32, name: &str) -> Result<Account, StoreError> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    lock_account(&tx, id).await?;
    let role = resolve_roles(&tx, &[name.to_owned()]).await?;
    let n = tx
        .execute(
            "INSERT INTO account_roles (account_id, role_id) SELECT $1, r FROM unnest($2::INT[]) AS r
             ON CONFLICT (account_id, role_id) DO NOTHING",
            &[&id, &role],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::AlreadyGranted(format!("role {name:?}")));
    }
    let account = account_in(&tx, id).await?;
    tx.commit().await?;
    Ok(account)
}

/// Take one role (by name) from an account, and the scopes it no longer
/// holds from its tokens. Returns the access tokens that lost a scope.
pub async fn revoke_role(pool: &Pool, id: i32, name: &str) -> Result<Vec<TokenHash>, StoreError> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    lock_account(&tx, id).await?;
    let n = tx
        .execute(
            "DELETE FROM account_roles
              WHERE account_id = $1
                AND role_id = (SELECT role_id FROM roles WHERE role_name = $2)",
            &[&id, &name],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::NotGranted(format!("role {name:?}")));
    }
    let stripped = strip_tokens(&tx, &[id]).await?;
    tx.commit().await?;
    Ok(stripped)
}

const STRIP_REFRESH: &str = "
DELETE FROM refresh_token_scopes rts USING account_refresh_tokens x
 WHERE x.refresh_token_id = rts.token_id AND x.account_id = $1
   AND NOT (rts.scope_id = ANY($2))";

const STRIP_ACCESS: &str = "
WITH stripped AS (
    DELETE FROM token_scopes ts USING account_tokens x
     WHERE x.token_id = ts.token_id AND x.account_id = $1
       AND NOT (ts.scope_id = ANY($2))
    RETURNING ts.token_id
)
SELECT t.token FROM access_tokens t WHERE t.token_id IN (SELECT token_id FROM stripped)";

/// Remove from the issued tokens of `accounts` every scope the account no
/// longer holds ([`effective_scope_ids`]: own ∪ roles'). Returns the access
/// tokens that lost one.
async fn strip_tokens<C: GenericClient>(
    client: &C,
    accounts: &[i32],
) -> Result<Vec<TokenHash>, StoreError> {
    let mut stripped = Vec::new();
    for &account in accounts {
        let held = effective_scope_ids(client, account).await?;
        client.execute(STRIP_REFRESH, &[&account, &held]).await?;
        let rows = client.query(STRIP_ACCESS, &[&account, &held]).await?;
        stripped.extend(token_hashes(&rows));
    }
    Ok(stripped)
}

// ---------------------------------------------------------------------------
// Scopes

pub async fn list_scopes(
    pool: &Pool,
    after: Option<i32>,
    limit: i64,
) -> Result<Page<Scope>, StoreError> {
    page(
        pool,
        SCOPE_COLUMNS,
        "scope_id",
        after,
        limit,
        scope_from,
        |s| s.id,
    )
    .await
}

pub async fn get_scope(pool: &Pool, id: i32) -> Result<Scope, StoreError> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(&format!("{SCOPE_COLUMNS} WHERE scope_id = $1"), &[&id])
        .await?
        .ok_or_else(|| unknown("scope", id))?;
    scope_from(&row)
}

/// Delete a scope by id (its grants and token links go with it). Returns
/// the hashes of the live access tokens that carried it.
pub async fn delete_scope(pool: &Pool, id: i32) -> Result<Vec<TokenHash>, StoreError> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let rows = tx
        .query(
            "SELECT t.token FROM access_tokens t JOIN token_scopes ts ON ts.token_id = t.token_id
              WHERE ts.scope_id = $1 AND t.active",
            &[&id],
        )
        .await?;
    let n = tx
        .execute("DELETE FROM scopes WHERE scope_id = $1", &[&id])
        .await?;
    if n == 0 {
        return Err(unknown("scope", id));
    }
    tx.commit().await?;
    Ok(token_hashes(&rows))
}

// ---------------------------------------------------------------------------
// Roles

pub async fn list_roles(
    pool: &Pool,
    after: Option<i32>,
    limit: i64,
) -> Result<Page<Role>, StoreError> {
    page(
        pool,
        ROLE_COLUMNS,
        "r.role_id",
        after,
        limit,
        role_from,
        |r| r.id,
    )
    .await
}

async fn role_in<C: GenericClient>(client: &C, id: i32) -> Result<Role, StoreError> {
    let row = client
        .query_opt(&format!("{ROLE_COLUMNS} WHERE r.role_id = $1"), &[&id])
        .await?
        .ok_or_else(|| unknown("role", id))?;
    role_from(&row)
}

pub async fn get_role(pool: &Pool, id: i32) -> Result<Role, StoreError> {
    let conn = pool.get().await?;
    role_in(&conn, id).await
}

/// Lock a role's row; returns the accounts that hold it.
async fn lock_role<C: GenericClient>(client: &C, id: i32) -> Result<Vec<i32>, StoreError> {
    client
        .query_opt("SELECT 1 FROM roles WHERE role_id = $1 FOR UPDATE", &[&id])
        .await?
        .ok_or_else(|| unknown("role", id))?;
    let rows = client
        .query(
            "SELECT account_id FROM account_roles WHERE role_id = $1",
            &[&id],
        )
        .await?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(StoreError::from))
        .collect()
}

/// Delete a role by id; the scopes its holders no longer have are stripped
/// from their tokens. Returns the access tokens that lost a scope.
pub async fn delete_role(pool: &Pool, id: i32) -> Result<Vec<TokenHash>, StoreError> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let holders = lock_role(&tx, id).await?;
    tx.execute("DELETE FROM roles WHERE role_id = $1", &[&id])
        .await?;
    let stripped = strip_tokens(&tx, &holders).await?;
    tx.commit().await?;
    Ok(stripped)
}

/// Add one scope (by value) to a role.
pub async fn add_role_scope(pool: &Pool, id: i32, value: &str) -> Result<Role, StoreError> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    lock_role(&tx, id).await?;
    let scope_ids = resolve_scopes(&tx, &[value.to_owned()]).await?;
    let n = tx
        .execute(
            "INSERT INTO role_scopes (role_id, scope_id) SELECT $1, s FROM unnest($2::INT[]) AS s
             ON CONFLICT (role_id, scope_id) DO NOTHING",
            &[&id, &scope_ids],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::AlreadyGranted(format!("scope {value:?}")));
    }
    let role = role_in(&tx, id).await?;
    tx.commit().await?;
    Ok(role)
}

/// Remove one scope (by value) from a role, and from the tokens of its
/// holders that no longer have it otherwise. Returns the access tokens
/// that lost it.
pub async fn remove_role_scope(
    pool: &Pool,
    id: i32,
    value: &str,
) -> Result<Vec<TokenHash>, StoreError> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let holders = lock_role(&tx, id).await?;
    let n = tx
        .execute(
            "DELETE FROM role_scopes
              WHERE role_id = $1
                AND scope_id = (SELECT scope_id FROM scopes WHERE scope_value = $2)",
            &[&id, &value],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::NotGranted(format!("scope {value:?}")));
    }
    let stripped = strip_tokens(&tx, &holders).await?;
    tx.commit().await?;
    Ok(stripped)
}
