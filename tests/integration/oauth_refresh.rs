//! `POST /oauth/token` with `grant_type=refresh_token`: rotation, reuse
//! detection (the family dies), the grace window, races, expiry, scope
//! narrowing, and token kinds.

use std::collections::HashSet;

use reqwest::header::CONTENT_TYPE;

use crate::oauth::{
    db_exec, encode, hash_hex, is_live, login, login_scope, new_account, post_form, refresh,
    userinfo, CONFIG, FORM,
};
use crate::support::{http, send, spawn_app, TestApp};

#[tokio::test]
async fn refresh_rotates_and_the_old_token_stops_working() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "erin", "pw", &["orders:read"], &[]).await;
    let (a1, r1) = login(&app, "erin", "pw").await.pair();
    let resp = refresh(&app, &r1).await;
    resp.assert_no_store();
    assert_eq!(resp.json()["scope"], "orders:read");
    assert_eq!(resp.json()["token_type"], "Bearer");
    let (a2, r2) = resp.pair();
    assert_ne!(r1, r2);
    assert_ne!(a1, a2);
    assert!(
        !is_live(&app, &r1).await,
        "the presented refresh token is dead after rotation"
    );
    assert!(is_live(&app, &r2).await);
    assert_eq!(userinfo(&app, &a2).await.status, 200);
    // Each rotation joins the family with its parent.
    let conn = app.db.pool().get().await.unwrap();
    let row = conn
        .query_one(
            "SELECT c.family_id = p.family_id, c.parent_id = p.refresh_token_id, p.successor_id = c.refresh_token_id,
                    p.rotated_at IS NOT NULL, p.successor_sealed IS NULL
               FROM refresh_tokens c, refresh_tokens p
              WHERE c.refresh_token = $1 AND p.refresh_token = $2",
            &[&hash_hex(&r2), &hash_hex(&r1)],
        )
        .await
        .unwrap();
    for i in 0..5 {
        assert!(row.get::<_, bool>(i), "column {i}");
    }
    // Presenting the old one again is refused.
    refresh(&app, &r1).await.assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_revokes_the_whole_family() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "frank", "pw", &["orders:read"], &[]).await;
    let (a1, r1) = login(&app, "frank", "pw").await.pair();
    let (_a2, r2) = refresh(&app, &r1).await.pair();
    let (a3, r3) = refresh(&app, &r2).await.pair();
    // Another login of the same account is another family.
    let (other_access, other_refresh) = login(&app, "frank", "pw").await.pair();
    // The newest access token works, and is cached by this replica now.
    assert_eq!(userinfo(&app, &a3).await.status, 200);
    assert_eq!(
        send(http().get(app.url("/api/orders")).bearer_auth(&a3))
            .await
            .status,
        200
    );

    refresh(&app, &r1).await.assert_error(400, "invalid_grant");

    // Everything descended from that login is dead, at once, on this replica.
    assert_eq!(userinfo(&app, &a3).await.status, 401);
    let proxied = send(http().get(app.url("/api/orders")).bearer_auth(&a3)).await;
    assert_eq!(proxied.status, 401);
    assert_eq!(userinfo(&app, &a1).await.status, 401);
    refresh(&app, &r3).await.assert_error(400, "invalid_grant");
    assert!(!is_live(&app, &r3).await);
    // The other family is untouched.
    assert_eq!(userinfo(&app, &other_access).await.status, 200);
    refresh(&app, &other_refresh).await.pair();
}

