//! `GET /.well-known/oauth-authorization-server`: authorization server
//! metadata (RFC 8414 §2, §3), from `[oauth] issuer`. No token needed.
//!
//! The endpoints are the issuer followed by their paths; the grant types
//! are the ones this server answers (without `password` when
//! `[oauth] password_grant = false`, RFC 9700 §2.4); `scopes_supported`
//! are the scope values in the database, so it answers 503 when the
//! database cannot.

use http::{Method, Request, Response};
use hyper::body::Incoming;

use super::{json, require_method, OAuth};
use crate::body::Body;
use crate::db::{classify, DbError};
use crate::error::Rejection;

/// The grant types the token endpoint answers.
pub fn grant_types(password_grant: bool) -> Vec<&'static str> {
    let mut g = vec!["authorization_code", "client_credentials", "refresh_token"];
    if password_grant {
        g.push("password");
    }
    g
}

pub async fn handle(oauth: &OAuth, req: Request<Incoming>) -> Result<Response<Body>, Rejection> {
    require_method(&req, &[Method::GET, Method::HEAD], "GET, HEAD")?;
    let scopes: Vec<String> = async {
        let conn = oauth.db.get().await.map_err(DbError::from)?;
        let rows = conn
            .query("SELECT scope_value FROM scopes ORDER BY scope_value", &[])
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|r| r.try_get(0).map_err(classify))
            .collect::<Result<Vec<String>, DbError>>()
    }
    .await?;
    let issuer = oauth.authorize.issuer.trim_end_matches('/');
    Ok(json(&serde_json::json!({
        "issuer": oauth.authorize.issuer,
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": grant_types(oauth.password_grant),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": scopes,
        "authorization_response_iss_parameter_supported": true,
    })))
}
