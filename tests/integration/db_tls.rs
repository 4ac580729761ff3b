//! TLS to Postgres, against the harness's cluster, which serves TLS with a
//! certificate for `localhost` and `127.0.0.1` signed by a CA of its own
//! (`scopegate::testing::server_tls`): every `sslmode` of `database.url`
//! (`docs/configuration.md`, "database.url and TLS"), for the pool, a
//! dedicated connection, the gateway in-process and `scopegate serve`.
//!
//! Whether a session is encrypted is asked of the server itself
//! (`pg_stat_ssl`), never inferred from the client's settings.

use std::time::Duration;

use scopegate::config::Secret;
use scopegate::db::{connect_dedicated, DbTls};
use scopegate::testing::{server_tls, ServerTls, TestDb};

use crate::support::{insert_token, spawn_app_via, Serve, API_ROUTE};

/// The harness's TLS, or `None` (and a line saying why) when the tests
/// run against an external server whose TLS is not the harness's.
fn harness_tls(test: &str) -> Option<&'static ServerTls> {
    let tls = server_tls();
    if tls.is_none() {
        eprintln!(
            "{test}: skipped: SCOPEGATE_TEST_DATABASE_URL points at an external server, \
             which does not serve the harness's test certificate"
        );
    }
    tls
}

/// `sslrootcert=<path>` for a URL.
fn root(path: &std::path::Path) -> String {
    format!("sslrootcert={}", path.display())
}

/// Connect through a pool as `url` says, and ask the server whether this
/// session is encrypted. `Err`: the connection failed, with its message.
async fn ssl_in_use(url: &Secret) -> Result<bool, String> {
    let tls = DbTls::from_url(url).map_err(|e| e.to_string())?;
    let pool = scopegate::db::pool(url, &tls, 1).map_err(|e| e.to_string())?;
    let conn = pool
        .get()
        .await
        .map_err(|e| scopegate::db::DbError::from(e).to_string())?;
    let row = conn
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

/// How many sessions on `db` carry `application_name`, and whether all of
/// them are encrypted.
async fn sessions_of(db: &TestDb, application_name: &str) -> (i64, bool) {
    let conn = db.pool().get().await.unwrap();
    let row = conn
        .query_one(
            "SELECT count(*), coalesce(bool_and(s.ssl), false)
               FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
              WHERE a.datname = $1 AND a.application_name = $2",
            &[&db.name, &application_name],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn disable_is_plaintext_and_prefer_uses_tls_when_offered() {
    let db = TestDb::new().await;
    let Some(_) = harness_tls("disable_is_plaintext_and_prefer_uses_tls_when_offered") else {
        return;
    };
    let plain = db.url_to("127.0.0.1", "sslmode=disable");
    assert_eq!(ssl_in_use(&plain).await, Ok(false));
    // No sslmode: libpq's default, prefer; the server offers TLS.
    let default = db.url_to("127.0.0.1", "connect_timeout=5");
    assert_eq!(ssl_in_use(&default).await, Ok(true));
    let prefer = db.url_to("127.0.0.1", "sslmode=prefer");
    assert_eq!(ssl_in_use(&prefer).await, Ok(true));
}

#[tokio::test]
async fn require_encrypts_without_checking_the_certificate() {
    let db = TestDb::new().await;
    let Some(_) = harness_tls("require_encrypts_without_checking_the_certificate") else {
        return;
    };
    let url = db.url_to("127.0.0.1", "sslmode=require");
    assert_eq!(ssl_in_use(&url).await, Ok(true));
    // A name the certificate does not hold, and no CA to check it
    // against: libpq's `require` connects all the same.
    let url = db.url_to("db.wrong.invalid", "hostaddr=127.0.0.1&sslmode=require");
    assert_eq!(ssl_in_use(&url).await, Ok(true));
}

#[tokio::test]
async fn require_with_sslrootcert_checks_the_chain_like_libpq() {
    let db = TestDb::new().await;
    let Some(tls) = harness_tls("require_with_sslrootcert_checks_the_chain_like_libpq") else {
        return;
    };
    let right = db.url_to(
        "db.wrong.invalid",
        &format!("hostaddr=127.0.0.1&sslmode=require&{}", root(&tls.ca_file)),
    );
    assert_eq!(ssl_in_use(&right).await, Ok(true));
    let wrong = db.url_to(
        "127.0.0.1",
        &format!("sslmode=require&{}", root(&tls.other_ca_file)),
    );
    let err = ssl_in_use(&wrong).await.unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");
}

#[tokio::test]
async fn verify_full_with_the_right_ca_connects_by_address_and_by_name() {
    let db = TestDb::new().await;
    let Some(tls) = harness_tls("verify_full_with_the_right_ca_connects_by_address_and_by_name")
    else {
        return;
    };
    for host in ["127.0.0.1", "localhost"] {
        let url = db.url_to(host, &format!("sslmode=verify-full&{}", root(&tls.ca_file)));
        assert_eq!(ssl_in_use(&url).await, Ok(true), "{host}");
    }
}

#[tokio::test]
async fn verify_full_with_another_ca_fails_and_says_why() {
    let db = TestDb::new().await;
    let Some(tls) = harness_tls("verify_full_with_another_ca_fails_and_says_why") else {
        return;
    };
    let url = db.url_to(
        "127.0.0.1",
        &format!("sslmode=verify-full&{}", root(&tls.other_ca_file)),
    );
    let err = ssl_in_use(&url).await.unwrap_err();
    assert!(err.contains("TLS handshake"), "{err}");
    assert!(err.contains("invalid peer certificate"), "{err}");
    // The same for verify-ca: the chain is what is wrong.
    let url = db.url_to(
        "127.0.0.1",
        &format!("sslmode=verify-ca&{}", root(&tls.other_ca_file)),
    );
    let err = ssl_in_use(&url).await.unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");
}

#[tokio::test]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let db = TestDb::new().await;
    let Some(tls) = harness_tls("verify_full_checks_the_host_name_and_verify_ca_does_not") else {
        return;
    };
    // The server at 127.0.0.1, reached under a name its certificate does
    // not hold (`hostaddr` decides where to connect, `host` what the
    // certificate must name, as in libpq).
    let params = |mode: &str| format!("hostaddr=127.0.0.1&sslmode={mode}&{}", root(&tls.ca_file));
    let full = db.url_to("db.wrong.invalid", &params("verify-full"));
    let err = ssl_in_use(&full).await.unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");
    assert!(err.contains("db.wrong.invalid"), "{err}");
    let ca = db.url_to("db.wrong.invalid", &params("verify-ca"));
    assert_eq!(ssl_in_use(&ca).await, Ok(true));
}

#[tokio::test]
async fn a_dedicated_connection_uses_the_same_tls_and_receives_notifications() {
    let db = TestDb::new().await;
    let Some(tls) =
        harness_tls("a_dedicated_connection_uses_the_same_tls_and_receives_notifications")
    else {
        return;
    };
    let url = db.url_to(
        "localhost",
        &format!("sslmode=verify-full&{}", root(&tls.ca_file)),
    );
    let db_tls = DbTls::from_url(&url).unwrap();
    let mut dedicated = connect_dedicated(&url, &db_tls, "scopegate-test")
        .await
        .unwrap();
    let ssl: bool = dedicated
        .client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);
    dedicated
        .client
        .batch_execute("LISTEN tls_test")
        .await
        .unwrap();
    db.pool()
        .get()
        .await
        .unwrap()
        .batch_execute("NOTIFY tls_test, 'hello'")
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), dedicated.notifications.recv())
        .await
        .expect("a notification within 10 s")
        .expect("the connection is still open");
    assert_eq!((n.channel(), n.payload()), ("tls_test", "hello"));

    // The server ends the session: the notifications end too, the sign
    // to reconnect.
    let pid: i32 = dedicated
        .client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    db.pool()
        .get()
        .await
        .unwrap()
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), dedicated.notifications.recv())
        .await
        .expect("the end of the connection is seen within 10 s");
    assert!(end.is_none(), "no notification was sent: {end:?}");
    assert!(dedicated.client.is_closed());

    // The dedicated connection fails like the pool with a wrong CA.
    let wrong = db.url_to(
        "localhost",
        &format!("sslmode=verify-full&{}", root(&tls.other_ca_file)),
    );
    let err = connect_dedicated(&wrong, &DbTls::from_url(&wrong).unwrap(), "scopegate-test")
        .await
        .err()
        .expect("a wrong CA is refused")
        .to_string();
    assert!(err.contains("invalid peer certificate"), "{err}");
}

