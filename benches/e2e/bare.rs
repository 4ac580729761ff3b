//! `bare`: the reference for what plain proxying costs here. A minimal
//! hyper-util reverse proxy with exactly scopegate's server and client
//! settings (`scopegate::server::builder`, `scopegate::gateway::forward::
//! client`, mimalloc from the bench binary, one current-thread runtime per
//! core on `SO_REUSEPORT` listeners as `scopegate::app` runs them) and
//! nothing else: a Bearer check against a `HashMap`, one identity header,
//! the upstream's authority in the URI. No connection limits or idle
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
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioIo;

type Answer = Response<Either<Incoming, Empty<Bytes>>>;

static X_AUTH_USER: HeaderName = HeaderName::from_static("x-authenticated-user");

/// What every proxy thread shares.
struct Shared {
    /// Accepted tokens and the identity header each one gets.
    tokens: HashMap<Box<str>, HeaderValue>,
    upstream: Authority,
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
    let shared = Arc::new(Shared { tokens, upstream });
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
        let client: Client<HttpConnector, Incoming> = scopegate::gateway::forward::client();
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

async fn proxy(
    client: &Client<HttpConnector, Incoming>,
    shared: &Shared,
    req: Request<Incoming>,
) -> Answer {
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
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(shared.upstream.clone());
    uri.path_and_query = Some(
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    let Ok(uri) = Uri::from_parts(uri) else {
        return status(StatusCode::BAD_REQUEST);
    };
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    // The client sets the upstream's Host from the URI.
    parts.headers.remove(header::HOST);
    parts.headers.insert(X_AUTH_USER.clone(), user);
    match client.request(Request::from_parts(parts, body)).await {
        Ok(res) => res.map(Either::Left),
        Err(_) => status(StatusCode::BAD_GATEWAY),
    }
}
