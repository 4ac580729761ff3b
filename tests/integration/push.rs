//! Revocations pushed to every replica (`docs/operations.md`, "Token cache
//! consistency"): two gateways on one database, the listener lost and
//! regained, and a revocation racing a cache fill.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scopegate::testing::{FaultProxy, TestDb};
use scopegate::tokens::cache::{TokenError, Validator};

use crate::support::{bearer, insert_token, raw_get, revoke_in_db, spawn_app_on, TestApp};

/// Staleness long enough that only a push can explain a quick rejection.
const CONFIG: &str = r#"
[cache]
max_staleness_secs = 30

[[routes]]
name = "api"
path = "/api"
upstream = "UPSTREAM"
scopes = ["api"]
"#;

/// How long a push may take here before the test calls it lost: far below
/// `max_staleness_secs`, far above what delivery takes (milliseconds).
const PUSH_LIMIT: Duration = Duration::from_secs(5);

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A second handle on the same database (the first stays with its app).
fn same(db: &TestDb) -> TestDb {
    TestDb {
        name: db.name.clone(),
        url: db.url.clone(),
    }
}

/// Wait (bounded) until the revocation listener feeding `tokens` has
/// connected `n` times in all.
async fn listening(tokens: &Validator, n: u64) {
    let stats = tokens.listener_stats();
    let start = Instant::now();
    while stats.connects.load(Ordering::SeqCst) < n || !tokens.listener_live() {
        assert!(start.elapsed() < PUSH_LIMIT, "the listener never connected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn status(app: &TestApp, token: &str) -> u16 {
    raw_get(app.addr, "/api", &bearer(token)).await.status
}

/// Poll `app` until `token` is refused; how long after `since` it was.
async fn refused_after(app: &TestApp, token: &str, since: Instant) -> Duration {
    loop {
        let s = status(app, token).await;
        if s == 401 {
            return since.elapsed();
        }
        assert_eq!(s, 200, "neither accepted nor refused");
        assert!(since.elapsed() < PUSH_LIMIT, "the revocation never arrived");
    }
}

#[tokio::test]
async fn a_revocation_through_one_replica_reaches_the_other() {
    let a = spawn_app_on(CONFIG, TestDb::new().await).await;
    let b = spawn_app_on(CONFIG, same(&a.db)).await;
    listening(&a.state.tokens, 1).await;
    listening(&b.state.tokens, 1).await;
    let rounds = 200;
    let mut delays = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = insert_token(&a.db, "alice", &["api"], 3600).await;
        assert_eq!(status(&b, &t).await, 200, "b caches it");
        assert_eq!(status(&a, &t).await, 200, "a caches it");
        // Revoked through A's own endpoint (RFC 7009).
        let revoked = reqwest::Client::new()
            .post(a.url("/oauth/revoke"))
            .form(&[("token", t.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(revoked.status(), 200);
        let at = Instant::now();
        // A dropped it at once; B hears it from the database.
        assert_eq!(status(&a, &t).await, 401);
        delays.push(refused_after(&b, &t, at).await);
    }
    delays.sort();
    let p = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "revocation seen by the other replica: p50 {:?}, p99 {:?}, max {:?} ({rounds} revocations)",
        p(0.5),
        p(0.99),
        p(1.0)
    );
    let pushed = b.state.tokens.listener_stats();
    assert!(pushed.notifications.load(Ordering::SeqCst) >= rounds as u64);
}

#[tokio::test]
async fn an_account_disabled_through_the_admin_api_is_refused_by_both_replicas() {
    let a = spawn_app_on(CONFIG, TestDb::new().await).await;
    let b = spawn_app_on(CONFIG, same(&a.db)).await;
    listening(&b.state.tokens, 1).await;
    let admin = insert_token(&a.db, "root", &["scopegate:admin"], 3600).await;
    let t = insert_token(&a.db, "bob", &["api"], 3600).await;
    assert_eq!(status(&a, &t).await, 200);
    assert_eq!(status(&b, &t).await, 200);
    let conn = a.db.pool().get().await.unwrap();
    let id: i32 = conn
        .query_one(
            "SELECT account_id FROM accounts WHERE username = 'bob'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let patched = reqwest::Client::new()
        .patch(format!("http://{}/admin/accounts/{id}", a.admin))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(r#"{"is_active": false}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let at = Instant::now();
    assert_eq!(
        status(&a, &t).await,
        401,
        "the same replica: the next request"
    );
    let took = refused_after(&b, &t, at).await;
    eprintln!("deactivation seen by the other replica after {took:?}");
}

#[tokio::test]
async fn a_lost_listener_reconnects_and_what_was_revoked_meanwhile_is_refused() {
    let app = spawn_app_on(CONFIG, TestDb::new().await).await;
    listening(&app.state.tokens, 1).await;
    let t = insert_token(&app.db, "carol", &["api"], 3600).await;
    assert_eq!(status(&app, &t).await, 200);
    let stats = app.state.tokens.listener_stats();
    let conn = app.db.pool().get().await.unwrap();
    let ended = conn
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE application_name = $1 AND datname = current_database()",
            &[&scopegate::tokens::listener::APPLICATION_NAME],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(ended, 1, "one listening session");
    // Wait until the gateway knows it lost the listener...
    let start = Instant::now();
    while stats.disconnects.load(Ordering::SeqCst) == 0 {
        assert!(start.elapsed() < PUSH_LIMIT, "the loss went unnoticed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ... and revoke while it may not be listening: no notice can reach it.
    revoke_in_db(&app.db, &t).await;
    // Every entry was marked for re-check when the listener went: the
    // database answers, so the revocation is seen at once, listener or not.
    assert_eq!(status(&app, &t).await, 401);
    listening(&app.state.tokens, 2).await;
    assert_eq!(status(&app, &t).await, 401, "and never accepted afterwards");
    // Pushes work again after the reconnection.
    let u = insert_token(&app.db, "carol", &["api"], 3600).await;
    assert_eq!(status(&app, &u).await, 200);
    let at = Instant::now();
    revoke_in_db(&app.db, &u).await;
    refused_after(&app, &u, at).await;
    // And /metrics tells the story.
    let metrics = reqwest::get(format!("http://{}/metrics", app.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(value("scopegate_listener_up"), 1);
    assert!(value("scopegate_listener_connects_total") >= 2);
    assert!(value("scopegate_listener_disconnects_total") >= 1);
    assert!(value("scopegate_listener_notifications_total") >= 1);
    assert!(value("scopegate_cache_revocations_total") >= 1);
}

/// A revocation that commits while the query filling the cache is on its
/// way back never leaves the revoked token valid: the answer predates the
/// revocation's epoch, so its first use re-checks it. The race is made
/// to happen every time: the validator reaches Postgres through a proxy
/// that holds the server's replies, so the lookup runs (and finds the
/// token valid) before the revocation commits and is answered after it.
/// The listener connects with the pool's TLS settings (made once, at
/// startup), not with a second reading of `[database]`: a CA file gone
/// since then does not keep it from listening.
#[tokio::test]
async fn the_listener_connects_with_the_pools_tls_settings() {
    let db = TestDb::new().await;
    let mut config = scopegate::config::Config::parse("", "listener.toml", &Default::default())
        .expect("an empty configuration parses");
    config.database.url = Some(db.url.clone());
    config.database.tls = scopegate::config::TlsMode::VerifyFull;
    config.database.ca_file = Some("/nonexistent/ca.pem".into());
    let state = scopegate::app::State::new(config, db.pool());
    listening(&state.tokens, 1).await;
}

#[tokio::test]
async fn a_revocation_racing_a_cache_fill_never_leaves_the_token_valid() {
    let db = TestDb::new().await;
    let proxy = FaultProxy::to_db(&db).await;
    let url = db.url_via(&proxy);
    let tls = scopegate::db::DbTls::from_url(&url).unwrap();
    let pool = scopegate::db::pool(&url, &tls, 2).unwrap();
    // Only the epoch can explain a re-check: without the listener a
    // confirmed answer is trusted for `max_staleness`.
    let config = "[cache]\nmax_staleness_secs = 3600\ndb_deadline_ms = 30000\n";
    let cache = scopegate::config::Config::parse(config, "race.toml", &Default::default())
        .unwrap()
        .cache;
    let tokens = Arc::new(Validator::new(pool, &cache));
    // A connection in the pool, its statement prepared.
    let warm = insert_token(&db, "dave", &["api"], 3600).await;
    tokens.validate(&warm, LOCAL).await.unwrap();
    for trial in 0..5 {
        let t = insert_token(&db, "dave", &["api"], 3600).await;
        proxy.hold_replies();
        let fill = tokio::spawn({
            let (tokens, t) = (tokens.clone(), t.clone());
            async move { tokens.validate(&t, LOCAL).await }
        });
        // The lookup has run; its answer waits in the proxy.
        assert!(
            proxy.reply_held(Duration::from_secs(10)).await,
            "trial {trial}: the lookup never ran"
        );
        revoke_in_db(&db, &t).await;
        tokens.invalidate(&scopegate::tokens::hash(&t)).await;
        proxy.restore();
        // The fill answers as of its query (before the revocation)...
        assert!(
            fill.await.unwrap().is_ok(),
            "trial {trial}: the fill failed"
        );
        // ...but what it cached is never trusted past the revocation.
        assert_eq!(
            tokens.validate(&t, LOCAL).await.unwrap_err(),
            TokenError::Invalid,
            "trial {trial}: the revoked token is still valid"
        );
    }
}
