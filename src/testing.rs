//! Test support, used by the integration tests under `tests/` and by
//! benches: a throwaway Postgres per test run and a fresh database per test.
//!
//! - One cluster per test process, started on first use on a free port,
//!   its data in a temporary folder; stopped and deleted when the process
//!   exits (an `atexit` hook, which also runs when tests fail).
//! - A migrated template database; every test gets its own database cloned
//!   from it with `CREATE DATABASE ... TEMPLATE ...` (milliseconds).
//! - The cluster serves TLS too, with a certificate for `localhost` and
//!   `127.0.0.1` from a CA made for the run ([`server_tls`]), so that every
//!   `sslmode` is tested against a real server. Test URLs name no `sslmode`:
//!   libpq's default, `prefer`, so the pools use TLS unverified.
//! - `SCOPEGATE_TEST_DATABASE_URL` points the harness at an existing server
//!   instead (the URL's user must be allowed to create databases); its TLS,
//!   if any, is not the harness's, and [`server_tls`] is `None`.
//! - [`FaultProxy`]: a TCP proxy in front of Postgres that a test can cut,
//!   stall, make hold the server's replies, and restore, to simulate the
//!   database going away or hanging, or to act between a query and its
//!   answer, without touching the shared cluster.
//! - [`TestDb::statement_calls`]: how many times Postgres itself executed a
//!   statement on a test's database (`pg_stat_statements`, which the
//!   harness's cluster loads), so a test can check what the database saw
//!   and not only what the code says it did.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::config::Secret;
use crate::db::embedded::{Binaries, Cluster, ServerCert};
use crate::db::DbTls;

mod fault_proxy;

pub use fault_proxy::FaultProxy;

const TEMPLATE: &str = "scopegate_template";

struct Server {
    /// Connection string to the maintenance database (`postgres`).
    admin_url: String,
    /// `postgres://user@host:port/` without a database name.
    base_url: String,
    /// Unique per process, so parallel test binaries sharing an external
    /// server do not collide.
    prefix: String,
    /// The harness's own cluster's TLS (`None` on an external server).
    tls: Option<ServerTls>,
}

/// The TLS of the harness's cluster: the CA that signed its certificate
/// (valid for `localhost` and `127.0.0.1`), and another CA that did not.
#[derive(Debug)]
pub struct ServerTls {
    /// PEM: the CA the server's certificate chains to.
    pub ca_file: PathBuf,
    /// PEM: a CA with the same name but another key, which signed nothing
    /// the server has.
    pub other_ca_file: PathBuf,
}

/// The TLS of the test server, or `None` when `SCOPEGATE_TEST_DATABASE_URL`
/// points the harness at a server it did not set up (tests of TLS skip
/// then, saying so).
pub fn server_tls() -> Option<&'static ServerTls> {
    server().tls.as_ref()
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static CLUSTER: Mutex<Option<(Cluster, tempfile::TempDir)>> = Mutex::new(None);
static COUNTER: AtomicU64 = AtomicU64::new(0);

extern "C" fn stop_cluster_at_exit() {
    if let Ok(mut guard) = CLUSTER.lock() {
        if let Some((cluster, dir)) = guard.take() {
            let _ = cluster.stop(true);
            drop(dir);
        }
    }
}

fn server() -> &'static Server {
    let res = SERVER.get_or_init(|| {
        // Done on a thread of its own: callers are often inside a runtime.
        std::thread::spawn(init_server)
            .join()
            .unwrap_or_else(|_| Err("test database setup panicked".into()))
    });
    match res {
        Ok(s) => s,
        Err(e) => panic!("test database: {e}"),
    }
}

