//! The authorization code exchange at `/oauth/token` (RFC 6749 §4.1.3,
//! PKCE RFC 7636 §4.6): what a code is good for, once, with its verifier
//! and redirect URI; what makes it worthless; confidential clients.

use crate::clients::new_client;
use crate::clients_authorize::{
    alice_code, code_for, request, setup, CHALLENGE, REDIRECT, VERIFIER,
};
use crate::clients_tokens::{
    assert_caller, basic, exchange, exchange_owned, post_basic, redeem, upstream_sees,
};
use crate::oauth::{db_exec, introspect, is_live, new_account, store_hash_made_with, CONFIG};
use crate::support::spawn_app;

#[tokio::test]
async fn the_authorization_code_exchange() {
    let app = spawn_app(CONFIG).await;
    let client = setup(&app).await;
    let mut req = request(&client, "s1");
    req.push(("scope", "orders:read"));
    let code = code_for(&app, &client, &req, "alice", "correct horse").await;
    let good = |code: &str| redeem(&client, code);
    let as_params = |v: &Vec<(&'static str, String)>| -> Vec<(&'static str, String)> { v.clone() };
    let with = |code: &str, name: &'static str, value: &str| {
        let mut v = as_params(&good(code));
        v.retain(|(k, _)| *k != name);
        if !value.is_empty() {
            v.push((name, value.to_owned()));
        }
        v
    };

    // Wrong verifier, wrong or other registered redirect URI, another
    // client, a plain verifier: invalid_grant, and the code survives.
    let other = new_client(&app, "other", &["orders:read"], &[REDIRECT], true).await;
    for (name, value) in [
        ("code_verifier", "a".repeat(43)),
        ("code_verifier", CHALLENGE.to_owned()),
        ("redirect_uri", "https://app.example/other".to_owned()),
        ("redirect_uri", "https://app.example/cb/".to_owned()),
        ("client_id", other.client_id.clone()),
    ] {
        exchange_owned(&app, with(&code, name, &value))
            .await
            .assert_error(400, "invalid_grant");
    }
    exchange_owned(&app, with(&code, "code_verifier", ""))
        .await
        .assert_error(400, "invalid_request");
    // No client at all.
    exchange_owned(&app, with(&code, "client_id", ""))
        .await
        .assert_error(401, "invalid_client");

    let r = exchange_owned(&app, good(&code)).await;
    r.assert_no_store();
    let (access, refresh) = r.pair();
    assert_eq!(r.json()["scope"], "orders:read");
    let (_, seen) = upstream_sees(&app, &access, &[]).await;
    let seen = seen.unwrap();
    assert_caller(&seen, "alice", &client.client_id);
    assert_eq!(
        introspect(&app, &access).await["client_id"],
        client.client_id.as_str()
    );

    // The public client refreshes with its client_id.
    let r = exchange(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &client.client_id),
        ],
    )
    .await;
    let (access2, _) = r.pair();

    // Replay: invalid_grant, and everything the code issued is revoked,
    // including what its refresh token was exchanged for.
    exchange_owned(&app, good(&code))
        .await
        .assert_error(400, "invalid_grant");
    assert!(!is_live(&app, &access).await);
    assert!(!is_live(&app, &access2).await);
    assert_eq!(upstream_sees(&app, &access2, &[]).await.0, 401);
}

#[tokio::test]
async fn expired_codes_and_password_changes_make_codes_worthless() {
    let app = spawn_app(CONFIG).await;
    let client = setup(&app).await;
    let params = |code: &str| redeem(&client, code);
    let code = alice_code(&app, &client).await;
    db_exec(
        &app,
        "UPDATE authorization_codes SET expires = $1",
        &[&(scopegate::db::unix_now() - 1)],
    )
    .await;
    exchange_owned(&app, params(&code))
        .await
        .assert_error(400, "invalid_grant");

    let code = alice_code(&app, &client).await;
    let alice = scopegate::accounts::store::find_account(&app.state.db, "alice")
        .await
        .unwrap()
        .unwrap();
    scopegate::accounts::store::set_password(
        &app.state.db,
        &app.state.oauth.hasher,
        alice.id,
        scopegate::accounts::Password::new("new password"),
    )
    .await
    .unwrap();
    exchange_owned(&app, params(&code))
        .await
        .assert_error(400, "invalid_grant");
    // Garbage codes cost no query.
    exchange_owned(&app, params("sgo_short"))
        .await
        .assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn a_confidential_client_authenticates_to_exchange_its_code() {
    let app = spawn_app(CONFIG).await;
    new_account(&app, "alice", "correct horse", &["orders:read"], &[]).await;
    let c = new_client(&app, "server-app", &["orders:read"], &[REDIRECT], false).await;
    let code = code_for(&app, &c, &request(&c, "s"), "alice", "correct horse").await;
    let p = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let mut named = p.to_vec();
    named.push(("client_id", &c.client_id));
    exchange(&app, &named)
        .await
        .assert_error(401, "invalid_client");
    // With its only redirect URI, redirect_uri may be left out.
    let auth = basic(&c.client_id, c.secret.as_deref().unwrap());
    let r = post_basic(&app, "/oauth/token", &auth, &[p[0], p[1], p[3]]).await;
    r.pair();
}

/// A login on the page rehashes a password made with other argon2
/// parameters, and the code it issues is bound to the new hash (so it
/// still exchanges).
#[tokio::test]
async fn a_login_on_the_page_rehashes_and_its_code_still_works() {
    let app = spawn_app(CONFIG).await;
    let client = setup(&app).await;
    let old = store_hash_made_with(&app, "alice", "correct horse", 19456, 2).await;
    let code = alice_code(&app, &client).await;
    let conn = app.db.pool().get().await.unwrap();
    let now: String = conn
        .query_one(
            "SELECT password FROM accounts WHERE username = 'alice'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_ne!(now, old, "rehashed");
    assert!(now.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{now}");
    exchange_owned(&app, redeem(&client, &code)).await.pair();
}
