//! The grants that need a client: `client_credentials` (RFC 6749 §4.4)
//! and `authorization_code` with PKCE (RFC 6749 §4.1.3, RFC 7636 §4.6).
//!
//! **client_credentials**: a confidential client only (a public client or
//! no client: `401 invalid_client`, RFC 6749 §4.4.2 requires client
//! authentication). `scope` must be within the client's (`invalid_scope`);
//! absent means all of them. The answer is an access token alone (no
//! refresh token, RFC 6749 §4.4.3) belonging to the client's service
//! account.
//!
//! **authorization_code**: `code`, `redirect_uri` and `code_verifier`;
//! a public client names itself with `client_id`, a confidential client
//! authenticates. `redirect_uri` must equal the one the code was issued
//! for (it may be left out only when the client registered a single URI).
//! Another client's code, a wrong redirect URI or verifier, an expired or
//! used code: `400 invalid_grant` (RFC 6749 §5.2); a used code also
//! revokes what it issued ([`crate::clients::codes`]). The answer is the
//! password grant's: an access and a refresh token, both bound to the
//! client.

use http::{Response, StatusCode};

use super::client_auth::Caller;
use super::form::Form;
use super::token::{requested_scope, token_response};
use super::{invalid_grant, invalid_scope, json, OAuth, OAuthStats};
use crate::body::Body;
use crate::clients::codes::{self, Redeem};
use crate::clients::store::ClientScope;
use crate::db::DbError;
use crate::error::Rejection;
use crate::tokens::issue::{self, Grant};

const BAD_CODE: &str =
    "the authorization code is invalid, expired, already used, or was issued to another client or redirect URI";

fn grant_of(scopes: &[ClientScope]) -> Grant {
    Grant::new(scopes.iter().map(|s| (s.id, s.value.as_str())))
}

pub async fn client_credentials(
    oauth: &OAuth,
    form: &Form,
    caller: &Caller,
    basic: bool,
) -> Result<Response<Body>, Rejection> {
    let Caller::Confidential(client) = caller else {
        return Err(Rejection::InvalidClient { basic });
    };
    let scopes = match requested_scope(form)? {
        None => client.scopes.clone(),
        Some(requested) => client.select_scopes(&requested).ok_or_else(invalid_scope)?,
    };
    let issued = async {
        let conn = oauth.db.get().await.map_err(DbError::from)?;
        issue::issue_access(
            &conn,
            client.account_id,
            &grant_of(&scopes),
            &oauth.ttl,
            client.pk,
        )
        .await
    }
    .await?;
    OAuthStats::bump(&oauth.stats.client_credentials);
    Ok(json(&serde_json::json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": issued.scope,
    })))
}

pub async fn authorization_code(
    oauth: &OAuth,
    form: &Form,
    caller: &Caller,
) -> Result<Response<Body>, Rejection> {
    let Some(client) = caller.client() else {
        return Err(Rejection::oauth(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "the client must authenticate, or name itself with client_id if it is public",
        ));
    };
    let code = form.require("code")?;
    let verifier = form.require("code_verifier")?;
    let redirect_uri = match (form.get("redirect_uri"), client.redirect_uris.as_slice()) {
        (Some(uri), _) => uri,
        (None, [only]) => only.as_str(),
        (None, _) => form.require("redirect_uri")?,
    };
    let mut conn = oauth.db.get().await.map_err(DbError::from)?;
    let redeemed = codes::redeem(&mut conn, code, client.pk, redirect_uri, verifier).await?;
    let answer = match redeemed {
        Redeem::Invalid => Err(invalid_grant(BAD_CODE)),
        Redeem::Reused { revoked } => {
            tracing::warn!(
                client_id = %client.client_id,
                revoked_access_tokens = revoked.len(),
                "an authorization code was presented again; what it issued is revoked"
            );
            for h in &revoked {
                oauth.tokens.invalidate(h).await;
            }
            Err(invalid_grant(BAD_CODE))
        }
        Redeem::Ready(exchange) => {
            let (pair, ids) = issue::issue(
                exchange.tx(),
                exchange.account_id,
                &grant_of(&exchange.scopes),
                &oauth.ttl,
                None,
                Some(client.pk),
            )
            .await?;
            exchange.finish(ids.refresh_token_id).await?;
            OAuthStats::bump(&oauth.stats.code_exchanges);
            Ok(token_response(&pair))
        }
    };
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_scopes_become_a_grant() {
        let g = grant_of(&[
            ClientScope {
                id: 3,
                value: "b:x".into(),
            },
            ClientScope {
                id: 1,
                value: "a:y".into(),
            },
        ]);
        assert_eq!(g.scope(), "a:y b:x");
        assert_eq!(g.ids(), &[1, 3]);
    }
}
