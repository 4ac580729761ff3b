//! `POST /oauth/token`: client authentication ([`super::client_auth`]),
//! then the grant: password (RFC 6749 §4.3; off with `[oauth]
//! password_grant = false`, RFC 9700 §2.4), refresh_token (§6), and the
//! client grants in [`super::client_grants`]: client_credentials (§4.4)
//! and authorization_code with PKCE (§4.1.3, RFC 7636).
//!
//! Through a client, the password grant's scopes are also limited to the
//! client's, and the pair is bound to the client; a request naming no
//! client works as it always has.
//!
//! Password grant, in order:
//! 1. parameters (`invalid_request` when missing or repeated; a malformed
//!    `scope` is `invalid_scope`);
//! 2. the throttle, per normalized username and per client address (429
//!    before any database or hashing work);
//! 3. a password over 1024 bytes, or a string that cannot be a username, is
//!    a failed login at once (`invalid_grant`, no hashing: such accounts
//!    cannot exist);
//! 4. one query for the account and its hash; argon2 verification on the
//!    hashing pool, against a dummy hash when the username is unknown, and
//!    for inactive accounts too, so every `invalid_grant` costs the same;
//! 5. one transaction issues the pair ([`issue_login`]): it locks the
//!    account row `FOR SHARE` and confirms the verified hash is still the
//!    account's password, so a login racing a password change either loses
//!    (the change committed first: read and verify again) or is revoked by
//!    it (the change waits for the lock). The requested scope must be a
//!    subset of the effective scopes (`invalid_scope`, checked only after
//!    the password, so it reveals nothing to a guesser); absent means all
//!    of them;
//! 6. a hash made with other argon2 parameters than the current ones is
//!    replaced with one made with them, on the hashing pool.
//!
//! Refresh grant: the token must carry the refresh prefix (an access token
//! is `invalid_grant` without a query); then, in one transaction,
//! [`rotate::present`] locks it (see there for reuse detection and the
//! grace window), the account's held scopes are read on that transaction
//! ([`scopes::effective_scope_ids`]), and [`rotate::Rotation::rotate`]
//! issues the successor with the token's scopes that are still held
//! (narrowed to the requested ones). When a replay revokes a family, the
//! revoked access tokens are dropped from this replica's cache before we
//! answer. A refresh token issued through a client is refreshed only by
//! that client, one issued with no client only with none (`invalid_grant`,
//! RFC 6749 §6).

use std::net::IpAddr;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::client_auth::{self, Caller};
use super::form::Form;
use super::{client_grants, invalid_grant, invalid_scope, json, require_method, OAuth, OAuthStats};
use crate::accounts::scopes::{self, select_scopes};
use crate::accounts::store::{confirm_login, find_login, LoginRecord};
use crate::accounts::{normalize_username, Password, MAX_PASSWORD_BYTES};
use crate::body::Body;
use crate::db::DbError;
use crate::error::Rejection;
use crate::tokens::issue::{self, IssueError, IssuedPair};
use crate::tokens::rotate::{self, Presented};
use crate::tokens::Kind;

const BAD_CREDENTIALS: &str = "the username or password is incorrect";
const BAD_REFRESH: &str = "the refresh token is invalid, expired or revoked";

pub async fn handle(
    oauth: &OAuth,
    req: Request<Incoming>,
    client: IpAddr,
) -> Result<Response<Body>, Rejection> {
    require_method(&req, &[Method::POST], "POST")?;
    let (parts, form) = oauth.read_form_parts(req).await?;
    let grant_type = form.require("grant_type")?;
    let caller = client_auth::authenticate(&oauth.db, &parts.headers, &form).await?;
    match grant_type {
        "password" if oauth.password_grant => password_grant(oauth, &form, client, &caller).await,
        "refresh_token" => refresh_grant(oauth, &form, &caller).await,
        "client_credentials" => {
            let basic = client_auth::basic_used(&parts.headers);
            client_grants::client_credentials(oauth, &form, &caller, basic).await
        }
        "authorization_code" => client_grants::authorization_code(oauth, &form, &caller).await,
        _ => Err(Rejection::oauth(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            if oauth.password_grant {
                "supported grant types: authorization_code, client_credentials, refresh_token, password"
            } else {
                "supported grant types: authorization_code, client_credentials, refresh_token"
            },
        )),
    }
}

/// The `scope` parameter: `None` when absent (or empty), else the list.
pub(super) fn requested_scope(form: &Form) -> Result<Option<Vec<String>>, Rejection> {
    match form.get("scope") {
        None => Ok(None),
        Some(s) => match crate::scope::parse_list(s) {
            Some(list) if list.is_empty() => Ok(None),
            Some(list) => Ok(Some(list)),
            None => Err(invalid_scope()),
        },
    }
}

pub(super) fn token_response(pair: &IssuedPair) -> Response<Body> {
    json(&serde_json::json!({
        "access_token": pair.access_token,
        "token_type": "Bearer",
        "expires_in": pair.expires_in,
        "refresh_token": pair.refresh_token,
        "scope": pair.scope,
    }))
}

