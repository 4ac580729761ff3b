//! Postgres access: the connection pool, migrations, the embedded
//! development cluster.
//!
//! The pool is deadpool-postgres over tokio-postgres with short timeouts
//! everywhere: a request that needs the database while it is slow or gone
//! must fail fast (503) instead of queueing (`docs/security.md`,
//! "Database outage").

pub mod embedded;
pub mod migrate;
mod session;

pub use session::Session;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::NoTls;

use crate::config::Secret;

pub use deadpool_postgres::{Object as Conn, Pool as DbPool};

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

/// The useful text of a Postgres error (tokio-postgres displays server
/// errors as just "db error").
pub fn pg_error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
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
        DbError::Unavailable(e.to_string())
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

/// The connection settings every connection uses: `url` as configured,
/// short connect timeout, a server-side statement timeout.
fn pg_config(url: &Secret) -> Result<tokio_postgres::Config, DbError> {
    let mut pg: tokio_postgres::Config = crate::config::pg_url(url)
        .expose()
        .parse()
        .map_err(|e| DbError::Unavailable(format!("invalid database URL: {e}")))?;
    pg.connect_timeout(CONNECT_TIMEOUT);
    pg.options(format!("-c statement_timeout={STATEMENT_TIMEOUT_MS}"));
    if pg.get_application_name().is_none() {
        pg.application_name("scopegate");
    }
    Ok(pg)
}

/// Build a pool (no connection is opened yet). `url` is `database.url` as
/// configured; [`crate::config::pg_url`] makes it one tokio-postgres parses.
pub fn pool(url: &Secret, size: usize) -> Result<Pool, DbError> {
    let pg = pg_config(url)?;
    let mgr = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .timeouts(Timeouts {
            wait: Some(ACQUIRE_TIMEOUT),
            create: Some(CONNECT_TIMEOUT),
            recycle: Some(CONNECT_TIMEOUT),
        })
        .build()
        .map_err(|e| DbError::Unavailable(e.to_string()))
}

/// Build a pool and wait until the server answers, retrying with
/// exponential backoff for up to `patience`. The error names the server
/// (without password) and what failed.
pub async fn connect(url: &Secret, size: usize, patience: Duration) -> Result<Pool, DbError> {
    let pool = pool(url, size)?;
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

/// UNIX seconds now (the unit of `expires`/`created` columns).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
