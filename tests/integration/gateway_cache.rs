//! Token validation through the cache (`docs/operations.md`, "Consistency"): trust window,
//! revocation, database outages, single flight, bounded memory.
//!
//! Some of these wait for a clock-based window (max_staleness,
//! outage_grace) to pass; they poll with short pauses bounded by a
//! deadline. Nothing here waits for a server to become ready.

use std::sync::Arc;
use std::time::{Duration, Instant};

use scopegate::testing::{FaultProxy, TestDb};

use crate::support::{
    bearer, insert_token, raw_get, revoke_in_db, revoke_in_db_unannounced, spawn_app,
    spawn_app_via, statement_calls_settled, TestApp, API_ROUTE, MARGIN, TOKEN_LOOKUP,
};

/// Poll `f` until it returns true or `limit` passes; the time it took.
async fn within<F, Fut>(limit: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test]
async fn a_revoked_token_is_rejected_within_max_staleness() {
    let staleness = Duration::from_secs(1);
    let app = spawn_app(&format!(
        "[cache]\nmax_staleness_secs = {}\n{API_ROUTE}",
        staleness.as_secs()
    ))
    .await;
    let t = insert_token(&app.db, "u", &["api"], 3600).await;
    assert_eq!(raw_get(app.addr, "/api", &bearer(&t)).await.status, 200);
    revoke_in_db(&app.db, &t).await;
    within(staleness + MARGIN, || async {
        raw_get(app.addr, "/api", &bearer(&t)).await.status == 401
    })
    .await
    .expect("the revocation was not seen within max_staleness");
}

#[tokio::test]
async fn local_invalidation_takes_effect_at_once() {
    let app = spawn_app(&format!("[cache]\nmax_staleness_secs = 300\n{API_ROUTE}")).await;
    let t = insert_token(&app.db, "u", &["api"], 3600).await;
    assert_eq!(raw_get(app.addr, "/api", &bearer(&t)).await.status, 200);
    revoke_in_db_unannounced(&app.db, &t).await;
    // Trusted from memory for max_staleness (nothing was pushed) ...
    assert_eq!(raw_get(app.addr, "/api", &bearer(&t)).await.status, 200);
    // ... until this replica is told.
    app.state
        .tokens
        .invalidate(&scopegate::tokens::hash(&t))
        .await;
    assert_eq!(raw_get(app.addr, "/api", &bearer(&t)).await.status, 401);
}

#[tokio::test]
async fn an_expired_token_is_never_served_from_cache() {
    let app = spawn_app(&format!("[cache]\nmax_staleness_secs = 300\n{API_ROUTE}")).await;
    // `expires` is whole UNIX seconds: a 2 s TTL leaves at least 1 s of
    // validity for the first request, whenever in the second it starts.
    let t = insert_token(&app.db, "u", &["api"], 2).await;
    assert_eq!(raw_get(app.addr, "/api", &bearer(&t)).await.status, 200);
    let gone = within(Duration::from_secs(5), || async {
        raw_get(app.addr, "/api", &bearer(&t)).await.status == 401
    })
    .await;
    assert!(gone.is_some(), "expired token still accepted");
}

/// A gateway whose database connections go through a proxy we can cut.
async fn app_behind_proxy(cache: &str) -> (TestApp, FaultProxy) {
    let db = TestDb::new().await;
    let proxy = FaultProxy::to_db(&db).await;
    let url = db.url_via(&proxy);
    (
        spawn_app_via(&format!("{cache}\n{API_ROUTE}"), db, url).await,
        proxy,
    )
}

