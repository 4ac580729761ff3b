//! The HTTP listener shared by the proxy, the admin API and `echo`:
//! hyper-util's `auto::Builder` (HTTP/1.1 and h2c on one port), with the
//! limits of `docs/configuration.md` (`[server]`) applied at the connection
//! level (`docs/http.md`, "Connections"):
//!
//! - header section larger than `max_header_bytes` -> 431 (hyper answers it);
//! - a connection with no request in progress is closed once it has been
//!   idle for `header_read_timeout`: before the first request (silent
//!   sockets, a partial HTTP/2 preface), between HTTP/1.1 keep-alive
//!   requests, and an HTTP/2 connection without open streams (GOAWAY, RFC
//!   9113 §6.8);
//! - so a request head not complete within `header_read_timeout` of the
//!   connection's going idle closes it (slowloris): hyper counts a
//!   connection between messages as idle while a head is arriving, and
//!   closes it at once when asked to. This one timer per connection is the
//!   only header timer: hyper's own (`http1().header_read_timeout`) is off,
//!   since it is made, registered and dropped for every request (about
//!   1,300 instructions a request; `docs/operations.md`, "Profiling") and
//!   does not cover protocol detection;
//! - at most `max_connections` connections served at once, counted across
//!   every accept loop that shares one [`Semaphore`] (the proxy threads do):
//!   beyond it an accepted connection waits for a place (backpressure)
//!   instead of failing. A connection's place is a [`Hold`]: a WebSocket
//!   tunnel keeps it after the upgrade;
//! - HTTP/2: bounded header list and concurrent streams, keep-alive pings;
//! - graceful shutdown: stop accepting, let in-flight requests (and
//!   tunnels) finish for up to `shutdown_grace`, then close what is left.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::{Request, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::body::Body;

/// Something that answers requests. Implemented by the proxy front door,
/// the admin API and the echo upstream.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Conn,
    ) -> impl Future<Output = Response<Body>> + Send + 'static;
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
}

impl Limits {
    pub fn from_config(c: &crate::config::ServerConfig) -> Self {
        Limits {
            max_header_bytes: c.max_header_bytes,
            header_read_timeout: c.header_read_timeout,
            max_connections: c.max_connections,
            shutdown_grace: c.shutdown_grace,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_config(&crate::config::ServerConfig::default())
    }
}

/// HTTP/2 keep-alive: a ping after this long without a frame from the
/// client, and the connection closed when it is not answered in
/// [`H2_PING_TIMEOUT`] (a peer that vanished mid-stream).
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Concurrent streams per HTTP/2 connection.
pub const H2_MAX_STREAMS: u32 = 100;

/// The connection builder every listener uses: HTTP/1.1 and h2c with the
/// header limits and timers above. Public so the load harness's bare
/// reference proxy (`benches/e2e/bare.rs`) serves with exactly these
/// settings.
pub fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        // The connection's idle timer bounds request heads (see above).
        .header_read_timeout(None)
        // hyper's minimum read buffer is 8 KiB.
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(H2_MAX_STREAMS)
        .keep_alive_interval(Some(H2_PING_INTERVAL))
        .keep_alive_timeout(H2_PING_TIMEOUT);
    b
}

/// Where the server is in its life; connections and tunnels watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Serving,
    /// Stopped accepting: finish what is in flight.
    Draining,
    /// The grace period is over: close everything.
    Closing,
}

/// One connection's place among the `max_connections`, and its view of the
/// server's stage. Shared by the connection task and anything that outlives
/// it (a WebSocket tunnel): the place is given back when the last one is
/// dropped, and the drain waits for all of them.
struct Slot {
    _permit: OwnedSemaphorePermit,
    stage: watch::Receiver<Stage>,
}

/// What a handler knows about the connection a request came on.
#[derive(Clone)]
pub struct Conn {
    /// The TCP peer.
    pub peer: SocketAddr,
    slot: Arc<Slot>,
}

