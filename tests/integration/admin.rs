//! The admin API on the admin listener, against the real server and
//! Postgres: authentication, accounts and scopes (statuses and shapes),
//! pagination; the client the admin tests share. Roles, grants, their
//! effect on issued tokens and the audit log: `admin_effects`. Every
//! answer is also checked against the OpenAPI document
//! ([`crate::openapi::check`]).

use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde_json::{json, Value};

use crate::oauth::{login, new_account, CONFIG};
use crate::openapi::check;
use crate::support::{http, insert_token, send, spawn_app, Resp, TestApp};

/// An admin API client holding a `scopegate:admin` token.
pub struct AdminApi<'a> {
    pub app: &'a TestApp,
    pub token: String,
}

impl<'a> AdminApi<'a> {
    pub async fn new(app: &'a TestApp) -> AdminApi<'a> {
        let token = insert_token(&app.db, "root", &["scopegate:admin"], 3600).await;
        AdminApi { app, token }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.app.admin, path)
    }

    /// A request with this client's token, its answer checked against the
    /// document.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut req = http()
            .request(method.clone(), self.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header(CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let r = send(req).await;
        check(method.as_str(), path, &r);
        r
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, None).await
    }

    /// A raw body with an optional content type.
    pub async fn raw(&self, method: Method, path: &str, ct: Option<&str>, body: &str) -> Resp {
        let mut req = http()
            .request(method.clone(), self.url(path))
            .bearer_auth(&self.token)
            .body(body.to_owned());
        if let Some(ct) = ct {
            req = req.header(CONTENT_TYPE, ct);
        }
        let r = send(req).await;
        check(method.as_str(), path, &r);
        r
    }
}

/// An admin error: status, `error`, and a description containing `needle`.
#[track_caller]
pub fn assert_error(r: &Resp, status: u16, error: &str, needle: &str) {
    let body = String::from_utf8_lossy(&r.body);
    assert_eq!(r.status, status, "{body}");
    let j = r.json();
    assert_eq!(j["error"], error, "{body}");
    assert!(
        j["error_description"].as_str().unwrap().contains(needle),
        "{needle:?} not in {body}"
    );
}

#[track_caller]
pub fn created(r: &Resp, location_prefix: &str) -> Value {
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    let location = r.header("location").unwrap();
    assert!(location.starts_with(location_prefix), "{location}");
    j
}

pub async fn gateway_status(app: &TestApp, token: &str) -> u16 {
    send(http().get(app.url("/api/orders/1")).bearer_auth(token))
        .await
        .status
}

