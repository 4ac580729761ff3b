//! The HTTP listener shared by the proxy, the admin API and `echo`:
//! hyper-util's `auto::Builder` (HTTP/1.1 and h2c on one port), with the
//! limits of `docs/configuration.md` (`[server]`) applied at the connection
//! level:
//!
//! - header section larger than `max_header_bytes` -> 431 (hyper answers it);
//! - headers not complete within `header_read_timeout` -> connection closed
//!   (slowloris; hyper needs a timer for this, or it is silently off);
//! - at most `max_connections` open connections: beyond it we stop
//!   accepting (backpressure in the kernel's backlog) instead of failing;
//! - HTTP/2: bounded header list and concurrent streams;
//! - graceful shutdown: stop accepting, let in-flight requests finish for up
//!   to `shutdown_grace`, then close what is left.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::body::Body;

/// Something that answers requests. Implemented by the proxy front door,
/// the admin API and the echo upstream.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
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

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper's minimum read buffer is 8 KiB.
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(100)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

/// Serve `handler` on `listener` until `shutdown` resolves, then drain.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let builder = Arc::new(builder(&limits));
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
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
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |req| {
            let fut = handler.clone().handle(req, peer);
            async move { Ok::<_, std::convert::Infallible>(fut.await) }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("shutdown grace period over; closing remaining connections");
        }
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
