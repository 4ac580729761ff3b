//! [`FaultProxy`]: a TCP proxy in front of Postgres that a test can cut,
//! stall, make hold the server's replies, and restore.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::TestDb;

/// A TCP proxy that a test can cut (every connection dropped, new ones
/// refused at once), stall (connections stay open but nothing goes
/// through: a hung server), make hold the server's replies (queries reach
/// the server and run, their answers wait: a test can act between a query
/// and its answer) and restore.
pub struct FaultProxy {
    addr: SocketAddr,
    state: watch::Sender<Fault>,
    /// Replies read from the server and waiting for [`FaultProxy::restore`].
    held: Arc<watch::Sender<usize>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Up,
    Cut,
    Stalled,
    Holding,
}

/// Pass the server's bytes to the client, holding each read while the
/// proxy holds replies.
async fn replies(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut rx: watch::Receiver<Fault>,
    held: Arc<watch::Sender<usize>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        if *rx.borrow_and_update() == Fault::Holding {
            held.send_modify(|n| *n += 1);
            let released = rx.wait_for(|f| *f != Fault::Holding).await;
            held.send_modify(|n| *n -= 1);
            if released.is_err() {
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl FaultProxy {
    /// Proxy to the Postgres server behind `db`.
    pub async fn to_db(db: &TestDb) -> FaultProxy {
        let cfg: tokio_postgres::Config = db.url.expose().parse().expect("test URL parses");
        let host = match cfg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        };
        let port = cfg.get_ports().first().copied().unwrap_or(5432);
        Self::start(format!("{host}:{port}")).await
    }

    pub async fn start(target: String) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (state, state_rx) = watch::channel(Fault::Up);
        let held = Arc::new(watch::Sender::new(0usize));
        let held_counter = held.clone();
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let mut rx = state_rx.clone();
                let now = *rx.borrow();
                match now {
                    Fault::Cut => {
                        drop(inbound); // refused: closed at once
                        continue;
                    }
                    Fault::Stalled => {
                        // Accepted, never answered, closed when the fault ends.
                        tokio::spawn(async move {
                            let _ = rx.wait_for(|f| *f != Fault::Stalled).await;
                            drop(inbound);
                        });
                        continue;
                    }
                    Fault::Up | Fault::Holding => {}
                }
                let target = target.clone();
                let held = held_counter.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (mut client_rx, client_tx) = inbound.into_split();
                    let (server_rx, mut server_tx) = outbound.into_split();
                    let queries = tokio::io::copy(&mut client_rx, &mut server_tx);
                    let answers = replies(server_rx, client_tx, rx.clone(), held);
                    // Pinned here, not moved into the select: a stall keeps
                    // both connections open (unpolled) until it ends.
                    tokio::pin!(queries, answers);
                    let fault = tokio::select! {
                        _ = &mut queries => None,
                        _ = &mut answers => None,
                        f = rx.wait_for(|f| matches!(f, Fault::Cut | Fault::Stalled)) => f.ok().map(|f| *f),
                    };
                    if fault == Some(Fault::Stalled) {
                        // Hung: hold both ends, pass nothing.
                        let _ = rx.wait_for(|f| *f != Fault::Stalled).await;
                    }
                });
            }
        });
        FaultProxy { addr, state, held }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drop every proxied connection and refuse new ones.
    pub fn cut(&self) {
        let _ = self.state.send(Fault::Cut);
    }

    /// Keep every connection open but pass nothing, in either direction,
    /// on old and new connections alike (a server stopped with SIGSTOP).
    pub fn stall(&self) {
        let _ = self.state.send(Fault::Stalled);
    }

    /// Let queries through but hold the server's replies (on every
    /// connection) until [`FaultProxy::restore`], which delivers them.
    pub fn hold_replies(&self) {
        let _ = self.state.send(Fault::Holding);
    }

    /// Wait until a reply is held (a query ran and its answer waits), at
    /// most `limit`; false if none came.
    pub async fn reply_held(&self, limit: std::time::Duration) -> bool {
        let mut held = self.held.subscribe();
        tokio::time::timeout(limit, held.wait_for(|n| *n > 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Back to normal; connections held by a stall are closed, held
    /// replies are delivered.
    pub fn restore(&self) {
        let _ = self.state.send(Fault::Up);
    }
}
