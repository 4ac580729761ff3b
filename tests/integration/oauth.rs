//! `POST /oauth/token` against the real server and Postgres: the password
//! grant, scopes, form strictness, what the database stores, outages; and
//! the helpers the other `oauth_*` test modules share. (Throttling and
//! rehash on login: `oauth_throttle`; refresh: `oauth_refresh`; revoke, introspect, userinfo and password
//! change: `oauth_endpoints`; measurements: `benches/issuer.rs`.)

use reqwest::header::CONTENT_TYPE;
use scopegate::accounts::store::{self, NewAccount, StoreError};
use scopegate::accounts::Password;
use scopegate::testing::{FaultProxy, TestDb};
use serde_json::Value;

use crate::support::{http, insert_token, send, spawn_app, spawn_app_via, Resp, TestApp};

pub use crate::support::{encode, FORM, OAUTH_CONFIG as CONFIG};

/// POST a raw body with a content type.
pub async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Resp {
    let mut req = http().post(app.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header(CONTENT_TYPE, ct);
    }
    send(req).await
}

pub async fn post_form(app: &TestApp, path: &str, params: &[(&str, &str)]) -> Resp {
    post_raw(app, path, Some(FORM), encode(params)).await
}

/// POST a form with `client` (e.g. one bound to another source address,
/// [`crate::support::http_from`]).
pub async fn post_form_from(
    client: &reqwest::Client,
    app: &TestApp,
    path: &str,
    params: &[(&str, &str)],
) -> Resp {
    send(
        client
            .post(app.url(path))
            .header(CONTENT_TYPE, FORM)
            .body(encode(params)),
    )
    .await
}

pub async fn login(app: &TestApp, username: &str, password: &str) -> Resp {
    login_from(&http(), app, username, password).await
}

/// A password login sent with `client`.
pub async fn login_from(
    client: &reqwest::Client,
    app: &TestApp,
    username: &str,
    password: &str,
) -> Resp {
    let params = [
        ("grant_type", "password"),
        ("username", username),
        ("password", password),
    ];
    post_form_from(client, app, "/oauth/token", &params).await
}

pub async fn login_scope(app: &TestApp, username: &str, password: &str, scope: &str) -> Resp {
    let params = [
        ("grant_type", "password"),
        ("username", username),
        ("password", password),
        ("scope", scope),
    ];
    post_form(app, "/oauth/token", &params).await
}

