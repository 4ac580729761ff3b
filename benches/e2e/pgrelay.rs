//! A counting TCP relay in front of Postgres. Every database client the
//! harness measures (the gateways, the bench's own validator) connects
//! through it, so database work is counted exactly, without
//! `pg_stat_statements` and without the statistics system's flush delay:
//!
//! - **queries**: `ReadyForQuery` messages the server sent after a
//!   connection's startup, one per simple query or extended-protocol
//!   `Sync`;
//! - **round trips**: times a client sent something after the server had
//!   answered (a client that pipelines several statements in one flight
//!   counts once);
//! - **connections** opened.
//!
//! The wire format is the frontend/backend protocol v3: after an untyped
//! startup packet (possibly preceded by an `SSLRequest` or
//! `GSSENCRequest`, each answered by one byte), every message is a type
//! byte and a 4-byte length. A stream that turns encrypted is relayed
//! without counting.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

#[derive(Debug, Default)]
struct Counts {
    queries: AtomicU64,
    round_trips: AtomicU64,
    connections: AtomicU64,
}

/// Counts so far; subtract two to get a window's.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Snapshot {
    pub queries: u64,
    pub round_trips: u64,
    pub connections: u64,
}

impl std::ops::Sub for Snapshot {
    type Output = Snapshot;
    fn sub(self, o: Snapshot) -> Snapshot {
        Snapshot {
            queries: self.queries - o.queries,
            round_trips: self.round_trips - o.round_trips,
            connections: self.connections - o.connections,
        }
    }
}

pub struct Relay {
    addr: SocketAddr,
    target: SocketAddr,
    counts: Arc<Counts>,
}

impl Relay {
    /// Listen on a loopback port and relay every connection to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let counts = c.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    counts.connections.fetch_add(1, Ordering::Relaxed);
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let conn = Arc::new(ConnState::default());
                    let (cr, cw) = inbound.into_split();
                    let (sr, sw) = outbound.into_split();
                    let up = pump(cr, sw, Side::Client, conn.clone(), counts.clone());
                    let down = pump(sr, cw, Side::Server, conn, counts);
                    tokio::join!(up, down);
                });
            }
        });
        Ok(Relay {
            addr,
            target,
            counts,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Postgres server it relays to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    pub fn snapshot(&self) -> Snapshot {
        let c = &self.counts;
        Snapshot {
            queries: c.queries.load(Ordering::SeqCst),
            round_trips: c.round_trips.load(Ordering::SeqCst),
            connections: c.connections.load(Ordering::SeqCst),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// What the two directions of one connection tell each other.
#[derive(Debug)]
struct ConnState {
    /// The startup is over (the first `ReadyForQuery` was seen).
    ready: AtomicBool,
    /// The server sent something since the client last did.
    server_spoke: AtomicBool,
    /// One-byte answers the server owes (to `SSLRequest`/`GSSENCRequest`).
    byte_answers: AtomicUsize,
    /// The stream turned encrypted or malformed: stop counting.
    opaque: AtomicBool,
}

impl Default for ConnState {
    fn default() -> Self {
        ConnState {
            ready: AtomicBool::new(false),
            server_spoke: AtomicBool::new(false),
            byte_answers: AtomicUsize::new(0),
            opaque: AtomicBool::new(false),
        }
    }
}

/// Splits one direction's byte stream into messages across reads.
struct Framer {
    /// Untyped messages come next (client startup).
    untyped: bool,
    head: Vec<u8>,
    /// Payload bytes of the current message still to pass.
    skip: usize,
}

enum Msg {
    Typed(u8),
    Untyped(u32),
    /// A one-byte SSL/GSS answer.
    Byte(u8),
}

impl Framer {
    fn new(side: Side) -> Framer {
        Framer {
            untyped: side == Side::Client,
            head: Vec::with_capacity(8),
            skip: 0,
        }
    }

    /// Feed bytes; `byte_answer` says whether the next message is a
    /// one-byte answer (asked at each message start). Returns false once
    /// the stream is malformed.
    fn feed(
        &mut self,
        mut data: &[u8],
        mut byte_answer: impl FnMut() -> bool,
        mut on: impl FnMut(Msg),
    ) -> bool {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
            }
            if data.is_empty() {
                return true;
            }
            if self.head.is_empty() && byte_answer() {
                on(Msg::Byte(data[0]));
                data = &data[1..];
                continue;
            }
            let need = if self.untyped { 8 } else { 5 };
            let take = (need - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.head.len() < need {
                return true;
            }
            let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            if self.untyped {
                let len = be(&self.head[0..4]);
                let code = be(&self.head[4..8]) as u32;
                let Some(rest) = len.checked_sub(8) else {
                    return false;
                };
                self.skip = rest;
                on(Msg::Untyped(code));
                if code != SSL_REQUEST && code != GSSENC_REQUEST {
                    self.untyped = false;
                }
            } else {
                let ty = self.head[0];
                let Some(rest) = be(&self.head[1..5]).checked_sub(4) else {
                    return false;
                };
                self.skip = rest;
                on(Msg::Typed(ty));
            }
            self.head.clear();
        }
    }
}

/// Copy one direction, counting as it goes.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    side: Side,
    conn: Arc<ConnState>,
    counts: Arc<Counts>,
) {
    let mut framer = Framer::new(side);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !conn.opaque.load(Ordering::Acquire) {
            count(&mut framer, &buf[..n], side, &conn, &counts);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

fn count(framer: &mut Framer, data: &[u8], side: Side, conn: &ConnState, counts: &Counts) {
    match side {
        Side::Client => {
            // Counted before the bytes go on, so the server's answer can
            // only be seen after it.
            if conn.ready.load(Ordering::Acquire) && conn.server_spoke.swap(false, Ordering::AcqRel)
            {
                counts.round_trips.fetch_add(1, Ordering::Relaxed);
            }
            let ok = framer.feed(
                data,
                || false,
                |m| {
                    if let Msg::Untyped(SSL_REQUEST | GSSENC_REQUEST) = m {
                        conn.byte_answers.fetch_add(1, Ordering::AcqRel);
                    }
                },
            );
            if !ok {
                conn.opaque.store(true, Ordering::Release);
            }
        }
        Side::Server => {
            let ok = framer.feed(
                data,
                || conn.byte_answers.load(Ordering::Acquire) > 0,
                |m| match m {
                    Msg::Byte(b) => {
                        conn.byte_answers.fetch_sub(1, Ordering::AcqRel);
                        if b != b'N' {
                            conn.opaque.store(true, Ordering::Release);
                        }
                    }
                    Msg::Typed(b'Z') => {
                        if conn.ready.swap(true, Ordering::AcqRel) {
                            counts.queries.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Msg::Typed(_) | Msg::Untyped(_) => {}
                },
            );
            if !ok {
                conn.opaque.store(true, Ordering::Release);
            }
            conn.server_spoke.store(true, Ordering::Release);
        }
    }
}
