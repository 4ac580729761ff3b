//! `GET` and `POST /oauth/authorize`: the authorization code flow with
//! PKCE (RFC 6749 §4.1, RFC 7636, as OAuth 2.1 profiles it;
//! `docs/http.md`, "GET /oauth/authorize" and "POST /oauth/authorize").
//!
//! In order, for both methods:
//! 1. **The client and the redirect URI, before anything else.** An
//!    unknown `client_id`, or a `redirect_uri` that is not exactly one the
//!    client registered (absent is allowed only when it registered exactly
//!    one), gets a 400 page and is **never** redirected (RFC 6749 §4.1.2.1,
//!    RFC 9700 §4.1.3). So does a query that cannot be parsed (a repeated
//!    or badly encoded parameter): we cannot tell which redirect URI is
//!    meant.
//! 2. (`POST`) **The anti-CSRF token** ([`csrf`]): missing, forged, stale,
//!    or without the browser's cookie: a 400 page.
//! 3. **The rest of the request**, errors redirected to the verified URI
//!    with `error`, `state` and `iss` (RFC 6749 §4.1.2.1, RFC 9207):
//!    `response_type` other than `code` is `unsupported_response_type`;
//!    a missing `code_challenge`, a `code_challenge_method` other than
//!    `S256` (absent means `plain`, RFC 7636 §4.3) or a malformed
//!    challenge is `invalid_request` (PKCE is required for every client,
//!    RFC 9700 §2.1.1); a scope the client may not have is
//!    `invalid_scope`.
//! 4. `GET`: the login page ([`page`]). `POST`: the username and password,
//!    checked exactly like the password grant ([`super::login`]): wrong ->
//!    the page again with an error (200), throttled -> a 429 page with
//!    `Retry-After`; right -> a single-use code
//!    ([`crate::clients::codes`]) and `302` to
//!    `redirect_uri?code&state&iss`.
//!
//! Scopes of the code: the requested ones the account holds (all of them
//! within the client's: step 3), or, with no `scope`, the account's that
//! the client may have.

pub mod csrf;
pub mod page;

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::form::Form;
use super::login::{self, LoginFailure};
use super::{require_method, OAuth, OAuthStats};
use crate::accounts::scopes::effective_scopes;
use crate::accounts::Password;
use crate::body::{self, Body};
use crate::clients::codes::{self, NewCode};
use crate::clients::redirect::with_params;
use crate::clients::store::{self, Registered};
use crate::db::{unix_now, DbError};
use crate::error::Rejection;
use crate::request::RequestCtx;
use csrf::CsrfKey;

/// The authorization endpoint's settings and key.
pub struct Settings {
    /// `iss` in every authorization response (RFC 9207).
    pub issuer: String,
    pub code_ttl: Duration,
    csrf: CsrfKey,
    /// Mark the cookie `Secure` (the issuer is `https`).
    secure_cookie: bool,
}

impl Settings {
    pub fn new(issuer: String, code_ttl: Duration) -> Settings {
        Settings {
            secure_cookie: issuer.starts_with("https://"),
            issuer,
            code_ttl,
            csrf: CsrfKey::random(),
        }
    }
}

