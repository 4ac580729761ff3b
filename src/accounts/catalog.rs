//! The scopes and roles that can be granted, in Postgres. A scope has a
//! display name and a **value** (the RFC 6749 scope-token used in tokens
//! and routes, unique); a role has a unique **name** and a set of scopes.
//! A scope's name is unique too. Deleting either removes its grants
//! (foreign keys cascade).

use deadpool_postgres::Pool;
use serde::Serialize;

use super::scopes::resolve_scopes;
use super::store::StoreError;
use crate::db::{classify, DbError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scope {
    pub id: i32,
    pub name: String,
    pub value: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Role {
    pub id: i32,
    pub name: String,
    pub description: Option<String>,
    pub scopes: Vec<String>,
}

fn check_name(field: &'static str, s: &str) -> Result<(), StoreError> {
    if s.trim().is_empty() || s.chars().count() > 255 || s.chars().any(char::is_control) {
        return Err(StoreError::InvalidField {
            field,
            message: "must be 1 to 255 characters without control characters".into(),
        });
    }
    Ok(())
}

pub async fn create_scope(
    pool: &Pool,
    name: &str,
    value: &str,
    description: Option<&str>,
) -> Result<Scope, StoreError> {
    check_name("name", name)?;
    if !crate::scope::is_valid(value) {
        return Err(StoreError::InvalidField {
            field: "value",
            message: "must be a scope-token: 1 to 255 printable ASCII characters without space, '\"' or '\\' (RFC 6749 §3.3)".into(),
        });
    }
    let conn = pool.get().await?;
    let row = conn
        .query_one(
            "INSERT INTO scopes (scope_name, scope_value, scope_description) VALUES ($1, $2, $3) RETURNING scope_id",
            &[&name, &value, &description],
        )
        .await
        .map_err(|e| {
            let e = classify(e);
            match unique_constraint(&e) {
                Some(NAME_UNIQUE) => StoreError::DuplicateScopeName(name.to_owned()),
                Some(_) => StoreError::DuplicateScope(value.to_owned()),
                None => StoreError::Db(e),
            }
        })?;
    Ok(Scope {
        id: row.try_get(0)?,
        name: name.to_owned(),
        value: value.to_owned(),
        description: description.map(str::to_owned),
    })
}

/// The constraint that makes scope names unique (see the migrations).
const NAME_UNIQUE: &str = "scopes_scope_name_key";

/// The unique constraint a failed insert violated, if that is why it failed.
fn unique_constraint(e: &DbError) -> Option<&str> {
    match e {
        DbError::Query(q) if e.is_unique_violation() => {
            Some(q.as_db_error().and_then(|d| d.constraint()).unwrap_or(""))
        }
        _ => None,
    }
}

pub(super) const SCOPE_COLUMNS: &str =
    "SELECT scope_id, scope_name, scope_value, scope_description FROM scopes";

pub(super) fn scope_from(r: &tokio_postgres::Row) -> Result<Scope, StoreError> {
    Ok(Scope {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        value: r.try_get(2)?,
        description: r.try_get(3)?,
    })
}

pub async fn list_scopes(pool: &Pool) -> Result<Vec<Scope>, StoreError> {
    let conn = pool.get().await?;
    let rows = conn
        .query(&format!("{SCOPE_COLUMNS} ORDER BY scope_id"), &[])
        .await?;
    rows.iter().map(scope_from).collect()
}

/// Delete a scope by value (its grants go with it: foreign keys cascade).
pub async fn delete_scope(pool: &Pool, value: &str) -> Result<(), StoreError> {
    let conn = pool.get().await?;
    let n = conn
        .execute("DELETE FROM scopes WHERE scope_value = $1", &[&value])
        .await?;
    if n == 0 {
        return Err(StoreError::UnknownScope(value.to_owned()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Roles

pub async fn create_role(
    pool: &Pool,
    name: &str,
    description: Option<&str>,
    scopes: &[String],
) -> Result<Role, StoreError> {
    check_name("name", name)?;
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let scope_ids = resolve_scopes(&tx, scopes).await?;
    let row = tx
        .query_one(
            "INSERT INTO roles (role_name, role_description) VALUES ($1, $2) RETURNING role_id",
            &[&name, &description],
        )
        .await
        .map_err(|e| {
            let e = classify(e);
            if e.is_unique_violation() {
                StoreError::DuplicateRole(name.to_owned())
            } else {
                StoreError::Db(e)
            }
        })?;
    let id: i32 = row.try_get(0)?;
    tx.execute(
        "INSERT INTO role_scopes (role_id, scope_id) SELECT $1, s FROM unnest($2::INT[]) AS s
         ON CONFLICT (role_id, scope_id) DO NOTHING",
        &[&id, &scope_ids],
    )
    .await?;
    tx.commit().await?;
    let mut values = scopes.to_vec();
    values.sort();
    values.dedup();
    Ok(Role {
        id,
        name: name.to_owned(),
        description: description.map(str::to_owned),
        scopes: values,
    })
}

pub(super) const ROLE_COLUMNS: &str = "
SELECT r.role_id, r.role_name, r.role_description,
       COALESCE(ARRAY(SELECT s.scope_value FROM role_scopes x JOIN scopes s ON s.scope_id = x.scope_id
                       WHERE x.role_id = r.role_id ORDER BY s.scope_value), '{}')
  FROM roles r";

pub(super) fn role_from(r: &tokio_postgres::Row) -> Result<Role, StoreError> {
    Ok(Role {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        description: r.try_get(2)?,
        scopes: r.try_get(3)?,
    })
}

pub async fn list_roles(pool: &Pool) -> Result<Vec<Role>, StoreError> {
    let conn = pool.get().await?;
    let rows = conn
        .query(&format!("{ROLE_COLUMNS} ORDER BY r.role_id"), &[])
        .await?;
    rows.iter().map(role_from).collect()
}

/// Delete a role by name (its grants go with it).
pub async fn delete_role(pool: &Pool, name: &str) -> Result<(), StoreError> {
    let conn = pool.get().await?;
    let n = conn
        .execute("DELETE FROM roles WHERE role_name = $1", &[&name])
        .await?;
    if n == 0 {
        return Err(StoreError::UnknownRole(name.to_owned()));
    }
    Ok(())
}
