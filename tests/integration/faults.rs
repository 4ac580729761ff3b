//! Fault scenarios (`docs/security.md`, "Faults"): the database absent at
//! startup, an exhausted pool, a refresh cut off mid-rotation, a stampede
//! of re-checks, and a log nobody reads. Never fail-open, bounded answers,
//! recovery without a restart.

use std::io::BufRead;
use std::time::{Duration, Instant};

use scopegate::testing::{FaultProxy, TestDb};

use crate::oauth::{login, new_account, CONFIG};
use crate::support::{bearer, insert_token, raw_get, spawn_app, spawn_app_via, API_ROUTE, MARGIN};

/// Postgres down at startup: `serve` retries for the configured patience,
/// then exits 1 with one line naming the server (never serving "allow").
#[test]
fn serve_without_a_database_names_it_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scopegate"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env(
            "SCOPEGATE_DATABASE_URL",
            format!("postgres://scopegate:secret@127.0.0.1:{port}/scopegate"),
        )
        .env("SCOPEGATE_CONNECT_PATIENCE_SECS", "2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")),
        "names the server: {stderr}"
    );
    assert!(!stderr.contains("secret"), "never the password: {stderr}");
    assert!(start.elapsed() < Duration::from_secs(2) + MARGIN + MARGIN);
}

/// Every pooled connection busy: a request that needs one waits at most
/// the pool's bound and gets 503 + Retry-After; cached tokens keep
/// passing; when connections free up, it works again.
#[tokio::test]
async fn an_exhausted_pool_is_a_fast_503_and_cached_tokens_pass() {
    let app = spawn_app(&format!("[database]\npool_size = 2\n{API_ROUTE}")).await;
    let cached = insert_token(&app.db, "u", &["api"], 3600).await;
    let cold = insert_token(&app.db, "u", &["api"], 3600).await;
    assert_eq!(
        raw_get(app.addr, "/api", &bearer(&cached)).await.status,
        200
    );
    let held = (
        app.state.db.get().await.unwrap(),
        app.state.db.get().await.unwrap(),
    );
    let start = Instant::now();
    let r = raw_get(app.addr, "/api", &bearer(&cold)).await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    // The pool's wait bound (1 s) and the database deadline (1 s).
    assert!(start.elapsed() < Duration::from_secs(1) + MARGIN);
    assert_eq!(
        raw_get(app.addr, "/api", &bearer(&cached)).await.status,
        200
    );
    drop(held);
    assert_eq!(raw_get(app.addr, "/api", &bearer(&cold)).await.status, 200);
}

