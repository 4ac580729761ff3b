//! `POST /oauth/introspect` (RFC 7662).
//!
//! The caller authenticates with a Bearer access token holding
//! `scopegate:introspect` or `scopegate:admin` (or a wildcard covering one,
//! e.g. `scopegate:*`). No credentials or a bad token: 401 with the RFC 6750
//! challenge; a valid token without either scope: 403 `insufficient_scope`.
//! The caller is checked before the body is read.
//!
//! The answer is `{"active": false}` for anything that is not a valid token
//! right now (unknown, garbage, expired, revoked, rotated, inactive
//! account), and otherwise `active, scope, username, sub` (the account id as
//! a string), `exp, iat, token_type` (`Bearer` for access tokens,
//! `refresh_token` for refresh tokens). Answers come from the database, not
//! the cache: introspection is authoritative.

use http::header::HeaderValue;
use http::{Method, Request, Response};
use hyper::body::Incoming;

use super::{json, require_method, OAuth};
use crate::accounts::bootstrap::{ADMIN_SCOPE, INTROSPECT_SCOPE};
use crate::body::Body;
use crate::db::unix_now;
use crate::error::Rejection;
use crate::request::RequestCtx;
use crate::scope;
use crate::tokens::{hash, lookup, Kind};

pub async fn handle(
    oauth: &OAuth,
    ctx: &mut RequestCtx<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Rejection> {
    require_method(&req, &[Method::POST], "POST")?;
    let caller = oauth.authenticate(ctx, &req).await?;
    // Wildcards count as anywhere else (`scopegate:*` covers both).
    let allowed = |granted: &str| {
        scope::satisfies(granted, INTROSPECT_SCOPE) || scope::satisfies(granted, ADMIN_SCOPE)
    };
    if !caller.scopes().any(allowed) {
        return Err(Rejection::InsufficientScope {
            scope: Some(HeaderValue::from_static(
                "scopegate:introspect scopegate:admin",
            )),
        });
    }
    let form = oauth.read_form(req).await?;
    let token = form.require("token")?;
    let now = unix_now();
    let active = match Kind::of(token) {
        Some(Kind::Access) if crate::tokens::is_well_formed(token, Kind::Access) => {
            lookup::find_access(&oauth.db, &hash(token))
                .await?
                .filter(|r| r.is_valid(now))
                .map(|r| Active {
                    scopes: r.scopes,
                    username: r.username,
                    account_id: r.account_id,
                    expires: r.expires,
                    created: r.created,
                    token_type: "Bearer",
                })
        }
        Some(Kind::Refresh) if crate::tokens::is_well_formed(token, Kind::Refresh) => {
            lookup::find_refresh(&oauth.db, &hash(token))
                .await?
                .filter(|r| r.active)
                .map(|r| Active {
                    scopes: r.scopes,
                    username: r.username,
                    account_id: r.account_id,
                    expires: r.expires,
                    created: r.created,
                    token_type: "refresh_token",
                })
        }
        _ => None,
    };
    Ok(json(&match active {
        Some(a) => serde_json::json!({
            "active": true,
            "scope": a.scopes.join(" "),
            "username": a.username,
            "sub": a.account_id.to_string(),
            "exp": a.expires,
            "iat": a.created,
            "token_type": a.token_type,
        }),
        None => serde_json::json!({ "active": false }),
    }))
}

/// What an active token's introspection says.
struct Active {
    scopes: Vec<String>,
    username: String,
    account_id: i32,
    expires: i64,
    created: i64,
    token_type: &'static str,
}
