//! A login storm against the password-hashing pool (`docs/security.md`,
//! "Faults", F14).

use crate::support::{account_in, login_at};
use crate::support::{
    bearer, insert_token, raw_get, spawn_app, statement_calls_settled, until, ACCOUNT_LOOKUP,
    API_ROUTE,
};

/// F14: hashing saturated by a login storm (one thread, a full queue):
/// logins beyond it are refused with 503 + `Retry-After`, never queued
/// without bound, and proxied requests with a cached token are all served
/// meanwhile (hashing never runs on the proxy's threads).
#[tokio::test]
async fn f14_a_login_storm_never_starves_proxied_requests() {
    let app = spawn_app(&format!(
        "[login]\nhash_concurrency = 1\nmax_failures = 100000\nmax_failures_per_ip = 100000\n{API_ROUTE}"
    ))
    .await;
    account_in(&app.db, "sam", "pw", &["api"]).await;
    let t = insert_token(&app.db, "u", &["api"], 3600).await;
    assert_eq!(raw_get(app.addr, "/api", &bearer(&t)).await.status, 200);
    let storm = futures_util::future::join_all((0..60).map(|_| login_at(app.addr, "sam", "wrong")));
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

/// F14: with the hashing queue full, a login is refused (503 +
/// `Retry-After`) before it reads the account: a storm that outruns the
/// hashing threads costs the database nothing more.
#[tokio::test]
async fn f14_a_full_hashing_queue_refuses_before_any_database_work() {
    let app = spawn_app(&format!("[login]\nhash_concurrency = 1\n{API_ROUTE}")).await;
    account_in(&app.db, "sam", "pw", &["api"]).await;
    let hasher = app.state.oauth.hasher.clone();
    // The thread held, then the queue filled with held jobs behind it.
    let held = hasher.occupy().await.unwrap();
    let queued: Vec<_> = (0..hasher.queue_capacity())
        .map(|_| {
            let h = hasher.clone();
            tokio::spawn(async move { h.occupy().await })
        })
        .collect();
    until("the queue never filled", || {
        hasher.queue_depth() == hasher.queue_capacity() as u64
    })
    .await;
    let lookups = statement_calls_settled(&app.db, ACCOUNT_LOOKUP).await;
    let r = login_at(app.addr, "sam", "pw").await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    assert_eq!(
        statement_calls_settled(&app.db, ACCOUNT_LOOKUP).await,
        lookups,
        "the refused login read the account"
    );
    drop(held);
    for q in queued {
        drop(q.await.unwrap().unwrap());
    }
    assert_eq!(login_at(app.addr, "sam", "pw").await.status, 200);
}
