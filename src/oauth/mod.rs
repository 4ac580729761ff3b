//! The embedded OAuth2 endpoint, served on the proxy listener under
//! `/oauth` (`docs/http.md`, "OAuth endpoints"):
//!
//! | path | method | module |
//! |---|---|---|
//! | `/oauth/token` | POST | [`token`]: password and refresh_token grants |
//! | `/oauth/revoke` | POST | [`revoke`] (RFC 7009) |
//! | `/oauth/introspect` | POST | [`introspect`] (RFC 7662) |
//! | `/oauth/userinfo` | GET | [`account`] |
//! | `/oauth/password` | POST | [`account`] |
//! | `/oauth/authorize` | GET, POST | [`authorize`]: the authorization code flow with PKCE and its login page |
//! | `/.well-known/oauth-authorization-server` | GET | [`metadata`] (RFC 8414) |
//!
//! Common rules: every response carries `Cache-Control: no-store` and
//! `Pragma: no-cache` (RFC 6749 §5.1); forms are parsed strictly
//! ([`form`]); errors are RFC 6749 §5.2 bodies built by
//! [`crate::error::Rejection`]; a database that cannot answer is 503 +
//! `Retry-After`, never a 500 with details. Clients authenticate with
//! [`client_auth`]; a request that names no client is served as before
//! the client registry existed (password and refresh_token grants).
//!
//! Handlers take [`OAuth`], the endpoint's own state, and the request's
//! [`RequestCtx`] (they record the caller in it for the access log).

pub mod account;
pub mod authorize;
pub mod client_auth;
pub mod client_grants;
pub mod form;
pub mod introspect;
pub mod login;
pub mod metadata;
pub mod revoke;
pub mod throttle;
pub mod token;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::accounts::password::Hasher;
use crate::body::{self, Body};
use crate::config::{Config, TokenConfig};
use crate::db::DbPool;
use crate::error::{require_method, Rejection};
use crate::metrics::RouteStats;
use crate::rate::RateLimit;
use crate::request::RequestCtx;
use crate::tokens::bearer::{credentials, Credentials};
use crate::tokens::cache::{Caller, Validator};
use form::Form;
use throttle::{Attempt, Throttle};

/// The OAuth endpoint's state.
pub struct OAuth {
    pub db: DbPool,
    /// The validation cache shared with the gateway: Bearer-protected
    /// endpoints validate like proxied requests, and revocations here
    /// drop the cache entries at once.
    pub tokens: Arc<Validator>,
    /// The argon2 pool, shared with bootstrap.
    pub hasher: Arc<Hasher>,
    pub throttle: Throttle,
    /// `[oauth] introspections_per_caller`, per caller ([`introspect`]).
    pub introspect_rate: RateLimit<introspect::RateKey>,
    pub stats: OAuthStats,
    /// Request counters per endpoint, in [`Endpoint::ALL`] order.
    endpoint_stats: [RouteStats; Endpoint::ALL.len()],
    /// Lifetimes of the tokens issued here.
    pub ttl: TokenConfig,
    /// The authorization endpoint's issuer, code lifetime and anti-CSRF key.
    pub authorize: authorize::Settings,
    /// `[oauth] password_grant`: false removes the password grant (RFC
    /// 9700 §2.4) from the token endpoint and the metadata.
    pub password_grant: bool,
    /// How long a form body may take to arrive.
    body_deadline: Duration,
    _sweeper: Option<AbortOnDrop>,
}

/// Counters for metrics (and tests).
#[derive(Debug, Default)]
pub struct OAuthStats {
    /// Token pairs issued by the password grant.
    pub logins: AtomicU64,
    /// Token pairs issued by rotation (not counting grace-window replays).
    pub refreshes: AtomicU64,
    /// Failed password logins (wrong or unknown username, wrong password,
    /// inactive account, over-long password).
    pub login_failures: AtomicU64,
    /// Logins refused with 429.
    pub throttled: AtomicU64,
    /// Refresh tokens presented again after rotation (families revoked).
    pub refresh_reuse: AtomicU64,
    /// Access tokens revoked here: by `/oauth/revoke` (a refresh token
    /// counts the access tokens of its family), by reuse detection and by
    /// a password change.
    pub revoked: AtomicU64,
    /// Authorization codes issued by the login page.
    pub codes: AtomicU64,
    /// Token pairs issued for authorization codes.
    pub code_exchanges: AtomicU64,
    /// Access tokens issued by the client_credentials grant.
    pub client_credentials: AtomicU64,
}