fn init_server() -> Result<Server, String> {
    let prefix = format!("sgt{}", std::process::id());
    let (admin_url, base_url, tls) = match std::env::var("SCOPEGATE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            url.parse::<tokio_postgres::Config>()
                .map_err(|e| format!("SCOPEGATE_TEST_DATABASE_URL: {e}"))?;
            let base = strip_dbname(&url);
            (url, base, None)
        }
        _ => {
            let bins = Binaries::locate().map_err(|e| e.to_string())?;
            let dir = tempfile::Builder::new()
                .prefix("scopegate-test-pg-")
                .tempdir_in(std::env::temp_dir())
                .map_err(|e| e.to_string())?;
            // The service user must be able to enter the temp folder.
            std::fs::set_permissions(
                dir.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .map_err(|e| e.to_string())?;
            let (cluster, _) =
                Cluster::open_or_init(bins, &dir.path().join("data")).map_err(|e| e.to_string())?;
            let tls_dir = dir.path().join("tls");
            std::fs::create_dir(&tls_dir).map_err(|e| e.to_string())?;
            let (cert, tls) = make_tls(&tls_dir)?;
            start_counting_statements(&cluster, &cert)?;
            let admin = cluster.url("postgres");
            let base = cluster.base_url();
            if let Ok(mut g) = CLUSTER.lock() {
                *g = Some((cluster, dir));
            }
            // SAFETY: registering a plain extern "C" fn with no captured state.
            unsafe { libc::atexit(stop_cluster_at_exit) };
            (admin, base, Some(tls))
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let template = format!("{prefix}_{TEMPLATE}");
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("connect {}: {e}", crate::db::describe(&admin_url)))?;
        tokio::spawn(conn);
        // Where loaded, the view that reads the counts (in the maintenance
        // database; it sees every database's statements).
        let _ = client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await;
        for stmt in [
            format!("DROP DATABASE IF EXISTS {template}"),
            format!("CREATE DATABASE {template}"),
        ] {
            client
                .batch_execute(&stmt)
                .await
                .map_err(|e| crate::db::pg_error_text(&e))?;
        }
        let url = Secret::new(with_dbname(&base_url, &template));
        let tls = DbTls::from_url(&url).map_err(|e| e.to_string())?;
        let pool = crate::db::pool(&url, &tls, 1).map_err(|e| e.to_string())?;
        crate::db::migrate::run(&pool)
            .await
            .map_err(|e| e.to_string())?;
        pool.close();
        Ok::<_, String>(())
    })?;
    Ok(Server {
        admin_url,
        base_url,
        prefix,
        tls,
    })
}

/// Settings that load `pg_stat_statements`: it counts, in shared memory
/// and as each statement ends, the executions of every statement per
/// database. Utility statements (`CREATE DATABASE`, ...) are left out, and
/// the table is large enough that a whole test run's statements are never
/// evicted.
const STATEMENT_COUNTING: &str = "
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.max = 20000
pg_stat_statements.track_utility = off
";

/// Start the throwaway cluster with [`STATEMENT_COUNTING`]; without it when
/// this PostgreSQL installation lacks the module (the tests that count
/// statements then fail and say so).
fn start_counting_statements(cluster: &Cluster, cert: &ServerCert) -> Result<(), String> {
    let conf = cluster.data_dir().join("postgresql.conf");
    let original = std::fs::read_to_string(&conf).map_err(|e| e.to_string())?;
    std::fs::write(&conf, format!("{original}{STATEMENT_COUNTING}")).map_err(|e| e.to_string())?;
    if cluster.start_with_tls(true, cert).is_ok() {
        return Ok(());
    }
    std::fs::write(&conf, original).map_err(|e| e.to_string())?;
    cluster
        .start_with_tls(true, cert)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A CA, a server certificate it signs for `localhost` and `127.0.0.1`,
/// and an unrelated CA of the same name; the CAs written to `dir`.
fn make_tls(dir: &Path) -> Result<(ServerCert, ServerTls), String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let e = |e: rcgen::Error| format!("test TLS certificates: {e}");
    let ca_params = || -> Result<CertificateParams, rcgen::Error> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.distinguished_name
            .push(DnType::CommonName, "scopegate test CA");
        Ok(p)
    };
    let ca_key = KeyPair::generate().map_err(e)?;
    let ca = ca_params().map_err(e)?;
    let ca_pem = ca.self_signed(&ca_key).map_err(e)?.pem();
    let other_key = KeyPair::generate().map_err(e)?;
    let other_pem = ca_params()
        .and_then(|p| p.self_signed(&other_key))
        .map_err(e)?
        .pem();
    let issuer = Issuer::new(ca, ca_key);
    let server_key = KeyPair::generate().map_err(e)?;
    let mut server =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).map_err(e)?;
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_pem = server.signed_by(&server_key, &issuer).map_err(e)?.pem();
    let tls = ServerTls {
        ca_file: dir.join("ca.pem"),
        other_ca_file: dir.join("other-ca.pem"),
    };
    std::fs::write(&tls.ca_file, ca_pem).map_err(|e| e.to_string())?;
    std::fs::write(&tls.other_ca_file, other_pem).map_err(|e| e.to_string())?;
    let cert = ServerCert {
        chain_pem: server_pem,
        key_pem: Secret::new(server_key.serialize_pem()),
    };
    Ok((cert, tls))
}

