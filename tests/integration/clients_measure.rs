//! Measurements, not assertions: client_credentials grants per second,
//! and what one login through the authorization code flow costs. Run on
//! an idle machine:
//! `cargo test --profile bench --test integration -- --ignored --nocapture --test-threads=1 measure_`

use std::time::Instant;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};

use crate::clients::new_client;
use crate::clients_authorize::{
    cookie, get_authorize, hidden_fields, location_params, param, post_login, request, setup,
    REDIRECT, VERIFIER,
};
use crate::oauth::{post_form, FORM};
use crate::support::spawn_app;

const CONFIG: &str = "[login]\nmax_failures = 1000000000\n";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run on an idle machine with an optimized build"]
async fn measure_client_credentials_rate() {
    let app = spawn_app(CONFIG).await;
    let c = new_client(&app, "bench", &["orders:read"], &[], false).await;
    let auth = {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                c.client_id,
                c.secret.as_deref().unwrap()
            ))
        )
    };
    let secs = 5.0;
    for concurrency in [1usize, 8, 32] {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let url = app.url("/oauth/token");
            let auth = auth.clone();
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::new(); // keep-alive
                let mut ok = 0u64;
                while start.elapsed().as_secs_f64() < secs {
                    let r = client
                        .post(&url)
                        .header(AUTHORIZATION, &auth)
                        .header(CONTENT_TYPE, FORM)
                        .body("grant_type=client_credentials")
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    let _ = r.bytes().await;
                    ok += 1;
                }
                ok
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        let elapsed = start.elapsed().as_secs_f64();
        println!(
            "client_credentials: {:.0} grants/s with {concurrency} keep-alive clients over {elapsed:.1} s ({} cores)",
            total as f64 / elapsed,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run on an idle machine with an optimized build"]
async fn measure_code_flow_cost_per_login() {
    let app = spawn_app(CONFIG).await;
    let client = setup(&app).await;
    let (mut page_ms, mut login_ms, mut exchange_ms, mut total_ms) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let hashed_before = app.state.oauth.hasher.computed();
    let rounds = 40;
    for i in 0..rounds {
        let state = format!("s{i}");
        let t0 = Instant::now();
        let page = get_authorize(&app, &request(&client, &state)).await;
        assert_eq!(page.status, 200);
        let t1 = Instant::now();
        let r = post_login(
            &app,
            &hidden_fields(&String::from_utf8(page.body.clone()).unwrap()),
            Some(&cookie(&page)),
            "alice",
            "correct horse",
        )
        .await;
        assert_eq!(r.status, 302);
        let code = param(&location_params(&r), "code").unwrap().to_owned();
        let t2 = Instant::now();
        let r = post_form(
            &app,
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
                ("client_id", &client.client_id),
            ],
        )
        .await;
        r.pair();
        let t3 = Instant::now();
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
        page_ms.push(ms(t0, t1));
        login_ms.push(ms(t1, t2));
        exchange_ms.push(ms(t2, t3));
        total_ms.push(ms(t0, t3));
    }
    let hashes = app.state.oauth.hasher.computed() - hashed_before;
    // A password-grant login for comparison: the same argon2 verification.
    let mut password_ms = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        crate::oauth::login(&app, "alice", "correct horse")
            .await
            .pair();
        password_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "code flow, median of {rounds} sequential logins: page {:.2} ms, login POST {:.2} ms, \
         code exchange {:.2} ms, total {:.2} ms; {} argon2 verifications ({:.1} per login); \
         password grant for comparison {:.2} ms",
        median(page_ms),
        median(login_ms),
        median(exchange_ms),
        median(total_ms),
        hashes,
        hashes as f64 / rounds as f64,
        median(password_ms),
    );
}
