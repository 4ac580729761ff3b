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
pub mod forwarded;
pub mod headers;
pub mod normalize;
pub mod pool;
pub mod route;
mod tunnel;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::{Method, Request, Version};

use crate::config::{Cidr, Config, ServerConfig, ALLOW_ALL_METHODS};
use crate::error::Rejection;
use crate::metrics::RouteStats;
use crate::tokens::bearer::{credentials, Credentials};
use crate::tokens::cache::{Caller, Validator};
use crate::tokens::identity::Identity;
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
    /// Counters of the requests no route or endpoint was found for (the
    /// access log's route `-`).
    pub unrouted: RouteStats,
    /// `server.trusted_proxies`, as the process started with them.
    trusted_proxies: Vec<Cidr>,
}

/// Counters of configuration reloads.
#[derive(Debug, Default)]
pub struct ReloadStats {
    pub applied: AtomicU64,
    pub failed: AtomicU64,
    /// Whether the latest reload was refused (until one is applied).
    pub last_failed: AtomicBool,
}

impl Gateway {
    pub fn new(config: &Config, tokens: Arc<Validator>) -> Gateway {
        Gateway {
            policy: ArcSwap::from_pointee(Policy::from_config(config)),
            tokens,
            reloads: ReloadStats::default(),
            unrouted: RouteStats::default(),
            trusted_proxies: config.server.trusted_proxies.clone(),
        }
    }

    /// Is `peer` a trusted proxy, whose `X-Forwarded-For` names the client
    /// ([`forwarded`](mod@forwarded))?
    pub fn is_trusted_proxy(&self, peer: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(peer))
    }

    /// The current policy (cheap: no lock, no allocation).
    pub fn policy(&self) -> arc_swap::Guard<Arc<Policy>> {
        self.policy.load()
    }

    /// Serve `config`'s routes and limits from the next request on; routes
    /// that keep their name keep their counters (`/metrics`).
    pub fn reload(&self, config: &Config) {
        let mut policy = Policy::from_config(config);
        policy.routes.carry_stats_from(&self.policy.load().routes);
        self.policy.store(Arc::new(policy));
        self.reloads.applied.fetch_add(1, Ordering::Relaxed);
        self.reloads.last_failed.store(false, Ordering::Relaxed);
    }

    /// A reload was refused (the new file is invalid); the old policy stays.
    pub fn reload_failed(&self) {
        self.reloads.failed.fetch_add(1, Ordering::Relaxed);
        self.reloads.last_failed.store(true, Ordering::Relaxed);
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
/// proxy), a `Transfer-Encoding` other than one `chunked` is refused (hyper
/// accepts `gzip, chunked` and `chunked, chunked`, decoding the chunked
/// framing once; forwarding would drop the other codings, and the
/// upstream would read a body other than the one the client sent), and a
/// declared body above the limit is a 413 before anything else is done.
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
    if !single_chunked(req.headers()) {
        return Err(Rejection::BadFraming(
            "the only transfer coding accepted is one chunked",
        ));
    }
    if declared_length(req)? > limits.max_body_bytes {
        return Err(Rejection::PayloadTooLarge);
    }
    Ok(())
}

/// No `Transfer-Encoding`, or exactly one coding over all its fields:
/// `chunked` (any case, RFC 9112 §7).
fn single_chunked(headers: &http::HeaderMap) -> bool {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii);
    match (codings.next(), codings.next()) {
        (None, _) => true,
        (Some(c), None) => c.eq_ignore_ascii_case(b"chunked"),
        (Some(_), Some(_)) => false,
    }
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
/// request, checked (400 otherwise):
/// - one `Host` at most, and it is a valid `host[:port]` (RFC 9110 §7.2):
///   no userinfo (`a@b`), no spaces, not empty, a port of 1-5 digits up to
///   65535; an IPv6 literal in brackets;
/// - HTTP/1.1 without `Host` is refused (RFC 9112 §3.2); HTTP/1.0 may omit it;
/// - HTTP/2 `:authority` is held to the same syntax, and a `host` header
///   that disagrees with it makes the request malformed (RFC 9113 §8.3.1).
fn request_host<B>(req: &Request<B>) -> Result<Option<&str>, Rejection> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(Rejection::BadRequest("more than one Host header")),
        (Some(h), None) => Some(
            h.to_str()
                .ok()
                .filter(|h| valid_host(h))
                .ok_or(Rejection::BadRequest("invalid Host header"))?,
        ),
        (None, _) => None,
    };
    // Only HTTP/2 requests carry an authority here: check_request refused
    // HTTP/1.x absolute-form targets.
    let authority = req.uri().authority().map(|a| a.as_str());
    if let Some(a) = authority {
        if !valid_host(a) {
            return Err(Rejection::BadRequest("invalid :authority"));
        }
    }
    match (host, authority) {
        (Some(h), Some(a)) if !h.eq_ignore_ascii_case(a) => Err(Rejection::BadRequest(
            "the Host header and :authority disagree",
        )),
        (Some(h), _) => Ok(Some(h)),
        (None, Some(a)) => Ok(Some(a)),
        (None, None) if req.version() == Version::HTTP_11 => {
            Err(Rejection::BadRequest("missing Host header"))
        }
        (None, None) => Ok(None),
    }
}