fn strip_dbname(url: &str) -> String {
    // postgres://user:pw@host:port/db?params -> postgres://user:pw@host:port/?params
    let (head, query) = url.split_once('?').map_or((url, ""), |(h, q)| (h, q));
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let base = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i + 1],
        None => head,
    };
    let base = if base.ends_with('/') {
        base.to_owned()
    } else {
        format!("{base}/")
    };
    if query.is_empty() {
        base
    } else {
        format!("{base}?{query}")
    }
}

fn with_dbname(base: &str, db: &str) -> String {
    match base.split_once('?') {
        Some((h, q)) => format!("{h}{db}?{q}"),
        None => format!("{base}{db}"),
    }
}

/// A fresh, migrated database of its own for one test.
pub struct TestDb {
    pub name: String,
    pub url: Secret,
}

impl TestDb {
    /// Clone the migrated template into a new database.
    pub async fn new() -> TestDb {
        let server = server();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}_t{n}", server.prefix);
        let (client, conn) = tokio_postgres::connect(&server.admin_url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test server");
        tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "CREATE DATABASE {name} TEMPLATE {}_{TEMPLATE}",
                server.prefix
            ))
            .await
            .expect("create a test database from the template");
        TestDb {
            url: Secret::new(with_dbname(&server.base_url, &name)),
            name,
        }
    }

    /// A small pool on this database.
    pub fn pool(&self) -> crate::db::DbPool {
        let tls = DbTls::from_url(&self.url).expect("test URL's TLS settings");
        crate::db::pool(&self.url, &tls, 4).expect("test pool")
    }

    /// The URL of this database on `host` (a name or address the test
    /// server is reached at, or any name when `params` has
    /// `hostaddr=127.0.0.1`), with `params` (`key=value&...`) added.
    pub fn url_to(&self, host: &str, params: &str) -> Secret {
        let cfg: tokio_postgres::Config = self.url.expose().parse().expect("test URL parses");
        let user = cfg.get_user().unwrap_or("postgres");
        let auth = match cfg.get_password() {
            Some(p) => format!("{user}:{}", String::from_utf8_lossy(p)),
            None => user.to_owned(),
        };
        let port = cfg.get_ports().first().copied().unwrap_or(5432);
        Secret::new(format!(
            "postgres://{auth}@{host}:{port}/{}?{params}",
            self.name
        ))
    }

    /// How many times Postgres has executed, on this database, statements
    /// whose text contains `fragment`, as `pg_stat_statements` counts them:
    /// in shared memory as each statement ends, so there is no flush delay,
    /// and this query (on the maintenance database) does not count itself.
    /// Panics when the server does not load `pg_stat_statements` (the
    /// harness's own cluster does; an external server needs
    /// `shared_preload_libraries = 'pg_stat_statements'` and the extension
    /// in its maintenance database).
    pub async fn statement_calls(&self, fragment: &str) -> i64 {
        let (client, conn) = tokio_postgres::connect(&server().admin_url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test server");
        tokio::spawn(conn);
        let row = client
            .query_one(
                "SELECT COALESCE(sum(s.calls), 0)::bigint
                   FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                  WHERE d.datname = $1 AND strpos(s.query, $2) > 0",
                &[&self.name, &fragment],
            )
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "pg_stat_statements is not available ({}): this test counts the statements \
                     Postgres executed; load the module (shared_preload_libraries) on the test server",
                    crate::db::pg_error_text(&e)
                )
            });
        row.get(0)
    }

    /// The URL of this database reached through `proxy` instead.
    pub fn url_via(&self, proxy: &FaultProxy) -> Secret {
        let cfg: tokio_postgres::Config = self.url.expose().parse().expect("test URL parses");
        let user = cfg.get_user().unwrap_or("postgres");
        let auth = match cfg.get_password() {
            Some(p) => format!("{user}:{}", String::from_utf8_lossy(p)),
            None => user.to_owned(),
        };
        Secret::new(format!(
            "postgres://{auth}@{}/{}?connect_timeout=2",
            proxy.addr(),
            self.name
        ))
    }
}

