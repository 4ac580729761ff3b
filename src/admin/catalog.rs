//! `/admin/scopes` and `/admin/roles` (`docs/http.md`, "Admin API"):
//!
//! | path | methods |
//! |---|---|
//! | `/admin/scopes` | GET (list), POST `{"name","value","description"}` |
//! | `/admin/scopes/{id}` | GET, DELETE |
//! | `/admin/roles` | GET (list), POST `{"name","description","scopes":[values]}` |
//! | `/admin/roles/{id}` | GET, DELETE |
//! | `/admin/roles/{id}/scopes` | POST `{"scope": value}` |
//! | `/admin/roles/{id}/scopes/{value}` | DELETE |
//!
//! A scope's name and value are each unique (409). Deleting a scope takes
//! it from every token that carries it; deleting a role, or taking a scope
//! from one, takes the scopes its holders no longer have from their
//! tokens; either way this replica's cache forgets the tokens concerned at
//! once. `scopegate:admin` cannot be deleted (409): without it nobody could
//! administer scopegate any more.

use http::{Method, Request, Response};

use super::accounts::unknown_in_list;
use super::json::{self, Paging};
use super::{list_or_create, path_id, path_value, require_method, Admin, AdminBody, Caller};
use crate::accounts::admin_store;
use crate::accounts::bootstrap::ADMIN_SCOPE;
use crate::accounts::store;
use crate::body::Body;
use crate::error::Rejection;

const UNKNOWN_SCOPE: &str = "no scope has this id";
const UNKNOWN_ROLE: &str = "no role has this id";

pub async fn scopes<B: AdminBody>(
    admin: &Admin,
    caller: Caller,
    path: &[&str],
    req: Request<B>,
) -> Result<Response<Body>, Rejection> {
    let store_err = Rejection::from_admin_store;
    match path {
        [] => {
            let list = async |p: Paging| {
                admin_store::list_scopes(&admin.db, p.after, p.limit)
                    .await
                    .map_err(store_err)
            };
            list_or_create(req, list, async |req| {
                create_scope(admin, caller, req).await
            })
            .await
        }
        [id] => {
            require_method(&req, &[Method::GET, Method::DELETE], "GET, DELETE")?;
            let id = path_id(id, UNKNOWN_SCOPE)?;
            let scope = admin_store::get_scope(&admin.db, id)
                .await
                .map_err(store_err)?;
            if req.method() == Method::GET {
                return json::ok(&scope);
            }
            if scope.value == ADMIN_SCOPE {
                return Err(Rejection::Conflict(
                    "value: the scopegate:admin scope cannot be deleted",
                ));
            }
            let affected = admin_store::delete_scope(&admin.db, id)
                .await
                .map_err(store_err)?;
            admin.invalidate(&affected).await;
            admin.audit(caller, "scope.delete", id, Some(&scope.value));
            Ok(json::no_content())
        }
        _ => Err(Rejection::UnknownResource("no such admin resource")),
    }
}

/// `POST /admin/scopes`.
async fn create_scope<B: AdminBody>(
    admin: &Admin,
    caller: Caller,
    req: Request<B>,
) -> Result<Response<Body>, Rejection> {
    let mut body = admin.object(req).await?;
    body.only(&["name", "value", "description"])?;
    let name = body.string("name")?;
    let value = body.string("value")?;
    let description = body.optional_string("description")?;
    let scope = store::create_scope(&admin.db, &name, &value, description.as_deref())
        .await
        .map_err(Rejection::from_admin_store)?;
    admin.audit(caller, "scope.create", scope.id, Some(&scope.value));
    json::created(&format!("/admin/scopes/{}", scope.id), &scope)
}

pub async fn roles<B: AdminBody>(
    admin: &Admin,
    caller: Caller,
    path: &[&str],
    req: Request<B>,
) -> Result<Response<Body>, Rejection> {
    let store_err = Rejection::from_admin_store;
    match path {
        [] => {
            let list = async |p: Paging| {
                admin_store::list_roles(&admin.db, p.after, p.limit)
                    .await
                    .map_err(store_err)
            };
            list_or_create(req, list, async |req| create_role(admin, caller, req).await).await
        }
        [id] => {
            require_method(&req, &[Method::GET, Method::DELETE], "GET, DELETE")?;
            let id = path_id(id, UNKNOWN_ROLE)?;
            if req.method() == Method::GET {
                let role = admin_store::get_role(&admin.db, id)
                    .await
                    .map_err(store_err)?;
                return json::ok(&role);
            }
            let affected = admin_store::delete_role(&admin.db, id)
                .await
                .map_err(store_err)?;
            admin.invalidate(&affected).await;
            admin.audit(caller, "role.delete", id, None);
            Ok(json::no_content())
        }
        [id, "scopes"] => {
            require_method(&req, &[Method::POST], "POST")?;
            let id = path_id(id, UNKNOWN_ROLE)?;
            let mut body = admin.object(req).await?;
            body.only(&["scope"])?;
            let value = body.string("scope")?;
            let role = admin_store::add_role_scope(&admin.db, id, &value)
                .await
                .map_err(store_err)?;
            admin.audit(caller, "role.add_scope", id, Some(&value));
            let location = format!("/admin/roles/{id}/scopes/{}", json::encode_segment(&value));
            json::created(&location, &role)
        }
        [id, "scopes", value] => {
            require_method(&req, &[Method::DELETE], "DELETE")?;
            let id = path_id(id, UNKNOWN_ROLE)?;
            let value = path_value(value, "no such grant")?;
            let affected = admin_store::remove_role_scope(&admin.db, id, &value)
                .await
                .map_err(store_err)?;
            admin.invalidate(&affected).await;
            admin.audit(caller, "role.remove_scope", id, Some(&value));
            Ok(json::no_content())
        }
        _ => Err(Rejection::UnknownResource("no such admin resource")),
    }
}

/// `POST /admin/roles`.
async fn create_role<B: AdminBody>(
    admin: &Admin,
    caller: Caller,
    req: Request<B>,
) -> Result<Response<Body>, Rejection> {
    let mut body = admin.object(req).await?;
    body.only(&["name", "description", "scopes"])?;
    let name = body.string("name")?;
    let description = body.optional_string("description")?;
    let scopes = body.string_list("scopes")?;
    let role = store::create_role(&admin.db, &name, description.as_deref(), &scopes)
        .await
        .map_err(|e| unknown_in_list(e, &scopes, &[]))?;
    admin.audit(caller, "role.create", role.id, Some(&role.name));
    json::created(&format!("/admin/roles/{}", role.id), &role)
}
