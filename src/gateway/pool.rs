//! The upstream connection pool: HTTP/1.1 keep-alive connections, made
//! with hyper's connection API (`hyper::client::conn::http1`), one pool per
//! proxy thread.
//!
//! Why not hyper-util's pooled `Client`: it is built to be shared across
//! threads, so every request hashes its pool key with SipHash under a
//! lock and spawns a task to wait until the connection may carry the next
//! request; the profile put that at about 4,000 instructions a request,
//! more than routing, authentication and the header policy together
//! (`docs/operations.md`, "Profiling"). Here each proxy thread (its own
//! runtime, `src/app.rs`) owns its pool, keyed by the upstream's authority
//! with a fast hasher, and a connection goes back into it from the response
//! body the moment the body ends, with no task.
//!
//! What it keeps of hyper-util's client:
//! - a request a reused connection dropped before writing any of it (the
//!   upstream closed the idle connection meanwhile) is sent again on
//!   another connection: it never reached the upstream (RFC 9112 §9.3.1);
//! - connections idle for [`IDLE_TIMEOUT`] are closed by [`Pool::reaper`];
//!   at most [`MAX_IDLE_PER_UPSTREAM`] idle connections per upstream;
//! - a connect timeout ([`CONNECT_TIMEOUT`]), `TCP_NODELAY`, and protocol
//!   upgrades (WebSocket) on the connection.
//!
//! A connection whose response ends while it is still busy (an upstream
//! that answered before reading the whole request body) is closed rather
//! than waited for; one after a `101 Switching Protocols` belongs to the
//! tunnel.

use std::borrow::Cow;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response, StatusCode};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

/// How long a connection to an upstream may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may sit idle in the pool before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often idle connections are checked (so one is closed within
/// `IDLE_TIMEOUT` + this).
const REAP_EVERY: Duration = Duration::from_secs(15);
/// Idle connections kept per upstream; one past it is closed.
pub const MAX_IDLE_PER_UPSTREAM: usize = 1024;

/// Keyed by the authority's text: one hash of a short string (an
/// `Authority` key hashes byte by byte, case-folded).
type IdleMap<B> = HashMap<Box<str>, Vec<IdleConn<B>>, foldhash::fast::RandomState>;

struct IdleConn<B> {
    sender: SendRequest<B>,
    since: Instant,
}

/// One proxy thread's upstream connections.
pub struct Pool<B> {
    shared: Arc<Shared<B>>,
}

struct Shared<B> {
    /// Locked only by the owning thread (uncontended); a `Mutex` because
    /// the request futures holding the pool must be `Send`.
    idle: Mutex<IdleMap<B>>,
}

/// Why a request got no response from its upstream.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot connect to the upstream: {0}")]
    Connect(#[source] std::io::Error),
    #[error("no connection to the upstream within {0:?}")]
    ConnectTimeout(Duration),
    /// The exchange failed; the cause may be the request body's own error.
    #[error("the upstream exchange failed: {0}")]
    Exchange(#[source] hyper::Error),
}

impl SendError {
    /// Whether no connection could be made at all.
    pub fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_) | SendError::ConnectTimeout(_))
    }
}

impl<B> Default for Pool<B> {
    fn default() -> Self {
        Pool {
            shared: Arc::new(Shared {
                idle: Mutex::new(HashMap::default()),
            }),
        }
    }
}

impl<B> Shared<B> {
    fn idle(&self) -> std::sync::MutexGuard<'_, IdleMap<B>> {
        // The map stays consistent whatever panicked while holding it.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used idle connection that can take a request now;
    /// closed ones found on the way are dropped.
    fn checkout(&self, upstream: &Authority) -> Option<SendRequest<B>> {
        let mut idle = self.idle();
        let list = idle.get_mut(upstream.as_str())?;
        while let Some(c) = list.pop() {
            if c.sender.is_ready() {
                return Some(c.sender);
            }
        }
        None
    }