/// The authorization request's parameters, in the order the anti-CSRF MAC
/// frames them; the form carries them back as hidden fields.
pub const PARAMS: [&str; 7] = [
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

/// Longest `state` we echo.
const MAX_STATE_BYTES: usize = 1024;

pub async fn handle(
    oauth: &OAuth,
    ctx: &mut RequestCtx<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Rejection> {
    require_method(
        &req,
        &[Method::GET, Method::HEAD, Method::POST],
        "GET, HEAD, POST",
    )?;
    if req.method() == Method::POST {
        submit(oauth, ctx, req).await
    } else {
        show(oauth, req).await
    }
}

fn refused(reason: &str) -> Response<Body> {
    page::respond(StatusCode::BAD_REQUEST, page::refused(reason))
}

/// Step 1: the client and the exact redirect URI, or the 400 page.
async fn resolve(
    oauth: &OAuth,
    params: &Form,
) -> Result<Result<(Registered, String), Response<Body>>, Rejection> {
    let Some(client_id) = params.get("client_id") else {
        return Ok(Err(refused(
            "The request names no client (client_id is missing).",
        )));
    };
    let Some(client) = store::lookup(&oauth.db, client_id).await? else {
        return Ok(Err(refused(
            "The application that sent you here is not registered (unknown client_id).",
        )));
    };
    let redirect_uri = match params.get("redirect_uri") {
        Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => uri.to_owned(),
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        Some(_) => {
            return Ok(Err(refused(
                "The redirect_uri is not registered for this application, so you were not sent back to it.",
            )))
        }
        None => {
            return Ok(Err(refused(
                "The request has no redirect_uri, and the application registered more than one.",
            )))
        }
    };
    if !client.account_active {
        return Ok(Err(refused("This application is disabled.")));
    }
    Ok(Ok((client, redirect_uri)))
}

/// A validated request (step 3).
pub struct Valid {
    /// `None`: no `scope` parameter.
    pub scopes: Option<Vec<String>>,
    pub code_challenge: String,
}

/// Step 3, for a request whose client and redirect URI are settled:
/// `Err((error, error_description))` to redirect with. Public so that the
/// login form can be fuzzed without a database.
pub fn validate(client: &Registered, params: &Form) -> Result<Valid, (&'static str, &'static str)> {
    match params.get("response_type") {
        None => return Err(("invalid_request", "response_type is missing")),
        Some("code") => {}
        Some(_) => {
            return Err((
                "unsupported_response_type",
                "only response_type=code is supported",
            ))
        }
    }
    if params
        .get("state")
        .is_some_and(|s| s.len() > MAX_STATE_BYTES)
    {
        return Err(("invalid_request", "state is longer than 1024 bytes"));
    }
    // `state = 1*VSCHAR` (RFC 6749 Appendix A.5). Beyond the grammar, a
    // line break or a NUL cannot survive the login form: browsers turn
    // every line break in a posted field into CR LF and a NUL in an
    // attribute into U+FFFD, so the posted request would differ from the
    // one the anti-CSRF token was minted for, and no sign-in could succeed.
    if params
        .get("state")
        .is_some_and(|s| !s.bytes().all(|b| (0x20..=0x7e).contains(&b)))
    {
        return Err((
            "invalid_request",
            "state must be printable ASCII (RFC 6749 Appendix A.5)",
        ));
    }
    let Some(challenge) = params.get("code_challenge") else {
        return Err((
            "invalid_request",
            "code_challenge is required (PKCE, RFC 7636)",
        ));
    };
    if params.get("code_challenge_method") != Some(codes::S256) {
        return Err(("invalid_request", "code_challenge_method must be S256"));
    }
    if !codes::is_challenge(challenge) {
        return Err((
            "invalid_request",
            "code_challenge must be the 43-character base64url SHA-256 of the verifier",
        ));
    }
    let scopes = match params.get("scope").map(crate::scope::parse_list) {
        None => None,
        Some(Some(list)) if list.is_empty() => None,
        Some(Some(list)) if list.iter().all(|s| client.allows(s)) => Some(list),
        Some(_) => {
            return Err((
                "invalid_scope",
                "the requested scope is invalid or not allowed for this client",
            ))
        }
    };
    Ok(Valid {
        scopes,
        code_challenge: challenge.to_owned(),
    })
}

/// A `302` to `location`.
fn found(location: &str) -> Result<Response<Body>, Rejection> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::FOUND;
    let value = HeaderValue::from_str(location).map_err(|_| Rejection::Internal)?;
    r.headers_mut().insert(header::LOCATION, value);
    Ok(r)
}

fn redirect_error(
    oauth: &OAuth,
    redirect_uri: &str,
    (error, description): (&str, &str),
    state: Option<&str>,
) -> Result<Response<Body>, Rejection> {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(s) = state.filter(|s| s.len() <= MAX_STATE_BYTES) {
        params.push(("state", s));
    }
    params.push(("iss", &oauth.authorize.issuer));
    found(&with_params(redirect_uri, &params))
}

/// The raw request parameters, in [`PARAMS`] order (`""` when absent):
/// what the anti-CSRF token is bound to.
pub fn raw_params(params: &Form) -> [&str; 7] {
    PARAMS.map(|name| params.get(name).unwrap_or(""))
}

/// The login form's hidden fields: the request's non-empty parameters
/// (`raw`, in [`PARAMS`] order), then the anti-CSRF `token`. Posted back,
/// they must give the same [`raw_params`], or the token cannot verify.
pub fn hidden_fields<'a>(raw: &[&'a str; 7], token: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut hidden: Vec<(&str, &str)> = PARAMS
        .iter()
        .zip(raw)
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (*k, *v))
        .collect();
    hidden.push(("csrf", token));
    hidden
}

/// A request the login page is shown for.
struct Shown<'a> {
    client: &'a Registered,
    params: &'a Form,
    valid: &'a Valid,
    /// The browser's nonce (cookie).
    nonce: &'a str,
}