pub async fn refresh(app: &TestApp, refresh_token: &str) -> Resp {
    post_form(
        app,
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

pub async fn userinfo(app: &TestApp, access_token: &str) -> Resp {
    send(
        http()
            .get(app.url("/oauth/userinfo"))
            .bearer_auth(access_token),
    )
    .await
}

/// An introspection by a caller holding `scopegate:introspect`.
pub async fn introspect(app: &TestApp, token: &str) -> Value {
    let caller = insert_token(&app.db, "inspector", &["scopegate:introspect"], 3600).await;
    let r = send(
        http()
            .post(app.url("/oauth/introspect"))
            .bearer_auth(caller)
            .header(CONTENT_TYPE, FORM)
            .body(encode(&[("token", token)])),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.assert_no_store();
    r.json()
}

pub async fn is_live(app: &TestApp, token: &str) -> bool {
    introspect(app, token).await["active"] == true
}

/// Create `scope` if it does not exist yet.
pub async fn ensure_scope(app: &TestApp, value: &str) {
    match store::create_scope(&app.state.db, value, value, None).await {
        Ok(_) | Err(StoreError::DuplicateScope(_) | StoreError::DuplicateScopeName(_)) => {}
        Err(e) => panic!("{e}"),
    }
}

/// Create an account (and any missing scopes) through the store.
pub async fn new_account(
    app: &TestApp,
    username: &str,
    password: &str,
    scopes: &[&str],
    roles: &[&str],
) -> i32 {
    for s in scopes {
        ensure_scope(app, s).await;
    }
    store::create_account(
        &app.state.db,
        &app.state.oauth.hasher,
        NewAccount {
            username: username.into(),
            password: Password::new(password),
            first_name: Some("Test".into()),
            last_name: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
        },
    )
    .await
    .unwrap()
    .id
}

/// Store `password` for the account named `username`, hashed with the
/// argon2id parameters `m_kib`/`t` instead of the current ones (as an
/// older configuration left it); the stored PHC string.
pub async fn store_hash_made_with(
    app: &TestApp,
    username: &str,
    password: &str,
    m_kib: u32,
    t: u32,
) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let phc = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(m_kib, t, 1, None).unwrap(),
    )
    .hash_password(
        password.as_bytes(),
        &SaltString::encode_b64(b"0123456789abcdef").unwrap(),
    )
    .unwrap()
    .to_string();
    let changed = db_exec(
        app,
        "UPDATE accounts SET password = $2 WHERE username = $1",
        &[&username, &phc],
    )
    .await;
    assert_eq!(changed, 1, "no account {username}");
    phc
}

pub async fn db_exec(
    app: &TestApp,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> u64 {
    app.db
        .pool()
        .get()
        .await
        .unwrap()
        .execute(sql, params)
        .await
        .unwrap()
}

pub fn hash_hex(token: &str) -> String {
    scopegate::tokens::hash_hex(&scopegate::tokens::hash(token))
}

// ---------------------------------------------------------------------------
// Password grant

#[tokio::test]
async fn password_grant_issues_a_working_bearer_pair() {
    let app = spawn_app(CONFIG).await;
    new_account(
        &app,
        "alice",
        "s3cret pass",
        &["orders:read", "orders:write"],
        &[],
    )
    .await;
    let r = login(&app, "alice", "s3cret pass").await;
    r.assert_no_store();
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let j = r.json();
    assert_eq!(j["token_type"], "Bearer");
    assert_eq!(j["expires_in"], 3600);
    assert_eq!(j["scope"], "orders:read orders:write");
    let (access, refresh_token) = r.pair();
    assert!(access.starts_with("sga_") && refresh_token.starts_with("sgr_"));

    // The token works through the gateway, with the identity forwarded.
    let seen = send(http().get(app.url("/api/orders/1")).bearer_auth(&access)).await;
    assert_eq!(seen.status, 200, "{}", String::from_utf8_lossy(&seen.body));
    assert_eq!(seen.json()["headers"]["x-authenticated-user"][0], "alice");
    // The database holds only hashes, linked as the data model says.
    let conn = app.db.pool().get().await.unwrap();
    let row = conn
        .query_one(
            "SELECT count(*) FROM access_tokens t
               JOIN account_tokens at ON at.token_id = t.token_id
               JOIN refresh_token_tokens rtt ON rtt.access_token_id = t.token_id
               JOIN refresh_tokens r ON r.refresh_token_id = rtt.refresh_token_id
               JOIN account_refresh_tokens ar ON ar.refresh_token_id = r.refresh_token_id
              WHERE t.token = $1 AND r.refresh_token = $2 AND r.family_id = r.refresh_token_id
                AND ar.account_id = at.account_id",
            &[&hash_hex(&access), &hash_hex(&refresh_token)],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same_and_both_hash() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "alice", "right", &[], &[]).await;
    let hasher = &app.state.oauth.hasher;

    let before = hasher.computed();
    let wrong = login(&app, "alice", "wrong").await;
    assert_eq!(hasher.computed(), before + 1);
    let unknown = login(&app, "mallory", "wrong").await;
    assert_eq!(
        hasher.computed(),
        before + 2,
        "unknown users are verified against a dummy hash"
    );

    wrong.assert_error(400, "invalid_grant");
    unknown.assert_error(400, "invalid_grant");
    assert_eq!(wrong.body, unknown.body);
    let names = |r: &Resp| {
        let mut v: Vec<String> = r
            .headers
            .iter()
            .map(|(k, _)| k.to_owned())
            .filter(|k| k != "date")
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&wrong), names(&unknown));

    // SQL in the username is just a wrong username.
    login(&app, "' OR 1=1--", "x")
        .await
        .assert_error(400, "invalid_grant");
    login(&app, "alice'--", "x")
        .await
        .assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn inactive_accounts_cannot_log_in() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "bob", "pw", &[], &[]).await;
    store::set_active(&app.state.db, "bob", false)
        .await
        .unwrap();
    let before = app.state.oauth.hasher.computed();
    let r = login(&app, "bob", "pw").await;
    r.assert_error(400, "invalid_grant");
    assert_eq!(r.body, login(&app, "nobody", "pw").await.body);
    assert_eq!(
        app.state.oauth.hasher.computed(),
        before + 2,
        "same work as any other login"
    );
}

#[tokio::test]
async fn over_long_passwords_are_refused_before_hashing() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "carol", &"p".repeat(1024), &[], &[]).await;
    login(&app, "carol", &"p".repeat(1024)).await.pair();
    let before = app.state.oauth.hasher.computed();
    let r = login(&app, "carol", &"p".repeat(1025)).await;
    r.assert_error(400, "invalid_grant");
    let r = login(&app, "carol", &"p".repeat(60_000)).await;
    r.assert_error(400, "invalid_grant");
    assert_eq!(
        app.state.oauth.hasher.computed(),
        before,
        "no argon2 work for over-long passwords"
    );
}