#[tokio::test]
async fn database_outage_grace_then_503_then_recovery() {
    let staleness = Duration::from_secs(1);
    let grace = Duration::from_secs(3);
    let (app, proxy) = app_behind_proxy(&format!(
        "[cache]\nmax_staleness_secs = {}\noutage_grace_secs = {}\nnegative_ttl_secs = 1",
        staleness.as_secs(),
        grace.as_secs()
    ))
    .await;
    let known = insert_token(&app.db, "known", &["api"], 3600).await;
    let never_seen = insert_token(&app.db, "new", &["api"], 3600).await;
    // The gateway confirms the token between these two instants.
    let sent_at = Instant::now();
    assert_eq!(raw_get(app.addr, "/api", &bearer(&known)).await.status, 200);
    let confirmed_at = Instant::now();

    proxy.cut();
    // A never-seen token cannot be vouched for: 503 + Retry-After, not 401.
    let r = raw_get(app.addr, "/api", &bearer(&never_seen)).await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    // Readiness reports the outage.
    let ready = reqwest::get(format!("http://{}/readyz", app.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);

    // Past max_staleness but within outage_grace: the known token still
    // passes (a re-check that cannot reach the database).
    let past_staleness = within(staleness + MARGIN, || async {
        confirmed_at.elapsed() > staleness
    })
    .await;
    assert!(past_staleness.is_some());
    assert!(confirmed_at.elapsed() < grace, "too slow to tell");
    assert_eq!(raw_get(app.addr, "/api", &bearer(&known)).await.status, 200);

    // Past outage_grace (counted from the confirmation): every token gets 503.
    let over = within(grace + MARGIN, || async {
        raw_get(app.addr, "/api", &bearer(&known)).await.status == 503
    })
    .await
    .expect("the known token kept passing past outage_grace");
    // The 503 came from a request sent after `over`; the confirmation
    // happened after `sent_at`, so the grace cannot have ended before
    // `sent_at + grace`.
    assert!(
        sent_at.elapsed() >= grace,
        "503 came early: {over:?} after the cut"
    );
    let r = raw_get(app.addr, "/api", &bearer(&known)).await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());

    // The database comes back: everything recovers without a restart.
    proxy.restore();
    let back = within(MARGIN * 2, || async {
        raw_get(app.addr, "/api", &bearer(&known)).await.status == 200
    })
    .await;
    assert!(back.is_some(), "did not recover");
    assert_eq!(
        raw_get(app.addr, "/api", &bearer(&never_seen)).await.status,
        200
    );
}

/// Single flight, counted twice: by the cache itself and by Postgres
/// (`pg_stat_statements`: the lookup statement ran once on this test's
/// database).
#[tokio::test]
async fn a_thousand_concurrent_first_requests_make_one_lookup() {
    let app = spawn_app(API_ROUTE).await;
    let t = insert_token(&app.db, "u", &["api"], 3600).await;
    let before = app.state.tokens.db_lookups();
    let executed = statement_calls_settled(&app.db, TOKEN_LOOKUP).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(1000));
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (addr, t, barrier) = (app.addr, t.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            // Connect first, then fire together.
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            barrier.wait().await;
            send_on(stream, &t).await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(app.state.tokens.db_lookups() - before, 1);
    assert_eq!(
        statement_calls_settled(&app.db, TOKEN_LOOKUP).await - executed,
        1,
        "Postgres ran the token lookup more than once"
    );
}

async fn send_on(mut s: tokio::net::TcpStream, token: &str) -> u16 {
    use tokio::io::AsyncWriteExt;
    let req = format!(
        "GET /api HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{}\r\n",
        bearer(token)
    );
    s.write_all(req.as_bytes()).await.unwrap();
    crate::support::read_one(&mut s).await.status
}

