//! A WebSocket tunnel (RFC 6455) after the upstream's `101`: the client's
//! and the upstream's connections joined byte for byte.
//!
//! The tunnel keeps its client connection's place among `max_connections`
//! for as long as it is open (a [`Hold`]), ends when no byte has moved in
//! either direction for the idle timeout (`request_timeout_secs`), and is
//! part of the server's drain: it may go on during the shutdown grace
//! period and is closed when that is over (`docs/http.md`, "WebSocket").

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::server::Hold;

/// Join `client` and `upstream` until either side closes, nothing moves for
/// `idle`, or the server closes its remaining connections.
pub async fn run(client: Upgraded, upstream: Upgraded, idle: Duration, mut hold: Hold) {
    let clock = Clock {
        base: Instant::now(),
        last_ms: AtomicU64::new(0),
    };
    let mut client = Stamped {
        io: TokioIo::new(client),
        clock: &clock,
    };
    let mut upstream = Stamped {
        io: TokioIo::new(upstream),
        clock: &clock,
    };
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "tunnel ended with an error");
            }
        }
        _ = clock.idle_for(idle) => tracing::debug!("idle tunnel closed"),
        _ = hold.closing() => tracing::debug!("tunnel closed at shutdown"),
    }
}

/// When a byte last moved through the tunnel.
struct Clock {
    base: Instant,
    last_ms: AtomicU64,
}

impl Clock {
    fn stamp(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = self.base + last + idle;
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            tokio::time::sleep(deadline - now).await;
        }
    }
}

/// One side of the tunnel; every read that brings bytes stamps the clock
/// (whatever is written was read from the other side first).
struct Stamped<'c> {
    io: TokioIo<Upgraded>,
    clock: &'c Clock,
}

impl AsyncRead for Stamped<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.clock.stamp();
        }
        r
    }
}

impl AsyncWrite for Stamped<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
