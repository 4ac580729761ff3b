//! Wiring: [`App::build`] creates the shared [`State`] and binds the
//! listeners (port 0 in tests); [`App::run`] serves until the shutdown
//! future resolves, then drains.
//!
//! The proxy listener runs thread-per-core: one current-thread tokio
//! runtime per core, each with its own `SO_REUSEPORT` listener on the same
//! address (the kernel spreads connections) and its own pooled upstream
//! client, so a request never hops threads and connection pools are not
//! contended; it measured faster and steadier than the work-stealing
//! runtime for proxying (README, "Performance"). Shared state (route table, token
//! cache, database pool) is thread-safe and shared by all of them. The
//! admin listener, database and hashing work run on the caller's runtime
//! and threads.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::sync::Semaphore;

use crate::admin::Admin;
use crate::body::Body;
use crate::config::Config;
use crate::db::DbPool;
use crate::gateway::forward::UpstreamClient;
use crate::gateway::Gateway;
use crate::oauth::OAuth;
use crate::server::{self, Conn, Handler, Limits};
use crate::tokens::cache::Validator;
use crate::tokens::listener::Listener;
use crate::tokens::sweep::{SweepStats, SweepTask};

/// Everything the listeners share: each part owns the state of one
/// concern, and handlers get only the part they use.
pub struct State {
    pub config: Config,
    pub db: DbPool,
    /// Token validation, shared by the gateway and `/oauth/*`.
    pub tokens: Arc<Validator>,
    pub gateway: Arc<Gateway>,
    pub oauth: Arc<OAuth>,
    /// The admin listener; `/metrics` reads the gateway's and the OAuth
    /// endpoint's counters through its own references to them.
    pub admin: Admin,
    /// Rows deleted by the cleanup sweep (`tokens::sweep`).
    pub sweep: Arc<SweepStats>,
    /// The sweep itself, stopped when the state is dropped.
    _sweep_task: Option<SweepTask>,
    /// The revocation listener (`LISTEN`), stopped when the state is
    /// dropped.
    _listener: Option<Listener>,
}

/// How often expired tokens are deleted.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl State {
    pub fn new(config: Config, db: DbPool) -> State {
        let tokens = Arc::new(Validator::new(db.clone(), &config.cache));
        let sweep = Arc::new(SweepStats::default());
        // Inside a runtime (always, except in some unit tests).
        let sweep_task = tokio::runtime::Handle::try_current()
            .ok()
            .map(|_| crate::tokens::sweep::spawn(db.clone(), SWEEP_EVERY, sweep.clone()));
        // Revocations pushed by the database reach this replica's cache,
        // over a connection with the pool's own TLS settings.
        let listener = match (&config.database.url, tokio::runtime::Handle::try_current()) {
            (Some(url), Ok(_)) => Some(crate::tokens::listener::spawn(
                url.clone(),
                db.tls().clone(),
                tokens.clone(),
            )),
            _ => None,
        };
        let gateway = Arc::new(Gateway::new(&config, tokens.clone()));
        let oauth = Arc::new(OAuth::new(&config, &db, tokens.clone()));
        State {
            admin: Admin::new(
                &config,
                db.clone(),
                tokens.clone(),
                gateway.clone(),
                oauth.clone(),
                sweep.clone(),
            ),
            sweep,
            _sweep_task: sweep_task,
            _listener: listener,
            gateway,
            oauth,
            tokens,
            db,
            config,
        }
    }

    /// Apply a reloaded configuration (`docs/operations.md`, "Reload"):
    /// routes and per-request limits (`max_body_bytes`,
    /// `request_timeout_secs`) swap at once; everything else (listeners,
    /// connection limits, database, cache, tokens, login) keeps the values
    /// the process started with. Returns the sections whose changes wait
    /// for a restart.
    pub fn reload(&self, new: &Config) -> Vec<&'static str> {
        self.gateway.reload(new);
        let (old, mut pending) = (&self.config, Vec::new());
        let s = (&old.server, &new.server);
        if s.0.listen != s.1.listen
            || s.0.admin_listen != s.1.admin_listen
            || s.0.max_header_bytes != s.1.max_header_bytes
            || s.0.header_read_timeout != s.1.header_read_timeout
            || s.0.max_connections != s.1.max_connections
            || s.0.shutdown_grace != s.1.shutdown_grace
            || s.0.trusted_proxies != s.1.trusted_proxies
        {
            pending.push("server (listeners and connection limits)");
        }
        if old.database.url != new.database.url || old.database.pool_size != new.database.pool_size
        {
            pending.push("database");
        }
        if old.tokens != new.tokens {
            pending.push("tokens");
        }
        if old.cache != new.cache {
            pending.push("cache");
        }
        if old.login != new.login {
            pending.push("login");
        }
        if old.oauth != new.oauth {
            pending.push("oauth");
        }
        pending
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
        // One `max_connections` for the whole proxy listener, whichever
        // thread the kernel hands a connection to.
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let mut threads = Vec::with_capacity(self.proxy.len());
        for (i, listener) in self.proxy.into_iter().enumerate() {
            let state = self.state.clone();
            let limits = limits.clone();
            let permits = permits.clone();
            let stop = wait();
            let spawned = std::thread::Builder::new()
                .name(format!("scopegate-proxy-{i}"))
                .spawn(move || proxy_thread(listener, state, limits, permits, stop));
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
    permits: Arc<Semaphore>,
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
                tokio::spawn(front.upstream.reaper());
                server::serve_shared(l, front, limits, permits, stop).await;
            }
            Err(e) => tracing::error!(error = %e, "cannot serve a proxy listener"),
        }
    });
}

/// The proxy listener's handler on one proxy thread.
struct ProxyFront {
    state: Arc<State>,
    /// This thread's upstream connection pool.
    upstream: UpstreamClient,
}

impl Handler for ProxyFront {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, conn: Conn) -> Response<Body> {
        let s = &self.state;
        crate::proxy::handle(&s.gateway, &s.oauth, &self.upstream, req, conn).await
    }
}

/// The admin listener's handler.
struct AdminFront {
    state: Arc<State>,
}

impl Handler for AdminFront {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, conn: Conn) -> Response<Body> {
        self.state.admin.handle(req, conn.peer.ip()).await
    }
}
