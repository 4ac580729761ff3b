//! `bare`: the reference for what plain proxying costs here. A minimal
//! hyper reverse proxy with exactly scopegate's server and client
//! settings (`scopegate::server::builder`, `scopegate::gateway::forward::
//! client`: the per-thread upstream pool, mimalloc from the bench binary, one current-thread runtime per
//! core on `SO_REUSEPORT` listeners as `scopegate::app` runs them) and
//! nothing else: a Bearer check against a `HashMap`, one identity header,
//! the upstream's `Host`. No connection limits or idle
//! watcher, no per-request timeout, no body limit or boxing, no header
//! policy, request id, routing, cache or access log: whatever scopegate
//! costs above this is its own layers.
//!
//! The harness runs it as a child process: its own bench binary with the
//! arguments `bare-proxy LISTEN UPSTREAM`, the accepted tokens in the
//! environment (`E2E_BARE_TOKENS`, comma-separated; the header value is
//! `bench`). For a profile, run that binary the same way by hand.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use scopegate::gateway::pool::{Pool, PooledBody};

type Answer = Response<Either<PooledBody<Incoming>, Empty<Bytes>>>;

static X_AUTH_USER: HeaderName = HeaderName::from_static("x-authenticated-user");

/// What every proxy thread shares.
struct Shared {
    /// Accepted tokens and the identity header each one gets.
    tokens: HashMap<Box<str>, HeaderValue>,
    upstream: Authority,
    /// The upstream's `Host`.
    host: HeaderValue,
}

/// `bare-proxy LISTEN UPSTREAM`: serve until killed.
pub fn main(args: &[String]) {
    let (Some(listen), Some(upstream)) = (args.first(), args.get(1)) else {
        eprintln!("usage: bare-proxy LISTEN_ADDR UPSTREAM_HOST:PORT");
        std::process::exit(2);
    };
    let listen: SocketAddr = listen.parse().expect("LISTEN is IP:port");
    let upstream: Authority = upstream.parse().expect("UPSTREAM is host:port");
    let tokens = std::env::var("E2E_BARE_TOKENS")
        .unwrap_or_default()
        .split(',')
        .filter(|t| !t.is_empty())
        .map(|t| (t.into(), HeaderValue::from_static("bench")))
        .collect();
    let host = HeaderValue::from_str(upstream.as_str()).expect("UPSTREAM is a header value");
    let shared = Arc::new(Shared {
        tokens,
        upstream,
        host,
    });
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let listeners = scopegate::server::bind_group(listen, threads).expect("bind the listeners");
    let handles: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            let shared = shared.clone();
            std::thread::spawn(move || proxy_thread(l, shared))
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}

/// One core's proxy: its own runtime, listener and upstream pool.
fn proxy_thread(listener: std::net::TcpListener, shared: Arc<Shared>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
        let builder = Arc::new(scopegate::server::builder(
            &scopegate::server::Limits::default(),
        ));
        let client: Arc<Pool<Incoming>> = Arc::new(scopegate::gateway::forward::client());
        tokio::spawn(client.reaper());
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (builder, client, shared) = (builder.clone(), client.clone(), shared.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let (client, shared) = (client.clone(), shared.clone());
                    async move { Ok::<_, Infallible>(proxy(&client, &shared, req).await) }
                });
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

fn status(code: StatusCode) -> Answer {
    let mut r = Response::new(Either::Right(Empty::new()));
    *r.status_mut() = code;
    r
}

async fn proxy(client: &Pool<Incoming>, shared: &Shared, req: Request<Incoming>) -> Answer {
    let user = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| shared.tokens.get(t));
    let Some(user) = user.cloned() else {
        return status(StatusCode::UNAUTHORIZED);
    };
    let (mut parts, body) = req.into_parts();
    parts.version = Version::HTTP_11;
    parts.headers.insert(header::HOST, shared.host.clone());
    parts.headers.insert(X_AUTH_USER.clone(), user);
    match client
        .send(&shared.upstream, Request::from_parts(parts, body))
        .await
    {
        Ok(res) => res.map(Either::Left),
        Err(_) => status(StatusCode::BAD_GATEWAY),
    }
}