#[tokio::test]
async fn the_grace_window_hands_a_duplicate_refresh_the_same_pair() {
    let app = spawn_app(&format!(
        "[tokens]\nrefresh_reuse_grace_secs = 30\n{CONFIG}"
    ))
    .await;
    new_account(&app, "gina", "pw", &["orders:read"], &[]).await;
    let (_, r1) = login(&app, "gina", "pw").await.pair();
    let first = refresh(&app, &r1).await;
    let second = refresh(&app, &r1).await;
    assert_eq!(
        first.pair(),
        second.pair(),
        "a duplicate within the window gets the same pair"
    );
    assert_eq!(second.json()["scope"], "orders:read");
    let (a2, r2) = first.pair();
    assert_eq!(userinfo(&app, &a2).await.status, 200);
    assert!(is_live(&app, &r2).await);

    // The sealed pair in the database is not readable as tokens.
    let conn = app.db.pool().get().await.unwrap();
    let sealed: Vec<u8> = conn
        .query_one(
            "SELECT successor_sealed FROM refresh_tokens WHERE refresh_token = $1",
            &[&hash_hex(&r1)],
        )
        .await
        .unwrap()
        .get(0);
    let text = String::from_utf8_lossy(&sealed);
    assert!(!text.contains(&a2[4..]) && !text.contains(&r2[4..]));

    // After the window, a duplicate is a replay: the family dies.
    db_exec(
        &app,
        "UPDATE refresh_tokens SET rotated_at = rotated_at - 31 WHERE refresh_token = $1",
        &[&hash_hex(&r1)],
    )
    .await;
    refresh(&app, &r1).await.assert_error(400, "invalid_grant");
    assert_eq!(userinfo(&app, &a2).await.status, 401);
    assert!(!is_live(&app, &r2).await);
    // ... and the sealed pair is erased with it.
    let left: i64 = conn
        .query_one(
            "SELECT count(*) FROM refresh_tokens WHERE successor_sealed IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

#[tokio::test]
async fn the_grace_window_never_replays_a_pair_whose_refresh_token_was_rotated() {
    let app = spawn_app(&format!(
        "[tokens]\nrefresh_reuse_grace_secs = 30\n{CONFIG}"
    ))
    .await;
    new_account(&app, "gus", "pw", &["orders:read"], &[]).await;
    let (_, r1) = login(&app, "gus", "pw").await.pair();
    let (a2, r2) = refresh(&app, &r1).await.pair();
    let (a3, r3) = refresh(&app, &r2).await.pair();
    // r1's successor (r2) is used up: presenting r1 again, even within the
    // window, is reuse and the family dies.
    refresh(&app, &r1).await.assert_error(400, "invalid_grant");
    for a in [&a2, &a3] {
        assert_eq!(userinfo(&app, a).await.status, 401);
    }
    for r in [&r2, &r3] {
        assert!(!is_live(&app, r).await);
        refresh(&app, r).await.assert_error(400, "invalid_grant");
    }
}

#[tokio::test]
async fn sealed_pairs_are_erased_after_the_window() {
    let app = spawn_app(&format!("[tokens]\nrefresh_reuse_grace_secs = 5\n{CONFIG}")).await;
    new_account(&app, "hank", "pw", &[], &[]).await;
    let (_, r1) = login(&app, "hank", "pw").await.pair();
    refresh(&app, &r1).await.pair();
    db_exec(
        &app,
        "UPDATE refresh_tokens SET rotated_at = rotated_at - 10",
        &[],
    )
    .await;
    let erased =
        scopegate::tokens::rotate::sweep_sealed(&app.state.db, std::time::Duration::from_secs(5))
            .await
            .unwrap();
    assert_eq!(erased, 1);
}

/// 20 parallel refreshes with one token; returns the distinct refresh
/// tokens handed out and how many requests succeeded.
async fn race(app: &TestApp, token: &str) -> (HashSet<String>, usize) {
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let url = app.url("/oauth/token");
        let body = encode(&[("grant_type", "refresh_token"), ("refresh_token", token)]);
        tasks.push(tokio::spawn(async move {
            send(http().post(url).header(CONTENT_TYPE, FORM).body(body)).await
        }));
    }
    let mut pairs = HashSet::new();
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            200 => {
                ok += 1;
                pairs.insert(r.pair().1);
            }
            400 => r.assert_error(400, "invalid_grant"),
            other => panic!("unexpected {other}: {}", String::from_utf8_lossy(&r.body)),
        }
    }
    (pairs, ok)
}

