//! Section O: the token, revoke and introspect endpoints. Most of these
//! cases are proved where the endpoints are tested
//! (`tests/integration/oauth*.rs`, `clients_tokens.rs`; see the table in
//! `docs/security.md`); the ones below are the cases proved here.

use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use scopegate::accounts::store::{create_scope, StoreError};
use scopegate::clients::store::{self, NewClient};

use crate::support::{http, insert_token, send, spawn_app, Resp, TestApp, MARGIN};

/// One introspection of `token`, authenticated by `auth` (an
/// `Authorization` value).
async fn introspect(app: &TestApp, auth: &str, token: &str) -> Resp {
    send(
        http()
            .post(app.url("/oauth/introspect"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(AUTHORIZATION, auth)
            .body(format!("token={token}")),
    )
    .await
}

/// A confidential client holding `scopegate:introspect`: its HTTP Basic
/// `Authorization` value.
async fn resource_server(app: &TestApp, name: &str) -> String {
    use base64::Engine;
    match create_scope(
        &app.state.db,
        "scopegate:introspect",
        "scopegate:introspect",
        None,
    )
    .await
    {
        Ok(_) | Err(StoreError::DuplicateScope(_) | StoreError::DuplicateScopeName(_)) => {}
        Err(e) => panic!("{e}"),
    }
    let created = store::create(
        &app.state.db,
        NewClient {
            name: name.into(),
            scopes: vec!["scopegate:introspect".into()],
            redirect_uris: vec![],
            public: false,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let secret = created.secret.expect("a confidential client has a secret");
    let pair = format!("{}:{}", created.client.client_id, secret.expose());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// `oauth.introspections_per_caller`: 2 per second, burst 4.
const RATE: u32 = 2;

/// Introspect as `auth`, which has made `before` introspections just now,
/// until refused (bounded): the number of 200s before the 429, and the 429.
async fn until_refused(app: &TestApp, auth: &str, token: &str, before: u32) -> (u32, Resp) {
    let start = Instant::now();
    let mut allowed = 0;
    loop {
        let r = introspect(app, auth, token).await;
        if r.status != 200 {
            // The burst, plus what the rate refilled meanwhile.
            let refilled = (start.elapsed().as_secs_f64() * f64::from(RATE)).ceil() as u32;
            assert!(
                before + allowed >= 2 * RATE && before + allowed <= 2 * RATE + refilled,
                "{allowed} allowed in {:?}",
                start.elapsed()
            );
            return (allowed, r);
        }
        assert_eq!(r.json()["active"], true);
        allowed += 1;
        assert!(allowed <= 10 * RATE, "never refused");
    }
}

/// Case O12: introspection as a token oracle at a high rate. Each
/// authenticated caller (the account behind a Bearer token, or a client)
/// gets `introspections_per_caller` per second, burst twice that; over it
/// 429 `too_many_requests` + `Retry-After`, no-store; another caller is
/// unaffected; the caller gets through again after the window.
#[tokio::test]
async fn o12_introspection_is_rate_limited_per_caller() {
    let app = spawn_app(&format!("[oauth]\nintrospections_per_caller = {RATE}\n")).await;
    let target = insert_token(&app.db, "victim", &["api"], 3600).await;
    let a = insert_token(&app.db, "rs-a", &["scopegate:introspect"], 3600).await;
    let a2 = insert_token(&app.db, "rs-a", &["scopegate:introspect"], 3600).await;
    let b = insert_token(&app.db, "rs-b", &["scopegate:introspect"], 3600).await;
    let client = resource_server(&app, "rs-client").await;

    let (_, r) = until_refused(&app, &format!("Bearer {a}"), &target, 0).await;
    let refused_at = Instant::now();
    r.assert_error(429, "too_many_requests");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    // One request's worth of the rate, rounded up to whole seconds.
    assert_eq!(retry, 1);
    // The limit is the caller's, not the token's: another token of the
    // same account is refused too...
    introspect(&app, &format!("Bearer {a2}"), &target)
        .await
        .assert_error(429, "too_many_requests");
    // ...while another account, and a client, are unaffected.
    let r = introspect(&app, &format!("Bearer {b}"), &target).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["active"], true);
    let r = introspect(&app, &client, &target).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["active"], true);
    // A client is limited as itself.
    let (_, r) = until_refused(&app, &client, &target, 1).await;
    r.assert_error(429, "too_many_requests");

    // After Retry-After the first caller gets through again.
    let wait = Duration::from_secs(retry);
    tokio::time::sleep(wait.saturating_sub(refused_at.elapsed())).await;
    let r = introspect(&app, &format!("Bearer {a}"), &target).await;
    assert_eq!(r.status, 200, "refused after {:?}", refused_at.elapsed());
    assert!(refused_at.elapsed() < wait + MARGIN);
}

/// A password grant with a raw form body.
async fn token_form(app: &TestApp, body: &str) -> Resp {
    send(
        http()
            .post(app.url("/oauth/token"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.to_owned()),
    )
    .await
}

/// Cases O3, O16: SQL metacharacters and NUL in a username (percent-
/// encoded, as a form carries them) are only wrong usernames: the same
/// `400 invalid_grant` as any unknown user, never a 500 or a 503 (queries
/// are parameterized), and the tables are intact afterwards. A `%00` in a
/// password decodes to NUL and is only a wrong password.
#[tokio::test]
async fn o03_injection_and_nul_are_only_wrong_usernames() {
    let app = spawn_app("[login]\nmax_failures_per_ip = 1000\n").await;
    insert_token(&app.db, "admin", &["api"], 3600).await;
    let unknown = token_form(&app, "grant_type=password&username=nobody&password=x").await;
    unknown.assert_error(400, "invalid_grant");
    for username in [
        "%27%20OR%201%3D1--",
        "admin%27--",
        "admin%27%20--%20",
        "x%27%3B%20DROP%20TABLE%20accounts%3B--",
        "admin%00",
        "%00",
        "admin%5C",
        "admin%22",
    ] {
        let r = token_form(
            &app,
            &format!("grant_type=password&username={username}&password=x"),
        )
        .await;
        r.assert_error(400, "invalid_grant");
        assert_eq!(r.body, unknown.body, "{username}");
    }
    let r = token_form(&app, "grant_type=password&username=admin&password=a%00b").await;
    r.assert_error(400, "invalid_grant");
    assert_eq!(r.body, unknown.body);
    let conn = app.db.pool().get().await.unwrap();
    let accounts: i64 = conn
        .query_one(
            "SELECT count(*) FROM accounts WHERE username = 'admin'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(accounts, 1);
}
