//! The database absent, gone, killed under the gateway or out of
//! connections (`docs/security.md`, "Faults", F1, F2, F4): never fail-open,
//! 503 + `Retry-After` where the database is needed, recovery without a
//! restart, no half-applied write.

use std::time::{Duration, Instant};

use scopegate::testing::{FaultProxy, TestDb};

use crate::support::{account_in, login_at, token_at, OAUTH_CONFIG as CONFIG};
use crate::support::{bearer, insert_token, raw_get, spawn_app, spawn_app_via, API_ROUTE, MARGIN};

/// F1: Postgres down at startup. `serve` retries for the configured
/// patience, then exits 1 with one line naming the server (never serving
/// "allow", never printing the password).
#[test]
fn f01_serve_without_a_database_names_it_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    // A port nothing listens on for as long as the test runs.
    let (_held, port) = crate::support::refusing_port();
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
    assert!(
        stderr.contains("retrying"),
        "retried before giving up: {stderr}"
    );
    assert!(!stderr.contains("secret"), "never the password: {stderr}");
    assert!(!stderr.contains("scopegate listening"), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(2) + MARGIN + MARGIN);
}

/// F2: the gateway's database sessions killed mid-traffic
/// (`pg_terminate_backend`, as a failover or an operator would): every
/// answer meanwhile is 200 or 503 + `Retry-After` (never 401, which would
/// make clients discard good tokens), and the pool replaces the dead
/// connections without a restart.
#[tokio::test]
async fn f02_killed_database_sessions_are_503_or_200_then_replaced() {
    let app = spawn_app(&format!(
        "[cache]\nmax_staleness_secs = 1\nnegative_ttl_secs = 1\n{API_ROUTE}"
    ))
    .await;
    let admin = app.db.pool();
    let mut tokens = Vec::new();
    for i in 0..40 {
        tokens.push(insert_token(&app.db, &format!("u{i}"), &["api"], 3600).await);
    }
    let killer = async {
        let conn = admin.get().await.unwrap();
        let mut killed = 0i64;
        for _ in 0..10 {
            let n: i64 = conn
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                      WHERE datname = current_database() AND pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            killed += n;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        killed
    };
    let traffic = futures_util::future::join_all(tokens.iter().map(|t| {
        let header = bearer(t);
        let addr = app.addr;
        async move {
            let mut seen = Vec::new();
            for _ in 0..8 {
                let r = raw_get(addr, "/api", &header).await;
                if r.status == 503 {
                    assert!(r.header("retry-after").is_some());
                }
                seen.push(r.status);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        }
    }));
    let (killed, seen) = tokio::join!(killer, traffic);
    assert!(killed > 0, "no session of the gateway was killed");
    let all: Vec<u16> = seen.into_iter().flatten().collect();
    assert!(
        all.iter().all(|s| [200, 503].contains(s)),
        "statuses while sessions were killed: {all:?}"
    );
    // Recovery, without a restart: every token passes again, the cold
    // ones too (the cache is bypassed by fresh tokens).
    let start = Instant::now();
    for t in &tokens {
        while raw_get(app.addr, "/api", &bearer(t)).await.status != 200 {
            assert!(start.elapsed() < 5 * MARGIN, "no recovery");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let fresh = insert_token(&app.db, "fresh", &["api"], 3600).await;
    assert_eq!(raw_get(app.addr, "/api", &bearer(&fresh)).await.status, 200);
}

/// F2: the database cut while refreshes are in flight: each family is
/// left with at most one usable refresh token (the rotation committed or
/// it did not), and the gateway recovers without a restart.
#[tokio::test]
async fn f02_refreshes_cut_off_mid_rotation_leave_one_live_token_or_none() {
    let db = TestDb::new().await;
    let proxy = FaultProxy::to_db(&db).await;
    let url = db.url_via(&proxy);
    let app = spawn_app_via(CONFIG, db, url).await;
    account_in(&app.db, "rita", "pw", &["orders:read"]).await;
    let mut refresh_tokens = Vec::new();
    for _ in 0..12 {
        refresh_tokens.push(login_at(app.addr, "rita", "pw").await.pair().1);
    }
    for round in 0..3u64 {
        let sent = refresh_tokens.iter().map(|rt| async move {
            token_at(
                app.addr,
                &[("grant_type", "refresh_token"), ("refresh_token", rt)],
            )
            .await
        });
        let cut = async {
            tokio::time::sleep(Duration::from_millis(2 + 3 * round)).await;
            proxy.cut();
        };
        let (answers, ()) = tokio::join!(futures_util::future::join_all(sent), cut);
        for a in answers {
            assert!([200, 400, 503].contains(&a.status), "{}", a.status);
            if a.status == 503 {
                assert!(a.header("retry-after").is_some());
            }
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
    while login_at(app.addr, "rita", "pw").await.status != 200 {
        assert!(start.elapsed() < Duration::from_secs(10), "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// F4: every pooled connection busy. A request that needs one waits at
/// most the pool's bound and gets 503 + `Retry-After`; 100 such requests
/// at once are all answered within the same bound (a bounded queue, not a
/// pile-up); cached tokens keep passing; when connections free up, it
/// works again.
#[tokio::test]
async fn f04_an_exhausted_pool_is_a_fast_503_and_cached_tokens_pass() {
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
    // The pool's wait bound (1 s) and the database deadline (1 s).
    let bound = Duration::from_secs(1) + MARGIN;
    let start = Instant::now();
    let r = raw_get(app.addr, "/api", &bearer(&cold)).await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    assert!(start.elapsed() < bound);
    // Many distinct cold tokens at once (no single flight to share).
    let many = futures_util::future::join_all((0..100).map(|_| async {
        let t = scopegate::tokens::generate(scopegate::tokens::Kind::Access).unwrap();
        raw_get(app.addr, "/api", &bearer(&t)).await
    }));
    let start = Instant::now();
    let answers = many.await;
    assert!(start.elapsed() < bound, "{:?}", start.elapsed());
    for r in &answers {
        assert_eq!(r.status, 503, "an uncheckable token");
        assert!(r.header("retry-after").is_some());
    }
    assert_eq!(app.state.db.status().waiting, 0, "nobody left waiting");
    assert_eq!(
        raw_get(app.addr, "/api", &bearer(&cached)).await.status,
        200
    );
    drop(held);
    assert_eq!(raw_get(app.addr, "/api", &bearer(&cold)).await.status, 200);
}

/// F3: the database hung (connections open, nothing comes back, as with
/// SIGSTOP) under `/oauth/*` and the admin API: a refresh, a login, a
/// revocation and an admin listing (its caller's token cached) each get
/// 503 + `Retry-After` within the bound (the body's deadline, here 1 s,
/// plus 10 s) instead of hanging; the refresh was rolled back whole, so
/// once the database answers the same refresh token rotates.
#[tokio::test]
async fn f03_oauth_and_admin_requests_on_a_hung_database_are_503_within_a_bound() {
    let db = TestDb::new().await;
    let proxy = FaultProxy::to_db(&db).await;
    let url = db.url_via(&proxy);
    let app = spawn_app_via(
        &format!("[server]\nrequest_timeout_secs = 1\n{CONFIG}"),
        db,
        url,
    )
    .await;
    account_in(&app.db, "rita", "pw", &["orders:read"]).await;
    let (access, refresh_token) = login_at(app.addr, "rita", "pw").await.pair();
    let admin = insert_token(&app.db, "root", &["scopegate:admin"], 3600).await;
    let accounts = format!("http://{}/admin/accounts", app.admin);
    let list = || crate::support::send(crate::support::http().get(&accounts).bearer_auth(&admin));
    assert_eq!(list().await.status, 200);

    proxy.stall();
    let bound = Duration::from_secs(1 + 10) + MARGIN;
    // The admin API first, alone: its caller's token is still trusted
    // from the cache, so the listing itself meets the hung database.
    let start = Instant::now();
    let listed = list().await;
    assert_eq!(
        listed.status,
        503,
        "{}",
        String::from_utf8_lossy(&listed.body)
    );
    assert!(listed.header("retry-after").is_some());
    assert!(
        start.elapsed() < bound,
        "answered after {:?}",
        start.elapsed()
    );
    let revoke_body = format!("token={access}");
    let refresh_params = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.as_str()),
    ];
    let start = Instant::now();
    let (refreshed, logged_in, revoked) = tokio::join!(
        token_at(app.addr, &refresh_params),
        login_at(app.addr, "rita", "pw"),
        crate::support::send(
            crate::support::http()
                .post(app.url("/oauth/revoke"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(revoke_body),
        ),
    );
    let took = start.elapsed();
    for (what, r) in [
        ("refresh", &refreshed),
        ("login", &logged_in),
        ("revoke", &revoked),
    ] {
        assert_eq!(
            r.status,
            503,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(r.header("retry-after").is_some(), "{what}");
        r.assert_no_store();
    }
    assert!(took < bound, "answered after {took:?}");

    proxy.restore();
    let start = Instant::now();
    let rotated = loop {
        let r = token_at(
            app.addr,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
            ],
        )
        .await;
        if r.status != 503 {
            break r;
        }
        assert!(start.elapsed() < 5 * MARGIN, "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    rotated.pair();
}
