//! Measurements of the embedded issuer, against the real server in this
//! process and a real Postgres (the test harness: a throwaway cluster and a
//! database of its own), over HTTP on loopback. Figures, not assertions:
//!
//! - `login_rate`: password logins per second, successful and failed, from
//!   8 keep-alive clients, with the default hashing pool;
//! - `unknown_user`: the time of a wrong password against the time of an
//!   unknown username (medians of 100 interleaved attempts each): the
//!   dummy hash must make them equal (`docs/security.md`, "Timing: unknown
//!   users");
//! - `client_credentials`: grants per second with 1, 8 and 32 keep-alive
//!   clients;
//! - `code_flow`: what one login through the authorization code flow costs
//!   (page, login POST, code exchange; medians of 40), with a password
//!   grant for comparison;
//! - `near_miss_token`: the rejection of a near-miss token (a valid one with
//!   its last character changed) against that of a random one, each never
//!   seen before (so each costs its database lookup): medians of 400
//!   interleaved pairs through the gateway over HTTP, and of 400 through
//!   the validator alone. Tokens are looked up by their SHA-256, so the two
//!   must be the same work (`docs/security.md`, "Attack cases", K9).
//!
//! Run on an idle machine: `cargo bench --bench issuer` (all of them) or
//! `cargo bench --bench issuer -- login_rate code_flow` (those named).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE};
use scopegate::accounts::store::{self, NewAccount, StoreError};
use scopegate::accounts::Password;
use scopegate::app::{App, State};
use scopegate::clients::store::{self as client_store, NewClient};
use scopegate::config::{Config, EnvOverrides};
use scopegate::testing::TestDb;
use tokio::sync::watch;

const FORM: &str = "application/x-www-form-urlencoded";
const REDIRECT: &str = "https://app.example/cb";
/// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// Throttling out of the way: every client logs in from 127.0.0.1.
const NO_THROTTLE: &str = "[login]\nmax_failures = 1000000000\nmax_failures_per_ip = 1000000000\n";

/// The issuer running in this process, on its own database.
struct Issuer {
    addr: SocketAddr,
    state: Arc<State>,
    _db: TestDb,
    _stop: watch::Sender<bool>,
}

