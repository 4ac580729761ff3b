//! The per-request context and the final `log` phase.
//!
//! Every request on the proxy listener, proxied or answered by `/oauth/*`,
//! gets one [`RequestCtx`] when it arrives. The phases (`docs/http.md`,
//! "Request phases") fill it in as they learn things (which route or
//! endpoint, whose token) instead of passing out-parameters around, and
//! [`log`] runs last on success and failure alike: it echoes the request id
//! to the client and writes the one access-log line, so every answer looks
//! the same in the log whoever produced it.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::BytesMut;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Response};

use crate::body::Body;
use crate::metrics::RouteStats;
use crate::tokens::cache::Caller;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the phases know about one request.
pub struct RequestCtx<'a> {
    /// When the request arrived (for the latency in the log line).
    pub start: Instant,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The client: the peer, or behind a trusted proxy the address it
    /// vouches for (`src/gateway/forwarded.rs`). What `/oauth/*`
    /// throttles on and what the upstream is told.
    pub client: IpAddr,
    /// The `X-Forwarded-For` chain a trusted proxy sent (extended, not
    /// replaced, when forwarding); `None` from any other peer.
    pub forwarded_for: Option<HeaderValue>,
    pub method: Method,
    /// The client's `X-Request-Id` when it is sane, else a new one; sent
    /// upstream and echoed to the client.
    pub request_id: HeaderValue,
    /// What served the request: a route name, an `oauth:<endpoint>`, or
    /// `-` when it was rejected before either was known.
    pub label: &'a str,
    /// The counters of what served the request (set with `label`).
    pub stats: &'a RouteStats,
    /// The caller, once a token was validated.
    pub identity: Option<Caller>,
}

impl<'a> RequestCtx<'a> {
    /// `unrouted`: the counters used until a route or endpoint is known.
    pub fn new<B>(req: &Request<B>, peer: SocketAddr, unrouted: &'a RouteStats) -> RequestCtx<'a> {
        RequestCtx {
            start: Instant::now(),
            peer,
            client: peer.ip(),
            forwarded_for: None,
            method: req.method().clone(),
            request_id: req
                .headers()
                .get(&X_REQUEST_ID)
                .filter(|v| sane_request_id(v))
                .cloned()
                .unwrap_or_else(new_request_id),
            label: "-",
            stats: unrouted,
            identity: None,
        }
    }
}

/// The last phase: echo the request id, count the answer (a few atomic
/// increments, [`RouteStats::record`]) and write the access-log line.
pub fn log(ctx: &RequestCtx<'_>, response: &mut Response<Body>) {
    response
        .headers_mut()
        .insert(X_REQUEST_ID.clone(), ctx.request_id.clone());
    let elapsed = ctx.start.elapsed();
    ctx.stats.record(response.status(), elapsed);
    tracing::info!(
        target: "scopegate::access",
        peer = %ctx.peer,
        method = %ctx.method,
        route = ctx.label,
        status = response.status().as_u16(),
        account_id = ctx.identity.as_ref().map(|i| i.account_id),
        request_id = ctx.request_id.to_str().unwrap_or("-"),
        micros = elapsed.as_micros() as u64,
    );
}

/// A request id we accept from a client: 1-128 visible ASCII characters.
pub fn sane_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(|c| (0x21..=0x7e).contains(c))
}

/// A request id's length: 32 lowercase hex digits, the first
/// [`ID_PREFIX_LEN`] a per-process random prefix, the rest a counter.
const ID_LEN: usize = 32;
const ID_PREFIX_LEN: usize = 16;
/// Ids cut from one per-thread buffer.
const IDS_PER_BUFFER: usize = 128;

/// A new request id: a per-process random prefix and a counter (unique,
/// cheap, not secret), [`ID_LEN`] lowercase hex digits, encoded without
/// `fmt`.
///
/// Ids are cut from a per-thread buffer of [`IDS_PER_BUFFER`], so making
/// one allocates nothing most of the time and cloning it (the response,
/// the upstream request, the log) is a reference count; a buffer is freed
/// when the last id cut from it is dropped.
pub fn new_request_id() -> HeaderValue {
    static PREFIX: std::sync::OnceLock<[u8; ID_PREFIX_LEN]> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static BUF: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
    }
    let prefix = PREFIX.get_or_init(|| {
        let mut b = [0u8; ID_PREFIX_LEN / 2];
        let _ = rand::TryRngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut b);
        let mut hex = [b'0'; ID_PREFIX_LEN];
        let _ = hex::encode_to_slice(b, &mut hex);
        hex
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut digits = [b'0'; ID_LEN - ID_PREFIX_LEN];
    if hex::encode_to_slice(n.to_be_bytes(), &mut digits).is_err() {
        return HeaderValue::from_static("0");
    }
    let id = BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        if buf.capacity() < ID_LEN {
            *buf = BytesMut::with_capacity(ID_LEN * IDS_PER_BUFFER);
        }
        buf.extend_from_slice(prefix);
        buf.extend_from_slice(&digits);
        buf.split().freeze()
    });
    HeaderValue::from_maybe_shared(id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert!(sane_request_id(&HeaderValue::from_static("abc-123")));
        assert!(!sane_request_id(&HeaderValue::from_static("")));
        assert!(!sane_request_id(&HeaderValue::from_static("a b")));
        assert!(!sane_request_id(
            &HeaderValue::from_str(&"a".repeat(129)).unwrap()
        ));
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert!(sane_request_id(&a));
        assert_eq!(a.len(), 32);
        assert!(a.as_bytes().iter().all(|c| c.is_ascii_hexdigit()));
        // Across several per-thread buffers, each id is whole and new.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let id = new_request_id();
            assert_eq!(id.len(), 32);
            assert_eq!(id.as_bytes()[..16], a.as_bytes()[..16]);
            assert!(seen.insert(id));
        }
    }
}