/// The negative cache, counted by the cache and by Postgres: an unknown
/// token is looked up once, answered from memory for `negative_ttl_secs`
/// (no statement reaches the database), and looked up again once that has
/// passed.
#[tokio::test]
async fn an_unknown_token_is_remembered_for_negative_ttl_then_asked_again() {
    let negative_ttl = Duration::from_secs(1);
    let app = spawn_app(&format!(
        "[cache]\nnegative_ttl_secs = {}\n{API_ROUTE}",
        negative_ttl.as_secs()
    ))
    .await;
    let unknown = scopegate::tokens::generate(scopegate::tokens::Kind::Access).unwrap();
    let tokens = &app.state.tokens;
    let executed = statement_calls_settled(&app.db, TOKEN_LOOKUP).await;
    let looked_up = tokens.db_lookups();
    let start = Instant::now();
    for _ in 0..10 {
        let r = raw_get(app.addr, "/api", &bearer(&unknown)).await;
        assert_eq!(r.status, 401);
    }
    let remembered = start.elapsed();
    assert!(
        remembered < negative_ttl,
        "too slow to tell: {remembered:?}"
    );
    assert_eq!(tokens.db_lookups() - looked_up, 1);
    assert_eq!(
        statement_calls_settled(&app.db, TOKEN_LOOKUP).await - executed,
        1,
        "a remembered unknown token reached the database"
    );
    // Once negative_ttl has passed, the next request asks again.
    let asked_again = within(negative_ttl + MARGIN, || async {
        assert_eq!(
            raw_get(app.addr, "/api", &bearer(&unknown)).await.status,
            401
        );
        tokens.db_lookups() - looked_up == 2
    })
    .await
    .expect("the unknown token was never looked up again");
    assert!(
        start.elapsed() >= negative_ttl * 9 / 10,
        "forgotten early: {asked_again:?}"
    );
    assert_eq!(
        statement_calls_settled(&app.db, TOKEN_LOOKUP).await - executed,
        2
    );
}

#[tokio::test]
async fn token_spraying_is_bounded_by_max_entries() {
    let app = spawn_app(&format!(
        // As many connections as lookups in flight: no lookup waits for the
        // pool, whose wait is bounded (1 s) however loaded the machine is.
        "[database]\npool_size = 64\n[cache]\nmax_entries = 1000\nnegative_ttl_secs = 60\ndb_deadline_ms = 5000\n{API_ROUTE}"
    ))
    .await;
    let good = insert_token(&app.db, "u", &["api"], 3600).await;
    let tokens = &app.state.tokens;
    let here = std::net::IpAddr::from([127, 0, 0, 1]);
    assert!(tokens.validate(&good, here).await.is_ok());
    let before = tokens.db_lookups();
    // 100k distinct, well-formed, unknown tokens, 64 at a time, each batch
    // from an address of its own (so the per-address budget of invalid
    // lookups never refuses them: memory is what this test bounds).
    let total = 100_000;
    let mut done = 0;
    while done < total {
        let batch: Vec<_> = (0..64)
            .map(|_| scopegate::tokens::generate(scopegate::tokens::Kind::Access).unwrap())
            .collect();
        let from = std::net::IpAddr::from([10, 0, ((done / 64) >> 8) as u8, (done / 64) as u8]);
        let results =
            futures_util::future::join_all(batch.iter().map(|t| tokens.validate(t, from))).await;
        for r in results {
            assert_eq!(
                r.unwrap_err(),
                scopegate::tokens::cache::TokenError::Invalid
            );
        }
        done += 64;
    }
    tokens.run_pending_tasks().await;
    assert!(
        tokens.entry_count() <= 1000,
        "{} entries",
        tokens.entry_count()
    );
    assert!(tokens.db_lookups() - before >= total as u64);
    // Ill-formed tokens never reach the database at all.
    let before = tokens.db_lookups();
    for i in 0..1000 {
        let _ = tokens.validate(&format!("sga_short{i}"), here).await;
    }
    assert_eq!(tokens.db_lookups(), before);
    // An unknown token is looked up once, then remembered as invalid.
    let unknown = scopegate::tokens::generate(scopegate::tokens::Kind::Access).unwrap();
    let before = tokens.db_lookups();
    for _ in 0..10 {
        assert!(tokens.validate(&unknown, here).await.is_err());
    }
    assert_eq!(tokens.db_lookups() - before, 1);
}
