//! Wiring: [`App::build`] creates the shared [`State`] and binds the
//! listeners (port 0 in tests); [`App::run`] serves until the shutdown
//! future resolves, then drains.
//!
//! The proxy listener runs thread-per-core: one current-thread tokio
//! runtime per core, each with its own `SO_REUSEPORT` listener on the same
//! address (the kernel spreads connections) and its own pooled upstream
//! client, so a request never hops threads and connection pools are not
//! contended. perf-baseline.md measured this faster and steadier than the
//! work-stealing runtime for proxying. Shared state (route table, token
//! cache, database pool) is thread-safe and shared by all of them. The
//! admin listener, database and hashing work run on the caller's runtime
//! and threads.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::{self, Body};
use crate::config::Config;
use crate::db::DbPool;
use crate::error::Rejection;
use crate::gateway::forward::UpstreamClient;
use crate::gateway::route::RouteTable;
use crate::server::{self, Handler, Limits};
use crate::tokens::cache::Validator;

/// Everything a request handler may need, shared by all connections.
pub struct State {
    pub config: Config,
    /// The route table; replaced whole on reload, never half-applied.
    pub routes: ArcSwap<RouteTable>,
    pub db: DbPool,
    pub tokens: Validator,
    /// The `/oauth/*` endpoint: argon2 pool, login throttle, counters.
    pub oauth: crate::oauth::OAuth,
}

impl State {
    pub fn new(config: Config, db: DbPool) -> State {
        State {
            routes: ArcSwap::from_pointee(RouteTable::new(config.routes.clone())),
            tokens: Validator::new(db.clone(), &config.cache),
            oauth: crate::oauth::OAuth::new(&config, &db),
            db,
            config,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct App {
    state: Arc<State>,
    /// One listener per proxy thread, all on the same address.
    proxy: Vec<std::net::TcpListener>,
    admin: std::net::TcpListener,
}

/// Proxy threads: one per core.
fn proxy_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl App {
    /// Bind the proxy and admin listeners of `config` (port 0 picks a free port).
    pub fn build(config: Config, db: DbPool) -> Result<App, AppError> {
        let err = |addr: SocketAddr| move |source| AppError::Bind { addr, source };
        let proxy = server::bind_group(config.server.listen, proxy_threads())
            .map_err(err(config.server.listen))?;
        let admin = server::bind_std(config.server.admin_listen, false)
            .map_err(err(config.server.admin_listen))?;
        Ok(App {
            state: Arc::new(State::new(config, db)),
            proxy,
            admin,
        })
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy
            .first()
            .and_then(|l| l.local_addr().ok())
            .unwrap_or(self.state.config.server.listen)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .unwrap_or(self.state.config.server.admin_listen)
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Serve both listeners until `shutdown` resolves; then drain.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let limits = Limits::from_config(&self.state.config.server);
        let (tx, rx) = tokio::sync::watch::channel(false);
        let wait = move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let mut threads = Vec::with_capacity(self.proxy.len());
        for (i, listener) in self.proxy.into_iter().enumerate() {
            let state = self.state.clone();
            let limits = limits.clone();
            let stop = wait();
            let spawned = std::thread::Builder::new()
                .name(format!("scopegate-proxy-{i}"))
                .spawn(move || proxy_thread(listener, state, limits, stop));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => tracing::error!(error = %e, "cannot start a proxy thread"),
            }
        }
        let admin = match tokio::net::TcpListener::from_std(self.admin) {
            Ok(l) => Some(tokio::spawn(server::serve(
                l,
                Arc::new(AdminFront {
                    state: self.state.clone(),
                }),
                limits,
                wait(),
            ))),
            Err(e) => {
                tracing::error!(error = %e, "cannot serve the admin listener");
                None
            }
        };
        shutdown.await;
        let _ = tx.send(true);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        if let Some(admin) = admin {
            let _ = admin.await;
        }
    }
}

/// One proxy thread: its own current-thread runtime, listener and
/// upstream connection pool.
fn proxy_thread(
    listener: std::net::TcpListener,
    state: Arc<State>,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a proxy runtime");
            return;
        }
    };
    rt.block_on(async move {
        match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => {
                let front = Arc::new(ProxyFront {
                    state,
                    upstream: crate::gateway::forward::client(),
                });
                server::serve(l, front, limits, stop).await;
            }
            Err(e) => tracing::error!(error = %e, "cannot serve a proxy listener"),
        }
    });
}

/// The proxy listener: `/oauth/*` locally, everything else through the gateway.
struct ProxyFront {
    state: Arc<State>,
    /// This thread's upstream connection pool.
    upstream: UpstreamClient,
}

impl Handler for ProxyFront {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        if crate::oauth::is_oauth_path(req.uri().path()) {
            crate::oauth::handle(&self.state, req, peer).await
        } else {
            crate::gateway::handle(&self.state, &self.upstream, req, peer).await
        }
    }
}

/// The admin listener: health, readiness (and, later, metrics and the admin API).
struct AdminFront {
    state: Arc<State>,
}

impl Handler for AdminFront {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        _peer: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let state = self.state.clone();
        async move {
            match (req.method(), req.uri().path()) {
                (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
                (&Method::GET, "/readyz") => {
                    if ready(&state).await {
                        text(StatusCode::OK, "ready\n")
                    } else {
                        text(StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n")
                    }
                }
                _ => Rejection::NotFound.into_response(),
            }
        }
    }
}

async fn ready(state: &State) -> bool {
    let check = async {
        let conn = state.db.get().await.ok()?;
        conn.simple_query("SELECT 1").await.ok()
    };
    tokio::time::timeout(std::time::Duration::from_secs(2), check)
        .await
        .ok()
        .flatten()
        .is_some()
}

fn text(status: StatusCode, s: &'static str) -> Response<Body> {
    let mut r = Response::new(body::full(s));
    *r.status_mut() = status;
    r
}
