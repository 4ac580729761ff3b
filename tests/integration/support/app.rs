//! The gateway in this process on a database of its own, and what that
//! database saw.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scopegate::app::{App, State};
use scopegate::config::{Config, EnvOverrides};
use scopegate::testing::TestDb;
use tokio::sync::watch;

use super::{echo, Upstream, MARGIN};

/// One public route for every path (`UPSTREAM`): whatever the gateway does
/// not refuse reaches the upstream.
pub const CATCH_ALL: &str = r#"
[[routes]]
name = "everything"
path = "/"
upstream = "UPSTREAM"
public = true
"#;

/// A running gateway with its database and upstream.
pub struct TestApp {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub state: Arc<State>,
    pub db: TestDb,
    pub upstream: Upstream,
    pub _stop: watch::Sender<bool>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// Parse a config whose `UPSTREAM` placeholders become the echo's address;
/// listeners are forced to port 0 and the database to `db`.
pub fn config(toml: &str, upstream: SocketAddr, db: &TestDb) -> Config {
    let text = toml.replace("UPSTREAM", &format!("http://{upstream}"));
    let mut c = Config::parse(&text, "test.toml", &EnvOverrides::default())
        .unwrap_or_else(|e| panic!("{e}"));
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.server.admin_listen = "127.0.0.1:0".parse().unwrap();
    c.database.url = Some(db.url.clone());
    c
}

/// One route, `/api` to the `UPSTREAM` placeholder, requiring the scope
/// `api`: what the cache and fault tests put a token through.
pub const API_ROUTE: &str = r#"
[[routes]]
name = "api"
path = "/api"
upstream = "UPSTREAM"
scopes = ["api"]
"#;

/// Start the gateway on a fresh database with the given config text.
pub async fn spawn_app(toml: &str) -> TestApp {
    let db = TestDb::new().await;
    spawn_app_on(toml, db).await
}

pub async fn spawn_app_on(toml: &str, db: TestDb) -> TestApp {
    let url = db.url.clone();
    spawn_app_via(toml, db, url).await
}

/// See [`scopegate::testing::insert_token`].
pub async fn insert_token(db: &TestDb, username: &str, scopes: &[&str], ttl_secs: i64) -> String {
    scopegate::testing::insert_token(&db.pool(), username, scopes, ttl_secs).await
}

/// Mark a token revoked in the database, as another replica or the CLI
/// would (the database pushes the revocation to listening gateways).
pub async fn revoke_in_db(db: &TestDb, token: &str) {
    let hash = scopegate::tokens::hash_hex(&scopegate::tokens::hash(token));
    let conn = db.pool().get().await.unwrap();
    let n = conn
        .execute(
            "UPDATE access_tokens SET active = false WHERE token = $1",
            &[&hash],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
}

/// Start the gateway on `db`, reaching its database through `url` instead
/// (e.g. `db.url_via(&fault_proxy)`, to cut the database mid-test).
pub async fn spawn_app_via(toml: &str, db: TestDb, url: scopegate::config::Secret) -> TestApp {
    spawn_app_inner(toml, db, url, None).await
}

/// Start the gateway on a fresh database with its `UPSTREAM` placeholders
/// pointing at `upstream` (e.g. a [`Recorder`]) instead of an echo.
pub async fn spawn_app_to(toml: &str, upstream: SocketAddr) -> TestApp {
    let db = TestDb::new().await;
    let url = db.url.clone();
    spawn_app_inner(toml, db, url, Some(upstream)).await
}

async fn spawn_app_inner(
    toml: &str,
    db: TestDb,
    url: scopegate::config::Secret,
    to: Option<SocketAddr>,
) -> TestApp {
    let upstream = echo().await;
    let mut config = config(toml, to.unwrap_or(upstream.addr), &db);
    config.database.url = Some(url.clone());
    let tls = scopegate::db::DbTls::from_url(&url).unwrap();
    let pool = scopegate::db::pool(&url, &tls, config.database.pool_size).unwrap();
    let app = App::build(config, pool).unwrap();
    let addr = app.proxy_addr();
    let admin = app.admin_addr();
    let state = app.state().clone();
    let (tx, mut rx) = watch::channel(false);
    tokio::spawn(app.run(async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    ready(admin).await;
    TestApp {
        addr,
        admin,
        state,
        db,
        upstream,
        _stop: tx,
    }
}

/// The statement the validation cache fills from (`tokens::lookup`), as
/// `pg_stat_statements` shows it.
pub const TOKEN_LOOKUP: &str = "WHERE t.token = $1";

/// The statement a password login reads the account and its hash with
/// (`accounts::credentials::find_login`).
pub const ACCOUNT_LOOKUP: &str =
    "SELECT account_id, password, is_active FROM accounts WHERE username = $1";

/// How long a statement count must hold still to be read as final.
const STATS_QUIET: Duration = Duration::from_millis(200);

/// [`TestDb::statement_calls`] once the count holds still for
/// [`STATS_QUIET`]: Postgres records a statement when its transaction
/// ends, a moment after the client already has the rows, so a count read
/// right after an answer may still be short.
pub async fn statement_calls_settled(db: &TestDb, fragment: &str) -> i64 {
    let deadline = Instant::now() + 5 * MARGIN;
    let mut last = db.statement_calls(fragment).await;
    loop {
        tokio::time::sleep(STATS_QUIET).await;
        let now = db.statement_calls(fragment).await;
        if now == last {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the count of {fragment:?} never held still"
        );
        last = now;
    }
}

/// The migrations the repository ships (`migrations/V<n>__<name>.sql`), in
/// the order they apply: what a migration run on an empty database reports.
pub fn shipped_migrations() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    let mut found: Vec<(u32, String)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".sql")?;
            let version = stem.strip_prefix('V')?.split("__").next()?.parse().ok()?;
            Some((version, stem.to_owned()))
        })
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no migrations in {dir}");
    found.into_iter().map(|(_, name)| name).collect()
}

/// Mark a token revoked in the database without the push (its triggers
/// off for this one statement), as a replica whose listener is down would
/// see it.
pub async fn revoke_in_db_unannounced(db: &TestDb, token: &str) {
    let hash = scopegate::tokens::hash_hex(&scopegate::tokens::hash(token));
    let mut conn = db.pool().get().await.unwrap();
    let tx = conn.transaction().await.unwrap();
    tx.batch_execute("SET LOCAL session_replication_role = replica")
        .await
        .unwrap();
    let n = tx
        .execute(
            "UPDATE access_tokens SET active = false WHERE token = $1",
            &[&hash],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    tx.commit().await.unwrap();
}

/// Wait (bounded) until the admin listener's `/readyz` says the database
/// answers: the pool then holds a connection, so a test's first request
/// does not pay for connecting. A test whose database is unreachable on
/// purpose goes on after the bound.
async fn ready(admin: SocketAddr) {
    let url = format!("http://{admin}/readyz");
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(10) {
        if let Ok(r) = super::wire::http().get(&url).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
