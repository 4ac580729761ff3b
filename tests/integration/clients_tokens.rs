//! The token, revocation and introspection endpoints with clients:
//! client authentication, client_credentials, refresh tokens bound to
//! their client, RFC 7009 §2.1 revocation, introspection by a client, and
//! what the upstream sees (the code exchange: `clients_codes`).

use base64::Engine;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};

use crate::clients::{new_client, TestClient};
use crate::clients_authorize::{alice_code, setup, REDIRECT, VERIFIER};
use crate::oauth::{encode, introspect, is_live, login, new_account, post_form, CONFIG, FORM};
use crate::support::{http, send, spawn_app, Resp, Seen, TestApp};

pub fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

pub async fn post_basic(app: &TestApp, path: &str, auth: &str, params: &[(&str, &str)]) -> Resp {
    send(
        http()
            .post(app.url(path))
            .header(AUTHORIZATION, auth)
            .header(CONTENT_TYPE, FORM)
            .body(encode(params)),
    )
    .await
}

pub async fn client_credentials(app: &TestApp, c: &TestClient, scope: Option<&str>) -> Resp {
    let mut p = vec![("grant_type", "client_credentials")];
    if let Some(s) = scope {
        p.push(("scope", s));
    }
    post_basic(
        app,
        "/oauth/token",
        &basic(&c.client_id, c.secret.as_deref().unwrap()),
        &p,
    )
    .await
}

/// What the echo upstream saw for a request to `/api/orders` with `token`.
pub async fn upstream_sees(
    app: &TestApp,
    token: &str,
    extra: &[(&str, &str)],
) -> (u16, Option<Seen>) {
    let mut req = http().get(app.url("/api/orders/1")).bearer_auth(token);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let r = send(req).await;
    let seen = (r.status == 200).then(|| Seen(r.json()));
    (r.status, seen)
}

/// The upstream saw the caller `user`, through the client `client_id`.
#[track_caller]
pub fn assert_caller(seen: &Seen, user: &str, client_id: &str) {
    assert_eq!(seen.header("x-authenticated-user").as_deref(), Some(user));
    assert_eq!(
        seen.header("x-authenticated-client").as_deref(),
        Some(client_id)
    );
}

pub fn access_token(r: &Resp) -> String {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["access_token"].as_str().unwrap().to_owned()
}

pub async fn exchange(app: &TestApp, params: &[(&str, &str)]) -> Resp {
    post_form(app, "/oauth/token", params).await
}

/// The form that redeems `code` for `client` (a public client: no
/// secret), with the verifier and redirect URI it was asked for with.
pub fn redeem(client: &TestClient, code: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code.to_owned()),
        ("redirect_uri", REDIRECT.to_owned()),
        ("code_verifier", VERIFIER.to_owned()),
        ("client_id", client.client_id.clone()),
    ]
}

