//! Logins next to proxying: the gateway's proxy p99 with and without a
//! login storm (clients doing password logins as fast as they are
//! answered) in alternating runs, the logins/s achieved, and the limit
//! they are held to: hashing threads / one verify's time, with the verify
//! timed in this run (the same `Hasher` the gateway builds, on an idle
//! machine); then the proxy beside each of OWASP's argon2id sets
//! ([`crate::sets`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scopegate::accounts::password::Hasher;
use scopegate::accounts::Password;
use serde::Serialize;

use crate::http1;
use crate::knobs::Knobs;
use crate::load::Load;
use crate::rounds::median;
use crate::targets::{Gateway, Stack};

pub const STORM_USER: &str = "storm";
const STORM_PASSWORD: &str = "storm-password-123";
const LOGIN_FORM: &str = "grant_type=password&username=storm&password=storm-password-123";

/// Create the account the storm logs in as (once per database).
pub fn create_account(gw: &Gateway, db_url: &str) {
    use std::io::Write;
    let mut create = std::process::Command::new(env!("CARGO_BIN_EXE_scopegate"))
        .arg("--config")
        .arg(&gw.config)
        .args(["account", "create", STORM_USER])
        .env("SCOPEGATE_DATABASE_URL", db_url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run `scopegate account create`");
    if let Some(mut stdin) = create.stdin.take() {
        let _ = writeln!(stdin, "{STORM_PASSWORD}");
    }
    assert!(
        create.wait().is_ok_and(|s| s.success()),
        "cannot create the storm account"
    );
}

/// What a storm's clients do with a refusal's `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Retry {
    /// Wait as told (a client, or an OAuth library, that follows RFC 9110
    /// §10.2.3), in slices that notice the stop.
    Honor,
    /// Try again at once (a flood).
    Ignore,
}

/// Logins running until stopped; `finish` says how many succeeded.
pub struct Storm {
    stop: Arc<AtomicBool>,
    started: Instant,
    threads: Vec<std::thread::JoinHandle<(u64, u64)>>,
}

/// What a storm achieved.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StormResult {
    pub logins: u64,
    /// Answers other than 200 (e.g. 503 when the hashing queue is full).
    pub refused: u64,
    pub logins_per_s: f64,
    pub refused_per_s: f64,
}

impl Storm {
    pub fn start(port: u16, clients: usize, retry: Retry) -> Storm {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let (mut ok, mut other) = (0u64, 0u64);
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(mut c) = http1::Client::connect(port) else {
                            continue;
                        };
                        while !stop.load(Ordering::Relaxed) {
                            match c.post_form("/oauth/token", LOGIN_FORM) {
                                Ok(200) => ok += 1,
                                Ok(_) => {
                                    other += 1;
                                    if let (Retry::Honor, Some(secs)) = (retry, c.retry_after) {
                                        wait(&stop, Duration::from_secs(secs.min(10)));
                                    }
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    (ok, other)
                })
            })
            .collect();
        Storm {
            stop,
            started: Instant::now(),
            threads,
        }
    }

    pub fn finish(self) -> StormResult {
        self.stop.store(true, Ordering::Relaxed);
        let elapsed = self.started.elapsed().as_secs_f64();
        let (mut logins, mut refused) = (0, 0);
        for t in self.threads {
            let (ok, other) = t.join().unwrap_or((0, 0));
            logins += ok;
            refused += other;
        }
        StormResult {
            logins,
            refused,
            logins_per_s: logins as f64 / elapsed,
            refused_per_s: refused as f64 / elapsed,
        }
    }
}

/// Sleep `d`, or less if `stop` is set meanwhile.
fn wait(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// One round: a quiet wrk run and one beside a storm.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StormRound {
    pub quiet: Load,
    pub stormy: Load,
    pub storm: StormResult,
}

#[derive(Debug, Clone, Serialize)]
pub struct StormReport {
    pub clients: usize,
    /// Whether the clients waited as a refusal's `Retry-After` said.
    pub retry: Retry,
    pub hash_threads: usize,
    /// One argon2id verify through the pool, median of sequential ones.
    pub verify_ms: f64,
    /// hash_threads / verify time.
    pub limit_logins_per_s: f64,
    /// One login end to end on the idle gateway, median.
    pub idle_login_ms: f64,
    /// A storm with no proxy traffic.
    pub alone: StormResult,
    pub alone_vs_limit: f64,
    pub rounds: Vec<StormRound>,
    pub quiet_p99_us: f64,
    pub stormy_p99_us: f64,
    /// Per-round median of stormy p99 / quiet p99.
    pub p99_ratio: f64,
    pub rps_ratio: f64,
    pub loaded_logins_per_s: f64,
    pub loaded_refused_per_s: f64,
    pub loaded_vs_limit: f64,
    /// The proxy beside each OWASP argon2id set ([`crate::sets`]).
    pub sets: Vec<crate::sets::SetRow>,
    /// The control: the same threads running a busy loop instead.
    pub controls: Vec<crate::sets::ControlRow>,
}

