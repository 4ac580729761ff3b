//! The proxy path as named phases:
//! `normalize -> route -> authenticate -> authorize -> forward -> log`.
//! Each phase is a plain function (tested on its own); this module only
//! strings them together and turns a [`Rejection`] into its response.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, Version};
use hyper::body::Incoming;

use super::authenticate::{credentials, Credentials};
use super::authorize::{authorize, Decision};
use super::forward::{
    self, new_request_id, sane_request_id, Forward, UpstreamClient, X_REQUEST_ID,
};
use super::normalize::normalize_path;
use super::route::{forwarded_path, Route, RouteMatch, RouteTable};
use crate::app::State;
use crate::body::Body;
use crate::cli::Failure;
use crate::config::Config;
use crate::error::Rejection;
use crate::tokens::cache::Identity;

/// Methods a gateway never proxies (attack cases H9, H10).
const ALL_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// What the log line says about a request besides its status.
#[derive(Default)]
struct Outcome {
    route: Option<usize>,
    account_id: Option<i32>,
}

/// Handle one proxied request.
pub async fn handle(
    state: &Arc<State>,
    upstream: &UpstreamClient,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let start = Instant::now();
    let method = req.method().clone();
    let request_id = req
        .headers()
        .get(&X_REQUEST_ID)
        .filter(|v| sane_request_id(v))
        .cloned()
        .unwrap_or_else(new_request_id);
    let routes = state.routes.load();
    let mut outcome = Outcome::default();
    let mut response = match pipeline(
        state,
        upstream,
        &routes,
        req,
        peer,
        &request_id,
        &mut outcome,
    )
    .await
    {
        Ok(r) => r,
        Err(rejection) => rejection.into_response(),
    };
    response
        .headers_mut()
        .insert(X_REQUEST_ID.clone(), request_id.clone());
    let route = outcome
        .route
        .and_then(|i| routes.by_index(i))
        .map_or("-", |r| r.config.name.as_str());
    tracing::info!(
        target: "scopegate::access",
        %peer,
        method = %method,
        route,
        status = response.status().as_u16(),
        account_id = outcome.account_id,
        request_id = request_id.to_str().unwrap_or("-"),
        micros = start.elapsed().as_micros() as u64,
    );
    response
}

async fn pipeline(
    state: &State,
    upstream: &UpstreamClient,
    routes: &RouteTable,
    req: Request<Incoming>,
    peer: SocketAddr,
    request_id: &HeaderValue,
    outcome: &mut Outcome,
) -> Result<Response<Body>, Rejection> {
    // parse
    if req.method() == Method::CONNECT || req.method() == Method::TRACE {
        return Err(Rejection::MethodNotAllowed {
            allow: HeaderValue::from_static(ALL_METHODS),
        });
    }
    if req.version() < Version::HTTP_2 && req.uri().authority().is_some() {
        // Absolute-form: a reverse proxy is not a forward proxy (H8).
        return Err(Rejection::BadRequest(
            "absolute-form request targets are not accepted",
        ));
    }
    let max_body = state.config.server.max_body_bytes;
    if declared_length(&req)? > max_body {
        return Err(Rejection::PayloadTooLarge);
    }

    // normalize
    let path =
        normalize_path(req.uri().path()).map_err(|e| Rejection::BadRequest(e.description()))?;

    // route
    let host = request_host(&req)?;
    let route: &Route = match routes.find(host, req.method(), &path) {
        RouteMatch::Found(r) => r,
        RouteMatch::NotFound => return Err(Rejection::NotFound),
        RouteMatch::MethodNotAllowed { allow } => {
            return Err(Rejection::MethodNotAllowed {
                allow: allow.clone(),
            })
        }
    };
    outcome.route = Some(route.index);

    // authenticate
    let identity: Option<Arc<Identity>> = match credentials(req.headers(), req.uri().query())? {
        Credentials::Bearer(token) => Some(state.tokens.validate(token).await?),
        Credentials::None if route.config.public => None,
        Credentials::None => return Err(Rejection::MissingCredentials),
    };
    outcome.account_id = identity.as_ref().map(|i| i.account_id);

    // authorize
    if let Some(id) = &identity {
        if !route.config.public {
            if let Decision::InsufficientScope = authorize(&id.scope, &route.config) {
                return Err(Rejection::InsufficientScope {
                    scope: route.required_scope.clone(),
                });
            }
        }
    }

    // forward
    let upstream_path = forwarded_path(route, &path).into_owned();
    forward::forward(
        upstream,
        req,
        Forward {
            route,
            identity: identity.as_deref(),
            peer,
            path: &upstream_path,
            request_id: request_id.clone(),
            max_body_bytes: max_body,
            request_timeout: state.config.server.request_timeout,
        },
    )
    .await
}

/// The declared body length (0 when none). Hyper has already rejected
/// malformed or conflicting `Content-Length` values and unknown transfer
/// codings, merged equal duplicates, and, for `Content-Length` together
/// with chunked `Transfer-Encoding`, dropped the length and marked the
/// connection to close after the response (RFC 9112 §6.3; attack cases
/// A1-A11).
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

/// The host the client asked for: `Host`, or the authority of an HTTP/2
/// request. Two `Host` headers are a 400 (H7).
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

/// `scopegate route explain`: which route matches and what it requires.
pub fn explain(
    config: &Config,
    method: &str,
    path: &str,
    host: Option<&str>,
) -> Result<String, Failure> {
    let method: Method = method
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| Failure::usage(format!("{method:?} is not an HTTP method")))?;
    let (raw_path, _query) = path.split_once('?').unwrap_or((path, ""));
    let normalized = normalize_path(raw_path).map_err(|e| {
        Failure::usage(format!(
            "{path:?} would be rejected with 400: {}",
            e.description()
        ))
    })?;
    let table = RouteTable::new(config.routes.clone());
    let mut out = String::new();
    if normalized != raw_path {
        out.push_str(&format!("normalized path: {normalized}\n"));
    }
    match table.find(host, &method, &normalized) {
        RouteMatch::NotFound => Err(Failure::usage(format!(
            "no route matches {method} {normalized} (404)"
        ))),
        RouteMatch::MethodNotAllowed { allow } => Err(Failure::usage(format!(
            "a route matches {normalized} but not {method} (405; Allow: {})",
            allow.to_str().unwrap_or("")
        ))),
        RouteMatch::Found(r) => {
            let c = &r.config;
            out.push_str(&format!("route: {} (routes[{}])\n", c.name, r.index));
            out.push_str(&format!(
                "prefix: {}{}\n",
                c.host.as_deref().unwrap_or(""),
                c.path
            ));
            let up = &c.upstream;
            out.push_str(&format!(
                "upstream: {}://{}{}\n",
                up.scheme,
                up.authority,
                forwarded_path(r, &normalized)
            ));
            if c.public {
                out.push_str("requires: nothing (public)\n");
            } else {
                out.push_str("requires: a valid Bearer token\n");
                if !c.scopes.is_empty() {
                    out.push_str(&format!("  all of: {}\n", c.scopes.join(" ")));
                }
                if !c.any_scopes.is_empty() {
                    out.push_str(&format!("  any of: {}\n", c.any_scopes.join(" ")));
                }
            }
            out.push_str(&format!(
                "timeout: {}s, authorization forwarded: {}",
                c.timeout.as_secs(),
                c.forward_authorization
            ));
            Ok(out)
        }
    }
}