impl OAuthStats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The endpoints under `/oauth` (and, reserved, `/.well-known`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Token,
    Revoke,
    Introspect,
    Userinfo,
    Password,
    Authorize,
    Metadata,
    /// Below `/oauth` or `/.well-known` but nothing we serve: 404, never
    /// proxied.
    Unknown,
}

impl Endpoint {
    /// Every endpoint (the order of [`OAuth::endpoint_stats`]).
    pub const ALL: [Endpoint; 8] = [
        Endpoint::Token,
        Endpoint::Revoke,
        Endpoint::Introspect,
        Endpoint::Userinfo,
        Endpoint::Password,
        Endpoint::Authorize,
        Endpoint::Metadata,
        Endpoint::Unknown,
    ];

    /// The access log's `route` field (and the metrics' `route` label).
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Token => "oauth:token",
            Endpoint::Revoke => "oauth:revoke",
            Endpoint::Introspect => "oauth:introspect",
            Endpoint::Userinfo => "oauth:userinfo",
            Endpoint::Password => "oauth:password",
            Endpoint::Authorize => "oauth:authorize",
            Endpoint::Metadata => "oauth:metadata",
            Endpoint::Unknown => "oauth:-",
        }
    }
}

/// The endpoint for a **normalized** path, or `None` when the path is not
/// ours (`/oauth`, `/.well-known` and everything below them are).
pub fn endpoint(path: &str) -> Option<Endpoint> {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if !under("/oauth") && !under("/.well-known") {
        return None;
    }
    Some(match path {
        "/oauth/token" => Endpoint::Token,
        "/oauth/revoke" => Endpoint::Revoke,
        "/oauth/introspect" => Endpoint::Introspect,
        "/oauth/userinfo" => Endpoint::Userinfo,
        "/oauth/password" => Endpoint::Password,
        "/oauth/authorize" => Endpoint::Authorize,
        "/.well-known/oauth-authorization-server" => Endpoint::Metadata,
        _ => Endpoint::Unknown,
    })
}

