//! `scopegate echo`: a small, fast upstream that answers every request with
//! JSON describing what it received (method, path, query, headers, body
//! length). `dev`, the tests and the benchmarks put it behind the gateway.
//!
//! A few request headers make it useful for tests:
//! - `x-echo-bytes: N` answers with a streamed body of N bytes instead
//!   (downloads, never held in memory);
//! - `x-echo-delay-ms: N` waits before answering (timeouts);
//! - `Upgrade: websocket` completes the handshake and echoes every message.
//!
//! The request body is consumed as a stream and only counted.
//!
//! [`Fixed`] (`scopegate echo --fixed`) is the other upstream: it answers
//! every request with the same 2-byte body without looking at it, so a
//! benchmark charges the proxy in front of it, not the upstream's JSON
//! work (`docs/operations.md`, "Commands").

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;

use crate::body::{self, Body};
use crate::server::Handler;

/// The echo upstream.
pub struct Echo;

/// Largest body `x-echo-bytes` will produce (a safety valve, 8 GiB).
const MAX_DOWNLOAD: u64 = 8 << 30;
const CHUNK: usize = 64 * 1024;

impl Handler for Echo {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        _conn: crate::server::Conn,
    ) -> impl std::future::Future<Output = Response<Body>> + Send + 'static {
        respond(req)
    }
}

/// The fixed-response upstream: `200 OK`, body `ok`, whatever was asked.
/// The request body is left unread (hyper drains or closes as it must).
pub struct Fixed;

/// What [`Fixed`] answers.
pub const FIXED_BODY: &[u8] = b"ok";

impl Handler for Fixed {
    fn handle(
        self: Arc<Self>,
        _req: Request<Incoming>,
        _conn: crate::server::Conn,
    ) -> impl std::future::Future<Output = Response<Body>> + Send + 'static {
        std::future::ready(Response::new(body::full(Bytes::from_static(FIXED_BODY))))
    }
}

fn header_u64(req: &Request<Incoming>, name: &str) -> Option<u64> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

async fn respond(mut req: Request<Incoming>) -> Response<Body> {
    if let Some(ms) = header_u64(&req, "x-echo-delay-ms") {
        tokio::time::sleep(Duration::from_millis(ms.min(600_000))).await;
    }
    if is_websocket(&req) {
        return websocket(&mut req);
    }
    let description = describe_head(&req);
    let download = header_u64(&req, "x-echo-bytes");
    // Count the body without keeping it.
    let mut len: u64 = 0;
    let mut body_error = false;
    let mut incoming = req.into_body();
    while let Some(frame) = incoming.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    len += d.len() as u64;
                }
            }
            Err(_) => {
                body_error = true;
                break;
            }
        }
    }
    if body_error {
        let mut r = Response::new(body::full("incomplete request body\n"));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    }
    if let Some(n) = download {
        return stream_bytes(n.min(MAX_DOWNLOAD));
    }
    let mut json = description;
    json["body_length"] = serde_json::json!(len);
    let mut r = Response::new(body::json(&json));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn describe_head(req: &Request<Incoming>) -> serde_json::Value {
    let mut headers = serde_json::Map::new();
    for (name, value) in req.headers() {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            Some(serde_json::Value::Array(a)) => a.push(v.into()),
            _ => {
                headers.insert(name.as_str().to_owned(), serde_json::json!([v]));
            }
        }
    }
    serde_json::json!({
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "version": format!("{:?}", req.version()),
        "headers": headers,
    })
}

fn stream_bytes(n: u64) -> Response<Body> {
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let stream = futures_util::stream::unfold(n, move |left| {
        let chunk = chunk.clone();
        async move {
            if left == 0 {
                return None;
            }
            let take = left.min(CHUNK as u64) as usize;
            Some((
                Ok::<_, Infallible>(Frame::data(chunk.slice(..take))),
                left - take as u64,
            ))
        }
    });
    let mut r = Response::new(
        StreamBody::new(stream)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    r
}

fn is_websocket(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        && req.headers().contains_key(header::SEC_WEBSOCKET_KEY)
}

fn websocket(req: &mut Request<Incoming>) -> Response<Body> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return Response::new(body::empty());
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() {
                break;
            }
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}