#[tokio::test]
async fn the_gateway_runs_over_verify_full() {
    let db = TestDb::new().await;
    let Some(tls) = harness_tls("the_gateway_runs_over_verify_full") else {
        return;
    };
    let url = db.url_to(
        "localhost",
        &format!(
            "sslmode=verify-full&{}&application_name=scopegate-tls-app",
            root(&tls.ca_file)
        ),
    );
    let token = insert_token(&db, "alice", &["api"], 3600).await;
    let app = spawn_app_via(API_ROUTE, db, url).await;
    let res = crate::support::http()
        .get(app.url("/api/x"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    // The token was looked up in the database, over the gateway's pool.
    assert_eq!(res.status(), 200);
    let (sessions, all_ssl) = sessions_of(&app.db, "scopegate-tls-app").await;
    assert!(sessions >= 1, "the gateway holds no session");
    assert!(all_ssl, "a gateway session is not encrypted");
}

#[tokio::test]
async fn serve_runs_over_verify_full() {
    let db = TestDb::new().await;
    let Some(tls) = harness_tls("serve_runs_over_verify_full") else {
        return;
    };
    let url = db.url_to(
        "127.0.0.1",
        &format!(
            "sslmode=verify-full&{}&application_name=scopegate-tls-serve",
            root(&tls.ca_file)
        ),
    );
    let upstream = crate::support::echo().await;
    let token = insert_token(&db, "alice", &["api"], 3600).await;
    let routes = API_ROUTE.replace("UPSTREAM", &format!("http://{}", upstream.addr));
    let gw = Serve::start_on(&url, &routes);
    let res = crate::support::http()
        .get(format!("http://{}/api/x", gw.addr))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (sessions, all_ssl) = sessions_of(&db, "scopegate-tls-serve").await;
    assert!(sessions >= 1, "serve holds no session");
    assert!(all_ssl, "a serve session is not encrypted");
}

#[test]
fn a_missing_ca_file_is_a_configuration_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "").unwrap();
    let missing = dir.path().join("no-such-ca.pem");
    let url = format!(
        "postgres://someone:hunter2@127.0.0.1:1/db?sslmode=verify-full&sslrootcert={}",
        missing.display()
    );
    for command in ["check-config", "migrate"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_scopegate"))
            .arg("--config")
            .arg(&config)
            .arg(command)
            .env_remove("SCOPEGATE_CONFIG")
            .env_remove("SCOPEGATE_LISTEN")
            .env("SCOPEGATE_DATABASE_URL", &url)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {err}");
        assert!(
            err.contains(&format!("sslrootcert {}", missing.display())),
            "{command}: {err}"
        );
        assert!(
            !err.contains("hunter2"),
            "{command}: the password leaked: {err}"
        );
    }
}