async fn live_refresh_tokens(app: &TestApp) -> i64 {
    let conn = app.db.pool().get().await.unwrap();
    conn.query_one(
        "SELECT count(*) FROM refresh_tokens WHERE active AND rotated_at IS NULL",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_never_leave_two_live_pairs() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "ivan", "pw", &[], &[]).await;
    let (_, r1) = login(&app, "ivan", "pw").await.pair();
    let (pairs, ok) = race(&app, &r1).await;
    // Without a grace window, the first rotation wins and the duplicates
    // are replays: the family (including the winner's pair) is revoked.
    assert_eq!(ok, 1);
    let mut live = 0;
    for rt in &pairs {
        live += usize::from(is_live(&app, rt).await);
    }
    assert_eq!(live, 0, "reuse leaves no live member of the family");
    assert_eq!(live_refresh_tokens(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_within_the_grace_window_share_one_pair() {
    let app = spawn_app(&format!(
        "[tokens]\nrefresh_reuse_grace_secs = 30\n{CONFIG}"
    ))
    .await;
    new_account(&app, "judy", "pw", &[], &[]).await;
    let (_, r1) = login(&app, "judy", "pw").await.pair();
    let (pairs, ok) = race(&app, &r1).await;
    assert_eq!(ok, 20, "every duplicate within the window gets the pair");
    assert_eq!(pairs.len(), 1, "one pair, not several");
    assert!(is_live(&app, pairs.iter().next().unwrap()).await);
    assert_eq!(live_refresh_tokens(&app).await, 1);
}

#[tokio::test]
async fn expired_refresh_tokens_are_rejected() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "kim", "pw", &[], &[]).await;
    let (access, r1) = login(&app, "kim", "pw").await.pair();
    db_exec(
        &app,
        "UPDATE refresh_tokens SET expires = $2 WHERE refresh_token = $1",
        &[&hash_hex(&r1), &(scopegate::db::unix_now() - 1)],
    )
    .await;
    refresh(&app, &r1).await.assert_error(400, "invalid_grant");
    assert!(!is_live(&app, &r1).await);
    // Expiry is not a replay: the access token issued with it is untouched.
    assert_eq!(userinfo(&app, &access).await.status, 200);
}

#[tokio::test]
async fn refresh_scope_may_only_narrow() {
    let app = spawn_app(CONFIG).await;
    new_account(
        &app,
        "lena",
        "pw",
        &["orders:read", "orders:write", "extra"],
        &[],
    )
    .await;
    let (_, r1) = login_scope(&app, "lena", "pw", "orders:read orders:write")
        .await
        .pair();
    let wide = post_form(
        &app,
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r1),
            ("scope", "orders:read extra"),
        ],
    )
    .await;
    wide.assert_error(400, "invalid_scope");
    // A refused widening does not consume the token.
    let narrow = post_form(
        &app,
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r1),
            ("scope", "orders:read"),
        ],
    )
    .await;
    assert_eq!(narrow.json()["scope"], "orders:read");
    let (_, r2) = narrow.pair();
    // Narrowed for good: the next refresh cannot widen back.
    let back = post_form(
        &app,
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r2),
            ("scope", "orders:write"),
        ],
    )
    .await;
    back.assert_error(400, "invalid_scope");
    assert_eq!(refresh(&app, &r2).await.json()["scope"], "orders:read");
}

#[tokio::test]
async fn access_and_refresh_tokens_are_not_interchangeable() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "mike", "pw", &["orders:read"], &[]).await;
    let (access, refresh_token) = login(&app, "mike", "pw").await.pair();
    refresh(&app, &access)
        .await
        .assert_error(400, "invalid_grant");
    // A refresh token with the access prefix swapped in is unknown, too.
    refresh(&app, &refresh_token.replacen("sgr_", "sga_", 1))
        .await
        .assert_error(400, "invalid_grant");
    assert_eq!(userinfo(&app, &refresh_token).await.status, 401);
    let proxied = send(
        http()
            .get(app.url("/api/orders"))
            .bearer_auth(&refresh_token),
    )
    .await;
    assert_eq!(proxied.status, 401);
    // Both still work for what they are.
    assert_eq!(userinfo(&app, &access).await.status, 200);
    refresh(&app, &refresh_token).await.pair();
}
