//! `POST /oauth/introspect` (RFC 7662).
//!
//! The caller authenticates with a Bearer access token holding
//! `scopegate:introspect` or `scopegate:admin` (or a wildcard covering one,
//! e.g. `scopegate:*`). No credentials or a bad token: 401 with the RFC 6750
//! challenge; a valid token without either scope: 403 `insufficient_scope`.
//! The caller is checked before the body is read.
//!
//! Or the caller is a **confidential client** holding `scopegate:introspect`
//! among its scopes (how resource servers usually call it, RFC 7662 §2.1),
//! authenticating as at the token endpoint ([`super::client_auth`]): a bad
//! secret is `401 invalid_client`, a public client `401 invalid_client`, a
//! confidential client without the scope `403 unauthorized_client`.
//!
//! Each authenticated caller (the account behind the Bearer token, or the
//! client) may introspect `oauth.introspections_per_caller` times per
//! second, burst twice that ([`crate::rate::RateLimit`]); beyond it the
//! answer is 429 + `Retry-After` before the form is looked at, so the
//! endpoint cannot serve as a high-rate oracle for guessing tokens. Other
//! callers are unaffected.
//!
//! The answer is `{"active": false}` for anything that is not a valid token
//! right now (unknown, garbage, expired, revoked, rotated, inactive
//! account), and otherwise `active, scope, username, sub` (the account id as
//! a string), `exp, iat, token_type` (`Bearer` for access tokens,
//! `refresh_token` for refresh tokens), and `client_id` for a token issued
//! through a client. Answers come from the database, not
//! the cache: introspection is authoritative.

use http::header::HeaderValue;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::client_auth::{self, Caller};
use super::{json, require_method, OAuth};
use crate::accounts::bootstrap::{ADMIN_SCOPE, INTROSPECT_SCOPE};
use crate::body::Body;
use crate::error::Rejection;
use crate::request::RequestCtx;
use crate::scope;
use crate::tokens::bearer::{credentials, Credentials};
use crate::tokens::{hash, lookup, Kind};

/// Who the introspection rate is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// The account behind a Bearer token (all its tokens share one rate).
    Account(i32),
    /// A client authenticating as itself.
    Client(String),
}

/// How many callers' rates are tracked at once (least recently used go).
pub const MAX_CALLERS: u64 = 100_000;

/// Count one introspection of `key` against its rate.
fn take(oauth: &OAuth, key: RateKey) -> Result<(), Rejection> {
    oauth
        .introspect_rate
        .take(key)
        .map_err(|retry_after_secs| Rejection::TooManyIntrospections { retry_after_secs })
}

pub async fn handle(
    oauth: &OAuth,
    ctx: &mut RequestCtx<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Rejection> {
    require_method(&req, &[Method::POST], "POST")?;
    // Wildcards count as anywhere else (`scopegate:*` covers both).
    let allowed = |granted: &str| {
        scope::satisfies(granted, INTROSPECT_SCOPE) || scope::satisfies(granted, ADMIN_SCOPE)
    };
    let bearer = matches!(
        credentials(req.headers(), req.uri().query())?,
        Credentials::Bearer(_)
    );
    let form = if bearer {
        let caller = oauth.authenticate(ctx, &req).await?;
        if !caller.scopes().any(allowed) {
            return Err(Rejection::InsufficientScope {
                scope: Some(HeaderValue::from_static(
                    "scopegate:introspect scopegate:admin",
                )),
            });
        }
        take(oauth, RateKey::Account(caller.account_id))?;
        oauth.read_form(req).await?
    } else {
        let (parts, form) = oauth.read_form_parts(req).await?;
        match client_auth::authenticate(&oauth.db, &parts.headers, &form).await? {
            Caller::Anonymous => return Err(Rejection::MissingCredentials),
            Caller::Public(_) => {
                return Err(Rejection::InvalidClient {
                    basic: client_auth::basic_used(&parts.headers),
                })
            }
            Caller::Confidential(c) if c.scopes.iter().any(|s| s.value == INTROSPECT_SCOPE) => {
                take(oauth, RateKey::Client(c.client_id))?;
            }
            Caller::Confidential(_) => return Err(Rejection::oauth(
                StatusCode::FORBIDDEN,
                "unauthorized_client",
                "this client may not introspect tokens (it needs the scopegate:introspect scope)",
            )),
        }
        form
    };
    let token = form.require("token")?;
    let active = match Kind::of(token) {
        Some(Kind::Access) if crate::tokens::is_well_formed(token, Kind::Access) => {
            lookup::find_access(&oauth.db, &hash(token), oauth.tokens.db_deadline())
                .await?
                .filter(|r| r.is_valid())
                .map(|r| Active {
                    scopes: r.scopes,
                    username: r.username,
                    account_id: r.account_id,
                    expires: r.expires,
                    created: r.created,
                    token_type: "Bearer",
                    client_id: r.client_id,
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
                    client_id: r.client_id,
                })
        }
        _ => None,
    };
    Ok(json(&match active {
        Some(a) => {
            let mut v = serde_json::json!({
                "active": true,
                "scope": a.scopes.join(" "),
                "username": a.username,
                "sub": a.account_id.to_string(),
                "exp": a.expires,
                "iat": a.created,
                "token_type": a.token_type,
            });
            if let Some(id) = a.client_id {
                v["client_id"] = serde_json::Value::from(id);
            }
            v
        }
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
    client_id: Option<String>,
}
