//! `POST /oauth/token` under pressure: login throttling per username and
//! per address, the hashing queue's limit, and rehashing on login.

use reqwest::header::CONTENT_TYPE;
use scopegate::accounts::store;
use scopegate::accounts::Password;

use super::oauth::*;
use crate::support::{http, send, spawn_app, statement_calls_settled, ACCOUNT_LOOKUP};

/// A throttled attempt costs nothing: no argon2 work (the hashing pool's
/// own count: hashing happens in this process, where Postgres cannot see
/// it) and no account lookup (what Postgres executed). Every hash, real or
/// dummy, follows that lookup, so the database's count is an outside check
/// that throttled attempts stopped before anything that could hash.
#[tokio::test]
async fn throttling_answers_429_before_any_hashing() {
    let app = spawn_app(&CONFIG.replace(
        "max_failures = 1000\nmax_failures_per_ip = 1000",
        "max_failures = 3\nmax_failures_per_ip = 3\nwindow_secs = 300",
    ))
    .await;
    new_account(&app, "nina", "right", &[], &[]).await;
    for _ in 0..3 {
        login(&app, "nina", "wrong")
            .await
            .assert_error(400, "invalid_grant");
    }
    let hashed = app.state.oauth.hasher.computed();
    let looked_up = statement_calls_settled(&app.db, ACCOUNT_LOOKUP).await;
    assert!(
        looked_up >= 3,
        "the failed logins were not counted: {looked_up}"
    );
    for password in ["wrong", "right"] {
        let r = login(&app, "NINA", password).await;
        assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=300).contains(&retry), "{retry}");
        r.assert_no_store();
    }
    // The same address is throttled for other usernames too.
    assert_eq!(login(&app, "someone-else", "x").await.status, 429);
    assert_eq!(
        app.state.oauth.hasher.computed(),
        hashed,
        "throttled attempts do no argon2 work"
    );
    assert_eq!(
        statement_calls_settled(&app.db, ACCOUNT_LOOKUP).await,
        looked_up,
        "a throttled attempt looked the account up"
    );
}

#[tokio::test]
async fn a_success_resets_the_username_counter() {
    let app = spawn_app(&CONFIG.replace(
        "max_failures = 1000\nmax_failures_per_ip = 1000",
        "max_failures = 3\nmax_failures_per_ip = 3",
    ))
    .await;
    new_account(&app, "olga", "right", &[], &[]).await;
    for _ in 0..2 {
        login(&app, "olga", "wrong")
            .await
            .assert_error(400, "invalid_grant");
    }
    login(&app, "olga", "right").await.pair();
    // The address still remembers its two failures: one more is allowed.
    login(&app, "olga", "wrong")
        .await
        .assert_error(400, "invalid_grant");
    assert_eq!(login(&app, "olga", "right").await.status, 429);
}

/// The `[login]` defaults (5 failures per username, 50 per address), two
/// hashing threads.
const DEFAULT_LIMITS: &str = r#"
[login]
hash_concurrency = 2
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correct_logins_in_flight_never_throttle_each_other() {
    let app = spawn_app(DEFAULT_LIMITS).await;
    let users = ["ann", "ben", "cat", "dan"];
    for u in users {
        new_account(&app, u, "right", &[], &[]).await;
    }
    for round in 0..10 {
        // 8 at once from one address, two per user: more than any limit
        // counts, were correct logins in flight counted against it.
        let logins: Vec<_> = users
            .iter()
            .chain(users.iter())
            .map(|u| {
                let url = app.url("/oauth/token");
                let body = encode(&[
                    ("grant_type", "password"),
                    ("username", u),
                    ("password", "right"),
                ]);
                tokio::spawn(async move {
                    send(http().post(url).header(CONTENT_TYPE, FORM).body(body)).await
                })
            })
            .collect();
        for l in logins {
            let r = l.await.unwrap();
            assert_eq!(
                r.status,
                200,
                "round {round}: {}",
                String::from_utf8_lossy(&r.body)
            );
        }
    }
}