impl Conn {
    /// Keep this connection's place (its `max_connections` permit, and the
    /// server's drain waiting for it) for as long as the [`Hold`] lives,
    /// e.g. for a tunnel that outlives the HTTP exchange.
    pub fn hold(&self) -> Hold {
        Hold {
            stage: self.slot.stage.clone(),
            _slot: self.slot.clone(),
        }
    }
}

/// A connection's place, kept past the HTTP exchange (see [`Conn::hold`]).
pub struct Hold {
    _slot: Arc<Slot>,
    stage: watch::Receiver<Stage>,
}

impl Hold {
    /// Resolves when the server's shutdown grace period is over (or the
    /// server is gone): whatever holds the place must end now.
    pub async fn closing(&mut self) {
        let _ = self.stage.wait_for(|s| *s == Stage::Closing).await;
    }
}

/// Serve `handler` on `listener` until `shutdown` resolves, then drain;
/// at most `limits.max_connections` connections at once.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    serve_shared(listener, handler, limits, permits, shutdown).await
}

/// [`serve`], taking connection places from `permits`, which several
/// accept loops may share (one limit for all of them).
pub async fn serve_shared<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    limits: Limits,
    permits: Arc<Semaphore>,
    shutdown: impl Future<Output = ()>,
) {
    let builder = Arc::new(builder(&limits));
    let (stage_tx, stage_rx) = watch::channel(Stage::Serving);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Accept first, then wait for a place: with `SO_REUSEPORT` the
        // kernel picks the accept loop, so waiting for a place before
        // accepting would strand a connection on a loop that has none
        // while another loop holds an unused one. At most one accepted
        // connection per loop waits here; the rest wait in the backlog.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let slot = Arc::new(Slot {
            _permit: permit,
            stage: stage_rx.clone(),
        });
        tokio::spawn(connection(
            builder.clone(),
            stream,
            Conn { peer, slot },
            handler.clone(),
            limits.header_read_timeout,
        ));
    }
    drop(listener);
    drop(stage_rx);
    stage_tx.send_replace(Stage::Draining);
    tokio::select! {
        _ = stage_tx.closed() => {}
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("shutdown grace period over; closing remaining connections");
            stage_tx.send_replace(Stage::Closing);
            // Everything watching the stage ends at its next poll.
            let _ = tokio::time::timeout(Duration::from_secs(1), stage_tx.closed()).await;
        }
    }
}

