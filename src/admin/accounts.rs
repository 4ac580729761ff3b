//! `/admin/accounts` (`docs/http.md`, "Admin API"):
//!
//! | path | methods |
//! |---|---|
//! | `/admin/accounts` | GET (list), POST (create) |
//! | `/admin/accounts/{id}` | GET, PATCH (`first_name`, `last_name`, `is_active`, `password`), DELETE |
//! | `/admin/accounts/{id}/scopes` | POST `{"scope": value}` |
//! | `/admin/accounts/{id}/scopes/{value}` | DELETE |
//! | `/admin/accounts/{id}/roles` | POST `{"role": name}` |
//! | `/admin/accounts/{id}/roles/{name}` | DELETE |
//! | `/admin/accounts/{id}/revoke-tokens` | POST: 204 |
//!
//! Passwords are hashed on the shared argon2 pool and never appear in an
//! answer or a log line. A password change revokes every token of the
//! account; deactivating (or reactivating) it, deleting it, or taking a
//! scope or role away drops the affected tokens from this replica's cache
//! at once, so the gateway sees the change on the very next request.

use http::{Method, Request, Response};

use super::json::{self, Paging};
use super::{list_or_create, path_id, path_value, require_method, Admin, AdminBody, Caller};
use crate::accounts::admin_store::{self, AccountChanges};
use crate::accounts::store::{self, check_optional_name, NewAccount, StoreError};
use crate::accounts::{check_new_password, Password};
use crate::body::Body;
use crate::error::Rejection;

const UNKNOWN: &str = "no account has this id";
const UNKNOWN_GRANT: &str = "no such grant";

/// Fields of a create.
const CREATE_FIELDS: &[&str] = &[
    "username",
    "password",
    "first_name",
    "last_name",
    "scopes",
    "roles",
];
/// Fields of a PATCH.
const PATCH_FIELDS: &[&str] = &["first_name", "last_name", "is_active", "password"];

pub async fn handle<B: AdminBody>(
    admin: &Admin,
    caller: Caller,
    path: &[&str],
    req: Request<B>,
) -> Result<Response<Body>, Rejection> {
    let store_err = Rejection::from_admin_store;
    match path {
        [] => {
            let list = async |p: Paging| {
                admin_store::list_accounts(&admin.db, p.after, p.limit)
                    .await
                    .map_err(store_err)
            };
            list_or_create(req, list, async |req| create(admin, caller, req).await).await
        }
        [id] => {
            require_method(
                &req,
                &[Method::GET, Method::PATCH, Method::DELETE],
                "GET, PATCH, DELETE",
            )?;
            let id = path_id(id, UNKNOWN)?;
            match *req.method() {
                Method::GET => {
                    let account = store::get_account(&admin.db, id)
                        .await
                        .map_err(store_err)?
                        .ok_or(Rejection::UnknownResource(UNKNOWN))?;
                    json::ok(&account)
                }
                Method::PATCH => patch(admin, caller, id, req).await,
                _ => {
                    let gone = admin_store::delete_account(&admin.db, id)
                        .await
                        .map_err(store_err)?;
                    admin.invalidate(&gone).await;
                    admin.audit(caller, "account.delete", id, None);
                    Ok(json::no_content())
                }
            }
        }
        [id, "scopes"] => {
            require_method(&req, &[Method::POST], "POST")?;
            let id = path_id(id, UNKNOWN)?;
            let value = grant_body(admin, req, "scope").await?;
            let account = admin_store::grant_scope(&admin.db, id, &value)
                .await
                .map_err(store_err)?;
            admin.audit(caller, "account.grant_scope", id, Some(&value));
            let location = format!(
                "/admin/accounts/{id}/scopes/{}",
                json::encode_segment(&value)
            );
            json::created(&location, &account)
        }
        [id, "scopes", value] => {
            require_method(&req, &[Method::DELETE], "DELETE")?;
            let id = path_id(id, UNKNOWN)?;
            let value = path_value(value, UNKNOWN_GRANT)?;
            let stripped = admin_store::revoke_scope(&admin.db, id, &value)
                .await
                .map_err(store_err)?;
            admin.invalidate(&stripped).await;
            admin.audit(caller, "account.revoke_scope", id, Some(&value));
            Ok(json::no_content())
        }
        [id, "roles"] => {
            require_method(&req, &[Method::POST], "POST")?;
            let id = path_id(id, UNKNOWN)?;
            let name = grant_body(admin, req, "role").await?;
            let account = admin_store::grant_role(&admin.db, id, &name)
                .await
                .map_err(store_err)?;
            admin.audit(caller, "account.grant_role", id, Some(&name));
            let location = format!("/admin/accounts/{id}/roles/{}", json::encode_segment(&name));
            json::created(&location, &account)
        }
        [id, "roles", name] => {
            require_method(&req, &[Method::DELETE], "DELETE")?;
            let id = path_id(id, UNKNOWN)?;
            let name = path_value(name, UNKNOWN_GRANT)?;
            let stripped = admin_store::revoke_role(&admin.db, id, &name)
                .await
                .map_err(store_err)?;
            admin.invalidate(&stripped).await;
            admin.audit(caller, "account.revoke_role", id, Some(&name));
            Ok(json::no_content())
        }
        [id, "revoke-tokens"] => {
            require_method(&req, &[Method::POST], "POST")?;
            let id = path_id(id, UNKNOWN)?;
            store::get_account(&admin.db, id)
                .await
                .map_err(store_err)?
                .ok_or(Rejection::UnknownResource(UNKNOWN))?;
            let revoked = store::revoke_tokens(&admin.db, id)
                .await
                .map_err(store_err)?;
            admin.invalidate(&revoked).await;
            admin.revoked(revoked.len());
            admin.audit(caller, "account.revoke_tokens", id, None);
            Ok(json::no_content())
        }
        _ => Err(Rejection::UnknownResource("no such admin resource")),
    }
}

