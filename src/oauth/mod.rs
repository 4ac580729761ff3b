//! The embedded OAuth2 endpoint (CONTRACT §4), served on the proxy
//! listener under `/oauth`:
//!
//! | path | method | module |
//! |---|---|---|
//! | `/oauth/token` | POST | [`token`]: password and refresh_token grants |
//! | `/oauth/revoke` | POST | [`revoke`] (RFC 7009) |
//! | `/oauth/introspect` | POST | [`introspect`] (RFC 7662) |
//! | `/oauth/userinfo` | GET | [`account`] |
//! | `/oauth/password` | POST | [`account`] |
//!
//! Common rules: every response carries `Cache-Control: no-store` and
//! `Pragma: no-cache` (attack case O17); forms are parsed strictly
//! ([`form`]); errors are RFC 6749 §5.2 bodies built by
//! [`crate::error::Rejection`]; a database that cannot answer is 503 +
//! `Retry-After`, never a 500 with details. There is no client registry:
//! clients are public and client credentials, if sent, are ignored.

pub mod account;
pub mod form;
pub mod introspect;
pub mod revoke;
pub mod throttle;
pub mod token;

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::accounts::password::{HashError, Hasher};
use crate::app::State;
use crate::body::{self, Body};
use crate::config::Config;
use crate::db::{DbError, DbPool};
use crate::error::Rejection;
use crate::gateway::authenticate::{credentials, Credentials};
use crate::tokens::cache::Identity;
use crate::tokens::issue::IssueError;
use throttle::{Attempt, Throttle};

/// The OAuth endpoint's shared state (a field of [`State`]).
pub struct OAuth {
    /// The argon2 pool, shared with the admin API and bootstrap.
    pub hasher: Arc<Hasher>,
    pub throttle: Throttle,
    pub stats: OAuthStats,
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
}

impl OAuthStats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl OAuth {
    /// The hashing pool (`[login] hash_concurrency` threads), the throttle,
    /// and — with a grace window, inside a tokio runtime — the task that
    /// erases sealed successor pairs once their window has passed.
    pub fn new(config: &Config, db: &DbPool) -> OAuth {
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
                        if let Err(e) = crate::tokens::issue::sweep_sealed(&pool, grace).await {
                            tracing::debug!(error = %e, "could not erase expired grace-window pairs");
                        }
                    }
                })))
            }
            _ => None,
        };
        OAuth {
            hasher: Arc::new(Hasher::new(config.login.hash_concurrency)),
            throttle: Throttle::new(config.login.max_failures, config.login.window),
            stats: OAuthStats::default(),
            _sweeper: sweeper,
        }
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
}

/// Is `path` ours (`/oauth` or below)?
pub fn is_oauth_path(path: &str) -> bool {
    path == "/oauth" || path.starts_with("/oauth/")
}

/// Answer a request for `/oauth` or a path below it.
pub async fn handle(
    state: &Arc<State>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let start = Instant::now();
    let method = req.method().clone();
    let (endpoint, result) = match req.uri().path() {
        "/oauth/token" => ("token", token::handle(state, req, peer).await),
        "/oauth/revoke" => ("revoke", revoke::handle(state, req).await),
        "/oauth/introspect" => ("introspect", introspect::handle(state, req).await),
        "/oauth/userinfo" => ("userinfo", account::userinfo(state, req).await),
        "/oauth/password" => ("password", account::change_password(state, req, peer).await),
        _ => ("-", Err(Rejection::NotFound)),
    };
    let mut response = result.unwrap_or_else(Rejection::into_response);
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    tracing::info!(
        target: "scopegate::access",
        %peer,
        method = %method,
        route = endpoint,
        status = response.status().as_u16(),
        micros = start.elapsed().as_micros() as u64,
    );
    response
}

/// 405 unless the method is `allowed` (`allow` is the `Allow` value).
fn require_method(
    req: &Request<Incoming>,
    allowed: &[Method],
    allow: &'static str,
) -> Result<(), Rejection> {
    if allowed.contains(req.method()) {
        Ok(())
    } else {
        Err(Rejection::MethodNotAllowed {
            allow: HeaderValue::from_static(allow),
        })
    }
}

/// The caller of a Bearer-protected endpoint, validated like any proxied
/// request (same cache, same 400/401/503 answers).
async fn authenticate<B>(state: &State, req: &Request<B>) -> Result<Arc<Identity>, Rejection> {
    match credentials(req.headers(), req.uri().query())? {
        Credentials::Bearer(token) => state.tokens.validate(token).await,
        Credentials::None => Err(Rejection::MissingCredentials),
    }
}

/// How long a form body may take to arrive.
fn body_deadline(state: &State) -> Duration {
    state
        .config
        .server
        .request_timeout
        .min(Duration::from_secs(30))
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

/// The database failed: 503 when it could not be reached (or answer in
/// time), 500 for anything else (details logged, never sent). Every query
/// error here went through [`crate::db::classify`].
fn db_rejection(e: &DbError) -> Rejection {
    match e {
        DbError::Unavailable(msg) => {
            tracing::warn!(error = %msg, "database unavailable");
            Rejection::Unavailable {
                retry_after_secs: crate::tokens::cache::RETRY_AFTER_SECS,
            }
        }
        DbError::Query(q) => {
            tracing::error!(error = %q, "database query failed");
            Rejection::Internal
        }
    }
}

fn issue_rejection(e: &IssueError) -> Rejection {
    match e {
        IssueError::Db(e) => db_rejection(e),
        IssueError::Random(msg) => {
            tracing::error!(error = %msg, "cannot generate a token");
            Rejection::Internal
        }
    }
}

/// The hashing pool is saturated: 503 with a short `Retry-After`.
fn hash_rejection(e: &HashError) -> Rejection {
    match e {
        HashError::Busy => Rejection::Overloaded {
            retry_after_secs: 1,
        },
        other => {
            tracing::error!(error = %other, "password hashing failed");
            Rejection::Internal
        }
    }
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
    use crate::tokens::{generate, Kind};

    #[test]
    fn plausibility_by_kind() {
        let a = generate(Kind::Access).unwrap();
        let r = generate(Kind::Refresh).unwrap();
        assert!(crate::tokens::is_well_formed(&a, Kind::Access));
        assert!(!crate::tokens::is_well_formed(&a, Kind::Refresh));
        assert!(crate::tokens::is_well_formed(&r, Kind::Refresh));
        assert!(!crate::tokens::is_well_formed(
            &r[..r.len() - 1],
            Kind::Refresh
        ));
        assert!(!crate::tokens::is_well_formed(
            "sgr_' OR 1=1--",
            Kind::Refresh
        ));
    }

    #[test]
    fn oauth_paths() {
        assert!(is_oauth_path("/oauth"));
        assert!(is_oauth_path("/oauth/token"));
        assert!(!is_oauth_path("/oauthx"));
        assert!(!is_oauth_path("/api/oauth/token"));
    }
}