async fn password_grant(
    oauth: &OAuth,
    form: &Form,
    client: IpAddr,
    caller: &Caller,
) -> Result<Response<Body>, Rejection> {
    let raw_username = form.require("username")?;
    let raw_password = form.require("password")?;
    let requested = requested_scope(form)?;
    let username = normalize_username(raw_username).ok();

    let attempt = oauth.begin_attempt(username.as_deref(), client).await?;
    let Some(username) = username.filter(|_| raw_password.len() <= MAX_PASSWORD_BYTES) else {
        return Err(oauth.wrong_password(attempt, BAD_CREDENTIALS));
    };
    // A full hashing queue answers 503 before any database work.
    oauth.hasher.admit()?;

    // A password change can commit between reading the hash and issuing:
    // the pair is issued only if the verified hash is still the account's
    // ([`issue_login`]). If it is not (changed, or rehashed by a concurrent
    // login), read and verify once more.
    for _ in 0..2 {
        // An early return (`?`) drops `attempt` undecided: it does not count.
        let record = async {
            let conn = oauth.db.get().await.map_err(DbError::from)?;
            find_login(&conn, &username).await
        }
        .await?;
        let password = Password::new(raw_password);
        let verified = match &record {
            Some(r) => oauth.hasher.verify(password, &r.password_hash).await,
            None => oauth.hasher.verify_dummy(password).await,
        }?;
        let record = match (verified, record) {
            (true, Some(r)) if r.is_active => r,
            _ => return Err(oauth.wrong_password(attempt, BAD_CREDENTIALS)),
        };
        match issue_login(oauth, &record, requested.as_deref(), caller).await? {
            Login::Issued(pair) => {
                oauth.throttle.succeeded(attempt);
                OAuthStats::bump(&oauth.stats.logins);
                super::login::rehash(oauth, &record, raw_password).await;
                return Ok(token_response(&pair));
            }
            Login::InvalidScope => {
                oauth.throttle.succeeded(attempt);
                return Err(invalid_scope());
            }
            Login::Superseded => continue,
        }
    }
    // Superseded twice in a row: undecided, and nothing issued.
    Err(invalid_grant(BAD_CREDENTIALS))
}

/// How [`issue_login`] ended.
enum Login {
    Issued(IssuedPair),
    /// The requested scope is not among the account's.
    InvalidScope,
    /// The verified hash is no longer the account's password (or the
    /// account was disabled) since it was read: nothing issued.
    Superseded,
}

/// Issue a login's pair in one transaction that holds the account row
/// `FOR SHARE` and has confirmed `record`'s (verified) hash is still the
/// account's password ([`confirm_login`]), with the scopes the account
/// holds now: a password change either committed first (superseded) or
/// waits for this transaction and revokes the pair.
async fn issue_login(
    oauth: &OAuth,
    record: &LoginRecord,
    requested: Option<&[String]>,
    caller: &Caller,
) -> Result<Login, IssueError> {
    let mut conn = oauth.db.get().await?;
    let tx = conn.transaction().await?;
    if !confirm_login(&tx, record.account_id, &record.password_hash).await? {
        return Ok(Login::Superseded);
    }
    let mut held = scopes::effective_scopes(&tx, record.account_id).await?;
    if let Some(client) = caller.client() {
        held.retain(|s| client.allows(&s.value));
    }
    let Some(chosen) = select_scopes(held, requested) else {
        return Ok(Login::InvalidScope);
    };
    let (pair, _) = issue::issue(
        &tx,
        record.account_id,
        &scopes::grant(&chosen),
        &oauth.ttl,
        None,
        caller.pk(),
    )
    .await?;
    tx.commit().await?;
    Ok(Login::Issued(pair))
}

async fn refresh_grant(
    oauth: &OAuth,
    form: &Form,
    caller: &Caller,
) -> Result<Response<Body>, Rejection> {
    let token = form.require("refresh_token")?;
    let requested = requested_scope(form)?;
    if !crate::tokens::is_well_formed(token, Kind::Refresh) {
        // An access token, or anything else that cannot be a refresh token.
        return Err(invalid_grant(BAD_REFRESH));
    }
    let mut conn = oauth.db.get().await.map_err(DbError::from)?;
    let presented = rotate::present(&mut conn, token, &oauth.ttl, caller.pk()).await?;
    match presented {
        Presented::Current(rotation) => {
            let held =
                scopes::effective_scope_ids(rotation.client(), rotation.account_id()).await?;
            let available = scopes::still_held(rotation.token_scopes(), &held);
            // Dropping the rotation rolls back: a refused scope does not
            // consume the token.
            let chosen =
                select_scopes(available, requested.as_deref()).ok_or_else(invalid_scope)?;
            let pair = rotation
                .rotate(&scopes::grant(&chosen))
                .await?
                .ok_or_else(|| invalid_grant(BAD_REFRESH))?;
            OAuthStats::bump(&oauth.stats.refreshes);
            Ok(token_response(&pair))
        }
        Presented::Replayed(pair) => Ok(token_response(&pair)),
        Presented::Invalid => Err(invalid_grant(BAD_REFRESH)),
        Presented::Reused { revoked } => {
            OAuthStats::bump(&oauth.stats.refresh_reuse);
            OAuthStats::add(&oauth.stats.revoked, revoked.len());
            tracing::warn!(
                revoked_access_tokens = revoked.len(),
                "a rotated refresh token was presented again; its family is revoked"
            );
            for h in &revoked {
                oauth.tokens.invalidate(h).await;
            }
            Err(invalid_grant(BAD_REFRESH))
        }
    }
}
