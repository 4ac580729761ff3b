//! `/admin/clients` against the real admin listener: create (the secret in
//! the 201 answer only), read, list and page, rotate the secret, delete
//! (the client's tokens revoked), the usual 401/403/404/409/422; every
//! answer checked against the OpenAPI document. And the OAuth answers of
//! the client flows checked against it too.

use base64::Engine;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::json;

use crate::admin::{assert_error, created, AdminApi};
use crate::clients_authorize::{browser, get_authorize, request, setup};
use crate::oauth::{encode, ensure_scope, CONFIG, FORM};
use crate::openapi::check;
use crate::support::{http, insert_token, send, spawn_app};

#[tokio::test]
async fn clients_through_the_admin_api() {
    let app = spawn_app(CONFIG).await;
    ensure_scope(&app, "orders:read").await;
    let api = AdminApi::new(&app).await;

    let c = created(
        &api.post(
            "/admin/clients",
            json!({"name": "billing", "scopes": ["orders:read"], "redirect_uris": ["https://b.example/cb"]}),
        )
        .await,
        "/admin/clients/",
    );
    let id = c["id"].as_i64().unwrap();
    let secret = c["client_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sgs_"));
    assert_eq!(c["public"], false);
    let p = created(
        &api.post(
            "/admin/clients",
            json!({"name": "spa", "public": true, "redirect_uris": ["https://spa.example/cb"]}),
        )
        .await,
        "/admin/clients/",
    );
    assert!(p.get("client_secret").is_none());

    // The secret is never shown again.
    let one = api.get(&format!("/admin/clients/{id}")).await;
    assert_eq!(one.status, 200);
    assert!(one.json().get("client_secret").is_none());
    assert_eq!(one.json()["client_id"], c["client_id"]);
    let list = api.get("/admin/clients?limit=1").await.json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["next"], id);
    let rest = api.get(&format!("/admin/clients?after={id}")).await.json();
    assert_eq!(rest["items"][0]["name"], "spa");
    assert_eq!(rest["next"], serde_json::Value::Null);

    // The secret works; the rotated one replaces it at once.
    let basic = |s: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{s}", c["client_id"].as_str().unwrap()))
        )
    };
    let grant = |s: String| {
        let auth = basic(&s);
        let url = app.url("/oauth/token");
        async move {
            let r = send(
                http()
                    .post(url)
                    .header(AUTHORIZATION, auth)
                    .header(CONTENT_TYPE, FORM)
                    .body("grant_type=client_credentials"),
            )
            .await;
            check("POST", "/oauth/token", &r);
            r
        }
    };
    let r = grant(secret.clone()).await;
    assert_eq!(r.status, 200);
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    let rotated = api
        .post(&format!("/admin/clients/{id}/secret"), json!({}))
        .await;
    assert_eq!(rotated.status, 200);
    let new_secret = rotated.json()["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(grant(secret).await.status, 401);
    assert_eq!(grant(new_secret).await.status, 200);
    assert_error(
        &api.post(&format!("/admin/clients/{}/secret", p["id"]), json!({}))
            .await,
        409,
        "conflict",
        "public",
    );

    // Errors: duplicate, invalid fields, unknown ids.
    assert_error(
        &api.post("/admin/clients", json!({"name": "BILLING"})).await,
        409,
        "conflict",
        "name",
    );
    assert_error(
        &api.post("/admin/clients", json!({"name": "a b"})).await,
        422,
        "invalid_field",
        "name",
    );
    assert_error(
        &api.post("/admin/clients", json!({"name": "x", "scopes": ["nope:x"]}))
            .await,
        422,
        "invalid_field",
        "scopes",
    );
    assert_error(
        &api.post(
            "/admin/clients",
            json!({"name": "y", "redirect_uris": ["http://evil.example/"]}),
        )
        .await,
        422,
        "invalid_field",
        "redirect_uris",
    );
    assert_error(
        &api.post("/admin/clients", json!({"name": "z", "secret": "mine"}))
            .await,
        422,
        "invalid_field",
        "the fields are",
    );
    assert_eq!(api.get("/admin/clients/9999").await.status, 404);

    // Delete: 204, its token is revoked at once, then it is gone.
    assert_eq!(
        send(http().get(app.url("/oauth/userinfo")).bearer_auth(&token))
            .await
            .status,
        200
    );
    let r = api.delete(&format!("/admin/clients/{id}")).await;
    assert_eq!(r.status, 204);
    assert_eq!(
        send(http().get(app.url("/oauth/userinfo")).bearer_auth(&token))
            .await
            .status,
        401
    );
    assert_eq!(api.get(&format!("/admin/clients/{id}")).await.status, 404);
    assert_eq!(
        api.delete(&format!("/admin/clients/{id}")).await.status,
        404
    );

    // Only scopegate:admin may.
    let user = insert_token(&app.db, "someone", &["orders:read"], 3600).await;
    let r = send(http().get(api.url("/admin/clients")).bearer_auth(user)).await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn the_client_flows_answer_as_documented() {
    let app = spawn_app(CONFIG).await;
    let client = setup(&app).await;
    let r = get_authorize(&app, &request(&client, "s")).await;
    check("GET", "/oauth/authorize", &r);
    let mut bad = request(&client, "s");
    bad.retain(|(k, _)| *k != "redirect_uri");
    bad.push(("redirect_uri", "https://evil.example/cb"));
    check("GET", "/oauth/authorize", &get_authorize(&app, &bad).await);
    let mut plain = request(&client, "s");
    plain.retain(|(k, _)| *k != "code_challenge_method");
    check(
        "GET",
        "/oauth/authorize",
        &get_authorize(&app, &plain).await,
    );
    let r = send(
        browser()
            .post(app.url("/oauth/authorize"))
            .header(CONTENT_TYPE, FORM)
            .body(encode(&[("client_id", &client.client_id), ("csrf", "x")])),
    )
    .await;
    check("POST", "/oauth/authorize", &r);
    let r = send(browser().get(app.url("/.well-known/oauth-authorization-server"))).await;
    check("GET", "/.well-known/oauth-authorization-server", &r);
    let r = send(browser().get(app.url("/.well-known/other"))).await;
    check("GET", "/.well-known/other", &r);
    for body in [
        "grant_type=client_credentials",
        "grant_type=authorization_code&code=sgo_x&code_verifier=x&client_id=nobody",
    ] {
        let r = send(
            http()
                .post(app.url("/oauth/token"))
                .header(CONTENT_TYPE, FORM)
                .body(body),
        )
        .await;
        check("POST", "/oauth/token", &r);
    }
    let r = send(
        http()
            .post(app.url("/oauth/revoke"))
            .header(AUTHORIZATION, "Basic bm9ib2R5Ong=")
            .header(CONTENT_TYPE, FORM)
            .body("token=sga_x"),
    )
    .await;
    assert_eq!(r.status, 401);
    check("POST", "/oauth/revoke", &r);
}
