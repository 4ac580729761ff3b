//! `GET /metrics` on the admin listener, parsed; the counters move as
//! requests flow through the gateway, the OAuth endpoints, the admin API,
//! reloads and the cleanup sweep, and the gauges show work waiting.

use std::collections::HashMap;

use serde_json::json;

use crate::admin::AdminApi;
use crate::clients::new_client;
use crate::clients_authorize::{code_for, request, REDIRECT};
use crate::clients_tokens::{exchange_owned, redeem};
use crate::oauth::{db_exec, login, new_account, post_form, refresh};
use crate::support::{http, insert_token, send, spawn_app, TestApp};

const CONFIG: &str = r#"
[login]
max_failures = 2
hash_concurrency = 1

[[routes]]
name = "orders"
path = "/api/orders"
upstream = "UPSTREAM"
scopes = ["orders:read"]

[[routes]]
name = "down"
path = "/down"
upstream = "http://127.0.0.1:1"
public = true
"#;

/// Every sample of the exposition: `name{labels}` -> value.
struct Metrics(HashMap<String, f64>);

impl Metrics {
    async fn scrape(app: &TestApp) -> Metrics {
        app.state.tokens.run_pending_tasks().await;
        let r = send(http().get(format!("http://{}/metrics", app.admin))).await;
        assert_eq!(r.status, 200);
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"));
        let text = String::from_utf8(r.body).unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
        let mut samples = HashMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            assert!(
                samples.insert(key.to_owned(), value).is_none(),
                "twice: {line}"
            );
        }
        Metrics(samples)
    }

    #[track_caller]
    fn get(&self, key: &str) -> f64 {
        *self
            .0
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key}; have {:?}", self.keys()))
    }

    fn keys(&self) -> Vec<&String> {
        let mut k: Vec<&String> = self.0.keys().collect();
        k.sort();
        k
    }
}

