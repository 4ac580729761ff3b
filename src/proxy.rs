//! The proxy listener's front door: every request gets a
//! [`RequestCtx`], goes through `check_request` and `normalize`, and then
//! either to the OAuth endpoints (`/oauth/*`, decided on the normalized
//! path, so no spelling of it is ever proxied) or through the gateway's
//! `route -> authenticate -> authorize -> forward`. The `log` phase ends
//! every request, whoever answered it.

use http::{Request, Response};
use hyper::body::Incoming;

use crate::body::Body;
use crate::error::Rejection;
use crate::gateway::forward::{self, UpstreamClient};
use crate::gateway::route::forwarded_path;
use crate::gateway::{self, Gateway, Policy};
use crate::oauth::{self, OAuth};
use crate::request::{self, RequestCtx};
use crate::server::Conn;

/// Answer one request on the proxy listener.
pub async fn handle(
    gateway: &Gateway,
    oauth: &OAuth,
    upstream: &UpstreamClient,
    req: Request<Incoming>,
    conn: Conn,
) -> Response<Body> {
    let mut ctx = RequestCtx::new(&req, conn.peer, &gateway.unrouted);
    (ctx.client, ctx.forwarded_for) =
        gateway::forwarded::client_address(conn.peer.ip(), req.headers(), |ip| {
            gateway.is_trusted_proxy(ip)
        });
    // The routes and limits this request is decided and logged with, even
    // if a reload swaps them meanwhile.
    let policy = gateway.policy();
    let mut response = match phases(gateway, oauth, upstream, &policy, req, &conn, &mut ctx).await {
        Ok(r) => r,
        Err(rejection) => rejection.into_response(),
    };
    request::log(&ctx, &mut response);
    response
}

async fn phases<'r>(
    gateway: &Gateway,
    oauth: &'r OAuth,
    upstream: &UpstreamClient,
    policy: &'r Policy,
    req: Request<Incoming>,
    conn: &Conn,
    ctx: &mut RequestCtx<'r>,
) -> Result<Response<Body>, Rejection> {
    gateway::check_request(&req, &policy.limits)?;
    let path = gateway::normalize(&req)?;
    if let Some(endpoint) = oauth::endpoint(&path) {
        ctx.label = endpoint.label();
        ctx.stats = oauth.endpoint_stats(endpoint);
        // Boxed: the endpoints' state (argon2, token issue) is several KB,
        // and an unboxed branch would make every proxied request's future
        // that large (moved, and copied, on every request).
        return Ok(Box::pin(oauth.handle(endpoint, ctx, req)).await);
    }
    let route = gateway::route(&policy.routes, &req, &path)?;
    ctx.label = &route.config.name;
    ctx.stats = &route.stats;
    ctx.identity = gateway::authenticate(&gateway.tokens, &req, route, ctx.client).await?;
    gateway::authorize(ctx.identity.as_deref(), route)?;
    let target = forward::upstream_target(req.uri(), &forwarded_path(route, &path))?;
    drop(path);
    forward::forward(upstream, req, conn, ctx, route, target, &policy.limits).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<A, B, C, D, E, F>(_: impl Fn(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every proxied request's future is moved (copied) a few times on its
    /// way into its connection's task: the rare, large branches (the OAuth
    /// endpoints, the token cache's database path) are boxed so it stays
    /// small. Unboxed it was about 7 KB.
    #[test]
    fn a_request_future_stays_small() {
        let size = future_size(
            |g: &'static Gateway,
             o: &'static OAuth,
             u: &'static UpstreamClient,
             r: Request<Incoming>,
             c: Conn| handle(g, o, u, r, c),
        );
        assert!(size <= 4096, "the request future is {size} bytes");
    }
}
