//! The proxy path, as named phases (`docs/http.md`, "Request phases"):
//!
//! | phase | function | rejects with |
//! |---|---|---|
//! | check_request | [`check_request`] | 400 (absolute-form), 405 (CONNECT, TRACE), 413 (declared body) |
//! | normalize | [`normalize`] ([`normalize`](mod@normalize) module) | 400 |
//! | route | [`route`] ([`route`](mod@route) module) | 400 (Host), 404, 405 |
//! | authenticate | [`authenticate`] | 400, 401, 503 |
//! | authorize | [`authorize`] ([`authorize`](mod@authorize) module) | 403 |
//! | forward | [`forward::forward`] | 413, 502, 504 |
//!
//! Each is a plain function, tested on its own; the proxy listener's front
//! door (`src/proxy.rs`) strings them together, sends `/oauth/*` to the
//! OAuth endpoints after `normalize`, and ends every request with the `log`
//! phase ([`crate::request::log`]).

pub mod authorize;
mod explain;
pub mod forward;
pub mod normalize;
pub mod route;
mod tunnel;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::{Method, Request, Version};

use crate::config::{Config, ServerConfig, ALLOW_ALL_METHODS};
use crate::error::Rejection;
use crate::tokens::bearer::{credentials, Credentials};
use crate::tokens::cache::{Identity, Validator};
use authorize::Decision;
use route::{Route, RouteMatch, RouteTable};

pub use explain::{explain, ExplainError, Explanation};

/// The limits the proxy path enforces per request.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A declared `Content-Length` above it is a 413; a streamed body is
    /// cut off when it passes it.
    pub max_body_bytes: u64,
    /// Caps every route's own `timeout_secs`.
    pub request_timeout: Duration,
}

impl Limits {
    pub fn from_config(c: &ServerConfig) -> Limits {
        Limits {
            max_body_bytes: c.max_body_bytes,
            request_timeout: c.request_timeout,
        }
    }
}

/// What a configuration reload replaces, all at once: a request is decided
/// from start to end on the policy it started with.
#[derive(Debug)]
pub struct Policy {
    pub routes: RouteTable,
    pub limits: Limits,
}

impl Policy {
    pub fn from_config(config: &Config) -> Policy {
        Policy {
            routes: RouteTable::new(config.routes.clone()),
            limits: Limits::from_config(&config.server),
        }
    }
}

/// What the proxy path needs, shared by every proxy thread.
pub struct Gateway {
    /// Routes and per-request limits; replaced whole on reload, never
    /// half-applied.
    policy: ArcSwap<Policy>,
    /// Token validation (the cache in front of Postgres).
    pub tokens: Arc<Validator>,
    /// Reloads applied and refused, for metrics.
    pub reloads: ReloadStats,
}

/// Counters of configuration reloads.
#[derive(Debug, Default)]
pub struct ReloadStats {
    pub applied: AtomicU64,
    pub failed: AtomicU64,
}

impl Gateway {
    pub fn new(config: &Config, tokens: Arc<Validator>) -> Gateway {
        Gateway {
            policy: ArcSwap::from_pointee(Policy::from_config(config)),
            tokens,
            reloads: ReloadStats::default(),
        }
    }

    /// The current policy (cheap: no lock, no allocation).
    pub fn policy(&self) -> arc_swap::Guard<Arc<Policy>> {
        self.policy.load()
    }

    /// Serve `config`'s routes and limits from the next request on.
    pub fn reload(&self, config: &Config) {
        self.policy.store(Arc::new(Policy::from_config(config)));
        self.reloads.applied.fetch_add(1, Ordering::Relaxed);
    }

    /// A reload was refused (the new file is invalid); the old policy stays.
    pub fn reload_failed(&self) {
        self.reloads.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// The check_request phase: what no route may accept.
///
/// Hyper has already rejected malformed or conflicting `Content-Length`
/// values and unknown transfer codings, merged equal duplicates, and, for
/// `Content-Length` together with chunked `Transfer-Encoding`, dropped the
/// length and marked the connection to close after the response (RFC 9112
/// §6.3). What is left here: CONNECT and TRACE are never proxied,
/// absolute-form targets are refused (a reverse proxy is not a forward
/// proxy), and a declared body above the limit is a 413 before anything
/// else is done.
pub fn check_request<B>(req: &Request<B>, limits: &Limits) -> Result<(), Rejection> {
    if req.method() == Method::CONNECT || req.method() == Method::TRACE {
        return Err(Rejection::MethodNotAllowed {
            allow: HeaderValue::from_static(ALLOW_ALL_METHODS),
        });
    }
    if req.version() < Version::HTTP_2 && req.uri().authority().is_some() {
        return Err(Rejection::BadRequest(
            "absolute-form request targets are not accepted",
        ));
    }
    if declared_length(req)? > limits.max_body_bytes {
        return Err(Rejection::PayloadTooLarge);
    }
    Ok(())
}

/// The declared body length (0 when none).
fn declared_length<B>(req: &Request<B>) -> Result<u64, Rejection> {
    match req.headers().get(header::CONTENT_LENGTH) {
        None => Ok(0),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(Rejection::BadRequest("invalid Content-Length")),
    }
}

/// The normalize phase: the one canonical form of the path that routing
/// decides on and forwarding sends (see [`normalize`](mod@normalize)).
pub fn normalize<B>(req: &Request<B>) -> Result<Cow<'_, str>, Rejection> {
    normalize::normalize_path(req.uri().path()).map_err(|e| Rejection::BadRequest(e.description()))
}

/// The route phase: which route serves this request (see
/// [`route`](mod@route) for the rules).
pub fn route<'t, B>(
    table: &'t RouteTable,
    req: &Request<B>,
    path: &str,
) -> Result<&'t Route, Rejection> {
    match table.find(request_host(req)?, req.method(), path) {
        RouteMatch::Found(r) => Ok(r),
        RouteMatch::NotFound => Err(Rejection::NotFound),
        RouteMatch::MethodNotAllowed { allow } => Err(Rejection::MethodNotAllowed {
            allow: allow.clone(),
        }),
    }
}

/// The host the client asked for: `Host`, or the authority of an HTTP/2
/// request. Two `Host` headers are a 400.
fn request_host<B>(req: &Request<B>) -> Result<Option<&str>, Rejection> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err(Rejection::BadRequest("more than one Host header")),
        (Some(h), None) => h
            .to_str()
            .map(Some)
            .map_err(|_| Rejection::BadRequest("invalid Host header")),
        (None, _) => Ok(req.uri().authority().map(|a| a.as_str())),
    }
}

/// The authenticate phase: the caller's identity, `None` on a public route
/// without credentials. A token sent to a public route is still validated.
pub async fn authenticate<B>(
    tokens: &Validator,
    req: &Request<B>,
    route: &Route,
) -> Result<Option<Arc<Identity>>, Rejection> {
    match credentials(req.headers(), req.uri().query())? {
        Credentials::Bearer(token) => Ok(Some(tokens.validate(token).await?)),
        Credentials::None if route.config.access.is_public() => Ok(None),
        Credentials::None => Err(Rejection::MissingCredentials),
    }
}

/// The authorize phase: does the caller hold what the route requires?
pub fn authorize(identity: Option<&Identity>, route: &Route) -> Result<(), Rejection> {
    let Some(id) = identity else {
        // Only a public route lets an anonymous request this far.
        return Ok(());
    };
    match authorize::authorize(&id.scope, &route.config.access) {
        Decision::Allow => Ok(()),
        Decision::InsufficientScope => Err(Rejection::InsufficientScope {
            scope: route.required_scope.clone(),
        }),
    }
}