/// The bytes of a registered name in [`valid_host`], as a table: the
/// check runs on every request.
const HOST_NAME: [bool; 256] = crate::tokens::alphanumeric_and(b"-._~");

/// `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2), strictly: a
/// registered name of letters, digits, `-`, `.`, `_`, `~`, or a bracketed
/// IPv6 literal; a port of 1-5 digits, at most 65535.
fn valid_host(h: &str) -> bool {
    let (name_ok, rest) = match h.strip_prefix('[') {
        Some(inner) => match inner.split_once(']') {
            Some((ip, rest)) => (ip.parse::<std::net::Ipv6Addr>().is_ok(), rest),
            None => return false,
        },
        None => {
            let end = h.find(':').unwrap_or(h.len());
            let name = &h[..end];
            let ok = !name.is_empty() && name.bytes().all(|b| HOST_NAME[usize::from(b)]);
            (ok, &h[end..])
        }
    };
    name_ok
        && (rest.is_empty()
            || rest.strip_prefix(':').is_some_and(|p| {
                (1..=5).contains(&p.len())
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && p.parse::<u32>().is_ok_and(|n| n <= 65535)
            }))
}

/// The authenticate phase: the caller's identity, `None` on a public route
/// without credentials. A token sent to a public route is still validated.
///
/// `client` is the caller's address (after trusted proxies): uncached
/// tokens that turn out invalid are budgeted per address.
pub async fn authenticate<B>(
    tokens: &Validator,
    req: &Request<B>,
    route: &Route,
    client: IpAddr,
) -> Result<Option<Caller>, Rejection> {
    match credentials(req.headers(), req.uri().query())? {
        Credentials::Bearer(token) => Ok(Some(tokens.validate(token, client).await?)),
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
    match authorize::authorize(id.scope(), &route.config.access) {
        Decision::Allow => Ok(()),
        Decision::InsufficientScope => Err(Rejection::InsufficientScope {
            scope: route.required_scope.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_syntax() {
        for ok in [
            "api.example.com",
            "api.example.com.",
            "localhost:8080",
            "a_b-c~d",
            "10.0.0.1:1",
            "[::1]",
            "[::1]:65535",
        ] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in [
            "", "a@b", "a b", " a", "a:", ":80", "a:x", "a:65536", "a:123456", "a:-1", "a:80:80",
            "[::1", "[nope]", "[::1]x", "a/b", "a?b", "a,b", "a%20b",
        ] {
            assert!(!valid_host(bad), "{bad:?}");
        }
    }

    #[test]
    fn only_one_chunked_is_a_transfer_coding_we_forward() {
        let te = |values: &[&'static str]| {
            let mut h = http::HeaderMap::new();
            for v in values {
                h.append(header::TRANSFER_ENCODING, HeaderValue::from_static(v));
            }
            single_chunked(&h)
        };
        assert!(te(&[]));
        for ok in [&["chunked"][..], &["Chunked"], &[" CHUNKED "]] {
            assert!(te(ok), "{ok:?}");
        }
        for bad in [
            &["chunked", "chunked"][..],
            &["chunked, chunked"],
            &["gzip", "chunked"],
            &["gzip, chunked"],
            &["identity"],
            &[""],
            &["chunked", ""],
        ] {
            assert!(!te(bad), "{bad:?}");
        }
    }

    fn host_of(req: Request<()>) -> Result<Option<String>, &'static str> {
        request_host(&req)
            .map(|h| h.map(str::to_owned))
            .map_err(|e| match e {
                Rejection::BadRequest(d) => d,
                _ => "other",
            })
    }

    #[test]
    fn host_and_authority() {
        let h1 = |host: Option<&str>| {
            let mut b = Request::builder().uri("/x");
            if let Some(h) = host {
                b = b.header(header::HOST, h);
            }
            b.body(()).unwrap()
        };
        assert_eq!(host_of(h1(Some("a.b"))), Ok(Some("a.b".into())));
        assert_eq!(host_of(h1(None)), Err("missing Host header"));
        assert_eq!(host_of(h1(Some("a@b"))), Err("invalid Host header"));
        let http10 = Request::builder()
            .uri("/x")
            .version(Version::HTTP_10)
            .body(())
            .unwrap();
        assert_eq!(host_of(http10), Ok(None));
        let h2 = |authority: &str, host: Option<&str>| {
            let mut b = Request::builder()
                .uri(format!("http://{authority}/x"))
                .version(Version::HTTP_2);
            if let Some(h) = host {
                b = b.header(header::HOST, h);
            }
            b.body(()).unwrap()
        };
        assert_eq!(host_of(h2("a.b", None)), Ok(Some("a.b".into())));
        assert_eq!(host_of(h2("a.b", Some("A.b"))), Ok(Some("A.b".into())));
        assert_eq!(
            host_of(h2("a.b", Some("evil"))),
            Err("the Host header and :authority disagree")
        );
        assert_eq!(host_of(h2("u@a.b", None)), Err("invalid :authority"));
    }
}