/// Create an account with `scopes` (created in `scopes` if missing) and an
/// access token for it, directly in the database. Returns the token.
/// (Gateway tests and benches do not depend on the issuer.) Test setup
/// only: panics on failure.
pub async fn insert_token(
    pool: &crate::db::DbPool,
    username: &str,
    scopes: &[&str],
    ttl_secs: i64,
) -> String {
    let mut conn = pool.get().await.expect("test pool connection");
    // One transaction: a cleanup sweep running meanwhile never sees an
    // expired token before its links exist.
    let conn = conn.transaction().await.expect("test setup transaction");
    let account_id: i32 = match conn
        .query_opt("SELECT account_id FROM accounts WHERE username = $1", &[&username])
        .await
        .expect("test setup query")
    {
        Some(r) => r.get(0),
        None => conn
            .query_one(
                "INSERT INTO accounts (username, password) VALUES ($1, 'unusable') RETURNING account_id",
                &[&username],
            )
            .await
            .expect("test setup query")
            .get(0),
    };
    let token = crate::tokens::generate(crate::tokens::Kind::Access).expect("test setup query");
    let hash = crate::tokens::hash_hex(&crate::tokens::hash(&token));
    let token_id: i64 = conn
        .query_one(
            "INSERT INTO access_tokens (token, expires, created)
             VALUES ($1, scopegate_unix_now() + $2, scopegate_unix_now()) RETURNING token_id",
            &[&hash, &ttl_secs],
        )
        .await
        .expect("test setup query")
        .get(0);
    conn.execute(
        "INSERT INTO account_tokens (account_id, token_id) VALUES ($1, $2)",
        &[&account_id, &token_id],
    )
    .await
    .expect("test setup query");
    for s in scopes {
        conn.execute(
            "INSERT INTO scopes (scope_name, scope_value) VALUES ($1, $1) ON CONFLICT DO NOTHING",
            &[s],
        )
        .await
        .expect("test setup query");
        conn.execute(
            "INSERT INTO token_scopes (token_id, scope_id) SELECT $1, scope_id FROM scopes WHERE scope_value = $2",
            &[&token_id, s],
        )
        .await
        .expect("test setup query");
    }
    conn.commit().await.expect("test setup commit");
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_surgery() {
        assert_eq!(
            strip_dbname("postgres://u:p@h:5/db?sslmode=disable"),
            "postgres://u:p@h:5/?sslmode=disable"
        );
        assert_eq!(strip_dbname("postgres://u@h:5"), "postgres://u@h:5/");
        assert_eq!(
            with_dbname("postgres://u@h:5/?a=b", "x"),
            "postgres://u@h:5/x?a=b"
        );
        assert_eq!(with_dbname("postgres://u@h:5/", "x"), "postgres://u@h:5/x");
    }
}