pub async fn exchange_owned(app: &TestApp, v: Vec<(&'static str, String)>) -> Resp {
    let p: Vec<(&str, &str)> = v.iter().map(|(k, v)| (*k, v.as_str())).collect();
    exchange(app, &p).await
}

#[tokio::test]
async fn client_credentials_issue_an_access_token_of_the_service_account() {
    let app = spawn_app(CONFIG).await;
    let c = new_client(
        &app,
        "backend",
        &["orders:read", "orders:write"],
        &[],
        false,
    )
    .await;
    let before = app.state.oauth.hasher.computed();

    let r = client_credentials(&app, &c, None).await;
    r.assert_no_store();
    let j = r.json();
    assert_eq!(j["token_type"], "Bearer");
    assert_eq!(j["scope"], "orders:read orders:write");
    assert!(j["expires_in"].as_i64().unwrap() > 0);
    assert!(
        j.get("refresh_token").is_none(),
        "no refresh token (RFC 6749 §4.4.3)"
    );
    let token = access_token(&r);
    // A secret check is a SHA-256, not an argon2 job.
    assert_eq!(app.state.oauth.hasher.computed(), before);

    // It passes the gateway as the service account, through the client;
    // a client-sent X-Authenticated-Client is replaced, never forwarded.
    let (status, seen) =
        upstream_sees(&app, &token, &[("x-authenticated-client", "sgc_forged")]).await;
    assert_eq!(status, 200);
    let seen = seen.unwrap();
    assert_caller(&seen, "client:backend", &c.client_id);
    assert!(seen
        .header("x-authenticated-scope")
        .unwrap()
        .contains("orders:read"));
    // Introspection names the client.
    let i = introspect(&app, &token).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["client_id"], c.client_id.as_str());
    assert_eq!(i["username"], "client:backend");

    // client_secret_post works too; scope narrows; outside it is invalid_scope.
    let r = post_form(
        &app,
        "/oauth/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &c.client_id),
            ("client_secret", c.secret.as_deref().unwrap()),
            ("scope", "orders:read"),
        ],
    )
    .await;
    assert_eq!(r.json()["scope"], "orders:read");
    client_credentials(&app, &c, Some("scopegate:admin"))
        .await
        .assert_error(400, "invalid_scope");
    client_credentials(&app, &c, Some("orders:read bogus:x"))
        .await
        .assert_error(400, "invalid_scope");

    // Public clients and requests without a client may not use it.
    let p = new_client(&app, "spa", &["orders:read"], &[REDIRECT], true).await;
    post_form(
        &app,
        "/oauth/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &p.client_id),
        ],
    )
    .await
    .assert_error(401, "invalid_client");
    post_form(
        &app,
        "/oauth/token",
        &[("grant_type", "client_credentials")],
    )
    .await
    .assert_error(401, "invalid_client");
}

#[tokio::test]
async fn client_authentication_rules() {
    let app = spawn_app(CONFIG).await;
    let c = new_client(&app, "backend", &["orders:read"], &[], false).await;
    let secret = c.secret.clone().unwrap();
    let cc = [("grant_type", "client_credentials")];

    // Wrong secret, unknown client, malformed Basic: 401 with a Basic challenge.
    for auth in [
        basic(&c.client_id, "sgs_wrong"),
        basic(&c.client_id, ""),
        basic("sgc_AAAAAAAAAAAAAAAAAAAAAA", &secret),
        basic("nobody", &secret),
        "Basic !!!".to_owned(),
    ] {
        let r = post_basic(&app, "/oauth/token", &auth, &cc).await;
        r.assert_error(401, "invalid_client");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"scopegate\""),
            "{auth}"
        );
    }
    // In the form: 401 without a challenge.
    for (id, s) in [
        (c.client_id.as_str(), "sgs_wrong"),
        ("sgc_AAAAAAAAAAAAAAAAAAAAAA", secret.as_str()),
    ] {
        let r = post_form(
            &app,
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", s),
            ],
        )
        .await;
        r.assert_error(401, "invalid_client");
        assert!(r.header("www-authenticate").is_none());
    }
    // A confidential client naming itself without its secret.
    post_form(
        &app,
        "/oauth/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &c.client_id),
        ],
    )
    .await
    .assert_error(401, "invalid_client");
    // Both methods at once, or two different ids: invalid_request.
    let auth = basic(&c.client_id, &secret);
    post_basic(
        &app,
        "/oauth/token",
        &auth,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &c.client_id),
            ("client_secret", &secret),
        ],
    )
    .await
    .assert_error(400, "invalid_request");
    post_basic(
        &app,
        "/oauth/token",
        &auth,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "sgc_BBBBBBBBBBBBBBBBBBBBBB"),
        ],
    )
    .await
    .assert_error(400, "invalid_request");
    // The same id in the form next to Basic is fine.
    access_token(
        &post_basic(
            &app,
            "/oauth/token",
            &auth,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &c.client_id),
            ],
        )
        .await,
    );

    // Rotating the secret kills the old one at once.
    let (_, new) = scopegate::clients::store::rotate_secret(&app.state.db, c.id)
        .await
        .unwrap();
    post_basic(&app, "/oauth/token", &auth, &cc)
        .await
        .assert_error(401, "invalid_client");
    access_token(
        &post_basic(
            &app,
            "/oauth/token",
            &basic(&c.client_id, new.expose()),
            &cc,
        )
        .await,
    );

    // Disabling the service account disables the client.
    scopegate::accounts::store::set_active(&app.state.db, "client:backend", false)
        .await
        .unwrap();
    post_basic(
        &app,
        "/oauth/token",
        &basic(&c.client_id, new.expose()),
        &cc,
    )
    .await
    .assert_error(401, "invalid_client");

    // Requests that name no client work as before.
    new_account(&app, "bob", "pw-bob-123", &["orders:read"], &[]).await;
    let (_, refresh) = login(&app, "bob", "pw-bob-123").await.pair();
    let r = crate::oauth::refresh(&app, &refresh).await;
    r.pair();
}

