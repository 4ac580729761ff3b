//! `POST /oauth/revoke` (RFC 7009).
//!
//! - `token` is required (`invalid_request` otherwise); the answer is `200`
//!   whether or not the token existed, was already revoked, or is garbage.
//! - The token's kind is read from its prefix (`sga_` / `sgr_`), which is
//!   authoritative; `token_type_hint` is therefore only a hint we never need
//!   and a wrong or unknown hint changes nothing (RFC 7009 §2.1 allows
//!   ignoring it). A token without either prefix cannot exist: 200 without
//!   a database query.
//! - Revoking an **access token** revokes that token only.
//! - Revoking a **refresh token** revokes its whole family: every refresh
//!   token descended from the same login and every access token issued with
//!   any of them (RFC 7009 §2.1 "MAY"; it is what "log out" means, and the
//!   family's older refresh tokens are already dead anyway).
//! - Revoked access tokens are dropped from this replica's cache at once.
//! - Clients authenticate as at the token endpoint ([`client_auth`]; a
//!   wrong secret is `401 invalid_client`, RFC 7009 §2.1). A token issued
//!   through a **confidential** client is revoked only when that client
//!   authenticated; for anyone else the answer is 200 and nothing happens
//!   (RFC 7009 §2.1: the server "verifies whether the token was issued to
//!   the client making the revocation request"). Other tokens (no client,
//!   or a public client's) are revoked for whoever presents them, as before.
//! - The database unreachable: 503 + `Retry-After` (RFC 7009 §2.2.1).

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{client_auth, require_method, status, OAuth, OAuthStats};
use crate::body::Body;
use crate::error::Rejection;
use crate::tokens::{hash, revoke, Kind};

pub async fn handle(oauth: &OAuth, req: Request<Incoming>) -> Result<Response<Body>, Rejection> {
    require_method(&req, &[Method::POST], "POST")?;
    let (parts, form) = oauth.read_form_parts(req).await?;
    let caller = client_auth::authenticate(&oauth.db, &parts.headers, &form).await?;
    let token = form.require("token")?;
    let key = hash(token);
    match Kind::of(token) {
        Some(Kind::Access) if crate::tokens::is_well_formed(token, Kind::Access) => {
            if revoke::revoke_access(&oauth.db, &key, caller.pk()).await? {
                OAuthStats::bump(&oauth.stats.revoked);
            }
            oauth.tokens.invalidate(&key).await;
        }
        Some(Kind::Refresh) if crate::tokens::is_well_formed(token, Kind::Refresh) => {
            let revoked = revoke::revoke_refresh(&oauth.db, &key, caller.pk()).await?;
            OAuthStats::add(&oauth.stats.revoked, revoked.len());
            for h in &revoked {
                oauth.tokens.invalidate(h).await;
            }
        }
        _ => {}
    }
    Ok(status(StatusCode::OK))
}
