//! Measurements, not assertions: the login rate and the timing of an
//! unknown username against a wrong password. Run on an idle machine:
//! `cargo test --profile bench --test integration -- --ignored --nocapture --test-threads=1 measure_`

use reqwest::header::CONTENT_TYPE;

use crate::oauth::{encode, login, new_account, CONFIG, FORM};
use crate::support::spawn_app;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run on an idle machine with an optimized build"]
async fn measure_login_rate() {
    let app = spawn_app(&CONFIG.replace(
        "max_failures = 1000\nmax_failures_per_ip = 1000\nhash_concurrency = 2",
        "max_failures = 1000000000\nmax_failures_per_ip = 1000000000",
    ))
    .await;
    new_account(
        &app,
        "bench",
        "a reasonably long password",
        &["orders:read"],
        &[],
    )
    .await;
    login(&app, "bench", "a reasonably long password")
        .await
        .pair(); // warm up
    let secs = 5.0;
    for (label, password) in [
        ("successful", "a reasonably long password"),
        ("failed", "wrong"),
    ] {
        let start = std::time::Instant::now();
        let mut clients = Vec::new();
        for _ in 0..8 {
            let url = app.url("/oauth/token");
            let body = encode(&[
                ("grant_type", "password"),
                ("username", "bench"),
                ("password", password),
            ]);
            clients.push(tokio::spawn(async move {
                let client = reqwest::Client::new(); // keep-alive, as a real client would
                let (mut ok, mut busy) = (0u64, 0u64);
                while start.elapsed().as_secs_f64() < secs {
                    let r = client
                        .post(&url)
                        .header(CONTENT_TYPE, FORM)
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    match r.status().as_u16() {
                        200 | 400 => ok += 1,
                        503 => busy += 1,
                        s => panic!("{s}"),
                    }
                    let _ = r.bytes().await;
                }
                (ok, busy)
            }));
        }
        let (mut ok, mut busy) = (0, 0);
        for c in clients {
            let (o, b) = c.await.unwrap();
            ok += o;
            busy += b;
        }
        let elapsed = start.elapsed().as_secs_f64();
        println!(
            "{label} logins: {:.1}/s over {elapsed:.1} s with 8 clients ({busy} answered 503 busy); {} hashing threads",
            ok as f64 / elapsed,
            app.state.oauth.hasher.threads()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run on an idle machine with an optimized build"]
async fn measure_unknown_user_versus_wrong_password() {
    let app = spawn_app(&CONFIG.replace(
        "max_failures = 1000\nmax_failures_per_ip = 1000",
        "max_failures = 1000000000\nmax_failures_per_ip = 1000000000",
    ))
    .await;
    new_account(&app, "victim", "the real password", &[], &[]).await;
    let client = reqwest::Client::new();
    let attempt = |username: &'static str| {
        let client = client.clone();
        let url = app.url("/oauth/token");
        async move {
            let body = encode(&[
                ("grant_type", "password"),
                ("username", username),
                ("password", "a wrong one"),
            ]);
            let start = std::time::Instant::now();
            let r = client
                .post(&url)
                .header(CONTENT_TYPE, FORM)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400);
            let _ = r.bytes().await;
            start.elapsed().as_secs_f64() * 1000.0
        }
    };
    for _ in 0..5 {
        attempt("victim").await;
        attempt("nobody").await;
    }
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..100 {
        // Interleaved, alternating which goes first, so drift hits both alike.
        if i % 2 == 0 {
            known.push(attempt("victim").await);
            unknown.push(attempt("nobody").await);
        } else {
            unknown.push(attempt("nobody").await);
            known.push(attempt("victim").await);
        }
    }
    let (k, u) = (median(known.clone()), median(unknown.clone()));
    println!(
        "wrong password: median {k:.2} ms; unknown user: median {u:.2} ms; difference {:.2} ms ({:+.1}%) over {} attempts each",
        u - k,
        (u - k) / k * 100.0,
        known.len()
    );
}