#[tokio::test]
async fn the_password_grant_through_a_client_is_bounded_by_it_and_bound_to_it() {
    let app = spawn_app(CONFIG).await;
    new_account(
        &app,
        "bob",
        "pw-bob-123",
        &["orders:read", "orders:write"],
        &[],
    )
    .await;
    let c = new_client(&app, "tool", &["orders:read"], &[], false).await;
    let auth = basic(&c.client_id, c.secret.as_deref().unwrap());
    let pw = [
        ("grant_type", "password"),
        ("username", "bob"),
        ("password", "pw-bob-123"),
    ];
    let r = post_basic(&app, "/oauth/token", &auth, &pw).await;
    let (access, refresh) = r.pair();
    assert_eq!(r.json()["scope"], "orders:read");
    let (_, seen) = upstream_sees(&app, &access, &[]).await;
    let seen = seen.unwrap();
    assert_caller(&seen, "bob", &c.client_id);
    let mut p = pw.to_vec();
    p.push(("scope", "orders:write"));
    post_basic(&app, "/oauth/token", &auth, &p)
        .await
        .assert_error(400, "invalid_scope");

    // Its refresh token is refreshed only by this client (RFC 6749 §6).
    let other = new_client(&app, "other", &["orders:read"], &[], false).await;
    fn rt(t: &str) -> Vec<(&str, &str)> {
        vec![("grant_type", "refresh_token"), ("refresh_token", t)]
    }
    crate::oauth::refresh(&app, &refresh)
        .await
        .assert_error(400, "invalid_grant");
    post_basic(
        &app,
        "/oauth/token",
        &basic(&other.client_id, other.secret.as_deref().unwrap()),
        &rt(&refresh),
    )
    .await
    .assert_error(400, "invalid_grant");
    let r = post_basic(&app, "/oauth/token", &auth, &rt(&refresh)).await;
    let (access2, refresh2) = r.pair();
    let (_, seen) = upstream_sees(&app, &access2, &[]).await;
    assert_eq!(
        seen.unwrap().header("x-authenticated-client").as_deref(),
        Some(c.client_id.as_str())
    );
    assert_eq!(
        introspect(&app, &refresh2).await["client_id"],
        c.client_id.as_str()
    );
    // ... and a token issued without a client is not refreshed through one.
    let (_, anon_refresh) = login(&app, "bob", "pw-bob-123").await.pair();
    post_basic(&app, "/oauth/token", &auth, &rt(&anon_refresh))
        .await
        .assert_error(400, "invalid_grant");
    crate::oauth::refresh(&app, &anon_refresh).await.pair();
}