/// A stored hash with the costliest parameters the hasher still accepts
/// (48 MiB, 10 passes: about 13 times the work of a current hash), and an
/// output no password produces: verifying it keeps a hashing thread busy
/// for a long while, then fails.
const HEAVY_HASH: &str = "$argon2id$v=19$m=49152,t=10,p=1$c2FsdHNhbHRzYWx0c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// One hashing thread holds at most `1 + QUEUE_PER_THREAD` logins. With
/// that many slow verifications holding it, the next login finds the queue
/// full: 503 with `Retry-After: 1` at once (`docs/configuration.md`,
/// `hash_concurrency`), right password or wrong; the slow ones end as
/// usual (400), and once they have, logins go through again. Never a 500.
#[tokio::test]
async fn a_full_hashing_queue_is_503_with_retry_after() {
    let app = spawn_app(&CONFIG.replace("hash_concurrency = 2", "hash_concurrency = 1")).await;
    new_account(&app, "hana", "right", &[], &[]).await;
    new_account(&app, "heavy", "unused", &[], &[]).await;
    db_exec(
        &app,
        "UPDATE accounts SET password = $1 WHERE username = 'heavy'",
        &[&HEAVY_HASH],
    )
    .await;
    let hasher = &app.state.oauth.hasher;
    assert_eq!(hasher.threads(), 1);
    let slow_login = || {
        let url = app.url("/oauth/token");
        let form = encode(&[
            ("grant_type", "password"),
            ("username", "heavy"),
            ("password", "guess"),
        ]);
        tokio::spawn(
            async move { send(http().post(url).header(CONTENT_TYPE, FORM).body(form)).await },
        )
    };
    // One holds the thread (which may first finish resting after the
    // accounts' own hashing, on a loaded machine: `docs/security.md`,
    // "Password storage"), then the rest fill the queue (each takes a
    // good second: the queue stays full for at least that long).
    let mut heavy = vec![slow_login()];
    crate::support::until("the first slow login never started hashing", || {
        hasher.running() == 1
    })
    .await;
    heavy.extend((0..hasher.queue_capacity()).map(|_| slow_login()));
    crate::support::until("the slow logins never filled the queue", || {
        hasher.queue_depth() == hasher.queue_capacity() as u64
    })
    .await;
    for password in ["right", "wrong"] {
        let r = login(&app, "hana", password).await;
        r.assert_error(503, "temporarily_unavailable");
        assert_eq!(r.header("retry-after"), Some("1"), "{password}");
    }
    for h in heavy {
        h.await.unwrap().assert_error(400, "invalid_grant");
    }
    login(&app, "hana", "right").await.pair();
    login(&app, "hana", "wrong")
        .await
        .assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn one_users_failures_never_lock_out_another_user_at_the_same_address() {
    let app = spawn_app(DEFAULT_LIMITS).await;
    new_account(&app, "alice", "right", &[], &[]).await;
    new_account(&app, "bob", "right", &[], &[]).await;
    let shared = crate::support::http_from("127.0.9.1".parse().unwrap());
    for _ in 0..5 {
        login_from(&shared, &app, "alice", "wrong")
            .await
            .assert_error(400, "invalid_grant");
    }
    // alice is locked out (per username), from anywhere...
    assert_eq!(
        login_from(&shared, &app, "alice", "right").await.status,
        429
    );
    let elsewhere = crate::support::http_from("127.0.9.2".parse().unwrap());
    assert_eq!(
        login_from(&elsewhere, &app, "alice", "right").await.status,
        429
    );
    // ... but bob, behind the same address, is not.
    login_from(&shared, &app, "bob", "right").await.pair();
}

#[tokio::test]
async fn an_address_is_throttled_after_max_failures_per_ip() {
    let app = spawn_app(DEFAULT_LIMITS).await;
    new_account(&app, "carl", "right", &[], &[]).await;
    let limit = app.state.config.login.max_failures_per_ip;
    assert_eq!(limit, 50, "the default");
    let from = crate::support::http_from("127.0.9.3".parse().unwrap());
    // One failure per username: no username limit is reached.
    for i in 0..limit {
        login_from(&from, &app, &format!("guess{i}"), "x")
            .await
            .assert_error(400, "invalid_grant");
    }
    let r = login_from(&from, &app, "carl", "right").await;
    assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.header("retry-after").is_some());
    // Another address is not affected.
    let other = crate::support::http_from("127.0.9.4".parse().unwrap());
    login_from(&other, &app, "carl", "right").await.pair();
}

// ---------------------------------------------------------------------------
// Rehash on login

#[tokio::test]
async fn a_login_rehashes_a_password_made_with_other_parameters() {
    let app = spawn_app(CONFIG).await;
    let id = new_account(&app, "olaf", "s3cret", &[], &[]).await;
    // One of the other equivalent parameter sets (m=47104 KiB, t=1).
    let old = store_hash_made_with(&app, "olaf", "s3cret", 47104, 1).await;
    let stored = || async {
        let conn = app.db.pool().get().await.unwrap();
        conn.query_one(
            "SELECT password FROM accounts WHERE account_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get::<_, String>(0)
    };
    login(&app, "olaf", "wrong")
        .await
        .assert_error(400, "invalid_grant");
    assert_eq!(stored().await, old, "a failed login changes nothing");
    login(&app, "olaf", "s3cret").await.pair();
    let now = stored().await;
    assert_ne!(now, old);
    assert!(now.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{now}");
    // The same password, the current parameters.
    login(&app, "olaf", "s3cret").await.pair();
    assert_eq!(stored().await, now, "a current hash is left alone");
    login(&app, "olaf", "wrong")
        .await
        .assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn a_rehash_never_overwrites_a_password_changed_meanwhile() {
    let app = spawn_app(CONFIG).await;
    let id = new_account(&app, "oona", "old", &[], &[]).await;
    let old = store_hash_made_with(&app, "oona", "old", 12288, 3).await;
    // A login verified `old`; the password changes before its rehash lands.
    store::set_password(
        &app.state.db,
        &app.state.oauth.hasher,
        id,
        Password::new("new"),
    )
    .await
    .unwrap();
    let stored = store::upgrade_password_hash(
        &app.state.db,
        &app.state.oauth.hasher,
        id,
        &old,
        Password::new("old"),
    )
    .await
    .unwrap();
    assert!(!stored, "the compare-and-swap on the old hash fails");
    login(&app, "oona", "old")
        .await
        .assert_error(400, "invalid_grant");
    login(&app, "oona", "new").await.pair();
}