#[tokio::test]
async fn usernames_are_normalized_on_login() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "Alice", "pw", &[], &[]).await;
    for variant in ["alice", "ALICE", "ＡＬＩＣＥ", "ａｌｉｃｅ"] {
        let r = login(&app, variant, "pw").await;
        assert_eq!(r.status, 200, "{variant}");
    }
    login(&app, "alice\u{200b}", "pw")
        .await
        .assert_error(400, "invalid_grant");
    login(&app, "аlice", "pw")
        .await
        .assert_error(400, "invalid_grant"); // Cyrillic а
}

// ---------------------------------------------------------------------------
// Scopes

#[tokio::test]
async fn requested_scope_must_be_a_subset_of_own_and_role_scopes() {
    let app = spawn_app(CONFIG).await;
    ensure_scope(&app, "reports:read").await;
    ensure_scope(&app, "reports:export").await;
    store::create_role(
        &app.state.db,
        "analyst",
        None,
        &["reports:read".into(), "reports:export".into()],
    )
    .await
    .unwrap();
    new_account(&app, "dana", "pw", &["orders:read"], &["analyst"]).await;

    // Absent: everything, including what the role grants.
    let r = login(&app, "dana", "pw").await;
    assert_eq!(r.json()["scope"], "orders:read reports:export reports:read");
    // A subset, in any order, with repeats and extra spaces.
    let r = login_scope(&app, "dana", "pw", "reports:read  orders:read reports:read").await;
    assert_eq!(r.json()["scope"], "orders:read reports:read");
    let (access, _) = r.pair();
    assert_eq!(
        introspect(&app, &access).await["scope"],
        "orders:read reports:read"
    );
    // A role scope alone.
    assert_eq!(
        login_scope(&app, "dana", "pw", "reports:export")
            .await
            .json()["scope"],
        "reports:export"
    );
    // More than granted, unknown, wildcard-ish or malformed: invalid_scope.
    for bad in [
        "orders:read orders:write",
        "scopegate:admin",
        "orders:*",
        "ORDERS:READ",
        "nope",
        "a\"b",
    ] {
        login_scope(&app, "dana", "pw", bad)
            .await
            .assert_error(400, "invalid_scope");
    }
    // invalid_scope only after the password: a wrong one is still invalid_grant.
    login_scope(&app, "dana", "bad", "nope")
        .await
        .assert_error(400, "invalid_grant");
}

// ---------------------------------------------------------------------------
// The request itself

#[tokio::test]
async fn every_token_response_is_no_store() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "pat", "pw", &[], &[]).await;
    let mut responses = vec![
        login(&app, "pat", "pw").await,
        login(&app, "pat", "bad").await,
        post_raw(&app, "/oauth/token", Some("application/json"), "{}").await,
        post_form(
            &app,
            "/oauth/token",
            &[("grant_type", "client_credentials")],
        )
        .await,
        send(http().get(app.url("/oauth/token"))).await,
        post_raw(&app, "/oauth/token", Some(FORM), vec![b'a'; 70_000]).await,
        post_form(&app, "/oauth/nothing", &[]).await,
    ];
    responses.push(post_form(&app, "/oauth/revoke", &[("token", "x")]).await);
    for r in &responses {
        r.assert_no_store();
    }
}

#[tokio::test]
async fn only_post_is_allowed() {
    let app = spawn_app(CONFIG).await;
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let r = send(http().request(method.clone(), app.url("/oauth/token"))).await;
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("POST"));
        r.assert_no_store();
    }
}

