//! The forward phase: rewrite the request for the upstream, send it through
//! a pooled hyper-util client, stream both bodies, and hand WebSocket
//! upgrades over to a bidirectional copy.
//!
//! Header policy (`docs/http.md`, "Forwarding headers"; RFC 9110 §7.6.1):
//! - hop-by-hop headers (RFC 9110 §7.6.1) and every header named in
//!   `Connection`/`Proxy-Connection` are removed first;
//! - identity and forwarding headers a client could spoof are removed next,
//!   in every spelling (`X-Authenticated-*`, `X-Forwarded-*`, `Forwarded`,
//!   `X-Real-IP`, and their `_` variants);
//! - only then are the gateway's own values set, so nothing a client sends
//!   (not even `Connection: X-Authenticated-Scope`) can remove or replace them;
//! - `Authorization` is dropped unless the route sets `forward_authorization`;
//! - `Host` becomes the upstream's authority (nginx's default); the client's
//!   host travels in `X-Forwarded-Host` and `Forwarded`;
//! - HTTP/2 cookie crumbs (several `cookie` fields) are joined into one
//!   `Cookie` with `"; "` (RFC 9113 §8.2.3), as an HTTP/1.1 upstream expects.
//!
//! Errors are told apart by whose they are: the client's request body
//! (bad chunked framing, a reset, over `max_body_bytes`) is 400 or 413 and
//! logged at debug; only the upstream's own failures are 502 and warned
//! about.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::route::Route;
use super::{tunnel, Limits};
use crate::body::Body;
use crate::error::Rejection;
use crate::metrics::UpstreamError;
use crate::request::{RequestCtx, X_REQUEST_ID};
use crate::server::Conn;

pub type UpstreamClient = Client<HttpConnector, Body>;

static X_AUTH_USER: HeaderName = HeaderName::from_static("x-authenticated-user");
static X_AUTH_ACCOUNT: HeaderName = HeaderName::from_static("x-authenticated-account-id");
static X_AUTH_SCOPE: HeaderName = HeaderName::from_static("x-authenticated-scope");
static X_AUTH_CLIENT: HeaderName = HeaderName::from_static("x-authenticated-client");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// The pooled upstream client (keep-alive connections per upstream).
/// Generic over the request body so the load harness's bare reference
/// proxy (`benches/e2e/bare.rs`) can pass bodies through unboxed with
/// exactly these settings; the gateway uses [`UpstreamClient`].
pub fn client<B>() -> Client<HttpConnector, B>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    http.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        .build(http)
}

/// `X-Forwarded-For` and the `for=...;proto=http` part of `Forwarded` for
/// a client address. Formatting an address costs more than the rest of
/// the header rewrite, and consecutive requests on a proxy thread mostly
/// come from the same client (keep-alive), so each thread remembers the
/// last one.
fn peer_values(ip: std::net::IpAddr) -> (HeaderValue, std::rc::Rc<str>) {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(std::net::IpAddr, HeaderValue, std::rc::Rc<str>)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|cell| {
        let mut last = cell.borrow_mut();
        if let Some((cached, xff, fwd)) = last.as_ref() {
            if *cached == ip {
                return (xff.clone(), fwd.clone());
            }
        }
        let text = ip.to_string();
        let xff =
            HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        let fwd: std::rc::Rc<str> = if ip.is_ipv6() {
            format!("for=\"[{text}]\";proto=http").into()
        } else {
            format!("for={text};proto=http").into()
        };
        *last = Some((ip, xff.clone(), fwd.clone()));
        (xff, fwd)
    })
}

const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Would a client-sent header of this name impersonate the gateway?
fn spoofable(name: &str) -> bool {
    let starts = |p: &str| {
        name.len() >= p.len()
            && name.as_bytes()[..p.len()]
                .iter()
                .zip(p.as_bytes())
                .all(|(a, b)| a == b || (*a == b'_' && *b == b'-'))
    };
    starts("x-authenticated-")
        || starts("x-forwarded-")
        || name == "forwarded"
        || starts("x-real-ip")
}

/// Remove hop-by-hop headers, the headers `Connection` names, and (for
/// requests) everything spoofable. Allocates only when something must go.
pub fn strip_headers(h: &mut HeaderMap, request: bool) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for conn in [
        header::CONNECTION,
        HeaderName::from_static("proxy-connection"),
    ] {
        for v in h.get_all(&conn) {
            if let Ok(s) = v.to_str() {
                for token in s.split(',') {
                    if let Ok(name) = HeaderName::from_bytes(token.trim().as_bytes()) {
                        doomed.push(name);
                    }
                }
            }
        }
    }
    if request {
        for name in h.keys() {
            if spoofable(name.as_str()) {
                doomed.push(name.clone());
            }
        }
    }
    for name in doomed {
        h.remove(name);
    }
    for name in &HOP_BY_HOP {
        h.remove(name);
    }
}