/// Serve one connection until it ends, is idle for `idle`, or the server
/// shuts down.
async fn connection<H: Handler>(
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: TcpStream,
    conn: Conn,
    handler: Arc<H>,
    idle: Duration,
) {
    let peer = conn.peer;
    let mut stage = conn.slot.stage.clone();
    let activity = Arc::new(Activity::new());
    let tracker = activity.clone();
    let service = hyper::service::service_fn(move |req| {
        let guard = tracker.begin();
        let fut = handler.clone().handle(req, conn.clone());
        async move {
            let res = fut.await;
            Ok::<_, std::convert::Infallible>(res.map(|body| Tracked {
                body,
                _guard: guard,
            }))
        }
    });
    let served = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(served);
    // Set once the connection was asked to end because it was idle: it
    // gets one more idle period to say goodbye, then it is dropped. A
    // draining connection is bounded by the drain's grace period instead.
    let mut goodbye: Option<tokio::time::Instant> = None;
    let mut draining = false;
    let side = Arc::new(SideWake::default());
    let side_waker = Waker::from(side.clone());
    loop {
        let event = {
            let idle_armed = goodbye.is_none() && !draining;
            let mut idle_over = std::pin::pin!(activity.idle_for(idle));
            let mut goodbye_over = std::pin::pin!(sleep_until(goodbye));
            let mut changed = std::pin::pin!(stage.changed());
            // New side futures: poll them once, which registers them.
            side.woken.store(true, Ordering::Release);
            std::future::poll_fn(|cx| {
                side.task.register(cx.waker());
                if let Poll::Ready(r) = served.as_mut().poll(cx) {
                    return Poll::Ready(Event::Served(r));
                }
                if !side.woken.swap(false, Ordering::AcqRel) {
                    return Poll::Pending;
                }
                let mut side_cx = Context::from_waker(&side_waker);
                if idle_armed && idle_over.as_mut().poll(&mut side_cx).is_ready() {
                    return Poll::Ready(Event::Idle);
                }
                if goodbye_over.as_mut().poll(&mut side_cx).is_ready() {
                    return Poll::Ready(Event::GoodbyeOver);
                }
                if let Poll::Ready(r) = changed.as_mut().poll(&mut side_cx) {
                    return Poll::Ready(Event::Stage { gone: r.is_err() });
                }
                Poll::Pending
            })
            .await
        };
        match event {
            Event::Served(r) => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            Event::Idle => {
                tracing::debug!(%peer, "idle connection closed");
                served.as_mut().graceful_shutdown();
                goodbye = Some(tokio::time::Instant::now() + idle);
            }
            Event::GoodbyeOver => return,
            Event::Stage { gone } => {
                let now = *stage.borrow_and_update();
                if gone || now == Stage::Closing {
                    return;
                }
                if now == Stage::Draining && !draining {
                    draining = true;
                    if goodbye.is_none() {
                        served.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

/// What a connection's task woke up for, besides serving.
enum Event<E> {
    /// hyper is done with the connection.
    Served(Result<(), E>),
    /// No request for the idle period: ask the client to go.
    Idle,
    /// The goodbye (or drain) period is over: drop the connection.
    GoodbyeOver,
    /// The server's stage moved (or the server is gone).
    Stage { gone: bool },
}

/// The waker a connection's side events (idle timer, goodbye deadline,
/// the server's stage) are polled with: it notes that one of them woke the
/// task, then wakes it. The many wakes for the connection's own sockets,
/// several per request, then poll hyper alone; the side futures stay
/// registered meanwhile and are polled again only when they woke.
#[derive(Default)]
struct SideWake {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for SideWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How busy one connection is: requests in progress (a request counts until
/// its response body is done or dropped) and when the last one ended.
struct Activity {
    base: Instant,
    active: AtomicUsize,
    /// Milliseconds after `base` when the connection last became idle.
    idle_since: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            base: Instant::now(),
            active: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::AcqRel);
        ActiveGuard(self.clone())
    }

    /// Resolves once no request has been in progress for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            if self.active.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(idle).await;
                continue;
            }
            let since = Duration::from_millis(self.idle_since.load(Ordering::Relaxed));
            let deadline = self.base + since + idle;
            let now = Instant::now();
            if now >= deadline && self.active.load(Ordering::Acquire) == 0 {
                return;
            }
            tokio::time::sleep(deadline.saturating_duration_since(now)).await;
        }
    }
}

/// One request in progress on a connection.
struct ActiveGuard(Arc<Activity>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let a = &self.0;
        let ms = u64::try_from(a.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.idle_since.store(ms, Ordering::Relaxed);
        // Release: a reader that sees the count drop sees the new time.
        a.active.fetch_sub(1, Ordering::Release);
    }
}

/// A response body that keeps its request counted as in progress.
struct Tracked {
    body: Body,
    _guard: ActiveGuard,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Bind a TCP listener (inside a tokio runtime) with `SO_REUSEADDR`
/// (restarts do not wait for TIME_WAIT) and a deep backlog.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::from_std(bind_std(addr, false)?)
}

/// A non-blocking std listener, ready for `TcpListener::from_std` on any
/// runtime; `reuse_port` lets several sockets share the address.
pub fn bind_std(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// `n` listeners on one address with `SO_REUSEPORT` (the kernel spreads
/// connections among them). With port 0 the first picks the port and the
/// others join it.
pub fn bind_group(addr: SocketAddr, n: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let first = bind_std(addr, true)?;
    let actual = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..n.max(1) {
        all.push(bind_std(actual, true)?);
    }
    Ok(all)
}
