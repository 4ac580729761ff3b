//! The caller's own account: `GET /oauth/userinfo` and
//! `POST /oauth/password`. Both take a Bearer access token, validated
//! exactly like a proxied request (no token 401, bad token 401
//! `invalid_token`, database down 503).
//!
//! - **userinfo** answers the account as the admin API shows it (`id,
//!   username, first_name, last_name, is_active, scopes` — the account's
//!   own scope values — `roles` — role names) plus `scope`, the token's
//!   scopes, space-separated.
//! - **password** takes `current_password` and `new_password`. The new one
//!   is checked first (1 to 1024 bytes, else `invalid_request`); a wrong
//!   current password is `invalid_grant` and counts against the login
//!   throttle (per username and address, checked before hashing) — a stolen
//!   access token must not become a password-guessing oracle. Then, under
//!   the account row's lock, the caller's token must still be active (else
//!   401 `invalid_token`) and the stored hash still the one verified (else
//!   `invalid_grant`), so of two concurrent changes with one token exactly
//!   one succeeds. On success: the new hash is stored, every access and
//!   refresh token of the account is revoked (including the one used; this
//!   replica's cache forgets them at once), and the answer is `204`.

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{invalid_grant, json, require_method, status, OAuth, OAuthStats};
use crate::accounts::store::{self, PasswordChange};
use crate::accounts::{check_new_password, Password, MAX_PASSWORD_BYTES};
use crate::body::Body;
use crate::db::DbError;
use crate::error::Rejection;
use crate::request::RequestCtx;

const WRONG_CURRENT: &str = "the current password is incorrect";

pub async fn userinfo(
    oauth: &OAuth,
    ctx: &mut RequestCtx<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Rejection> {
    require_method(&req, &[Method::GET, Method::HEAD], "GET, HEAD")?;
    let caller = oauth.authenticate(ctx, &req).await?;
    let account = store::get_account(&oauth.db, caller.account_id)
        .await?
        .ok_or(Rejection::InvalidToken)?;
    let mut body = serde_json::to_value(&account).map_err(|_| Rejection::Internal)?;
    body["scope"] = serde_json::Value::from(caller.scope());
    Ok(json(&body))
}

pub async fn change_password(
    oauth: &OAuth,
    ctx: &mut RequestCtx<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Rejection> {
    require_method(&req, &[Method::POST], "POST")?;
    let caller = oauth.authenticate(ctx, &req).await?;
    let client = ctx.client;
    let form = oauth.read_form(req).await?;
    let current = form.require("current_password")?;
    let new = Password::new(form.require("new_password")?);
    check_new_password(&new).map_err(|e| {
        Rejection::oauth(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("new_password: {e}"),
        )
    })?;

    let attempt = oauth.begin_attempt(Some(caller.username()), client).await?;
    if current.len() > MAX_PASSWORD_BYTES {
        return Err(oauth.wrong_password(attempt, WRONG_CURRENT));
    }
    // An early return (`?`) drops `attempt` undecided: it does not count.
    let (phc, active) = async {
        let conn = oauth.db.get().await.map_err(DbError::from)?;
        store::password_of(&conn, caller.account_id).await
    }
    .await?
    .ok_or(Rejection::InvalidToken)?;
    let verified = oauth.hasher.verify(Password::new(current), &phc).await?;
    if !(verified && active) {
        return Err(oauth.wrong_password(attempt, WRONG_CURRENT));
    }
    oauth.throttle.succeeded(attempt);

    let change = store::change_password(
        &oauth.db,
        &oauth.hasher,
        caller.account_id,
        caller.token_id,
        &phc,
        new,
    )
    .await?;
    let revoked = match change {
        PasswordChange::Changed(revoked) => revoked,
        PasswordChange::TokenRevoked => return Err(Rejection::InvalidToken),
        PasswordChange::Superseded => return Err(invalid_grant(WRONG_CURRENT)),
    };
    OAuthStats::add(&oauth.stats.revoked, revoked.len());
    for h in &revoked {
        oauth.tokens.invalidate(h).await;
    }
    tracing::info!(
        account_id = caller.account_id,
        revoked = revoked.len(),
        "password changed; tokens revoked"
    );
    Ok(status(StatusCode::NO_CONTENT))
}
