//! The forward phase: rewrite the request for the upstream, send it through
//! this thread's connection pool ([`super::pool`]), stream both bodies, and
//! hand WebSocket upgrades over to a bidirectional copy.
//!
//! The header policy is [`super::headers`].
//!
//! Errors are told apart by whose they are: the client's request body
//! (bad chunked framing, a reset, over `max_body_bytes`) is 400 or 413 and
//! logged at debug; only the upstream's own failures are 502 and warned
//! about.

use std::pin::Pin;
use std::task::{Context, Poll};

use super::headers::{self, strip_headers, Message};
use super::pool::Pool;
use super::route::Route;
use super::{tunnel, Limits};
use crate::body::Body;
use crate::error::Rejection;
use crate::metrics::UpstreamError;
use crate::request::RequestCtx;
use crate::server::Conn;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};

/// A proxy thread's upstream connections, for the gateway's request body.
pub type UpstreamClient = Pool<Body>;

/// A proxy thread's upstream pool. Generic over the request body so the
/// load harness's bare reference proxy (`benches/e2e/bare.rs`) can pass
/// bodies through unboxed with exactly these settings; the gateway uses
/// [`UpstreamClient`].
pub fn client<B>() -> Pool<B> {
    Pool::default()
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

/// The upstream's request target for a client's request target `client`
/// forwarded to `path`, in origin form (RFC 9112 §3.2.1): the connection
/// is to the upstream's authority, which `Host` names. When the path goes
/// upstream as the client sent it (the usual case), the client's path and
/// query are reused as they are, already parsed and checked.
pub fn upstream_target(client: &Uri, path: &str) -> Result<Uri, Rejection> {
    if let Some(pq) = client.path_and_query().filter(|pq| pq.path() == path) {
        let mut parts = http::uri::Parts::default();
        parts.path_and_query = Some(pq.clone());
        if let Ok(uri) = Uri::from_parts(parts) {
            return Ok(uri);
        }
    }
    let query = client.query();
    let mut pq = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    pq.push_str(path);
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    Uri::try_from(pq).map_err(|_| Rejection::BadRequest("the request target cannot be forwarded"))
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

/// The forward phase: send `req` to `route`'s upstream at `target`
/// ([`upstream_target`] of the normalized path as the upstream should see
/// it: prefix stripped, base path prepended) and return the upstream's
/// response, streaming.
pub async fn forward(
    client: &UpstreamClient,
    mut req: Request<Incoming>,
    conn: &Conn,
    ctx: &RequestCtx<'_>,
    route: &Route,
    target: Uri,
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
    let (mut parts, body) = req.into_parts();
    headers::rewrite_request(&mut parts.headers, ctx, route, client_host.as_ref());
    if websocket {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts
            .headers
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    parts.uri = target;
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
    let upstream = &route.config.upstream.authority;
    let sent = tokio::time::timeout(deadline, client.send(upstream, upstream_req)).await;
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
        strip_headers(&mut parts.headers, Message::Response);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(u) = upgrade {
            parts.headers.insert(header::UPGRADE, u);
        }
        return Ok(Response::from_parts(parts, crate::body::empty()));
    }

    let (mut parts, body) = res.into_parts();
    strip_headers(&mut parts.headers, Message::Response);
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

    fn target(client: &str, path: &str) -> String {
        let uri: Uri = client.parse().expect("a valid URI");
        upstream_target(&uri, path).expect("a target").to_string()
    }

    #[test]
    fn the_client_s_target_is_reused_when_the_path_is_unchanged() {
        assert_eq!(target("/a/b?x=1&y", "/a/b"), "/a/b?x=1&y");
        assert_eq!(target("/a/b", "/a/b"), "/a/b");
        // HTTP/2 and absolute-form targets go upstream in origin form.
        assert_eq!(target("http://h.example/a?q", "/a"), "/a?q");
    }

    #[test]
    fn a_changed_path_keeps_the_client_s_query() {
        // Normalized, prefix stripped, base path prepended.
        assert_eq!(target("/api/./v1?x=%20", "/api/v1"), "/api/v1?x=%20");
        assert_eq!(target("/api/items?q", "/items"), "/items?q");
        assert_eq!(target("/api", "/base/"), "/base/");
        assert_eq!(target("http://h.example", "/"), "/");
    }
}
