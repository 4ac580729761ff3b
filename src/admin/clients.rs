//! `/admin/clients` (`docs/http.md`, "Admin API"): a thin layer over
//! [`crate::clients::store`], like `scopegate client ...`.
//!
//! | path | methods |
//! |---|---|
//! | `/admin/clients` | GET (list), POST `{"name","scopes":[values],"redirect_uris":[...],"public":false}` |
//! | `/admin/clients/{id}` | GET, DELETE |
//! | `/admin/clients/{id}/secret` | POST: a new secret, the old one dead at once |
//!
//! The 201 answer of a confidential client's creation alone carries
//! `client_secret` (it is stored as its SHA-256 and never shown again), and
//! so does the answer of `POST .../secret`. Deleting a client revokes every
//! token issued through it; this replica's cache forgets them at once.

use http::{Method, Request, Response, StatusCode};

use super::json::{self, Paging};
use super::{list_or_create, path_id, require_method, Admin, AdminBody, Caller};
use crate::accounts::admin_store::Page;
use crate::body::Body;
use crate::clients::store::{self, NewClient};
use crate::error::Rejection;

const UNKNOWN_CLIENT: &str = "no client has this id";

pub async fn handle<B: AdminBody>(
    admin: &Admin,
    caller: Caller,
    path: &[&str],
    req: Request<B>,
) -> Result<Response<Body>, Rejection> {
    let store_err = Rejection::from_client_store;
    match path {
        [] => {
            let list = async |p: Paging| {
                let items = store::list(&admin.db, p.after, p.limit + 1)
                    .await
                    .map_err(store_err)?;
                Ok(Page::from_one_more(items, p.limit, |c| c.id))
            };
            list_or_create(req, list, async |req| create(admin, caller, req).await).await
        }
        [id] => {
            require_method(&req, &[Method::GET, Method::DELETE], "GET, DELETE")?;
            let id = path_id(id, UNKNOWN_CLIENT)?;
            if req.method() == Method::GET {
                let client = store::get(&admin.db, id)
                    .await
                    .map_err(store_err)?
                    .ok_or(Rejection::UnknownResource(UNKNOWN_CLIENT))?;
                return json::ok(&client);
            }
            let (client, revoked) = store::delete(&admin.db, id).await.map_err(store_err)?;
            admin.invalidate(&revoked).await;
            admin.revoked(revoked.len());
            admin.audit(caller, "client.delete", id, Some(&client.client_id));
            Ok(json::no_content())
        }
        [id, "secret"] => {
            require_method(&req, &[Method::POST], "POST")?;
            let id = path_id(id, UNKNOWN_CLIENT)?;
            let (client, secret) = store::rotate_secret(&admin.db, id)
                .await
                .map_err(store_err)?;
            admin.audit(caller, "client.rotate_secret", id, Some(&client.client_id));
            Ok(json::answer(
                StatusCode::OK,
                &serde_json::json!({ "client_secret": secret.expose() }),
            ))
        }
        _ => Err(Rejection::UnknownResource("no such admin resource")),
    }
}

/// `POST /admin/clients`: the 201 answer alone carries a confidential
/// client's secret.
async fn create<B: AdminBody>(
    admin: &Admin,
    caller: Caller,
    req: Request<B>,
) -> Result<Response<Body>, Rejection> {
    let mut body = admin.object(req).await?;
    body.only(&["name", "scopes", "redirect_uris", "public"])?;
    let new = NewClient {
        name: body.string("name")?,
        scopes: body.string_list("scopes")?,
        redirect_uris: body.string_list("redirect_uris")?,
        public: body.optional_bool("public")?.unwrap_or(false),
    };
    let created = store::create(&admin.db, new)
        .await
        .map_err(Rejection::from_client_store)?;
    let client = &created.client;
    admin.audit(caller, "client.create", client.id, Some(&client.client_id));
    let mut answer = json::to_value(client)?;
    if let Some(secret) = &created.secret {
        answer["client_secret"] = serde_json::Value::from(secret.expose());
    }
    let mut r = json::answer(StatusCode::CREATED, &answer);
    let location = http::HeaderValue::from_str(&format!("/admin/clients/{}", client.id))
        .map_err(|_| Rejection::Internal)?;
    r.headers_mut().insert(http::header::LOCATION, location);
    Ok(r)
}
