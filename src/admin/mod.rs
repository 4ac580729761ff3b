//! The admin listener (`server.admin_listen`; `docs/http.md`, "Admin
//! listener"). Keep it on a private address.
//!
//! Without a token:
//! - `GET /healthz`: 200 while the process serves requests;
//! - `GET /readyz`: 200 when the database answers `SELECT 1` within two
//!   seconds, else 503 + `Retry-After`;
//! - `GET /metrics`: Prometheus metrics ([`metrics`]);
//! - `GET /openapi.json`: the OpenAPI 3.1 document of `/oauth/*`,
//!   `/.well-known/*` and `/admin/*` (`docs/openapi.json`).
//!
//! `/admin/*`, the JSON administration API, takes a Bearer access token
//! holding `scopegate:admin` (or a wildcard covering it), validated by the
//! same [`Validator`] as proxied requests: no or another scheme 401 with
//! the RFC 6750 §3.1 challenge, a bad token 401 `invalid_token`, a valid
//! token without the scope 403 `insufficient_scope`. The caller is checked
//! before anything else, so the API's shape is invisible without a token.
//!
//! - [`accounts`]: `/admin/accounts` and its grants and tokens;
//! - [`catalog`]: `/admin/scopes`, `/admin/roles`;
//! - [`clients`]: `/admin/clients` (over [`crate::clients::store`]);
//! - [`json`]: bodies, fields, pagination, answers.
//!
//! Every change is logged as an audit event (target `scopegate::audit`:
//! `who` — the caller's account id —, `what`, `id`, and for grants the
//! scope value or role name in `grant`; never a password, token or hash),
//! and every change that affects issued tokens drops them from this
//! replica's validation cache before the answer is sent, so the gateway
//! sees it on the very next request.

pub mod accounts;
pub mod catalog;
pub mod clients;
pub mod json;
pub mod metrics;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::accounts::admin_store::Page;
use crate::accounts::bootstrap::ADMIN_SCOPE;
use crate::accounts::password::Hasher;
use crate::body::{self, Body};
use crate::config::Config;
use crate::db::{DbError, DbPool};
use crate::error::{require_method, Rejection};
use crate::gateway::Gateway;
use crate::oauth::OAuth;
use crate::tokens::bearer::{credentials, Credentials};
use crate::tokens::cache::Validator;
use crate::tokens::sweep::SweepStats;
use crate::tokens::TokenHash;
use metrics::{Exporter, Sources};

/// The OpenAPI document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// Counters of the admin API (exported by `/metrics`).
#[derive(Debug, Default)]
pub struct AdminStats {
    /// Successful changes (audit events).
    pub changes: AtomicU64,
    /// Access tokens revoked (revoke-tokens, password changes, deletions).
    pub revoked: AtomicU64,
}

/// The admin listener's state.
pub struct Admin {
    pub db: DbPool,
    /// The validation cache shared with the gateway: callers are validated
    /// with it, and changes drop the affected entries from it.
    pub tokens: Arc<Validator>,
    /// The argon2 pool shared with `/oauth/*`: passwords set here are
    /// hashed there, never on an async worker.
    pub hasher: Arc<Hasher>,
    pub stats: Arc<AdminStats>,
    exporter: Exporter,
    /// How long a request body may take to arrive.
    body_deadline: Duration,
}

/// Who is making an admin request.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub account_id: i32,
}

/// The body types the admin listener can read.
pub trait AdminBody: http_body::Body<Data = Bytes, Error: Into<body::BoxError>> + Send {}
impl<B> AdminBody for B where B: http_body::Body<Data = Bytes, Error: Into<body::BoxError>> + Send {}

impl Admin {
    pub fn new(
        config: &Config,
        db: DbPool,
        tokens: Arc<Validator>,
        gateway: Arc<Gateway>,
        oauth: Arc<OAuth>,
        sweep: Arc<SweepStats>,
    ) -> Admin {
        let stats = Arc::new(AdminStats::default());
        let exporter = Exporter::new(Sources {
            gateway,
            oauth: oauth.clone(),
            tokens: tokens.clone(),
            db: db.clone(),
            sweep,
            admin: stats.clone(),
        });
        Admin {
            db,
            tokens,
            hasher: oauth.hasher.clone(),
            stats,
            exporter,
            body_deadline: config.server.request_timeout.min(Duration::from_secs(30)),
        }
    }

    /// Answer one request on the admin listener from the peer `client`.
    pub async fn handle<B: AdminBody>(&self, req: Request<B>, client: IpAddr) -> Response<Body> {
        let path = req.uri().path();
        let result = if path == "/admin" || path.starts_with("/admin/") {
            let deadline = self.body_deadline + crate::db::REQUEST_WORK_DEADLINE;
            crate::db::within(deadline, self.api(req, client))
                .await
                .unwrap_or_else(|hung| Err(hung.into()))
        } else {
            match (req.method(), path) {
                (&Method::GET | &Method::HEAD, "/healthz") => Ok(text(StatusCode::OK, "ok\n")),
                (&Method::GET | &Method::HEAD, "/readyz") => {
                    self.ready().await.map(|()| text(StatusCode::OK, "ready\n"))
                }
                (&Method::GET, "/metrics") => {
                    Ok(typed(self.exporter.encode(), metrics::CONTENT_TYPE))
                }
                (&Method::GET, "/openapi.json") => Ok(typed(OPENAPI, "application/json")),
                (_, "/healthz" | "/readyz" | "/metrics" | "/openapi.json") => {
                    Err(Rejection::MethodNotAllowed {
                        allow: HeaderValue::from_static("GET"),
                    })
                }
                _ => Err(Rejection::NotFound),
            }
        };
        result.unwrap_or_else(Rejection::into_response)
    }