/// The one string field of a grant body (`{"scope": ...}`, `{"role": ...}`).
async fn grant_body<B: AdminBody>(
    admin: &Admin,
    req: Request<B>,
    field: &'static str,
) -> Result<String, Rejection> {
    let mut body = admin.object(req).await?;
    body.only(&[field])?;
    body.string(field)
}

/// An unknown scope or role in a create body, named by its position.
pub(super) fn unknown_in_list(e: StoreError, scopes: &[String], roles: &[String]) -> Rejection {
    let at = |field: &str, list: &[String], missing: &str, message: &str| {
        let i = list.iter().position(|v| v == missing).unwrap_or(0);
        Rejection::InvalidField(format!("{field}[{i}]: {message}").into())
    };
    match e {
        StoreError::UnknownScope(v) => at("scopes", scopes, &v, "no scope has this value"),
        StoreError::UnknownRole(v) => at("roles", roles, &v, "no role has this name"),
        other => Rejection::from_admin_store(other),
    }
}

async fn create<B: AdminBody>(
    admin: &Admin,
    caller: Caller,
    req: Request<B>,
) -> Result<Response<Body>, Rejection> {
    let mut body = admin.object(req).await?;
    body.only(CREATE_FIELDS)?;
    let username = body.string("username")?;
    let password = Password::new(body.string("password")?);
    let first_name = body.optional_string("first_name")?;
    let last_name = body.optional_string("last_name")?;
    let scopes = body.string_list("scopes")?;
    let roles = body.string_list("roles")?;
    let new = NewAccount {
        username,
        password,
        first_name,
        last_name,
        scopes: scopes.clone(),
        roles: roles.clone(),
    };
    let account = store::create_account(&admin.db, &admin.hasher, new)
        .await
        .map_err(|e| unknown_in_list(e, &scopes, &roles))?;
    admin.audit(caller, "account.create", account.id, None);
    json::created(&format!("/admin/accounts/{}", account.id), &account)
}

async fn patch<B: AdminBody>(
    admin: &Admin,
    caller: Caller,
    id: i32,
    req: Request<B>,
) -> Result<Response<Body>, Rejection> {
    let store_err = Rejection::from_admin_store;
    let mut body = admin.object(req).await?;
    body.only(PATCH_FIELDS)?;
    let changes = AccountChanges {
        first_name: body.nullable_string("first_name")?,
        last_name: body.nullable_string("last_name")?,
        is_active: body.optional_bool("is_active")?,
    };
    let password = match body.nullable_string("password")? {
        None => None,
        Some(None) => return Err(Rejection::InvalidField("password: must be a string".into())),
        Some(Some(p)) => Some(Password::new(p)),
    };
    // Everything is checked before anything changes.
    for (field, value) in [
        ("first_name", &changes.first_name),
        ("last_name", &changes.last_name),
    ] {
        if let Some(v) = value {
            check_optional_name(field, v).map_err(store_err)?;
        }
    }
    if let Some(p) = &password {
        check_new_password(p).map_err(|e| store_err(e.into()))?;
    }
    store::get_account(&admin.db, id)
        .await
        .map_err(store_err)?
        .ok_or(Rejection::UnknownResource(UNKNOWN))?;

    // The password first: it is the part that can be refused for load
    // (503 from a saturated hashing pool), and then nothing has changed.
    if let Some(p) = password {
        let revoked = store::set_password(&admin.db, &admin.hasher, id, p)
            .await
            .map_err(store_err)?;
        admin.invalidate(&revoked).await;
        admin.revoked(revoked.len());
        admin.audit(caller, "account.set_password", id, None);
    }
    let (account, affected) = admin_store::update_account(&admin.db, id, &changes)
        .await
        .map_err(store_err)?;
    admin.invalidate(&affected).await;
    if changes.first_name.is_some() || changes.last_name.is_some() {
        admin.audit(caller, "account.update", id, None);
    }
    match changes.is_active {
        Some(true) => admin.audit(caller, "account.activate", id, None),
        Some(false) => admin.audit(caller, "account.deactivate", id, None),
        None => {}
    }
    json::ok(&account)
}
