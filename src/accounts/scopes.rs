//! Which scopes an account has, and which of them a token may carry.
//!
//! An account's **effective** scopes are its own (`account_scopes`) plus
//! those of its roles (`account_roles` -> `role_scopes`). A token may carry
//! only effective scopes: all of them when none are requested, else exactly
//! the requested ones ([`select_scopes`]). A refresh keeps the presented
//! token's scopes that the account still holds ([`still_held`]), so a
//! scope taken from the account since login is not granted again.
//!
//! Scopes named by their values (the admin API, the CLI) become stored
//! scopes through [`resolve_scopes`], for accounts, roles and clients
//! alike.

use deadpool_postgres::GenericClient;

use crate::db::{classify, DbError};
use crate::tokens::issue::Grant;

/// A scope as stored: its id and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRef {
    pub id: i32,
    pub value: String,
}

/// Why scope values could not be resolved ([`resolve_scopes`]).
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No scope has this value.
    #[error("no scope with the value {0:?}")]
    Unknown(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The ids of the scopes with these values, in `values`' order; the first
/// value that names no scope is an error.
pub async fn resolve_scopes<C: GenericClient>(
    client: &C,
    values: &[String],
) -> Result<Vec<i32>, ResolveError> {
    if values.is_empty() {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT scope_id, scope_value FROM scopes WHERE scope_value = ANY($1)",
            &[&values],
        )
        .await
        .map_err(classify)?;
    let mut ids = Vec::with_capacity(values.len());
    for v in values {
        let found = rows
            .iter()
            .find(|r| r.try_get::<_, &str>(1).is_ok_and(|s| s == v));
        match found {
            Some(r) => ids.push(r.try_get::<_, i32>(0).map_err(classify)?),
            None => return Err(ResolveError::Unknown(v.clone())),
        }
    }
    Ok(ids)
}

/// What a new pair carrying `scopes` is granted.
pub fn grant(scopes: &[ScopeRef]) -> Grant {
    Grant::new(scopes.iter().map(|s| (s.id, s.value.as_str())))
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

/// Of a token's scopes `(id, value)`, those whose id is in `held`.
pub fn still_held<'a>(
    token_scopes: impl IntoIterator<Item = (i32, &'a str)>,
    held: &[i32],
) -> Vec<ScopeRef> {
    token_scopes
        .into_iter()
        .filter(|(id, _)| held.contains(id))
        .map(|(id, value)| ScopeRef {
            id,
            value: value.to_owned(),
        })
        .collect()
}

const EFFECTIVE_SCOPE_IDS: &str = "
SELECT scope_id FROM account_scopes WHERE account_id = $1
UNION
SELECT rs.scope_id FROM account_roles ar JOIN role_scopes rs ON rs.role_id = ar.role_id WHERE ar.account_id = $1";

/// The ids of the account's effective scopes.
pub async fn effective_scope_ids<C: GenericClient>(
    client: &C,
    account_id: i32,
) -> Result<Vec<i32>, DbError> {
    of_account(client, EFFECTIVE_SCOPE_IDS, account_id, |r| r.try_get(0)).await
}

const EFFECTIVE_SCOPES: &str = "
SELECT s.scope_id, s.scope_value FROM scopes s
 WHERE s.scope_id IN (
    SELECT scope_id FROM account_scopes WHERE account_id = $1
    UNION
    SELECT rs.scope_id FROM account_roles ar JOIN role_scopes rs ON rs.role_id = ar.role_id
     WHERE ar.account_id = $1)
 ORDER BY s.scope_value";

/// The account's effective scopes, sorted by value.
pub async fn effective_scopes<C: GenericClient>(
    client: &C,
    account_id: i32,
) -> Result<Vec<ScopeRef>, DbError> {
    of_account(client, EFFECTIVE_SCOPES, account_id, |r| {
        Ok(ScopeRef {
            id: r.try_get(0)?,
            value: r.try_get(1)?,
        })
    })
    .await
}

/// The rows of `sql` (a cached prepared statement whose one parameter is
/// the account id), each mapped by `row`.
async fn of_account<C: GenericClient, T>(
    client: &C,
    sql: &str,
    account_id: i32,
    row: impl Fn(&tokio_postgres::Row) -> Result<T, tokio_postgres::Error>,
) -> Result<Vec<T>, DbError> {
    let stmt = client.prepare_cached(sql).await.map_err(classify)?;
    let rows = client
        .query(&stmt, &[&account_id])
        .await
        .map_err(classify)?;
    rows.iter().map(|r| row(r).map_err(classify)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(id: i32, v: &str) -> ScopeRef {
        ScopeRef {
            id,
            value: v.into(),
        }
    }

    #[test]
    fn requested_scopes_must_be_available() {
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
    fn only_held_scopes_survive_a_refresh() {
        let token = [(1, "a"), (2, "b"), (3, "c")];
        assert_eq!(still_held(token, &[3, 1]), vec![s(1, "a"), s(3, "c")]);
        assert_eq!(still_held(token, &[]), vec![]);
    }

    #[test]
    fn a_grant_is_sorted_and_unique() {
        let g = grant(&[s(2, "b"), s(1, "a"), s(2, "b")]);
        assert_eq!(g.scope(), "a b");
        assert_eq!(g.ids(), &[1, 2]);
    }
}