/// The login page for this request, with a fresh anti-CSRF token.
fn login_page(
    oauth: &OAuth,
    status: StatusCode,
    shown: &Shown<'_>,
    username: &str,
    error: Option<&str>,
) -> Response<Body> {
    let Shown {
        client,
        params,
        valid,
        nonce,
    } = *shown;
    let raw = raw_params(params);
    let token = oauth.authorize.csrf.token(unix_now(), nonce, &raw);
    let hidden = hidden_fields(&raw, &token);
    let html = page::login(&page::Login {
        client_name: &client.name,
        scopes: valid.scopes.as_deref(),
        hidden: &hidden,
        username,
        error,
    });
    let mut r = page::respond(status, html);
    if let Ok(v) = HeaderValue::from_str(&csrf::set_cookie(nonce, oauth.authorize.secure_cookie)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn show(oauth: &OAuth, req: Request<Incoming>) -> Result<Response<Body>, Rejection> {
    let Ok(params) = Form::parse(req.uri().query().unwrap_or("").as_bytes()) else {
        return Ok(refused(
            "The request's parameters are malformed or repeated.",
        ));
    };
    let (client, redirect_uri) = match resolve(oauth, &params).await? {
        Ok(x) => x,
        Err(page) => return Ok(page),
    };
    let valid = match validate(&client, &params) {
        Ok(v) => v,
        Err(e) => return redirect_error(oauth, &redirect_uri, e, params.get("state")),
    };
    let nonce = match csrf::nonce_from(req.headers()) {
        Some(n) => n,
        None => csrf::new_nonce().map_err(|_| Rejection::Internal)?,
    };
    let shown = Shown {
        client: &client,
        params: &params,
        valid: &valid,
        nonce: &nonce,
    };
    Ok(login_page(oauth, StatusCode::OK, &shown, "", None))
}

async fn submit(
    oauth: &OAuth,
    ctx: &mut RequestCtx<'_>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Rejection> {
    let (parts, body) = req.into_parts();
    let form = match Form::read(&parts.headers, body, oauth.body_deadline).await {
        Ok(f) => f,
        Err(Rejection::PayloadTooLarge) => return Err(Rejection::PayloadTooLarge),
        Err(_) => return Ok(refused("The form could not be read.")),
    };
    let (client, redirect_uri) = match resolve(oauth, &form).await? {
        Ok(x) => x,
        Err(page) => return Ok(page),
    };
    let nonce = csrf::nonce_from(&parts.headers);
    let csrf_ok = match (&nonce, form.get("csrf")) {
        (Some(n), Some(t)) => oauth
            .authorize
            .csrf
            .verify(t, unix_now(), n, &raw_params(&form)),
        _ => false,
    };
    let Some(nonce) = nonce.filter(|_| csrf_ok) else {
        return Ok(refused(
            "The sign-in form expired or was not issued for this request. Return to the application and start again.",
        ));
    };
    let valid = match validate(&client, &form) {
        Ok(v) => v,
        Err(e) => return redirect_error(oauth, &redirect_uri, e, form.get("state")),
    };
    let username = form.get("username").unwrap_or("");
    let shown = Shown {
        client: &client,
        params: &form,
        valid: &valid,
        nonce: &nonce,
    };
    let page_again = |status, error| login_page(oauth, status, &shown, username, Some(error));
    let Some(password) = form.get("password").filter(|_| !username.is_empty()) else {
        return Ok(page_again(
            StatusCode::OK,
            "Enter your username and password.",
        ));
    };
    let record = match login::check(oauth, username, Password::new(password), ctx.client).await {
        Ok(r) => r,
        Err(LoginFailure::Wrong) => {
            return Ok(page_again(
                StatusCode::OK,
                "The username or password is incorrect.",
            ))
        }
        Err(LoginFailure::Refused(Rejection::TooManyRequests { retry_after_secs })) => {
            let mut r = page::respond(
                StatusCode::TOO_MANY_REQUESTS,
                page::throttled(retry_after_secs),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            return Ok(r);
        }
        Err(LoginFailure::Refused(other)) => return Err(other),
    };
    let held = async {
        let conn = oauth.db.get().await.map_err(DbError::from)?;
        effective_scopes(&conn, record.account_id).await
    }
    .await?;
    let scope_ids: Vec<i32> = held
        .iter()
        .filter(|s| match &valid.scopes {
            Some(requested) => requested.contains(&s.value),
            None => client.allows(&s.value),
        })
        .map(|s| s.id)
        .collect();
    let code = codes::create(
        &oauth.db,
        NewCode {
            client_pk: client.pk,
            account_id: record.account_id,
            redirect_uri: &redirect_uri,
            code_challenge: &valid.code_challenge,
            scope_ids: &scope_ids,
            password_hash: &record.password_hash,
            ttl: oauth.authorize.code_ttl,
        },
    )
    .await?;
    OAuthStats::bump(&oauth.stats.codes);
    let mut params = vec![("code", code.expose())];
    if let Some(s) = form.get("state") {
        params.push(("state", s));
    }
    params.push(("iss", &oauth.authorize.issuer));
    found(&with_params(&redirect_uri, &params))
}

#[cfg(test)]
mod tests;