/// Median time of one verify through a pool built as the gateway builds
/// its own (`[login] hash_concurrency` threads).
fn verify_time(threads: usize, rt: &tokio::runtime::Runtime) -> Duration {
    let hasher = Hasher::new(threads);
    rt.block_on(async {
        let phc = hasher
            .hash(Password::new(STORM_PASSWORD))
            .await
            .expect("hash a password");
        let mut times = Vec::new();
        for _ in 0..9 {
            let t = Instant::now();
            let ok = hasher
                .verify(Password::new(STORM_PASSWORD), &phc)
                .await
                .expect("the pool takes one job");
            times.push(t.elapsed().as_secs_f64());
            assert!(ok, "the password verifies");
        }
        Duration::from_secs_f64(median(times))
    })
}

fn idle_login(port: u16) -> Duration {
    let mut c = http1::Client::connect(port).expect("connect for a login");
    let mut times = Vec::new();
    for _ in 0..9 {
        let t = Instant::now();
        let status = c
            .post_form("/oauth/token", LOGIN_FORM)
            .expect("a login answer");
        assert_eq!(status, 200, "the storm account logs in");
        times.push(t.elapsed().as_secs_f64());
    }
    Duration::from_secs_f64(median(times))
}

pub fn run(stack: &mut Stack, knobs: &Knobs, rt: &tokio::runtime::Runtime) -> StormReport {
    let port = stack.gw.server.port;
    let hash_threads = scopegate::config::Config::load(&stack.gw.config)
        .expect("the bench configuration loads")
        .login
        .hash_concurrency;
    let verify = verify_time(hash_threads, rt).as_secs_f64();
    let limit = hash_threads as f64 / verify;
    let idle = idle_login(port).as_secs_f64();
    eprintln!(
        "storm: {hash_threads} hashing threads, verify {:.1} ms -> limit {limit:.0} logins/s; one login {:.1} ms",
        verify * 1e3,
        idle * 1e3
    );

    let alone = {
        let storm = Storm::start(port, knobs.login_clients, knobs.storm_retry);
        std::thread::sleep(Duration::from_secs(knobs.secs));
        storm.finish()
    };
    eprintln!("storm alone: {:.0} logins/s", alone.logins_per_s);

    let url = stack.scoped_url();
    let wrk = || {
        stack
            .scoped_wrk(&url, knobs)
            .run()
            .expect_ok("scopegate during a login storm")
    };
    let mut rounds = Vec::new();
    for round in 0..knobs.rounds {
        let quiet = wrk();
        let storm = Storm::start(port, knobs.login_clients, knobs.storm_retry);
        let stormy = wrk();
        let storm = storm.finish();
        eprintln!(
            "storm round {}: quiet {:.0} req/s p99 {:.0} us | {:.0} logins/s: {:.0} req/s p99 {:.0} us",
            round + 1,
            quiet.rps,
            quiet.p99_us,
            storm.logins_per_s,
            stormy.rps,
            stormy.p99_us
        );
        rounds.push(StormRound {
            quiet,
            stormy,
            storm,
        });
    }
    let sets = crate::sets::run(stack, knobs, hash_threads);
    let controls = crate::sets::controls(stack, knobs, hash_threads);
    stack.assert_alive();
    let loaded = median(rounds.iter().map(|r| r.storm.logins_per_s));
    StormReport {
        clients: knobs.login_clients,
        retry: knobs.storm_retry,
        hash_threads,
        verify_ms: verify * 1e3,
        limit_logins_per_s: limit,
        idle_login_ms: idle * 1e3,
        alone,
        alone_vs_limit: alone.logins_per_s / limit,
        quiet_p99_us: median(rounds.iter().map(|r| r.quiet.p99_us)),
        stormy_p99_us: median(rounds.iter().map(|r| r.stormy.p99_us)),
        p99_ratio: median(rounds.iter().map(|r| r.stormy.p99_us / r.quiet.p99_us)),
        rps_ratio: median(rounds.iter().map(|r| r.stormy.rps / r.quiet.rps)),
        loaded_logins_per_s: loaded,
        loaded_refused_per_s: median(rounds.iter().map(|r| r.storm.refused_per_s)),
        loaded_vs_limit: loaded / limit,
        rounds,
        sets,
        controls,
    }
}
