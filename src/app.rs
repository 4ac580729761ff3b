//! Wiring: [`App::build`] creates the shared [`State`] and binds the
//! listeners (port 0 in tests); [`App::run`] serves until the shutdown
//! future resolves, then drains.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

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
    pub upstream: UpstreamClient,
}

impl State {
    pub fn new(config: Config, db: DbPool) -> State {
        State {
            routes: ArcSwap::from_pointee(RouteTable::new(config.routes.clone())),
            tokens: Validator::new(db.clone(), &config.cache),
            upstream: crate::gateway::forward::client(),
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
    proxy: TcpListener,
    admin: TcpListener,
}

impl App {
    /// Bind the proxy and admin listeners of `config` (port 0 picks a free port).
    pub fn build(config: Config, db: DbPool) -> Result<App, AppError> {
        let bind =
            |addr: SocketAddr| server::bind(addr).map_err(|source| AppError::Bind { addr, source });
        let proxy = bind(config.server.listen)?;
        let admin = bind(config.server.admin_listen)?;
        Ok(App {
            state: Arc::new(State::new(config, db)),
            proxy,
            admin,
        })
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy
            .local_addr()
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
        let proxy = tokio::spawn(server::serve(
            self.proxy,
            Arc::new(ProxyFront {
                state: self.state.clone(),
            }),
            limits.clone(),
            wait(),
        ));
        let admin = tokio::spawn(server::serve(
            self.admin,
            Arc::new(AdminFront {
                state: self.state.clone(),
            }),
            limits,
            wait(),
        ));
        shutdown.await;
        let _ = tx.send(true);
        let _ = proxy.await;
        let _ = admin.await;
    }
}

/// The proxy listener: `/oauth/*` locally, everything else through the gateway.
struct ProxyFront {
    state: Arc<State>,
}

impl Handler for ProxyFront {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let state = self.state.clone();
        async move { crate::gateway::handle(&state, req, peer).await }
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