/// Every endpoint: 401 without a token (the RFC 6750 §3.1 challenge), 401
/// `invalid_token` with a bad one, 403 `insufficient_scope` without
/// `scopegate:admin`; a wildcard covering it is enough.
#[tokio::test]
async fn every_endpoint_requires_a_token_with_the_admin_scope() {
    let app = spawn_app(CONFIG).await;
    let plain = insert_token(&app.db, "plain", &["orders:read"], 3600).await;
    let wildcard = insert_token(&app.db, "wild", &["scopegate:*"], 3600).await;
    let endpoints = [
        ("GET", "/admin/accounts"),
        ("POST", "/admin/accounts"),
        ("GET", "/admin/accounts/1"),
        ("PATCH", "/admin/accounts/1"),
        ("DELETE", "/admin/accounts/1"),
        ("POST", "/admin/accounts/1/scopes"),
        ("DELETE", "/admin/accounts/1/scopes/orders:read"),
        ("POST", "/admin/accounts/1/roles"),
        ("DELETE", "/admin/accounts/1/roles/r"),
        ("POST", "/admin/accounts/1/revoke-tokens"),
        ("GET", "/admin/scopes"),
        ("POST", "/admin/scopes"),
        ("GET", "/admin/scopes/1"),
        ("DELETE", "/admin/scopes/1"),
        ("GET", "/admin/roles"),
        ("POST", "/admin/roles"),
        ("GET", "/admin/roles/1"),
        ("DELETE", "/admin/roles/1"),
        ("POST", "/admin/roles/1/scopes"),
        ("DELETE", "/admin/roles/1/scopes/orders:read"),
    ];
    let admin = |path: &str| format!("http://{}{path}", app.admin);
    for (method, path) in endpoints {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let r = send(http().request(m.clone(), admin(path))).await;
        assert_eq!(r.status, 401, "{method} {path}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"scopegate\""),
            "{method} {path}"
        );
        check(method, path, &r);

        let r = send(
            http()
                .request(m.clone(), admin(path))
                .bearer_auth("sga_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        )
        .await;
        assert_eq!(r.status, 401, "{method} {path}");
        assert_eq!(r.json()["error"], "invalid_token");
        assert!(r
            .header("www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\""));
        check(method, path, &r);

        let r = send(http().request(m.clone(), admin(path)).bearer_auth(&plain)).await;
        assert_eq!(r.status, 403, "{method} {path}");
        assert_eq!(r.json()["error"], "insufficient_scope");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"scopegate\", error=\"insufficient_scope\", scope=\"scopegate:admin\"")
        );
        check(method, path, &r);
    }
    // Even an unknown admin path says nothing before the token is checked.
    let r = send(http().get(admin("/admin/nothing"))).await;
    assert_eq!(r.status, 401);
    let r = send(http().get(admin("/admin/scopes")).bearer_auth(&wildcard)).await;
    assert_eq!(r.status, 200);
    // The admin API is not on the proxy listener.
    let r = send(http().get(app.url("/admin/scopes")).bearer_auth(&wildcard)).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn accounts_create_read_patch_delete() {
    let app = spawn_app(CONFIG).await;
    let api = AdminApi::new(&app).await;
    let r = api
        .post(
            "/admin/scopes",
            json!({"name": "Orders", "value": "orders:read"}),
        )
        .await;
    created(&r, "/admin/scopes/");
    let r = api
        .post(
            "/admin/roles",
            json!({"name": "analyst", "scopes": ["orders:read"]}),
        )
        .await;
    created(&r, "/admin/roles/");

    let r = api
        .post(
            "/admin/accounts",
            json!({"username": "Alice", "password": "pw-alice-1", "first_name": "Alice",
                   "last_name": null, "scopes": ["orders:read"], "roles": ["analyst"]}),
        )
        .await;
    let alice = created(&r, "/admin/accounts/");
    let id = alice["id"].as_i64().unwrap();
    assert_eq!(
        r.header("location"),
        Some(format!("/admin/accounts/{id}").as_str())
    );
    assert_eq!(
        alice,
        json!({"id": id, "username": "alice", "first_name": "Alice", "last_name": null,
               "is_active": true, "scopes": ["orders:read"], "roles": ["analyst"]})
    );
    // The password works and appears nowhere.
    login(&app, "alice", "pw-alice-1").await.pair();
    assert!(!String::from_utf8_lossy(&r.body).contains("pw-alice-1"));
    assert!(!String::from_utf8_lossy(&r.body).contains("argon2"));

    let r = api.get(&format!("/admin/accounts/{id}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), alice);

    // Duplicates after normalization.
    let r = api
        .post(
            "/admin/accounts",
            json!({"username": "ＡＬＩＣＥ", "password": "x"}),
        )
        .await;
    assert_error(&r, 409, "conflict", "username");

    // 422 naming the field; nothing is created.
    for (body, field) in [
        (json!({"password": "x"}), "username: is required"),
        (json!({"username": "bob"}), "password: is required"),
        (json!({"username": "bob", "password": ""}), "password:"),
        (json!({"username": "b ob", "password": "x"}), "username:"),
        (
            json!({"username": 7, "password": "x"}),
            "username: must be a string",
        ),
        (
            json!({"username": "bob", "password": 7}),
            "password: must be a string",
        ),
        (
            json!({"username": "bob", "password": "x", "scopes": "orders:read"}),
            "scopes: must be an array",
        ),
        (
            json!({"username": "bob", "password": "x", "scopes": ["orders:read", 1]}),
            "scopes[1]: must be a string",
        ),
        (
            json!({"username": "bob", "password": "x", "scopes": ["orders:read", "nope"]}),
            "scopes[1]: no scope",
        ),
        (
            json!({"username": "bob", "password": "x", "roles": ["nope"]}),
            "roles[0]: no role",
        ),
        (
            json!({"username": "bob", "password": "x", "first_name": "x".repeat(256)}),
            "first_name:",
        ),
        (
            json!({"username": "bob", "password": "x", "scope": ["orders:read"]}),
            "the fields are: username",
        ),
    ] {
        let r = api.post("/admin/accounts", body.clone()).await;
        assert_error(&r, 422, "invalid_field", field);
    }
    assert!(
        !String::from_utf8_lossy(&api.get("/admin/accounts?limit=1000").await.body)
            .contains("\"bob\"")
    );

    // Malformed bodies: 400 / 415, never a 500.
    for (ct, body, status) in [
        (Some("application/json"), "{\"username\": ", 400),
        (Some("application/json"), "[]", 400),
        (Some("application/json"), "", 400),
        (Some("application/json"), "\"x\"", 400),
        (Some("text/plain"), "{}", 415),
        (None, "{}", 415),
    ] {
        let r = api.raw(Method::POST, "/admin/accounts", ct, body).await;
        assert_eq!(r.status, status, "{ct:?} {body}");
    }

    // PATCH: names (null clears), unknown fields and types refused.
    let r = api
        .patch(
            &format!("/admin/accounts/{id}"),
            json!({"first_name": null, "last_name": "Liddell"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["first_name"], Value::Null);
    assert_eq!(r.json()["last_name"], "Liddell");
    for (body, field) in [
        (
            json!({"is_active": "no"}),
            "is_active: must be true or false",
        ),
        (json!({"password": null}), "password: must be a string"),
        (json!({"password": "x".repeat(1025)}), "password:"),
        (
            json!({"last_name": 3}),
            "last_name: must be a string or null",
        ),
        (json!({"username": "bob"}), "the fields are: first_name"),
    ] {
        let r = api.patch(&format!("/admin/accounts/{id}"), body).await;
        assert_error(&r, 422, "invalid_field", field);
    }
    let r = api.get(&format!("/admin/accounts/{id}")).await;
    assert_eq!(
        r.json()["last_name"],
        "Liddell",
        "a refused PATCH changes nothing"
    );
    let r = api
        .patch("/admin/accounts/999999", json!({"first_name": "x"}))
        .await;
    assert_error(&r, 404, "not_found", "account");

    // Unknown and malformed ids are 404s; wrong methods 405.
    for path in [
        "/admin/accounts/999999",
        "/admin/accounts/x",
        "/admin/accounts/-1",
        "/admin/accounts/0",
    ] {
        let r = send(http().get(api.url(path)).bearer_auth(&api.token)).await;
        assert_eq!(r.status, 404, "{path}");
    }
    let r = send(
        http()
            .put(api.url("/admin/accounts"))
            .bearer_auth(&api.token),
    )
    .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST"));

    // DELETE: 204, then gone; the tokens too.
    let (token, _) = login(&app, "alice", "pw-alice-1").await.pair();
    assert_eq!(gateway_status(&app, &token).await, 200);
    let r = api.delete(&format!("/admin/accounts/{id}")).await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_eq!(gateway_status(&app, &token).await, 401);
    let r = api.get(&format!("/admin/accounts/{id}")).await;
    assert_error(&r, 404, "not_found", "account");
    let r = api.delete(&format!("/admin/accounts/{id}")).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn lists_are_ordered_by_id_and_paginated() {
    let app = spawn_app(CONFIG).await;
    let api = AdminApi::new(&app).await;
    // Two seeded scopes, then five more.
    for i in 0..5 {
        let r = api
            .post(
                "/admin/scopes",
                json!({"name": format!("Scope {i}"), "value": format!("s:{i}")}),
            )
            .await;
        created(&r, "/admin/scopes/");
    }
    let all = api.get("/admin/scopes").await.json();
    assert_eq!(all["next"], Value::Null);
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 7);
    let ids: Vec<i64> = items.iter().map(|s| s["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(items[0]["value"], "scopegate:admin");

    // Pages of 3: 3, 3, 1, with `next` the last id of each full page.
    let mut seen = Vec::new();
    let mut path = "/admin/scopes?limit=3".to_owned();
    let mut pages = 0;
    loop {
        let page = api.get(&path).await.json();
        pages += 1;
        let items = page["items"].as_array().unwrap();
        seen.extend(items.iter().map(|s| s["id"].as_i64().unwrap()));
        match page["next"].as_i64() {
            Some(next) => {
                assert_eq!(Some(next), items.last().and_then(|s| s["id"].as_i64()));
                path = format!("/admin/scopes?limit=3&after={next}");
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids);
    // A page that ends exactly at the last item says so.
    let page = api
        .get(&format!("/admin/scopes?after={}", ids[3]))
        .await
        .json();
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    assert_eq!(page["next"], Value::Null);
    let page = api.get("/admin/scopes?limit=7").await.json();
    assert_eq!(page["next"], Value::Null);
    let page = api.get("/admin/scopes?limit=6").await.json();
    assert_eq!(page["next"], ids[5]);

    for q in ["limit=0", "limit=1001", "limit=ten", "after=x"] {
        let r = api.get(&format!("/admin/scopes?{q}")).await;
        assert_error(&r, 422, "invalid_field", q.split('=').next().unwrap());
    }
    let r = api.get("/admin/scopes?limit=1&limit=2").await;
    assert_eq!(r.status, 400);

    // Accounts and roles page the same way.
    for name in ["r1", "r2", "r3"] {
        created(
            &api.post("/admin/roles", json!({"name": name})).await,
            "/admin/roles/",
        );
    }
    let page = api.get("/admin/roles?limit=2").await.json();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let next = page["next"].as_i64().unwrap();
    let page = api
        .get(&format!("/admin/roles?limit=2&after={next}"))
        .await
        .json();
    assert_eq!(page["items"][0]["name"], "r3");
    assert_eq!(page["next"], Value::Null);
    new_account(&app, "zed", "pw", &[], &[]).await;
    let page = api.get("/admin/accounts?limit=1").await.json();
    assert_eq!(page["items"][0]["username"], "root");
    assert!(page["next"].is_i64());
}

#[tokio::test]
async fn scopes_names_and_values_are_unique() {
    let app = spawn_app(CONFIG).await;
    let api = AdminApi::new(&app).await;
    let r = api
        .post(
            "/admin/scopes",
            json!({"name": "Reports", "value": "reports:read", "description": "read reports"}),
        )
        .await;
    let s = created(&r, "/admin/scopes/");
    let id = s["id"].as_i64().unwrap();
    assert_eq!(
        s,
        json!({"id": id, "name": "Reports", "value": "reports:read", "description": "read reports"})
    );
    assert_eq!(api.get(&format!("/admin/scopes/{id}")).await.json(), s);

    let r = api
        .post(
            "/admin/scopes",
            json!({"name": "Other", "value": "reports:read"}),
        )
        .await;
    assert_error(&r, 409, "conflict", "value");
    let r = api
        .post(
            "/admin/scopes",
            json!({"name": "Reports", "value": "reports:write"}),
        )
        .await;
    assert_error(&r, 409, "conflict", "name");
    let r = api
        .post(
            "/admin/scopes",
            json!({"name": "Bad", "value": "has space"}),
        )
        .await;
    assert_error(&r, 422, "invalid_field", "value:");
    let r = api
        .post("/admin/scopes", json!({"name": "", "value": "x:y"}))
        .await;
    assert_error(&r, 422, "invalid_field", "name:");
    let r = api.post("/admin/scopes", json!({"value": "x:y"})).await;
    assert_error(&r, 422, "invalid_field", "name: is required");

    let r = api.delete(&format!("/admin/scopes/{id}")).await;
    assert_eq!(r.status, 204);
    assert_eq!(api.get(&format!("/admin/scopes/{id}")).await.status, 404);
    assert_eq!(api.delete(&format!("/admin/scopes/{id}")).await.status, 404);
    // The administrators' scope stays.
    let admin_scope = api.get("/admin/scopes?limit=1").await.json()["items"][0].clone();
    assert_eq!(admin_scope["value"], "scopegate:admin");
    let r = api
        .delete(&format!("/admin/scopes/{}", admin_scope["id"]))
        .await;
    assert_error(&r, 409, "conflict", "scopegate:admin");
}
