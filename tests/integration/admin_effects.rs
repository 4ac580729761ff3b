//! The admin API's roles and grants, and what changes do to issued tokens:
//! taking a scope or role away, deactivating an account, a new password
//! and `revoke-tokens` are seen by the gateway on the very next request on
//! this replica. And every change is an audit event without secrets.

use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde_json::json;

use crate::admin::{assert_error, created, gateway_status, AdminApi};
use crate::oauth::{login, new_account, CONFIG};
use crate::support::{http, insert_token, send, spawn_app, Serve};

#[tokio::test]
async fn roles_and_their_scopes() {
    let app = spawn_app(CONFIG).await;
    let api = AdminApi::new(&app).await;
    for v in ["a:1", "a:2"] {
        created(
            &api.post("/admin/scopes", json!({"name": v, "value": v}))
                .await,
            "/admin/scopes/",
        );
    }
    let r = api
        .post(
            "/admin/roles",
            json!({"name": "ops", "description": null, "scopes": ["a:2", "a:1", "a:1"]}),
        )
        .await;
    let role = created(&r, "/admin/roles/");
    let id = role["id"].as_i64().unwrap();
    assert_eq!(
        role,
        json!({"id": id, "name": "ops", "description": null, "scopes": ["a:1", "a:2"]})
    );
    assert_eq!(api.get(&format!("/admin/roles/{id}")).await.json(), role);
    let r = api.post("/admin/roles", json!({"name": "ops"})).await;
    assert_error(&r, 409, "conflict", "name");
    let r = api
        .post(
            "/admin/roles",
            json!({"name": "x", "scopes": ["a:1", "nope"]}),
        )
        .await;
    assert_error(&r, 422, "invalid_field", "scopes[1]");

    created(
        &api.post("/admin/scopes", json!({"name": "a:3", "value": "a:3"}))
            .await,
        "/admin/scopes/",
    );
    let r = api
        .post(
            &format!("/admin/roles/{id}/scopes"),
            json!({"scope": "a:3"}),
        )
        .await;
    let role = created(&r, &format!("/admin/roles/{id}/scopes/a:3"));
    assert_eq!(role["scopes"], json!(["a:1", "a:2", "a:3"]));
    let r = api
        .post(
            &format!("/admin/roles/{id}/scopes"),
            json!({"scope": "a:3"}),
        )
        .await;
    assert_error(&r, 409, "conflict", "grant");
    let r = api
        .post(
            &format!("/admin/roles/{id}/scopes"),
            json!({"scope": "nope"}),
        )
        .await;
    assert_error(&r, 422, "invalid_field", "scope:");
    let r = api
        .post("/admin/roles/999999/scopes", json!({"scope": "a:3"}))
        .await;
    assert_error(&r, 404, "not_found", "role");
    let r = api
        .post(
            &format!("/admin/roles/{id}/scopes"),
            json!({"scopes": ["a:3"]}),
        )
        .await;
    assert_error(&r, 422, "invalid_field", "the fields are: scope");

    assert_eq!(
        api.delete(&format!("/admin/roles/{id}/scopes/a:3"))
            .await
            .status,
        204
    );
    assert_eq!(
        api.delete(&format!("/admin/roles/{id}/scopes/a:3"))
            .await
            .status,
        404
    );
    assert_eq!(
        api.get(&format!("/admin/roles/{id}")).await.json()["scopes"],
        json!(["a:1", "a:2"])
    );
    assert_eq!(api.delete(&format!("/admin/roles/{id}")).await.status, 204);
    assert_eq!(api.get(&format!("/admin/roles/{id}")).await.status, 404);
    assert_eq!(api.delete(&format!("/admin/roles/{id}")).await.status, 404);
}