impl OAuth {
    /// The hashing pool (`[login] hash_concurrency` threads), the throttle,
    /// and — with a grace window, inside a tokio runtime — the task that
    /// erases sealed successor pairs once their window has passed.
    pub fn new(config: &Config, db: &DbPool, tokens: Arc<Validator>) -> OAuth {
        let grace = config.tokens.refresh_reuse_grace;
        let sweeper = match tokio::runtime::Handle::try_current() {
            Ok(rt) if !grace.is_zero() => {
                let pool = db.clone();
                let every = grace.clamp(Duration::from_secs(1), Duration::from_secs(60));
                Some(AbortOnDrop(rt.spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        if let Err(e) = crate::tokens::rotate::sweep_sealed(&pool, grace).await {
                            tracing::debug!(error = %e, "could not erase expired grace-window pairs");
                        }
                    }
                })))
            }
            _ => None,
        };
        OAuth {
            db: db.clone(),
            tokens,
            hasher: Arc::new(Hasher::new(config.login.hash_concurrency)),
            throttle: Throttle::new(
                config.login.max_failures,
                config.login.max_failures_per_ip,
                config.login.window,
            ),
            introspect_rate: RateLimit::new(
                config.oauth.introspections_per_caller,
                introspect::MAX_CALLERS,
            ),
            stats: OAuthStats::default(),
            endpoint_stats: std::array::from_fn(|_| RouteStats::default()),
            ttl: config.tokens.clone(),
            authorize: authorize::Settings::new(config.oauth.issuer.clone(), config.oauth.code_ttl),
            password_grant: config.oauth.password_grant,
            body_deadline: config.server.request_timeout.min(Duration::from_secs(30)),
            _sweeper: sweeper,
        }
    }

    /// The request counters of `endpoint`.
    pub fn endpoint_stats(&self, endpoint: Endpoint) -> &RouteStats {
        let i = Endpoint::ALL
            .iter()
            .position(|e| *e == endpoint)
            .unwrap_or(Endpoint::ALL.len() - 1);
        &self.endpoint_stats[i]
    }

    /// Answer a request for one of our endpoints. Every answer, success or
    /// error, carries `Cache-Control: no-store` and `Pragma: no-cache`.
    pub async fn handle(
        &self,
        endpoint: Endpoint,
        ctx: &mut RequestCtx<'_>,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let client = ctx.client;
        let deadline = self.body_deadline + crate::db::REQUEST_WORK_DEADLINE;
        let work = async {
            match endpoint {
                Endpoint::Token => token::handle(self, req, client).await,
                Endpoint::Revoke => revoke::handle(self, req).await,
                Endpoint::Introspect => introspect::handle(self, ctx, req).await,
                Endpoint::Userinfo => account::userinfo(self, ctx, req).await,
                Endpoint::Password => account::change_password(self, ctx, req).await,
                Endpoint::Authorize => authorize::handle(self, ctx, req).await,
                Endpoint::Metadata => metadata::handle(self, req).await,
                Endpoint::Unknown => Err(Rejection::NotFound),
            }
        };
        let result = crate::db::within(deadline, work)
            .await
            .unwrap_or_else(|hung| Err(hung.into()));
        let mut response = result.unwrap_or_else(Rejection::into_response);
        let h = response.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        response
    }

    /// Start a password check for `username` (normalized, if it can be
    /// one) from `addr`: 429 when either is throttled.
    async fn begin_attempt(
        &self,
        username: Option<&str>,
        addr: IpAddr,
    ) -> Result<Attempt, Rejection> {
        self.throttle
            .begin(username, addr)
            .await
            .map_err(|retry_after_secs| {
                OAuthStats::bump(&self.stats.throttled);
                Rejection::TooManyRequests { retry_after_secs }
            })
    }

    /// A wrong username or password: recorded against the throttle and
    /// counted. Returns the `invalid_grant` to answer.
    fn wrong_password(&self, attempt: Attempt, description: &'static str) -> Rejection {
        self.throttle.failed(attempt);
        OAuthStats::bump(&self.stats.login_failures);
        invalid_grant(description)
    }

    /// The request's form body (see [`form`]), read within the deadline.
    async fn read_form(&self, req: Request<Incoming>) -> Result<Form, Rejection> {
        let (parts, body) = req.into_parts();
        Form::read(&parts.headers, body, self.body_deadline).await
    }

    /// The request's head and form body (for client authentication, which
    /// looks at both).
    async fn read_form_parts(
        &self,
        req: Request<Incoming>,
    ) -> Result<(http::request::Parts, Form), Rejection> {
        let (parts, body) = req.into_parts();
        let form = Form::read(&parts.headers, body, self.body_deadline).await?;
        Ok((parts, form))
    }

    /// The caller of a Bearer-protected endpoint, validated like any
    /// proxied request (same cache, same 400/401/503 answers), recorded in
    /// `ctx` for the access log.
    async fn authenticate<B>(
        &self,
        ctx: &mut RequestCtx<'_>,
        req: &Request<B>,
    ) -> Result<Caller, Rejection> {
        let identity = match credentials(req.headers(), req.uri().query())? {
            Credentials::Bearer(token) => self.tokens.validate(token, ctx.client).await?,
            Credentials::None => return Err(Rejection::MissingCredentials),
        };
        ctx.identity = Some(identity.clone());
        Ok(identity)
    }
}

/// A 200 JSON answer.
fn json(value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(body::json(value));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    r
}

fn status(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = code;
    r
}

/// `400 invalid_grant` with a fixed description.
fn invalid_grant(description: &'static str) -> Rejection {
    Rejection::oauth(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        Cow::Borrowed(description),
    )
}

fn invalid_scope() -> Rejection {
    Rejection::oauth(
        StatusCode::BAD_REQUEST,
        "invalid_scope",
        "the requested scope is invalid, unknown, or exceeds what was granted",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_paths() {
        assert_eq!(endpoint("/oauth"), Some(Endpoint::Unknown));
        assert_eq!(endpoint("/oauth/token"), Some(Endpoint::Token));
        assert_eq!(endpoint("/oauth/token/x"), Some(Endpoint::Unknown));
        assert_eq!(endpoint("/.well-known/x"), Some(Endpoint::Unknown));
        assert_eq!(endpoint("/oauth/authorize"), Some(Endpoint::Authorize));
        assert_eq!(
            endpoint("/.well-known/oauth-authorization-server"),
            Some(Endpoint::Metadata)
        );
        assert_eq!(endpoint("/oauthx"), None);
        assert_eq!(endpoint("/.well-knownx"), None);
        assert_eq!(endpoint("/api/oauth/token"), None);
    }
}