    /// `/admin/*`: the caller first, then the resource.
    async fn api<B: AdminBody>(
        &self,
        req: Request<B>,
        client: IpAddr,
    ) -> Result<Response<Body>, Rejection> {
        let caller = self.authenticate(&req, client).await?;
        let path = req.uri().path().to_owned();
        let segments: Vec<&str> = path
            .strip_prefix("/admin")
            .unwrap_or_default()
            .split('/')
            .skip(1)
            .collect();
        match segments.first().copied() {
            Some("accounts") => accounts::handle(self, caller, &segments[1..], req).await,
            Some("scopes") => catalog::scopes(self, caller, &segments[1..], req).await,
            Some("roles") => catalog::roles(self, caller, &segments[1..], req).await,
            Some("clients") => clients::handle(self, caller, &segments[1..], req).await,
            _ => Err(Rejection::UnknownResource("no such admin resource")),
        }
    }

    /// A valid access token holding `scopegate:admin`.
    async fn authenticate<B>(&self, req: &Request<B>, client: IpAddr) -> Result<Caller, Rejection> {
        let identity = match credentials(req.headers(), req.uri().query())? {
            Credentials::Bearer(token) => self.tokens.validate(token, client).await?,
            Credentials::None => return Err(Rejection::MissingCredentials),
        };
        if !identity
            .scopes()
            .any(|granted| crate::scope::satisfies(granted, ADMIN_SCOPE))
        {
            return Err(Rejection::InsufficientScope {
                scope: Some(HeaderValue::from_static(ADMIN_SCOPE)),
            });
        }
        Ok(Caller {
            account_id: identity.account_id,
        })
    }

    /// Read the JSON object body of `req`.
    async fn object<B: AdminBody>(&self, req: Request<B>) -> Result<json::Object, Rejection> {
        let (parts, body) = req.into_parts();
        json::read_object(&parts.headers, body, self.body_deadline).await
    }

    /// Drop tokens from this replica's cache (their rows changed).
    async fn invalidate(&self, hashes: &[TokenHash]) {
        for h in hashes {
            self.tokens.invalidate(h).await;
        }
    }

    /// Count `n` revoked access tokens.
    fn revoked(&self, n: usize) {
        self.stats.revoked.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The audit event of a change that succeeded.
    fn audit(&self, who: Caller, what: &'static str, id: i32, grant: Option<&str>) {
        self.stats.changes.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            target: "scopegate::audit",
            who = who.account_id,
            what,
            id,
            grant,
            "admin change"
        );
    }

    /// Can the database answer right now?
    async fn ready(&self) -> Result<(), Rejection> {
        let check = async {
            let conn = self.db.get().await?;
            conn.simple_query("SELECT 1")
                .await
                .map_err(crate::db::classify)?;
            Ok::<_, DbError>(())
        };
        // Not ready, whatever the reason: always a 503 (never a 500).
        let failure = match tokio::time::timeout(Duration::from_secs(2), check).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer to SELECT 1 within 2 s".into(),
        };
        Err(DbError::Unavailable(failure).into())
    }
}

/// A collection path (`/admin/accounts`, `/admin/scopes`, `/admin/roles`,
/// `/admin/clients`): `GET` answers one page of `list` (`?after=&limit=`,
/// [`json::Paging`]), `POST` is `create`, any other method is 405.
async fn list_or_create<B, T: serde::Serialize>(
    req: Request<B>,
    list: impl AsyncFnOnce(json::Paging) -> Result<Page<T>, Rejection>,
    create: impl AsyncFnOnce(Request<B>) -> Result<Response<Body>, Rejection>,
) -> Result<Response<Body>, Rejection> {
    require_method(&req, &[Method::GET, Method::POST], "GET, POST")?;
    if req.method() == Method::GET {
        let paging = json::Paging::from_query(req.uri().query())?;
        json::page(&list(paging).await?)
    } else {
        create(req).await
    }
}

/// An id path segment: a positive integer, else the resource is unknown.
fn path_id(segment: &str, unknown: &'static str) -> Result<i32, Rejection> {
    segment
        .parse::<i32>()
        .ok()
        .filter(|id| *id > 0 && !segment.starts_with('+'))
        .ok_or(Rejection::UnknownResource(unknown))
}

/// A name or value path segment, percent-decoded.
fn path_value(segment: &str, unknown: &'static str) -> Result<String, Rejection> {
    json::decode_segment(segment)
        .filter(|v| !v.is_empty())
        .ok_or(Rejection::UnknownResource(unknown))
}

fn text(status: StatusCode, s: &'static str) -> Response<Body> {
    let mut r = Response::new(body::full(s));
    *r.status_mut() = status;
    r
}

fn typed(b: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(body::full(b));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