#[tokio::test]
async fn metrics_move_as_requests_flow() {
    let app = spawn_app(CONFIG).await;
    let api = AdminApi::new(&app).await;
    let id = new_account(&app, "mia", "pw-mia", &["orders:read"], &[]).await;
    let before = Metrics::scrape(&app).await;
    let orders_2xx = r#"scopegate_requests_total{route="orders",class="2xx"}"#;
    let orders_4xx = r#"scopegate_requests_total{route="orders",class="4xx"}"#;
    let token_2xx = r#"scopegate_requests_total{route="oauth:token",class="2xx"}"#;
    let token_4xx = r#"scopegate_requests_total{route="oauth:token",class="4xx"}"#;
    let unrouted_4xx = r#"scopegate_requests_total{route="-",class="4xx"}"#;
    let orders_count = r#"scopegate_request_duration_seconds_count{route="orders"}"#;
    let orders_inf = r#"scopegate_request_duration_seconds_bucket{le="+Inf",route="orders"}"#;
    let connect = r#"scopegate_upstream_errors_total{route="down",kind="connect"}"#;
    let issued = |grant: &str| format!(r#"scopegate_tokens_issued_total{{grant="{grant}"}}"#);
    let grants = [
        "password",
        "refresh_token",
        "authorization_code",
        "client_credentials",
    ]
    .map(issued);
    // Every series exists before any traffic (pre-registered), at zero.
    for key in [
        orders_2xx,
        orders_4xx,
        token_2xx,
        unrouted_4xx,
        orders_count,
        connect,
        "scopegate_authorization_codes_issued_total",
        "scopegate_swept_authorization_codes_total",
    ]
    .into_iter()
    .chain(grants.iter().map(String::as_str))
    {
        assert_eq!(before.get(key), 0.0, "{key}");
    }
    assert!(before.get("scopegate_db_pool_max") >= 1.0);
    assert_eq!(before.get("scopegate_hash_queue_depth"), 0.0);
    assert_eq!(before.get("scopegate_hash_threads"), 1.0);

    // The password grant and a refresh.
    let (access, refresh_token) = login(&app, "mia", "pw-mia").await.pair();
    refresh(&app, &refresh_token).await.pair();

    // Proxied: a miss, then a hit; no token; an unknown token twice (a
    // miss, then a negative hit); no route; an upstream that refuses.
    let get = |token: Option<&str>, path: &str| {
        let mut r = http().get(app.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        send(r)
    };
    assert_eq!(get(Some(&access), "/api/orders").await.status, 200);
    assert_eq!(get(Some(&access), "/api/orders").await.status, 200);
    assert_eq!(get(None, "/api/orders").await.status, 401);
    let unknown = "sga_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_eq!(get(Some(unknown), "/api/orders").await.status, 401);
    assert_eq!(get(Some(unknown), "/api/orders").await.status, 401);
    assert_eq!(get(None, "/nowhere").await.status, 404);
    assert_eq!(get(None, "/down").await.status, 502);

    // Revocations through OAuth and the admin API.
    assert_eq!(
        post_form(&app, "/oauth/revoke", &[("token", &access)])
            .await
            .status,
        200
    );
    let (_, _) = login(&app, "mia", "pw-mia").await.pair();
    let r = api
        .post(&format!("/admin/accounts/{id}/revoke-tokens"), json!({}))
        .await;
    assert_eq!(r.status, 204);

    // The client grants: client_credentials (client_secret_post), and a
    // code from the login page, exchanged; a second code left unused.
    let worker = new_client(&app, "worker", &["orders:read"], &[], false).await;
    let r = post_form(
        &app,
        "/oauth/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &worker.client_id),
            ("client_secret", worker.secret.as_deref().unwrap()),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let web = new_client(&app, "web", &["orders:read"], &[REDIRECT], true).await;
    let code = code_for(&app, &web, &request(&web, "s1"), "mia", "pw-mia").await;
    exchange_owned(&app, redeem(&web, &code)).await.pair();
    code_for(&app, &web, &request(&web, "s2"), "mia", "pw-mia").await;

    // A sweep, with one of each kind of row expired: an access token, a
    // refresh-token family, the unused code.
    insert_token(&app.db, "gone", &[], -10).await;
    let family = db_exec(
        &app,
        "INSERT INTO refresh_tokens (refresh_token, expires) VALUES (repeat('e', 64), 1)",
        &[],
    )
    .await;
    assert_eq!(family, 1);
    let expired = db_exec(
        &app,
        "UPDATE authorization_codes SET expires = 1 WHERE used_at IS NULL",
        &[],
    )
    .await;
    assert_eq!(expired, 1);
    scopegate::tokens::sweep::run_once(&app.state.db, &app.state.sweep).await;

    // Failures, then the throttle (last: it also locks this address).
    assert_eq!(login(&app, "nobody", "x").await.status, 400);
    assert_eq!(login(&app, "nobody", "x").await.status, 400);
    assert_eq!(login(&app, "nobody", "x").await.status, 429);

    let after = Metrics::scrape(&app).await;
    let delta = |key: &str| after.get(key) - before.get(key);
    assert_eq!(delta(orders_2xx), 2.0);
    assert_eq!(delta(orders_4xx), 3.0);
    assert_eq!(delta(orders_count), 5.0);
    assert_eq!(after.get(orders_inf), after.get(orders_count));
    assert!(after.get(r#"scopegate_request_duration_seconds_sum{route="orders"}"#) > 0.0);
    assert_eq!(
        delta(token_2xx),
        5.0,
        "two logins, a refresh, client_credentials, a code exchange"
    );
    assert_eq!(delta(token_4xx), 3.0, "two failures and a 429");
    assert_eq!(delta(unrouted_4xx), 1.0);
    assert_eq!(
        delta(r#"scopegate_requests_total{route="down",class="5xx"}"#),
        1.0
    );
    assert_eq!(delta(connect), 1.0);
    assert_eq!(
        delta(r#"scopegate_requests_total{route="oauth:revoke",class="2xx"}"#),
        1.0
    );

    assert_eq!(delta(&issued("password")), 2.0);
    assert_eq!(delta(&issued("refresh_token")), 1.0);
    assert_eq!(delta(&issued("client_credentials")), 1.0);
    assert_eq!(delta(&issued("authorization_code")), 1.0);
    assert_eq!(delta("scopegate_authorization_codes_issued_total"), 2.0);
    // One by /oauth/revoke; by the admin API, the refreshed pair's and the
    // second login's access tokens.
    assert_eq!(delta("scopegate_tokens_revoked_total"), 3.0);
    assert_eq!(delta("scopegate_login_failures_total"), 2.0);
    assert_eq!(delta("scopegate_login_throttled_total"), 1.0);
    assert_eq!(delta("scopegate_admin_changes_total"), 1.0);
    assert!(delta("scopegate_hash_computed_total") >= 4.0);
    // The sweep (the periodic one may have run too: rows go only once).
    assert!(delta("scopegate_sweeps_total") >= 1.0);
    assert_eq!(delta("scopegate_sweep_failures_total"), 0.0);
    assert_eq!(delta("scopegate_swept_access_tokens_total"), 1.0);
    assert_eq!(delta("scopegate_swept_refresh_tokens_total"), 1.0);
    assert_eq!(delta("scopegate_swept_authorization_codes_total"), 1.0);

    // The admin token's validation counts too (a miss, then hits).
    assert!(
        delta("scopegate_cache_misses_total") >= 3.0,
        "access, unknown, admin"
    );
    assert!(delta("scopegate_cache_hits_total") >= 1.0);
    assert!(delta("scopegate_cache_negative_hits_total") >= 1.0);
    assert!(delta("scopegate_cache_db_lookups_total") >= 3.0);
    assert!(after.get("scopegate_cache_entries") >= 1.0);
    assert!(after.get("scopegate_db_pool_size") >= 1.0);
    assert_eq!(after.get("scopegate_db_pool_waiters"), 0.0);
}

#[tokio::test]
async fn routes_keep_their_counters_across_a_reload_and_reloads_are_counted() {
    let app = spawn_app(CONFIG).await;
    assert_eq!(send(http().get(app.url("/down"))).await.status, 502);
    let mut config = app.state.config.clone();
    config.routes.retain(|r| r.name == "down");
    app.state.gateway.reload(&config);
    let m = Metrics::scrape(&app).await;
    assert_eq!(
        m.get(r#"scopegate_requests_total{route="down",class="5xx"}"#),
        1.0
    );
    assert_eq!(m.get("scopegate_reloads_total"), 1.0);
    assert_eq!(m.get("scopegate_reload_failures_total"), 0.0);
    // The cleanup sweep's counters are there (it runs every minute).
    for key in [
        "scopegate_sweeps_total",
        "scopegate_sweep_failures_total",
        "scopegate_swept_access_tokens_total",
        "scopegate_swept_refresh_tokens_total",
        "scopegate_swept_authorization_codes_total",
    ] {
        m.get(key);
    }

    // Through the function SIGHUP runs: an invalid file is a failure and
    // changes nothing; a valid one is a reload.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.toml");
    std::fs::write(&file, "[[routes]]\nname = \"bad\"\npath = \"no-slash\"\n").unwrap();
    scopegate::cli::serve::reload(&app.state, &file);
    let m = Metrics::scrape(&app).await;
    assert_eq!(m.get("scopegate_reloads_total"), 1.0);
    assert_eq!(m.get("scopegate_reload_failures_total"), 1.0);
    std::fs::write(
        &file,
        "[[routes]]\nname = \"down\"\npath = \"/down\"\nupstream = \"http://127.0.0.1:1\"\npublic = true\n",
    )
    .unwrap();
    scopegate::cli::serve::reload(&app.state, &file);
    let m = Metrics::scrape(&app).await;
    assert_eq!(m.get("scopegate_reloads_total"), 2.0);
    assert_eq!(m.get("scopegate_reload_failures_total"), 1.0);
    assert!(
        !m.0.keys().any(|k| k.contains(r#"route="orders""#)),
        "a removed route is no longer exported"
    );
}

/// The gauges of work waiting, made deterministic: the only hashing
/// thread is held while a login queues behind it; every pooled connection
/// is held while a cold token lookup waits for one.
#[tokio::test]
async fn queue_and_pool_gauges_show_work_waiting() {
    let app = spawn_app(&format!("[database]\npool_size = 2\n{CONFIG}")).await;
    let app = &app;
    new_account(app, "mia", "pw-mia", &["orders:read"], &[]).await;

    let hasher = &app.state.oauth.hasher;
    let held = hasher.occupy().await.unwrap();
    let observe = async move {
        crate::support::until("a queued login never happened", || {
            hasher.queue_depth() == 1
        })
        .await;
        let m = Metrics::scrape(app).await;
        drop(held);
        m
    };
    let (r, m) = tokio::join!(login(app, "mia", "pw-mia"), observe);
    assert_eq!(m.get("scopegate_hash_queue_depth"), 1.0);
    r.pair();
    assert_eq!(
        Metrics::scrape(app).await.get("scopegate_hash_queue_depth"),
        0.0
    );

    // A connection waits at most the pool's acquire timeout (1 s): the
    // scrape, a few milliseconds, happens well within it.
    let token = insert_token(&app.db, "mia", &["orders:read"], 3600).await;
    let pool = &app.state.db;
    let mut held = Vec::new();
    for _ in 0..pool.status().max_size {
        held.push(pool.get().await.unwrap());
    }
    let observe = async move {
        crate::support::until("no request waited for a connection", || {
            pool.status().waiting == 1
        })
        .await;
        let m = Metrics::scrape(app).await;
        drop(held);
        m
    };
    let proxied = send(http().get(app.url("/api/orders")).bearer_auth(&token));
    let (r, m) = tokio::join!(proxied, observe);
    assert_eq!(m.get("scopegate_db_pool_waiters"), 1.0);
    assert_eq!(m.get("scopegate_db_pool_available"), 0.0);
    assert_eq!(m.get("scopegate_db_pool_max"), 2.0);
    assert_eq!(r.status, 200, "served once a connection was free");
    assert_eq!(
        Metrics::scrape(app).await.get("scopegate_db_pool_waiters"),
        0.0
    );
}