impl Issuer {
    async fn start(config_text: &str) -> Issuer {
        let db = TestDb::new().await;
        let mut config = Config::parse(config_text, "bench.toml", &EnvOverrides::default())
            .unwrap_or_else(|e| panic!("{e}"));
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.admin_listen = "127.0.0.1:0".parse().unwrap();
        config.database.url = Some(db.url.clone());
        let tls = scopegate::db::DbTls::from_url(&db.url).unwrap();
        let pool = scopegate::db::pool(&db.url, &tls, config.database.pool_size).unwrap();
        let app = App::build(config, pool).unwrap();
        let (addr, state) = (app.proxy_addr(), app.state().clone());
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(app.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        Issuer {
            addr,
            state,
            _db: db,
            _stop: stop,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn scopes(&self, scopes: &[&str]) {
        for s in scopes {
            match store::create_scope(&self.state.db, s, s, None).await {
                Ok(_) | Err(StoreError::DuplicateScope(_) | StoreError::DuplicateScopeName(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    async fn account(&self, username: &str, password: &str, scopes: &[&str]) {
        self.scopes(scopes).await;
        let new = NewAccount {
            username: username.into(),
            password: Password::new(password),
            first_name: None,
            last_name: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            roles: Vec::new(),
        };
        store::create_account(&self.state.db, &self.state.oauth.hasher, new)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// A client; its `client_id` and, if confidential, its secret.
    async fn client(
        &self,
        name: &str,
        scopes: &[&str],
        redirect_uris: &[&str],
        public: bool,
    ) -> (String, Option<String>) {
        self.scopes(scopes).await;
        let new = NewClient {
            name: name.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            redirect_uris: redirect_uris.iter().map(|s| s.to_string()).collect(),
            public,
        };
        let created = client_store::create(&self.state.db, new)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (
            created.client.client_id.clone(),
            created.secret.as_ref().map(|s| s.expose().to_owned()),
        )
    }
}

fn encode(params: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// A password login with `client`; its status.
async fn login(client: &reqwest::Client, issuer: &Issuer, username: &str, password: &str) -> u16 {
    let body = encode(&[
        ("grant_type", "password"),
        ("username", username),
        ("password", password),
    ]);
    let r = client
        .post(issuer.url("/oauth/token"))
        .header(CONTENT_TYPE, FORM)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let _ = r.bytes().await;
    status
}

async fn login_rate() {
    let issuer = Issuer::start(NO_THROTTLE).await;
    let password = "a reasonably long password";
    issuer.account("bench", password, &["orders:read"]).await;
    assert_eq!(
        login(&reqwest::Client::new(), &issuer, "bench", password).await,
        200
    );
    let issuer = Arc::new(issuer);
    let secs = 5.0;
    for (label, password) in [("successful", password), ("failed", "wrong")] {
        let start = Instant::now();
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let issuer = issuer.clone();
                tokio::spawn(async move {
                    let client = reqwest::Client::new(); // keep-alive, as a real client would
                    let (mut ok, mut busy) = (0u64, 0u64);
                    while start.elapsed().as_secs_f64() < secs {
                        match login(&client, &issuer, "bench", password).await {
                            200 | 400 => ok += 1,
                            503 => busy += 1,
                            s => panic!("{s}"),
                        }
                    }
                    (ok, busy)
                })
            })
            .collect();
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
            issuer.state.oauth.hasher.threads()
        );
    }
}

async fn unknown_user() {
    let issuer = Issuer::start(NO_THROTTLE).await;
    issuer.account("victim", "the real password", &[]).await;
    let client = reqwest::Client::new();
    let attempt = |username: &'static str| {
        let (client, issuer) = (&client, &issuer);
        async move {
            let start = Instant::now();
            assert_eq!(login(client, issuer, username, "a wrong one").await, 400);
            ms_since(start)
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
    let n = known.len();
    let (k, u) = (median(known), median(unknown));
    println!(
        "wrong password: median {k:.2} ms; unknown user: median {u:.2} ms; difference {:.2} ms ({:+.1}%) over {n} attempts each",
        u - k,
        (u - k) / k * 100.0,
    );
}

/// `token` with its last character replaced by another valid one.
fn near_miss(token: &str) -> String {
    let (head, last) = token.split_at(token.len() - 1);
    format!("{head}{}", if last == "A" { "B" } else { "A" })
}

async fn near_miss_token() {
    // Every rejection is a database lookup: no budget of invalid lookups
    // in the way, and fresh tokens each time so no negative-cache hit.
    let issuer = Issuer::start(
        "[cache]\ninvalid_lookups_per_ip = 1000000\n\
         [[routes]]\nname = \"api\"\npath = \"/api\"\nupstream = \"http://127.0.0.1:9\"\nscopes = [\"api\"]\n",
    )
    .await;
    let pool = issuer.state.db.clone();
    let rounds = 400;
    let mut valid = Vec::new();
    for _ in 0..2 * rounds + 20 {
        valid.push(scopegate::testing::insert_token(&pool, "bench", &["api"], 3600).await);
    }
    let random = || scopegate::tokens::generate(scopegate::tokens::Kind::Access).unwrap();
    let client = reqwest::Client::new();
    let over_http = |token: String| {
        let (client, issuer) = (&client, &issuer);
        async move {
            let start = Instant::now();
            let r = client
                .get(issuer.url("/api/x"))
                .header(AUTHORIZATION, format!("Bearer {token}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
            let _ = r.bytes().await;
            ms_since(start) * 1e3
        }
    };
    let validator = issuer.state.tokens.clone();
    let local = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    let direct = |token: String| {
        let validator = validator.clone();
        async move {
            let start = Instant::now();
            assert!(validator.validate(&token, local).await.is_err());
            ms_since(start) * 1e3
        }
    };
    // Warm-up: connections open, statements prepared.
    for t in valid.drain(..20) {
        over_http(near_miss(&t)).await;
        over_http(random()).await;
    }
    let mut valid = valid.into_iter();
    for (label, http) in [("gateway over HTTP", true), ("validator alone", false)] {
        let (mut near, mut rand) = (Vec::new(), Vec::new());
        for i in 0..rounds {
            let n = near_miss(&valid.next().unwrap());
            let measure = |t: String| async move {
                if http {
                    over_http(t).await
                } else {
                    direct(t).await
                }
            };
            // Interleaved, alternating which goes first, so drift hits both alike.
            if i % 2 == 0 {
                near.push(measure(n).await);
                rand.push(measure(random()).await);
            } else {
                rand.push(measure(random()).await);
                near.push(measure(n).await);
            }
        }
        let (n, r) = (median(near), median(rand));
        println!(
            "{label}: near-miss token median {n:.1} µs; random token median {r:.1} µs; difference {:+.1} µs ({:+.1}%) over {rounds} each",
            n - r,
            (n - r) / r * 100.0,
        );
    }
}

async fn client_credentials() {
    use base64::Engine;
    let issuer = Arc::new(Issuer::start(NO_THROTTLE).await);
    let (id, secret) = issuer.client("bench", &["orders:read"], &[], false).await;
    let secret = secret.expect("a confidential client has a secret");
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    );
    let secs = 5.0;
    for concurrency in [1usize, 8, 32] {
        let start = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (url, auth) = (issuer.url("/oauth/token"), auth.clone());
                tokio::spawn(async move {
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
                })
            })
            .collect();
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

/// The hidden fields of a login page (the values are plain: no entities
/// in what this bench sends).
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|rest| {
            let name = rest.strip_prefix("name=\"")?.split('"').next()?;
            let value = rest.split("value=\"").nth(1)?.split('"').next()?;
            Some((name.to_owned(), value.replace("&amp;", "&")))
        })
        .collect()
}

async fn code_flow() {
    let issuer = Issuer::start(NO_THROTTLE).await;
    issuer
        .account("alice", "correct horse", &["orders:read"])
        .await;
    let (client_id, _) = issuer
        .client("webapp", &["orders:read"], &[REDIRECT], true)
        .await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let hashed_before = issuer.state.oauth.hasher.computed();
    let rounds = 40;
    let (mut page_ms, mut login_ms, mut exchange_ms, mut total_ms) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        let state = format!("s{i}");
        let query = encode(&[
            ("response_type", "code"),
            ("client_id", &client_id),
            ("redirect_uri", REDIRECT),
            ("state", &state),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ]);
        let t0 = Instant::now();
        let page = browser
            .get(format!("{}?{query}", issuer.url("/oauth/authorize")))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let cookie = page.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let fields = hidden_fields(&page.text().await.unwrap());
        let t1 = Instant::now();
        let mut form: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        form.extend([("username", "alice"), ("password", "correct horse")]);
        let r = browser
            .post(issuer.url("/oauth/authorize"))
            .header(CONTENT_TYPE, FORM)
            .header(COOKIE, cookie)
            .body(encode(&form))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let code = form_urlencoded::parse(location.split_once('?').unwrap().1.as_bytes())
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .expect("a code");
        let t2 = Instant::now();
        let r = browser
            .post(issuer.url("/oauth/token"))
            .header(CONTENT_TYPE, FORM)
            .body(encode(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
                ("client_id", &client_id),
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
        page_ms.push((t1 - t0).as_secs_f64() * 1e3);
        login_ms.push((t2 - t1).as_secs_f64() * 1e3);
        exchange_ms.push(ms_since(t2));
        total_ms.push(ms_since(t0));
    }
    let hashes = issuer.state.oauth.hasher.computed() - hashed_before;
    // A password-grant login for comparison: the same argon2 verification.
    let mut password_ms = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        assert_eq!(
            login(&browser, &issuer, "alice", "correct horse").await,
            200
        );
        password_ms.push(ms_since(t));
    }
    println!(
        "code flow, median of {rounds} sequential logins: page {:.2} ms, login POST {:.2} ms, \
         code exchange {:.2} ms, total {:.2} ms; {hashes} argon2 verifications ({:.1} per login); \
         password grant for comparison {:.2} ms",
        median(page_ms),
        median(login_ms),
        median(exchange_ms),
        median(total_ms),
        hashes as f64 / rounds as f64,
        median(password_ms),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches` runs bench targets as tests: these take
        // minutes and measure nothing useful on a busy machine.
        println!("issuer: measurements; run them with `cargo bench --bench issuer`");
        return;
    }
    let wanted: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    let chosen = |name: &str| wanted.is_empty() || wanted.iter().any(|w| name.contains(w));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if chosen("login_rate") {
            login_rate().await;
        }
        if chosen("unknown_user") {
            unknown_user().await;
        }
        if chosen("client_credentials") {
            client_credentials().await;
        }
        if chosen("code_flow") {
            code_flow().await;
        }
        if chosen("near_miss_token") {
            near_miss_token().await;
        }
    });
}
