//! `/oauth/revoke`, `/oauth/introspect`, `/oauth/userinfo` and
//! `/oauth/password` against the real server and Postgres.

use reqwest::header::CONTENT_TYPE;

use crate::oauth::{
    encode, introspect, is_live, login, new_account, post_form, refresh, userinfo, CONFIG, FORM,
};
use crate::support::{http, insert_token, send, spawn_app, Resp, TestApp};

async fn revoke(app: &TestApp, token: &str, hint: Option<&str>) -> Resp {
    let mut params = vec![("token", token)];
    if let Some(h) = hint {
        params.push(("token_type_hint", h));
    }
    post_form(app, "/oauth/revoke", &params).await
}

async fn introspect_as(app: &TestApp, caller: Option<&str>, token: &str) -> Resp {
    let mut req = http()
        .post(app.url("/oauth/introspect"))
        .header(CONTENT_TYPE, FORM)
        .body(encode(&[("token", token)]));
    if let Some(c) = caller {
        req = req.bearer_auth(c);
    }
    send(req).await
}

// ---------------------------------------------------------------------------
// Revoke

#[tokio::test]
async fn revoking_an_access_token_takes_effect_at_once() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "alice", "pw", &["orders:read"], &[]).await;
    let (access, refresh_token) = login(&app, "alice", "pw").await.pair();
    // Cached by this replica first.
    assert_eq!(
        send(http().get(app.url("/api/orders")).bearer_auth(&access))
            .await
            .status,
        200
    );
    let r = revoke(&app, &access, Some("access_token")).await;
    assert_eq!(r.status, 200);
    r.assert_no_store();
    assert_eq!(
        send(http().get(app.url("/api/orders")).bearer_auth(&access))
            .await
            .status,
        401
    );
    assert_eq!(userinfo(&app, &access).await.status, 401);
    // Only that token: its refresh token still works.
    refresh(&app, &refresh_token).await.pair();
    // Revoking again is fine.
    assert_eq!(revoke(&app, &access, None).await.status, 200);
}

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_access_tokens_and_family() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "bob", "pw", &["orders:read"], &[]).await;
    let (a1, r1) = login(&app, "bob", "pw").await.pair();
    let (a2, r2) = refresh(&app, &r1).await.pair();
    let (other, _) = login(&app, "bob", "pw").await.pair();
    assert_eq!(userinfo(&app, &a2).await.status, 200);
    // A wrong hint changes nothing.
    assert_eq!(revoke(&app, &r2, Some("access_token")).await.status, 200);
    assert_eq!(
        userinfo(&app, &a2).await.status,
        401,
        "issued with the revoked refresh token"
    );
    assert_eq!(userinfo(&app, &a1).await.status, 401, "same family");
    refresh(&app, &r2).await.assert_error(400, "invalid_grant");
    assert!(!is_live(&app, &r2).await);
    assert_eq!(
        userinfo(&app, &other).await.status,
        200,
        "another login is another family"
    );
}

#[tokio::test]
async fn revoking_unknown_or_garbage_tokens_is_200() {
    let app = spawn_app(CONFIG).await;
    let unknown_access = scopegate::tokens::generate(scopegate::tokens::Kind::Access).unwrap();
    let unknown_refresh = scopegate::tokens::generate(scopegate::tokens::Kind::Refresh).unwrap();
    for token in [
        unknown_access.as_str(),
        &unknown_refresh,
        "garbage",
        "sga_short",
        "' OR 1=1--",
    ] {
        for hint in [None, Some("refresh_token"), Some("bogus_type")] {
            let r = revoke(&app, token, hint).await;
            assert_eq!(r.status, 200, "{token} {hint:?}");
            r.assert_no_store();
        }
    }
    post_form(&app, "/oauth/revoke", &[])
        .await
        .assert_error(400, "invalid_request");
    let r = send(http().get(app.url("/oauth/revoke"))).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
}

// ---------------------------------------------------------------------------
// Introspect

#[tokio::test]
async fn introspection_describes_active_tokens() {
    let app = spawn_app(CONFIG).await;
    let id = new_account(&app, "carol", "pw", &["orders:read", "orders:write"], &[]).await;
    let (access, refresh_token) = login(&app, "carol", "pw").await.pair();
    let j = introspect(&app, &access).await;
    assert_eq!(j["active"], true);
    assert_eq!(j["scope"], "orders:read orders:write");
    assert_eq!(j["username"], "carol");
    assert_eq!(j["sub"], id.to_string());
    assert_eq!(j["token_type"], "Bearer");
    let (exp, iat) = (j["exp"].as_i64().unwrap(), j["iat"].as_i64().unwrap());
    assert_eq!(exp - iat, 3600);
    let j = introspect(&app, &refresh_token).await;
    assert_eq!(j["active"], true);
    assert_eq!(j["token_type"], "refresh_token");
    assert_eq!(j["username"], "carol");
    assert_eq!(j["sub"], id.to_string());
}