#[tokio::test]
async fn account_grants_and_their_effect_on_tokens() {
    let app = spawn_app(CONFIG).await;
    let api = AdminApi::new(&app).await;
    let id = new_account(&app, "carol", "pw-carol", &[], &[]).await;
    created(
        &api.post(
            "/admin/scopes",
            json!({"name": "Orders", "value": "orders:read"}),
        )
        .await,
        "/admin/scopes/",
    );
    created(
        &api.post(
            "/admin/scopes",
            json!({"name": "Odd", "value": "odd/val%ue"}),
        )
        .await,
        "/admin/scopes/",
    );
    let r = api
        .post(
            &format!("/admin/accounts/{id}/scopes"),
            json!({"scope": "orders:read"}),
        )
        .await;
    let a = created(&r, &format!("/admin/accounts/{id}/scopes/orders:read"));
    assert_eq!(a["scopes"], json!(["orders:read"]));
    let r = api
        .post(
            &format!("/admin/accounts/{id}/scopes"),
            json!({"scope": "orders:read"}),
        )
        .await;
    assert_error(&r, 409, "conflict", "grant");
    let r = api
        .post(
            &format!("/admin/accounts/{id}/scopes"),
            json!({"scope": "nope"}),
        )
        .await;
    assert_error(&r, 422, "invalid_field", "scope:");
    let r = api
        .post(
            "/admin/accounts/999999/scopes",
            json!({"scope": "orders:read"}),
        )
        .await;
    assert_error(&r, 404, "not_found", "account");
    let r = api
        .post(&format!("/admin/accounts/{id}/scopes"), json!({"scope": 5}))
        .await;
    assert_error(&r, 422, "invalid_field", "scope: must be a string");

    // A value that needs escaping in a path: the Location says how.
    let r = api
        .post(
            &format!("/admin/accounts/{id}/scopes"),
            json!({"scope": "odd/val%ue"}),
        )
        .await;
    created(&r, &format!("/admin/accounts/{id}/scopes/odd%2Fval%25ue"));
    let r = api
        .delete(&format!("/admin/accounts/{id}/scopes/odd%2Fval%25ue"))
        .await;
    assert_eq!(r.status, 204);

    // Taking the scope away takes it from the tokens, at once.
    let (token, refresh) = login(&app, "carol", "pw-carol").await.pair();
    assert_eq!(gateway_status(&app, &token).await, 200);
    let r = api
        .delete(&format!("/admin/accounts/{id}/scopes/orders:read"))
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(gateway_status(&app, &token).await, 403);
    assert_eq!(
        api.delete(&format!("/admin/accounts/{id}/scopes/orders:read"))
            .await
            .status,
        404
    );
    let refreshed = crate::oauth::refresh(&app, &refresh).await;
    assert_eq!(
        refreshed.json()["scope"],
        "",
        "the refresh token lost it too"
    );

    // The same through a role: granted, then the role loses the scope.
    let role = created(
        &api.post(
            "/admin/roles",
            json!({"name": "buyer", "scopes": ["orders:read"]}),
        )
        .await,
        "/admin/roles/",
    );
    let r = api
        .post(
            &format!("/admin/accounts/{id}/roles"),
            json!({"role": "buyer"}),
        )
        .await;
    let a = created(&r, &format!("/admin/accounts/{id}/roles/buyer"));
    assert_eq!(a["roles"], json!(["buyer"]));
    let r = api
        .post(
            &format!("/admin/accounts/{id}/roles"),
            json!({"role": "buyer"}),
        )
        .await;
    assert_error(&r, 409, "conflict", "grant");
    let r = api
        .post(
            &format!("/admin/accounts/{id}/roles"),
            json!({"role": "nope"}),
        )
        .await;
    assert_error(&r, 422, "invalid_field", "role:");
    let (token, _) = login(&app, "carol", "pw-carol").await.pair();
    assert_eq!(gateway_status(&app, &token).await, 200);
    let r = api
        .delete(&format!("/admin/roles/{}/scopes/orders:read", role["id"]))
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(gateway_status(&app, &token).await, 403);

    // Removing the role itself from the account.
    let r = api
        .post(
            &format!("/admin/roles/{}/scopes", role["id"]),
            json!({"scope": "orders:read"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let (token, _) = login(&app, "carol", "pw-carol").await.pair();
    assert_eq!(gateway_status(&app, &token).await, 200);
    assert_eq!(
        api.delete(&format!("/admin/accounts/{id}/roles/buyer"))
            .await
            .status,
        204
    );
    assert_eq!(gateway_status(&app, &token).await, 403);
    assert_eq!(
        api.delete(&format!("/admin/accounts/{id}/roles/buyer"))
            .await
            .status,
        404
    );

    // Deleting a scope takes it from every token that carries it.
    let other = insert_token(&app.db, "dave", &["orders:read"], 3600).await;
    assert_eq!(gateway_status(&app, &other).await, 200);
    let scopes = api.get("/admin/scopes").await.json();
    let orders = scopes["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["value"] == "orders:read")
        .unwrap()["id"]
        .clone();
    assert_eq!(
        api.delete(&format!("/admin/scopes/{orders}")).await.status,
        204
    );
    assert_eq!(gateway_status(&app, &other).await, 403);
}

/// The acceptance case: deactivated through the API, rejected by the
/// gateway on the very next request on this replica (within the default
/// `max_staleness_secs`, so only the invalidation can explain it).
#[tokio::test]
async fn deactivation_password_change_and_revocation_take_effect_at_once() {
    let app = spawn_app(CONFIG).await;
    let api = AdminApi::new(&app).await;
    let id = new_account(&app, "erin", "pw-erin-1", &["orders:read"], &[]).await;
    let (token, _) = login(&app, "erin", "pw-erin-1").await.pair();
    assert_eq!(gateway_status(&app, &token).await, 200);

    let r = api
        .patch(
            &format!("/admin/accounts/{id}"),
            json!({"is_active": false}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["is_active"], false);
    assert_eq!(gateway_status(&app, &token).await, 401);
    login(&app, "erin", "pw-erin-1")
        .await
        .assert_error(400, "invalid_grant");

    // Reactivated: the same token works again at once (not after the
    // negative cache expires).
    let r = api
        .patch(&format!("/admin/accounts/{id}"), json!({"is_active": true}))
        .await;
    assert_eq!(r.json()["is_active"], true);
    assert_eq!(gateway_status(&app, &token).await, 200);

    // A new password: every token revoked at once; the new one logs in.
    let r = api
        .patch(
            &format!("/admin/accounts/{id}"),
            json!({"password": "pw-erin-2", "first_name": "Erin"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["first_name"], "Erin");
    assert!(!String::from_utf8_lossy(&r.body).contains("pw-erin-2"));
    assert_eq!(gateway_status(&app, &token).await, 401);
    login(&app, "erin", "pw-erin-1")
        .await
        .assert_error(400, "invalid_grant");
    let (token, refresh) = login(&app, "erin", "pw-erin-2").await.pair();
    assert_eq!(gateway_status(&app, &token).await, 200);

    // revoke-tokens: 204, access and refresh tokens dead at once.
    let r = api
        .post(&format!("/admin/accounts/{id}/revoke-tokens"), json!({}))
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(gateway_status(&app, &token).await, 401);
    crate::oauth::refresh(&app, &refresh)
        .await
        .assert_error(400, "invalid_grant");
    let r = api
        .call(Method::POST, "/admin/accounts/999999/revoke-tokens", None)
        .await;
    assert_eq!(r.status, 404);
}

/// Admin changes are audit events on the real binary's log: who, what,
/// which id; never the password.
#[tokio::test]
async fn admin_changes_are_audit_events_without_secrets() {
    let db = scopegate::testing::TestDb::new().await;
    let token = insert_token(&db, "root", &["scopegate:admin"], 3600).await;
    let caller: i32 = db
        .pool()
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT account_id FROM accounts WHERE username = 'root'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let mut serve = Serve::start(&db, "[login]\nhash_concurrency = 1\n");
    let admin = serve.admin;
    let r = send(
        http()
            .post(format!("http://{admin}/admin/accounts"))
            .bearer_auth(&token)
            .header(CONTENT_TYPE, "application/json")
            .body(json!({"username": "frank", "password": "hunter2-secret"}).to_string()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["id"].as_i64().unwrap();
    let r = send(
        http()
            .patch(format!("http://{admin}/admin/accounts/{id}"))
            .bearer_auth(&token)
            .header(CONTENT_TYPE, "application/json")
            .body(json!({"password": "another-secret"}).to_string()),
    )
    .await;
    assert_eq!(r.status, 200);

    let log = std::cell::RefCell::new(String::new());
    let mut audit = Vec::new();
    while audit.len() < 2 {
        audit.push(serve.wait_for_line(Duration::from_secs(30), |line| {
            log.borrow_mut().push_str(line);
            log.borrow_mut().push('\n');
            line.contains("scopegate::audit")
        }));
    }
    assert!(audit[0].contains(&format!("who={caller}")), "{}", audit[0]);
    assert!(audit[0].contains("what=\"account.create\""), "{}", audit[0]);
    assert!(audit[0].contains(&format!("id={id}")), "{}", audit[0]);
    assert!(
        audit[1].contains("what=\"account.set_password\""),
        "{}",
        audit[1]
    );
    let log = log.into_inner();
    for secret in ["hunter2-secret", "another-secret", &token, "argon2"] {
        assert!(!log.contains(secret), "{secret} reached the log:\n{log}");
    }
}