    fn put(&self, upstream: &Authority, sender: SendRequest<B>) {
        // Not ready: still busy with this exchange, or closing.
        if !sender.is_ready() {
            return;
        }
        let conn = IdleConn {
            sender,
            since: Instant::now(),
        };
        let mut idle = self.idle();
        match idle.get_mut(upstream.as_str()) {
            Some(list) if list.len() < MAX_IDLE_PER_UPSTREAM => list.push(conn),
            Some(_) => {}
            None => {
                idle.insert(upstream.as_str().into(), vec![conn]);
            }
        }
    }

    /// Close connections idle for `max_idle` or closed by their upstream.
    fn reap(&self, max_idle: Duration) {
        let now = Instant::now();
        let mut idle = self.idle();
        for list in idle.values_mut() {
            list.retain(|c| !c.sender.is_closed() && now.duration_since(c.since) < max_idle);
        }
        idle.retain(|_, list| !list.is_empty());
    }
}

impl<B> Pool<B>
where
    B: HttpBody + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Send `req` to `upstream`. The request's URI is in origin form and
    /// its `Host` set (RFC 9112 §3.2): the caller's.
    pub async fn send(
        &self,
        upstream: &Authority,
        mut req: Request<B>,
    ) -> Result<Response<PooledBody<B>>, SendError> {
        loop {
            let (mut sender, reused) = match self.shared.checkout(upstream) {
                Some(sender) => (sender, true),
                None => (connect(upstream).await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(res) => {
                    let lease = (res.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| Lease {
                        sender,
                        pool: Arc::downgrade(&self.shared),
                        upstream: upstream.clone(),
                    });
                    return Ok(res.map(|inner| PooledBody { inner, lease }));
                }
                Err(mut e) => match e.take_message() {
                    // Never written: another connection may carry it.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(SendError::Exchange(e.into_error())),
                },
            }
        }
    }

    /// Closes idle connections every [`REAP_EVERY`] until the pool is
    /// dropped; spawn it on the pool's thread.
    pub fn reaper(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let pool = Arc::downgrade(&self.shared);
        async move {
            let mut every = tokio::time::interval(REAP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                match pool.upgrade() {
                    Some(p) => p.reap(IDLE_TIMEOUT),
                    None => return,
                }
            }
        }
    }

    /// Idle connections now, per upstream (for tests).
    pub fn idle_count(&self, upstream: &Authority) -> usize {
        self.shared
            .idle()
            .get(upstream.as_str())
            .map_or(0, Vec::len)
    }

    /// Close the connections idle for `max_idle` now (for tests; the
    /// reaper does it with [`IDLE_TIMEOUT`]).
    pub fn reap(&self, max_idle: Duration) {
        self.shared.reap(max_idle);
    }
}

async fn connect<B>(upstream: &Authority) -> Result<SendRequest<B>, SendError>
where
    B: HttpBody + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Upstream URLs are `http://`; no port means 80.
    let target = match upstream.port_u16() {
        Some(_) => Cow::Borrowed(upstream.as_str()),
        None => Cow::Owned(format!("{}:80", upstream.as_str())),
    };
    let stream =
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&*target)).await
        {
            Err(_) => return Err(SendError::ConnectTimeout(CONNECT_TIMEOUT)),
            Ok(Err(e)) => return Err(SendError::Connect(e)),
            Ok(Ok(s)) => s,
        };
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(SendError::Exchange)?;
    tokio::spawn(async move {
        // Its requests see its failures; this is only the connection's end.
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// An upstream response body; when it ends, its connection goes back to
/// the pool.
pub struct PooledBody<B> {
    inner: Incoming,
    lease: Option<Lease<B>>,
}

struct Lease<B> {
    sender: SendRequest<B>,
    pool: Weak<Shared<B>>,
    upstream: Authority,
}

impl<B> Lease<B> {
    fn give_back(self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.put(&self.upstream, self.sender);
        }
    }
}

impl<B> HttpBody for PooledBody<B> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            if let Some(lease) = this.lease.take() {
                lease.give_back();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for PooledBody<B> {
    fn drop(&mut self) {
        // A body dropped at its end (never polled, as an empty one may be)
        // leaves a reusable connection; one dropped midway does not.
        if self.inner.is_end_stream() {
            if let Some(lease) = self.lease.take() {
                lease.give_back();
            }
        }
    }
}

#[cfg(test)]
mod tests;