#[tokio::test]
async fn a_confidential_clients_tokens_are_revoked_only_with_its_authentication() {
    let app = spawn_app(CONFIG).await;
    let c = new_client(&app, "backend", &["orders:read"], &[], false).await;
    let other = new_client(&app, "other", &["orders:read"], &[], false).await;
    let token = access_token(&client_credentials(&app, &c, None).await);
    let revoke = [("token", token.as_str())];

    // Anonymous and another client: 200, and nothing happens (RFC 7009 §2.1).
    let r = post_form(&app, "/oauth/revoke", &revoke).await;
    assert_eq!(r.status, 200);
    let r = post_basic(
        &app,
        "/oauth/revoke",
        &basic(&other.client_id, other.secret.as_deref().unwrap()),
        &revoke,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(upstream_sees(&app, &token, &[]).await.0, 200);
    // A wrong secret is 401.
    post_basic(
        &app,
        "/oauth/revoke",
        &basic(&c.client_id, "sgs_x"),
        &revoke,
    )
    .await
    .assert_error(401, "invalid_client");
    // The client itself: revoked.
    let r = post_basic(
        &app,
        "/oauth/revoke",
        &basic(&c.client_id, c.secret.as_deref().unwrap()),
        &revoke,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(upstream_sees(&app, &token, &[]).await.0, 401);

    // Tokens issued with no client are revoked as before.
    new_account(&app, "bob", "pw-bob-123", &["orders:read"], &[]).await;
    let (access, _) = login(&app, "bob", "pw-bob-123").await.pair();
    assert_eq!(
        post_form(&app, "/oauth/revoke", &[("token", &access)])
            .await
            .status,
        200
    );
    assert!(!is_live(&app, &access).await);
}

#[tokio::test]
async fn deleting_a_client_revokes_every_token_issued_through_it() {
    let app = spawn_app(CONFIG).await;
    let client = setup(&app).await;
    let code = alice_code(&app, &client).await;
    let (access, refresh) = exchange_owned(&app, redeem(&client, &code)).await.pair();
    let svc = new_client(&app, "svc", &["orders:read"], &[], false).await;
    let cc = access_token(&client_credentials(&app, &svc, None).await);
    // Cached by the gateway first.
    assert_eq!(upstream_sees(&app, &access, &[]).await.0, 200);
    assert_eq!(upstream_sees(&app, &cc, &[]).await.0, 200);

    let (_, revoked) = scopegate::clients::store::delete(&app.state.db, client.id)
        .await
        .unwrap();
    assert_eq!(revoked.len(), 1);
    let (_, revoked) = scopegate::clients::store::delete(&app.state.db, svc.id)
        .await
        .unwrap();
    assert_eq!(revoked.len(), 1);
    for h in [&access, &cc] {
        app.state
            .tokens
            .invalidate(&scopegate::tokens::hash(h))
            .await;
        assert_eq!(upstream_sees(&app, h, &[]).await.0, 401);
    }
    assert!(!is_live(&app, &refresh).await);
    // alice herself is untouched.
    login(&app, "alice", "correct horse").await.pair();
}

#[tokio::test]
async fn a_confidential_client_with_the_scope_may_introspect() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "bob", "pw-bob-123", &["orders:read"], &[]).await;
    let (access, _) = login(&app, "bob", "pw-bob-123").await.pair();
    let rs = new_client(
        &app,
        "resource-server",
        &["scopegate:introspect"],
        &[],
        false,
    )
    .await;
    let plain = new_client(&app, "plain", &["orders:read"], &[], false).await;
    let q = [("token", access.as_str())];

    let r = post_basic(
        &app,
        "/oauth/introspect",
        &basic(&rs.client_id, rs.secret.as_deref().unwrap()),
        &q,
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["active"], true);
    assert_eq!(r.json()["username"], "bob");
    assert!(r.json().get("client_id").is_none());
    let r = post_form(
        &app,
        "/oauth/introspect",
        &[
            ("token", &access),
            ("client_id", &rs.client_id),
            ("client_secret", rs.secret.as_deref().unwrap()),
        ],
    )
    .await;
    assert_eq!(r.json()["active"], true);

    post_basic(
        &app,
        "/oauth/introspect",
        &basic(&plain.client_id, plain.secret.as_deref().unwrap()),
        &q,
    )
    .await
    .assert_error(403, "unauthorized_client");
    post_basic(
        &app,
        "/oauth/introspect",
        &basic(&rs.client_id, "sgs_wrong"),
        &q,
    )
    .await
    .assert_error(401, "invalid_client");
    // No credentials at all: the Bearer challenge, as before.
    let r = post_form(&app, "/oauth/introspect", &q).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"scopegate\"")
    );
}