#[tokio::test]
async fn the_body_must_be_a_strict_form() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "quinn", "a+b c", &[], &[]).await;
    let good = "grant_type=password&username=quinn&password=a%2Bb+c";
    assert_eq!(
        post_raw(&app, "/oauth/token", Some(FORM), good)
            .await
            .status,
        200
    );
    assert_eq!(
        post_raw(
            &app,
            "/oauth/token",
            Some("Application/X-WWW-Form-URLencoded; charset=UTF-8"),
            good
        )
        .await
        .status,
        200
    );
    for (ct, body) in [
        (Some("application/json"), r#"{"grant_type":"password"}"#),
        (Some("text/plain"), good),
        (Some("multipart/form-data; boundary=x"), good),
        (None, good),
    ] {
        post_raw(&app, "/oauth/token", ct, body)
            .await
            .assert_error(400, "invalid_request");
    }
    for body in [
        "grant_type=password&grant_type=password&username=quinn&password=x",
        "grant_type=password&username=quinn&username=quinn&password=x",
        "grant_type=password&username=quinn&password=%zz",
        "grant_type=password&username=quinn&password=%C3",
        "grant_type=password&username=quinn",
        "grant_type=password&password=x",
        "grant_type=password&username=&password=x",
        "grant_type=refresh_token",
        "username=quinn&password=x",
    ] {
        post_raw(&app, "/oauth/token", Some(FORM), body)
            .await
            .assert_error(400, "invalid_request");
    }
    for grant in [
        "implicit",
        "PASSWORD",
        "urn:ietf:params:oauth:grant-type:device_code",
    ] {
        post_form(
            &app,
            "/oauth/token",
            &[
                ("grant_type", grant),
                ("username", "quinn"),
                ("password", "x"),
            ],
        )
        .await
        .assert_error(400, "unsupported_grant_type");
    }
    let big = post_raw(
        &app,
        "/oauth/token",
        Some(FORM),
        format!("{good}&pad={}", "a".repeat(70_000)),
    )
    .await;
    assert_eq!(big.status, 413);
}

// ---------------------------------------------------------------------------
// Storage and outages

#[tokio::test]
async fn the_database_never_holds_a_token() {
    let app = spawn_app(&format!(
        "[tokens]\nrefresh_reuse_grace_secs = 30\n{CONFIG}"
    ))
    .await;
    new_account(&app, "rita", "pw", &["orders:read"], &[]).await;
    let mut tokens = Vec::new();
    let (a1, r1) = login(&app, "rita", "pw").await.pair();
    let (a2, r2) = refresh(&app, &r1).await.pair(); // leaves a sealed successor
    tokens.extend([a1, r1, a2, r2]);
    let conn = app.db.pool().get().await.unwrap();
    let columns = conn
        .query(
            "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns
              WHERE table_schema = 'public'
                AND data_type IN ('text', 'character varying', 'character', 'bytea', 'json', 'jsonb')",
            &[],
        )
        .await
        .unwrap();
    assert!(columns.len() >= 8, "expected the token and account columns");
    let mut scanned = 0;
    for c in &columns {
        let (table, column, ty): (String, String, String) = (c.get(0), c.get(1), c.get(2));
        for t in &tokens {
            // The whole token and its random part alone.
            for needle in [t.as_str(), &t[4..]] {
                let sql = if ty == "bytea" {
                    format!("SELECT count(*) FROM \"{table}\" WHERE position(convert_to($1, 'UTF8') in \"{column}\") > 0")
                } else {
                    format!("SELECT count(*) FROM \"{table}\" WHERE position($1 in \"{column}\"::text) > 0")
                };
                let n: i64 = conn.query_one(&sql, &[&needle]).await.unwrap().get(0);
                assert_eq!(n, 0, "{table}.{column} holds a token");
                scanned += 1;
            }
        }
    }
    assert!(scanned > 0);
    // What is there is the SHA-256.
    let n: i64 = conn
        .query_one(
            "SELECT count(*) FROM access_tokens WHERE token = $1",
            &[&hash_hex(&tokens[2])],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn an_unreachable_database_is_503_with_retry_after() {
    let db = TestDb::new().await;
    let proxy = FaultProxy::to_db(&db).await;
    let url = db.url_via(&proxy);
    let app = spawn_app_via(CONFIG, db, url).await;
    new_account(&app, "sam", "pw", &[], &[]).await;
    let (access, refresh_token) = login(&app, "sam", "pw").await.pair();

    proxy.cut();
    let before = app.state.oauth.hasher.computed();
    for r in [
        login(&app, "sam", "pw").await,
        refresh(&app, &refresh_token).await,
        post_form(&app, "/oauth/revoke", &[("token", &access)]).await,
        post_form(&app, "/oauth/revoke", &[("token", &refresh_token)]).await,
    ] {
        assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
        assert!(r.header("retry-after").is_some());
        r.assert_no_store();
        let body = String::from_utf8_lossy(&r.body).to_lowercase();
        assert!(
            !body.contains("postgres") && !body.contains("connection"),
            "{body}"
        );
    }
    assert_eq!(
        app.state.oauth.hasher.computed(),
        before,
        "no hashing when the account cannot be read"
    );
    // Garbage needs no database: still 200.
    assert_eq!(
        post_form(&app, "/oauth/revoke", &[("token", "garbage")])
            .await
            .status,
        200
    );

    proxy.restore();
    login(&app, "sam", "pw").await.pair();
    refresh(&app, &refresh_token).await.pair();
}