/// The database cut while refreshes are in flight: each family is left
/// with at most one usable refresh token (the rotation committed or it did
/// not), and the gateway recovers without a restart.
#[tokio::test]
async fn refreshes_cut_off_mid_rotation_leave_one_live_token_or_none() {
    let db = TestDb::new().await;
    let proxy = FaultProxy::to_db(&db).await;
    let url = db.url_via(&proxy);
    let app = spawn_app_via(CONFIG, db, url).await;
    new_account(&app, "rita", "pw", &["orders:read"], &[]).await;
    let mut refresh_tokens = Vec::new();
    for _ in 0..12 {
        refresh_tokens.push(login(&app, "rita", "pw").await.pair().1);
    }
    for round in 0..3u64 {
        let client = reqwest::Client::new();
        let url = app.url("/oauth/token");
        let sent = refresh_tokens.iter().map(|rt| {
            client
                .post(&url)
                .form(&[("grant_type", "refresh_token"), ("refresh_token", rt)])
                .send()
        });
        let cut = async {
            tokio::time::sleep(Duration::from_millis(2 + 3 * round)).await;
            proxy.cut();
        };
        let (answers, ()) = tokio::join!(futures_util::future::join_all(sent), cut);
        for a in answers.into_iter().flatten() {
            assert!(
                [200, 400, 503].contains(&a.status().as_u16()),
                "{}",
                a.status()
            );
        }
        proxy.restore();
        // Directly on the database: no family has two usable tokens.
        let conn = app.db.pool().get().await.unwrap();
        let worst: i64 = conn
            .query_one(
                "SELECT COALESCE(max(n), 0) FROM (
                   SELECT count(*) AS n FROM refresh_tokens
                    WHERE active AND rotated_at IS NULL
                    GROUP BY COALESCE(family_id, refresh_token_id)) f",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            worst <= 1,
            "round {round}: a family with {worst} live tokens"
        );
    }
    // Recovery: a login works again.
    let start = Instant::now();
    while login(&app, "rita", "pw").await.status != 200 {
        assert!(start.elapsed() < Duration::from_secs(10), "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Many requests at once for a token whose cached answer must be
/// re-checked make one database query, not one each.
#[tokio::test]
async fn a_stampede_of_rechecks_makes_one_query() {
    let app = spawn_app(&format!("[cache]\nmax_staleness_secs = 1\n{API_ROUTE}")).await;
    let t = insert_token(&app.db, "u", &["api"], 3600).await;
    assert_eq!(raw_get(app.addr, "/api", &bearer(&t)).await.status, 200);
    // As if the listener were lost: entries marked, staleness applies.
    app.state.tokens.set_listener_live(false);
    let before = app.state.tokens.db_lookups();
    let header = bearer(&t);
    let answers =
        futures_util::future::join_all((0..300).map(|_| raw_get(app.addr, "/api", &header))).await;
    assert!(answers.iter().all(|r| r.status == 200));
    assert_eq!(app.state.tokens.db_lookups() - before, 1);
}

/// Nobody reads the log (a full pipe, as with a full disk behind it):
/// requests are still answered; log lines are dropped, not waited for.
#[test]
fn a_log_nobody_reads_never_blocks_requests() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [[routes]]\nname = \"open\"\npath = \"/open\"\npublic = true\nupstream = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_scopegate"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("SCOPEGATE_DATABASE_URL", db.url.expose())
        .env("SCOPEGATE_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = child.stderr.take().unwrap();
    let _child = KillOnDrop(child);
    // Read up to the readiness line, then never again.
    let mut stderr = std::io::BufReader::new(pipe);
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "exited early");
        if let Some((_, rest)) = line.split_once("scopegate listening proxy=") {
            break rest.split(' ').next().unwrap().trim().to_owned();
        }
    };
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    // Each answer logs a line (~200 bytes): 3000 fill a pipe many times.
    let start = Instant::now();
    rt.block_on(async {
        for _ in 0..3000 {
            // 502: the upstream port is closed; the answer is what counts.
            assert_eq!(raw_get(addr, "/open/x", "").await.status, 502);
        }
    });
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    drop(stderr);
}

/// The child process, killed and reaped when the test ends (pass or fail).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Hashing saturated by a login storm (one thread, a full queue): logins
/// beyond it are refused with 503 + Retry-After, never queued without
/// bound, and proxied requests with a cached token are all served
/// meanwhile (hashing never runs on the proxy's threads).
#[tokio::test]
async fn a_login_storm_never_starves_proxied_requests() {
    let app = spawn_app(&format!(
        "[login]\nhash_concurrency = 1\nmax_failures = 100000\nmax_failures_per_ip = 100000\n{API_ROUTE}"
    ))
    .await;
    new_account(&app, "sam", "pw", &["api"], &[]).await;
    let t = insert_token(&app.db, "u", &["api"], 3600).await;
    assert_eq!(raw_get(app.addr, "/api", &bearer(&t)).await.status, 200);
    let storm = futures_util::future::join_all((0..60).map(|_| login(&app, "sam", "wrong")));
    let header = bearer(&t);
    let proxied = async {
        let mut served = 0;
        for _ in 0..200 {
            assert_eq!(raw_get(app.addr, "/api", &header).await.status, 200);
            served += 1;
        }
        served
    };
    let (logins, served) = tokio::join!(storm, proxied);
    assert_eq!(served, 200);
    let refused = logins.iter().filter(|r| r.status == 503).count();
    for r in &logins {
        assert!([400, 503].contains(&r.status), "{}", r.status);
        if r.status == 503 {
            assert!(r.header("retry-after").is_some());
        }
    }
    assert!(
        refused > 0,
        "60 logins at once on one hashing thread: some refused"
    );
}
