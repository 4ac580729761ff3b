//! The validation cache against a hung database, token spraying and
//! stampedes (`docs/security.md`, "Faults", F3, F11, F13).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use scopegate::testing::{FaultProxy, TestDb};

use crate::support::{
    bearer, http_from, insert_token, raw_get, spawn_app, spawn_app_via, API_ROUTE, MARGIN,
};

/// `cache.db_deadline_ms` in these tests.
const DEADLINE_MS: u64 = 300;

fn route(extra: &str) -> String {
    format!("[cache]\n{extra}\n{API_ROUTE}")
}

/// `fut`'s output, or a failure naming `what` if it takes longer than
/// `bound`: a hang fails the test instead of hanging it.
async fn answered_within<T>(
    bound: Duration,
    fut: impl std::future::Future<Output = T>,
    what: &str,
) -> T {
    tokio::time::timeout(bound, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {bound:?} (the request hangs)"))
}

/// F3: a database that stops answering (connections open, nothing comes back,
/// as with SIGSTOP) never hangs a request: within the deadline a cached
/// token passes on the grace window, an uncached one is 503, and every
/// waiter of a single flight is released with it; recovery needs no
/// restart.
#[tokio::test]
async fn f03_a_hung_database_never_hangs_a_request() {
    let db = TestDb::new().await;
    let proxy = FaultProxy::to_db(&db).await;
    let url = db.url_via(&proxy);
    let app = spawn_app_via(
        &route(&format!(
            "db_deadline_ms = {DEADLINE_MS}\nmax_staleness_secs = 1\noutage_grace_secs = 60"
        )),
        db,
        url,
    )
    .await;
    let cached = insert_token(&app.db, "u", &["api"], 3600).await;
    let cold = insert_token(&app.db, "u", &["api"], 3600).await;
    // Cached (and the pool warm), allowing for a slow first connection.
    let start = Instant::now();
    while raw_get(app.addr, "/api", &bearer(&cached)).await.status != 200 {
        assert!(start.elapsed() < Duration::from_secs(10), "never served");
    }

    proxy.stall();
    let bound = Duration::from_millis(DEADLINE_MS) + MARGIN;
    // The cached token passes (confirmed well within the grace window),
    // whether or not its entry needs a re-check by now.
    let start = Instant::now();
    assert_eq!(
        answered_within(bound, raw_get(app.addr, "/api", &bearer(&cached)), "cached")
            .await
            .status,
        200
    );
    assert!(start.elapsed() < bound, "cached: {:?}", start.elapsed());
    // The uncached one, sent by 20 clients at once: all 503 with
    // Retry-After, all within the deadline (the single flight's query is
    // abandoned at the deadline, its waiters with it).
    let start = Instant::now();
    let lookups = app.state.tokens.db_lookups();
    let cold_header = bearer(&cold);
    let answers = answered_within(
        bound,
        futures_util::future::join_all((0..20).map(|_| raw_get(app.addr, "/api", &cold_header))),
        "uncached",
    )
    .await;
    for r in &answers {
        assert_eq!(r.status, 503);
        assert!(r.header("retry-after").is_some());
    }
    assert!(start.elapsed() < bound, "uncached: {:?}", start.elapsed());
    // Collapsed into one query (two if the last arrived after the first
    // gave up at the deadline), not twenty.
    let queried = app.state.tokens.db_lookups() - lookups;
    assert!((1..=2).contains(&queried), "{queried} queries");
    // Past max_staleness the cached token is re-checked: still bounded.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let start = Instant::now();
    assert_eq!(
        answered_within(
            bound,
            raw_get(app.addr, "/api", &bearer(&cached)),
            "re-check"
        )
        .await
        .status,
        200
    );
    assert!(start.elapsed() < bound, "re-check: {:?}", start.elapsed());

    proxy.restore();
    let start = Instant::now();
    loop {
        match raw_get(app.addr, "/api", &bearer(&cold)).await.status {
            200 => break,
            503 => {}
            s => panic!("status {s} while recovering"),
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// F3: Postgres itself slow (the token table locked by another session:
/// every lookup waits inside the server, the connection healthy): the
/// lookup is abandoned at `db_deadline_ms` and answered 503 +
/// `Retry-After`; a cached token is unaffected; once the lock goes, the
/// same token passes (no restart, no poisoned connection).
#[tokio::test]
async fn f03_queries_stuck_in_the_server_are_cut_at_the_deadline() {
    let app = spawn_app(&route(&format!("db_deadline_ms = {DEADLINE_MS}"))).await;
    let cached = insert_token(&app.db, "u", &["api"], 3600).await;
    let cold = insert_token(&app.db, "u", &["api"], 3600).await;
    assert_eq!(
        raw_get(app.addr, "/api", &bearer(&cached)).await.status,
        200
    );
    let pool = app.db.pool();
    let mut locker = pool.get().await.unwrap();
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE access_tokens IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let bound = Duration::from_millis(DEADLINE_MS) + MARGIN;
    let start = Instant::now();
    let r = raw_get(app.addr, "/api", &bearer(&cold)).await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    assert!(start.elapsed() >= Duration::from_millis(DEADLINE_MS) * 9 / 10);
    assert!(start.elapsed() < bound, "{:?}", start.elapsed());
    let start = Instant::now();
    assert_eq!(
        raw_get(app.addr, "/api", &bearer(&cached)).await.status,
        200
    );
    assert!(
        start.elapsed() < Duration::from_millis(DEADLINE_MS),
        "cached traffic waited"
    );
    tx.rollback().await.unwrap();
    assert_eq!(raw_get(app.addr, "/api", &bearer(&cold)).await.status, 200);
}

/// F11: random tokens from one address: after the burst (twice the rate) the
/// address gets 429 + Retry-After for uncached tokens, without a query;
/// its cached token still passes; other addresses are untouched; valid
/// cold tokens never spend the budget.
#[tokio::test]
async fn f11_spraying_is_budgeted_per_address_and_valid_tokens_never_pay() {
    let app = spawn_app(&route("invalid_lookups_per_ip = 5\nnegative_ttl_secs = 60")).await;
    let sprayer: IpAddr = [127, 0, 0, 21].into();
    let other: IpAddr = [127, 0, 0, 22].into();
    let relay: IpAddr = [127, 0, 0, 23].into();
    let valid = insert_token(&app.db, "u", &["api"], 3600).await;
    let get = |from: IpAddr, token: String| {
        let url = app.url("/api");
        async move {
            http_from(from)
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(get(sprayer, valid.clone()).await.status(), 200);
    let random = || scopegate::tokens::generate(scopegate::tokens::Kind::Access).unwrap();
    let tokens = &app.state.tokens;
    let before = tokens.db_lookups();
    let (mut refused, mut throttled) = (0, 0);
    for _ in 0..40 {
        let r = get(sprayer, random()).await;
        match r.status().as_u16() {
            401 => refused += 1,
            429 => {
                let after: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=2).contains(&after), "Retry-After {after}");
                throttled += 1;
            }
            s => panic!("status {s}"),
        }
    }
    let queried = tokens.db_lookups() - before;
    // A burst of 10 (2 x 5/s), plus what refilled during the run.
    assert!(
        (10..=20).contains(&refused),
        "{refused} refused, {throttled} throttled"
    );
    assert_eq!(queried, refused, "every 429 was answered without a query");
    assert!(throttled >= 20);
    // The sprayer's cached token is never throttled...
    assert_eq!(get(sprayer, valid.clone()).await.status(), 200);
    // ... another address has its own budget...
    assert_eq!(get(other, random()).await.status(), 401);
    // ... and 30 fresh valid tokens relayed from one address all pass and
    // leave its budget whole: 10 invalid ones are still looked up after.
    for _ in 0..30 {
        let fresh = insert_token(&app.db, "relayed", &["api"], 3600).await;
        assert_eq!(get(relay, fresh).await.status(), 200);
    }
    for i in 0..10 {
        assert_eq!(get(relay, random()).await.status(), 401, "invalid {i}");
    }
    assert!(tokens.counts().throttled >= throttled);
}

/// F13: many requests at once for a token whose cached answer must be
/// re-checked make one database query, not one each.
#[tokio::test]
async fn f13_a_stampede_of_rechecks_makes_one_query() {
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
