//! Postgres access: the connection pool, dedicated connections, TLS,
//! migrations, the embedded development cluster.
//!
//! The pool is deadpool-postgres over tokio-postgres with short timeouts
//! everywhere: a request that needs the database while it is slow or gone
//! must fail fast (503) instead of queueing (`docs/security.md`,
//! "Database outage").
//!
//! Every connection, pooled ([`pool`], [`connect`]) or dedicated
//! ([`connect_dedicated`]), is opened from the same settings
//! ([`pg_config`]): the same timeouts, and the TLS of `database.url`'s
//! `sslmode` through one [`DbTls`] (`tls`).

pub mod embedded;
pub mod migrate;
pub mod tls;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio::sync::mpsc;

use crate::config::Secret;

pub use deadpool_postgres::Object as Conn;
pub use tls::{DbTls, TlsError};

/// The connection pool, with the TLS settings its connections are opened
/// with: a dedicated connection (the revocation listener's,
/// [`connect_dedicated`]) takes them from here, so it negotiates exactly
/// as the pool does and the CA file is read once, at startup, off the
/// async workers.
///
/// Dereferences to the deadpool [`Pool`] (`get`, `status`, `close`, and
/// every store function that takes a `&Pool`). Cloning is cheap: both
/// halves are shared.
#[derive(Clone)]
pub struct DbPool {
    pool: Pool,
    tls: DbTls,
}

impl DbPool {
    /// The TLS settings this pool was made with ([`pool`]).
    pub fn tls(&self) -> &DbTls {
        &self.tls
    }
}

impl std::ops::Deref for DbPool {
    type Target = Pool;

    fn deref(&self) -> &Pool {
        &self.pool
    }
}

/// How long a request may wait for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long opening a new connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Server-side cap on any one statement.
const STATEMENT_TIMEOUT_MS: u32 = 5000;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be reached or did not answer in time.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A query failed for another reason (constraint, bug, ...).
    #[error("database error: {}", pg_error_text(.0))]
    Query(#[from] tokio_postgres::Error),
}

impl DbError {
    /// Unique-constraint violation (a duplicate name).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::Query(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION))
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => classify(e),
            other => DbError::Unavailable(other.to_string()),
        }
    }
}

/// `From` the three errors a store meets — a [`DbError`], a driver error
/// (put through [`classify`], so a dropped connection is "unavailable"),
/// a pool error — for an error type with a `Db(DbError)` variant, so every
/// store classifies them alike.
macro_rules! from_db_errors {
    ($error:ty) => {
        impl From<$crate::db::DbError> for $error {
            fn from(e: $crate::db::DbError) -> Self {
                Self::Db(e)
            }
        }

        impl From<tokio_postgres::Error> for $error {
            fn from(e: tokio_postgres::Error) -> Self {
                Self::Db($crate::db::classify(e))
            }
        }

        impl From<deadpool_postgres::PoolError> for $error {
            fn from(e: deadpool_postgres::PoolError) -> Self {
                Self::Db($crate::db::DbError::from(e))
            }
        }
    };
}
pub(crate) use from_db_errors;

/// The useful text of a Postgres error: tokio-postgres displays server
/// errors as just "db error", and any other error without its cause
/// ("error performing TLS handshake", not why), so the causes follow.
pub fn pg_error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Connection-level failures mean "unavailable", not "bad query".
pub fn classify(e: tokio_postgres::Error) -> DbError {
    use tokio_postgres::error::SqlState;
    let transient = e.is_closed()
        || e.code().is_none()
        || e.code() == Some(&SqlState::QUERY_CANCELED)
        || e.code() == Some(&SqlState::ADMIN_SHUTDOWN)
        || e.code() == Some(&SqlState::CANNOT_CONNECT_NOW);
    if transient {
        DbError::Unavailable(pg_error_text(&e))
    } else {
        DbError::Query(e)
    }
}

/// A description of where a connection string points, without its password.
pub fn describe(url: &str) -> String {
    let url = crate::config::pg_url(&Secret::new(url));
    let Ok(cfg) = url.expose().parse::<tokio_postgres::Config>() else {
        return "<unparsable database URL>".into();
    };
    let host = cfg
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{}:{}/{}",
        cfg.get_user().unwrap_or("?"),
        host,
        port,
        cfg.get_dbname().unwrap_or("?")
    )
}

/// The settings every connection is opened with: `url` (`database.url`
/// as configured; [`crate::config::pg_url`] makes it one tokio-postgres
/// parses), the connect timeout, the statement timeout, an application
/// name, and the `sslmode` of `tls`.
fn pg_config(url: &Secret, tls: &DbTls) -> Result<tokio_postgres::Config, DbError> {
    let mut pg: tokio_postgres::Config = crate::config::pg_url(url)
        .expose()
        .parse()
        .map_err(|e| DbError::Unavailable(format!("invalid database URL: {e}")))?;
    pg.connect_timeout(CONNECT_TIMEOUT);
    pg.options(format!("-c statement_timeout={STATEMENT_TIMEOUT_MS}"));
    if pg.get_application_name().is_none() {
        pg.application_name("scopegate");
    }
    tls.apply(&mut pg);
    Ok(pg)
}