fn is_websocket_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Set the gateway's own forwarding and identity headers.
fn set_gateway_headers(h: &mut HeaderMap, ctx: &RequestCtx<'_>, client_host: Option<HeaderValue>) {
    let (xff, for_part) = peer_values(ctx.client);
    // Behind a trusted proxy its chain is extended with the peer;
    // otherwise whatever the client claimed was removed and the client
    // address stands alone.
    let xff =
        super::forwarded::extended_chain(ctx.forwarded_for.as_ref(), ctx.peer.ip()).unwrap_or(xff);
    h.insert(X_FORWARDED_FOR.clone(), xff);
    h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    let mut forwarded = String::with_capacity(for_part.len() + 64);
    forwarded.push_str(&for_part);
    if let Some(host) = &client_host {
        if let Ok(hs) = host.to_str() {
            // Only a plain host[:port] goes into the quoted-string.
            if hs
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            {
                forwarded.push_str(";host=\"");
                forwarded.push_str(hs);
                forwarded.push('"');
            }
        }
        h.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        h.insert(FORWARDED.clone(), v);
    }
    h.insert(X_REQUEST_ID.clone(), ctx.request_id.clone());
    if let Some(id) = &ctx.identity {
        h.insert(X_AUTH_USER.clone(), id.user_header.clone());
        h.insert(X_AUTH_ACCOUNT.clone(), id.account_id_header.clone());
        h.insert(X_AUTH_SCOPE.clone(), id.scope_header.clone());
        if let Some(client) = &id.client_header {
            h.insert(X_AUTH_CLIENT.clone(), client.clone());
        }
    }
}

fn upstream_uri(route: &Route, path: &str, query: Option<&str>) -> Result<Uri, Rejection> {
    let up = &route.config.upstream;
    let mut pq = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    pq.push_str(path);
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    Uri::builder()
        .scheme(up.scheme.clone())
        .authority(up.authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|_| Rejection::BadRequest("the request target cannot be forwarded"))
}

/// The client's request body on its way upstream: cut off before a frame
/// that would pass `max_body_bytes` (so the upstream never receives a byte
/// past it), and its errors tagged as the client's.
struct ClientBody {
    inner: Incoming,
    remaining: u64,
}

/// The client's request body failed; the upstream is not at fault.
#[derive(Debug, thiserror::Error)]
enum ClientBodyError {
    #[error("the request body is over the limit")]
    TooLarge,
    #[error("the request body is malformed or incomplete: {0}")]
    Malformed(#[source] hyper::Error),
}

impl http_body::Body for ClientBody {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > self.remaining {
                        return Poll::Ready(Some(Err(Box::new(ClientBodyError::TooLarge))));
                    }
                    self.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(Box::new(ClientBodyError::Malformed(e)))))
            }
            other => other.map_err(|e| -> crate::body::BoxError { Box::new(e) }),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client body error among this error's causes, if any.
fn client_body_error<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e ClientBodyError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(b) = err.downcast_ref::<ClientBodyError>() {
            return Some(b);
        }
        cur = err.source();
    }
    None
}