#[tokio::test]
async fn introspection_says_only_inactive_for_anything_else() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "dave", "pw", &[], &[]).await;
    let (access, r1) = login(&app, "dave", "pw").await.pair();
    refresh(&app, &r1).await.pair(); // r1 is now rotated
    revoke(&app, &access, None).await;
    let expired = insert_token(&app.db, "dave", &[], -10).await;
    let unknown = scopegate::tokens::generate(scopegate::tokens::Kind::Access).unwrap();
    for token in [access.as_str(), &r1, &expired, &unknown, "garbage", "sgr_x"] {
        let j = introspect(&app, token).await;
        assert_eq!(j, serde_json::json!({ "active": false }), "{token}");
    }
}

#[tokio::test]
async fn introspection_requires_an_authorized_caller() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "erin", "pw", &["orders:read"], &[]).await;
    let (access, _) = login(&app, "erin", "pw").await.pair();

    let r = introspect_as(&app, None, &access).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"scopegate\"")
    );
    r.assert_no_store();

    let r = introspect_as(
        &app,
        Some("sga_not-a-real-token-at-all-xxxxxxxxxxxxxxxxxxx"),
        &access,
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));

    // A valid token without the scope.
    let r = introspect_as(&app, Some(&access), &access).await;
    assert_eq!(r.status, 403);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("insufficient_scope"));
    r.assert_no_store();

    // scopegate:admin is enough too.
    let admin = insert_token(&app.db, "root", &["scopegate:admin"], 3600).await;
    let r = introspect_as(&app, Some(&admin), &access).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["active"], true);
}

// ---------------------------------------------------------------------------
// Userinfo

#[tokio::test]
async fn userinfo_shows_the_account_and_the_token_scope() {
    let app = spawn_app(CONFIG).await;
    crate::oauth::ensure_scope(&app, "reports:read").await;
    scopegate::accounts::store::create_role(
        &app.state.db,
        "analyst",
        None,
        &["reports:read".into()],
    )
    .await
    .unwrap();
    let id = new_account(&app, "Frank", "pw", &["orders:read"], &["analyst"]).await;
    let (access, _) = crate::oauth::login_scope(&app, "frank", "pw", "reports:read")
        .await
        .pair();
    let r = userinfo(&app, &access).await;
    assert_eq!(r.status, 200);
    r.assert_no_store();
    assert_eq!(
        r.json(),
        serde_json::json!({
            "id": id,
            "username": "frank",
            "first_name": "Test",
            "last_name": null,
            "is_active": true,
            "scopes": ["orders:read"],
            "roles": ["analyst"],
            "scope": "reports:read",
        })
    );
    let r = send(http().get(app.url("/oauth/userinfo"))).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"scopegate\"")
    );
    let r = send(http().post(app.url("/oauth/userinfo")).bearer_auth(&access)).await;
    assert_eq!(r.status, 405);
}

// ---------------------------------------------------------------------------
// Password change

async fn change_password(app: &TestApp, access: &str, current: &str, new: &str) -> Resp {
    send(
        http()
            .post(app.url("/oauth/password"))
            .bearer_auth(access)
            .header(CONTENT_TYPE, FORM)
            .body(encode(&[
                ("current_password", current),
                ("new_password", new),
            ])),
    )
    .await
}

#[tokio::test]
async fn changing_the_password_revokes_every_token() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "gina", "old password", &["orders:read"], &[]).await;
    let (a1, r1) = login(&app, "gina", "old password").await.pair();
    let (a2, r2) = login(&app, "gina", "old password").await.pair();
    assert_eq!(
        send(http().get(app.url("/api/orders")).bearer_auth(&a2))
            .await
            .status,
        200
    );

    change_password(&app, &a1, "wrong", "new password")
        .await
        .assert_error(400, "invalid_grant");
    change_password(&app, &a1, "old password", "")
        .await
        .assert_error(400, "invalid_request");
    change_password(&app, &a1, "old password", &"x".repeat(1025))
        .await
        .assert_error(400, "invalid_request");
    assert_eq!(
        userinfo(&app, &a1).await.status,
        200,
        "failed changes revoke nothing"
    );

    let r = change_password(&app, &a1, "old password", "new password").await;
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    r.assert_no_store();
    for a in [&a1, &a2] {
        assert_eq!(userinfo(&app, a).await.status, 401);
    }
    assert_eq!(
        send(http().get(app.url("/api/orders")).bearer_auth(&a2))
            .await
            .status,
        401
    );
    for r in [&r1, &r2] {
        refresh(&app, r).await.assert_error(400, "invalid_grant");
    }
    login(&app, "gina", "old password")
        .await
        .assert_error(400, "invalid_grant");
    login(&app, "gina", "new password").await.pair();
}

#[tokio::test]
async fn password_change_needs_a_token_and_a_form() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "hank", "pw", &[], &[]).await;
    let (access, _) = login(&app, "hank", "pw").await.pair();
    let r = send(
        http()
            .post(app.url("/oauth/password"))
            .header(CONTENT_TYPE, FORM)
            .body(encode(&[("current_password", "pw"), ("new_password", "x")])),
    )
    .await;
    assert_eq!(r.status, 401);
    let r = send(
        http()
            .post(app.url("/oauth/password"))
            .bearer_auth(&access)
            .header(CONTENT_TYPE, FORM)
            .body(encode(&[("new_password", "x")])),
    )
    .await;
    r.assert_error(400, "invalid_request");
    let r = send(http().get(app.url("/oauth/password")).bearer_auth(&access)).await;
    assert_eq!(r.status, 405);
}