/// Build a pool (no connection is opened yet). `url` is `database.url` as
/// configured; `tls` is made from the same configuration
/// ([`DbTls::from_config`], or [`DbTls::from_url`]) and decides the
/// `sslmode` of every connection, and stays with the pool
/// ([`DbPool::tls`]).
pub fn pool(url: &Secret, tls: &DbTls, size: usize) -> Result<DbPool, DbError> {
    let pg = pg_config(url, tls)?;
    let mgr = Manager::from_config(
        pg,
        tls.connector(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(mgr)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .timeouts(Timeouts {
            wait: Some(ACQUIRE_TIMEOUT),
            create: Some(CONNECT_TIMEOUT),
            recycle: Some(CONNECT_TIMEOUT),
        })
        .build()
        .map_err(|e| DbError::Unavailable(e.to_string()))?;
    Ok(DbPool {
        pool,
        tls: tls.clone(),
    })
}

/// How many notifications a [`Dedicated`] connection buffers before it
/// stops reading from the server (which then queues them itself).
const NOTIFICATION_BUFFER: usize = 1024;

/// One connection of its own, outside the pool, for work that holds a
/// session (`LISTEN`, session-level locks, a long `COPY`).
pub struct Dedicated {
    pub client: tokio_postgres::Client,
    /// `NOTIFY` messages for the channels this session `LISTEN`s on, in the
    /// order the server sent them. Ends (`recv()` gives `None`) when the
    /// connection is closed, by the server, the network or an error
    /// (logged): reconnect then, and `LISTEN` again.
    ///
    /// Read it while listening: when it is full the connection stops
    /// reading from the server, and queries on `client` wait too. Once it
    /// is dropped, notifications are discarded; the connection lives as
    /// long as `client`.
    pub notifications: mpsc::Receiver<tokio_postgres::Notification>,
}

/// Open one connection with the pool's settings (the same URL, TLS and
/// timeouts: [`pool`]), and drive it on a task of its own, which ends
/// when the connection closes (dropping `client` closes it). Fails with
/// [`DbError::Unavailable`] when the server cannot be reached, the TLS
/// handshake fails, or all that takes longer than the connect timeout.
///
/// `application_name` names the session in `pg_stat_activity`.
pub async fn connect_dedicated(
    url: &Secret,
    tls: &DbTls,
    application_name: &str,
) -> Result<Dedicated, DbError> {
    let mut pg = pg_config(url, tls)?;
    pg.application_name(application_name);
    let (client, mut connection) =
        tokio::time::timeout(CONNECT_TIMEOUT, pg.connect(tls.connector()))
            .await
            .map_err(|_| {
                DbError::Unavailable(format!(
                    "connecting to {} timed out after {CONNECT_TIMEOUT:?}",
                    describe(url.expose())
                ))
            })?
            .map_err(classify)?;
    let (tx, notifications) = mpsc::channel(NOTIFICATION_BUFFER);
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                    // Err: nobody reads them any more; the client may
                    // still be in use.
                    let _ = tx.send(n).await;
                }
                Some(Ok(tokio_postgres::AsyncMessage::Notice(notice))) => {
                    tracing::info!(target: "scopegate::db", notice = %notice.message(), "notice on a dedicated connection");
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(target: "scopegate::db", error = %pg_error_text(&e), "dedicated database connection failed");
                    break;
                }
                None => break,
            }
        }
        // Closed before `tx` ends the notifications: whoever sees their
        // end finds the client closed too.
        drop(connection);
        drop(tx);
    });
    Ok(Dedicated {
        client,
        notifications,
    })
}

/// Build a pool and wait until the server answers, retrying with
/// exponential backoff for up to `patience`. The error names the server
/// (without password) and what failed.
pub async fn connect(
    url: &Secret,
    tls: &DbTls,
    size: usize,
    patience: Duration,
) -> Result<DbPool, DbError> {
    let pool = pool(url, tls, size)?;
    let deadline = tokio::time::Instant::now() + patience;
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = async {
            let conn = pool.get().await?;
            conn.simple_query("SELECT 1").await.map_err(classify)?;
            Ok::<_, DbError>(())
        };
        match attempt.await {
            Ok(()) => return Ok(pool),
            Err(e) => {
                if tokio::time::Instant::now() + delay > deadline {
                    return Err(DbError::Unavailable(format!(
                        "cannot reach {}: {}",
                        describe(url.expose()),
                        e
                    )));
                }
                tracing::warn!(target: "scopegate::db", server = %describe(url.expose()), error = %e, "database not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// How long a request's work may take beyond reading its body (database
/// statements, each limited to 5 s by the server when it answers at all,
/// password hashing): past it, the database is taken for hung
/// ([`within`]). For the `/oauth/*` endpoints and the admin API; a token
/// validation has its own, shorter `cache.db_deadline_ms`.
pub const REQUEST_WORK_DEADLINE: Duration = Duration::from_secs(10);

/// Run a request's `work` for at most `deadline`. A database that stops
/// answering (connections open, nothing comes back) would hold it forever:
/// past the deadline it is [`DbError::Unavailable`] (503 + `Retry-After`,
/// `docs/security.md`, "Faults"). Dropping the work drops any transaction
/// it holds uncommitted.
pub async fn within<T>(
    deadline: Duration,
    work: impl std::future::Future<Output = T>,
) -> Result<T, DbError> {
    tokio::time::timeout(deadline, work).await.map_err(|_| {
        DbError::Unavailable(format!(
            "a request not answered within {} s",
            deadline.as_secs()
        ))
    })
}

/// UNIX seconds now by this process's wall clock. Never for token,
/// refresh or code lifetimes: those are written and checked with the
/// database's clock (SQL `scopegate_unix_now()`, `docs/security.md`,
/// "Clocks"); this is for what one process signs and checks itself (the
/// login form's anti-CSRF token) and for tests.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