/// Join HTTP/2 cookie crumbs into one field (RFC 9113 §8.2.3). Allocates
/// only when there is more than one.
fn join_cookies(h: &mut HeaderMap) {
    let mut crumbs = h.get_all(header::COOKIE).iter();
    if crumbs.next().is_none() || crumbs.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    for (i, crumb) in h.get_all(header::COOKIE).iter().enumerate() {
        if i > 0 {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(crumb.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        h.insert(header::COOKIE, v);
    }
}

/// The forward phase: send `req` to `route`'s upstream at `path` (the
/// normalized path as the upstream should see it: prefix stripped, base
/// path prepended) and return the upstream's response, streaming.
pub async fn forward(
    client: &UpstreamClient,
    mut req: Request<Incoming>,
    conn: &Conn,
    ctx: &RequestCtx<'_>,
    route: &Route,
    path: &str,
    limits: &Limits,
) -> Result<Response<Body>, Rejection> {
    let websocket = is_websocket_upgrade(&req);
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    // The route phase has checked it: a valid host, and on HTTP/2 the same
    // as `:authority` when both are sent.
    let client_host = req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let uri = upstream_uri(route, path, req.uri().query())?;
    let (mut parts, body) = req.into_parts();
    strip_headers(&mut parts.headers, true);
    // Framing is re-derived by hyper from the body actually sent (its
    // exact size or chunked), never copied from the client.
    parts.headers.remove(header::CONTENT_LENGTH);
    if !route.config.forward_authorization {
        parts.headers.remove(header::AUTHORIZATION);
    }
    join_cookies(&mut parts.headers);
    set_gateway_headers(&mut parts.headers, ctx, client_host);
    parts.headers.remove(header::HOST);
    if websocket {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts
            .headers
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    parts.uri = uri;
    // Upstreams speak HTTP/1.1, whatever the client spoke.
    parts.version = Version::HTTP_11;
    let body: Body = ClientBody {
        inner: body,
        remaining: limits.max_body_bytes,
    }
    .boxed_unsync();
    let upstream_req = Request::from_parts(parts, body);

    // One timer per request: the route's deadline, capped by the server's.
    let deadline = route.config.timeout.min(limits.request_timeout);
    let sent = tokio::time::timeout(deadline, client.request(upstream_req)).await;
    let mut res = match sent {
        Err(_) => {
            route.stats.upstream_error(UpstreamError::Timeout);
            return Err(Rejection::GatewayTimeout);
        }
        Ok(Err(e)) => {
            match client_body_error(&e) {
                Some(ClientBodyError::TooLarge) => return Err(Rejection::PayloadTooLarge),
                Some(ClientBodyError::Malformed(cause)) => {
                    tracing::debug!(route = %route.config.name, error = %cause, "bad request body");
                    return Err(Rejection::BadRequest("malformed request body"));
                }
                None => {}
            }
            route.stats.upstream_error(if e.is_connect() {
                UpstreamError::Connect
            } else {
                UpstreamError::Request
            });
            tracing::warn!(route = %route.config.name, error = %e, "upstream request failed");
            return Err(Rejection::BadGateway);
        }
        Ok(Ok(res)) => res,
    };

    if res.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            // An upstream may not switch protocols on its own.
            route.stats.upstream_error(UpstreamError::Protocol);
            return Err(Rejection::BadGateway);
        };
        let upstream_upgrade = hyper::upgrade::on(&mut res);
        let hold = conn.hold();
        let idle = limits.request_timeout;
        tokio::spawn(async move {
            let (Ok(down), Ok(up)) = tokio::join!(client_upgrade, upstream_upgrade) else {
                return;
            };
            tunnel::run(down, up, idle, hold).await;
        });
        let (mut parts, _) = res.into_parts();
        let upgrade = parts.headers.get(header::UPGRADE).cloned();
        strip_headers(&mut parts.headers, false);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(u) = upgrade {
            parts.headers.insert(header::UPGRADE, u);
        }
        return Ok(Response::from_parts(parts, crate::body::empty()));
    }

    let (mut parts, body) = res.into_parts();
    strip_headers(&mut parts.headers, false);
    // The status is already on its way: an upstream that fails mid-body
    // (a reset, a short body) can only abort the client's connection,
    // which the server does when the body errs. Say so here, where the
    // route and the request are known (`docs/security.md`, "Faults").
    let stats = route.stats.clone();
    let request_id = ctx.request_id.clone();
    Ok(Response::from_parts(
        parts,
        body.map_err(move |e| -> crate::body::BoxError {
            stats.upstream_error(UpstreamError::Request);
            tracing::warn!(
                request_id = request_id.to_str().unwrap_or("-"),
                error = %e,
                "upstream response body failed; client connection aborted"
            );
            Box::new(e)
        })
        .boxed_unsync(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoofable_names() {
        for n in [
            "x-authenticated-user",
            "x-authenticated-scope",
            "x_authenticated_user",
            "x-forwarded-for",
            "x-forwarded-user",
            "forwarded",
            "x-real-ip",
        ] {
            assert!(spoofable(n), "{n}");
        }
        for n in [
            "x-request-id",
            "authorization",
            "x-authenticatedx",
            "content-type",
        ] {
            assert!(!spoofable(n), "{n}");
        }
    }

    #[test]
    fn connection_named_headers_and_hop_by_hop_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Foo, x-authenticated-scope"),
        );
        h.insert("x-foo", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("proxy-connection", HeaderValue::from_static("x-bar"));
        h.insert("x-bar", HeaderValue::from_static("1"));
        h.insert("x-authenticated-user", HeaderValue::from_static("admin"));
        h.insert("x_authenticated_user", HeaderValue::from_static("admin"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_headers(&mut h, true);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["x-keep"]);
    }

    #[test]
    fn peer_values_per_address_family() {
        let (xff, fwd) = peer_values("10.1.2.3".parse().unwrap());
        assert_eq!(xff, "10.1.2.3");
        assert_eq!(&*fwd, "for=10.1.2.3;proto=http");
        // A different address replaces the remembered one.
        let (xff, fwd) = peer_values("::1".parse().unwrap());
        assert_eq!(xff, "::1");
        assert_eq!(&*fwd, "for=\"[::1]\";proto=http");
        let (xff, _) = peer_values("10.1.2.3".parse().unwrap());
        assert_eq!(xff, "10.1.2.3");
    }
}
