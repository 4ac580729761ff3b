//! Load under attack: valid traffic (wrk, cached token) on the gateway
//! while (a) another client sprays random well-formed tokens (each one a
//! cache miss) and (b) a login storm runs, beside a quiet run, in
//! interleaved rounds. Per phase: the valid traffic's p99, the database
//! work (queries and round trips counted by the relay), and the gateway's
//! memory. As a cross-check of the relay, the database's `xact_commit`
//! (`pg_stat_database`) over the whole part: Postgres 15+ publishes an
//! idle backend's statistics up to 10 s late, too late for per-phase
//! figures, so it is read once more after that delay.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use scopegate::tokens::{generate, Kind};
use serde::Serialize;

use crate::cpu::{Charged, Memory};
use crate::http1;
use crate::knobs::Knobs;
use crate::load::Load;
use crate::pgrelay::Snapshot;
use crate::rounds::median;
use crate::storm::{Retry, Storm, StormResult};
use crate::targets::{Stack, SCOPED_PATH};

/// Random well-formed tokens sent until `total` or stopped.
struct Spray {
    stop: Arc<AtomicBool>,
    started: Instant,
    threads: Vec<std::thread::JoinHandle<(u64, u64)>>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SprayResult {
    pub tokens: u64,
    pub tokens_per_s: f64,
    /// Answered 401, as an unknown token must be.
    pub unauthorized: u64,
    /// Anything else (429 once a per-address budget applies, 503, ...).
    pub other: u64,
}

impl Spray {
    fn start(port: u16, conns: usize, total: u64) -> Spray {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let threads = (0..conns)
            .map(|_| {
                let (stop, sent) = (stop.clone(), sent.clone());
                std::thread::spawn(move || {
                    let (mut unauthorized, mut other) = (0u64, 0u64);
                    'outer: while !stop.load(Ordering::Relaxed) {
                        let Ok(mut c) = http1::Client::connect(port) else {
                            continue;
                        };
                        while !stop.load(Ordering::Relaxed) {
                            if sent.fetch_add(1, Ordering::Relaxed) >= total {
                                break 'outer;
                            }
                            let token = generate(Kind::Access).expect("random bytes");
                            match c.get_bearer(SCOPED_PATH, &token) {
                                Ok(401) => unauthorized += 1,
                                Ok(_) => other += 1,
                                Err(_) => continue 'outer,
                            }
                        }
                    }
                    (unauthorized, other)
                })
            })
            .collect();
        Spray {
            stop,
            started: Instant::now(),
            threads,
        }
    }

    fn finish(self) -> SprayResult {
        self.stop.store(true, Ordering::Relaxed);
        let elapsed = self.started.elapsed().as_secs_f64();
        let (mut unauthorized, mut other) = (0, 0);
        for t in self.threads {
            let (u, o) = t.join().unwrap_or((0, 0));
            unauthorized += u;
            other += o;
        }
        let tokens = unauthorized + other;
        SprayResult {
            tokens,
            tokens_per_s: tokens as f64 / elapsed,
            unauthorized,
            other,
        }
    }
}

/// One phase of one round.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PhaseRun {
    pub valid: Load,
    pub db: Snapshot,
    pub db_queries_per_s: f64,
    pub db_round_trips_per_s: f64,
    pub memory: Memory,
    pub spray: Option<SprayResult>,
    pub storm: Option<StormResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub phase: &'static str,
    pub rps: f64,
    pub p99_us: f64,
    /// Per-round median of this phase's p99 / the quiet phase's.
    pub p99_vs_quiet: f64,
    pub non_2xx: u64,
    pub db_queries_per_s: f64,
    pub db_round_trips_per_s: f64,
    pub sprayed_per_s: Option<f64>,
    pub logins_per_s: Option<f64>,
    /// The gateway's memory after the phase (last round).
    pub memory: Memory,
    pub rounds: Vec<PhaseRun>,
}

const PHASES: [&str; 3] = ["quiet", "spray", "storm"];

/// How late Postgres may publish an idle backend's statistics
/// (`PGSTAT_IDLE_INTERVAL`, 10 s), with a margin.
const STATS_DELAY: std::time::Duration = std::time::Duration::from_millis(11_000);

#[derive(Debug, Clone, Serialize)]
pub struct AttackReport {
    pub phases: Vec<Phase>,
    /// Queries the relay counted over the whole part (every phase, every
    /// round) ...
    pub relay_queries: u64,
    /// ... and the transactions Postgres committed meanwhile (plus the
    /// harness's own statistics queries; a transaction of several
    /// statements counts once here and once per statement above).
    pub xact_commit: i64,
}

/// `xact_commit` of `db` (a fresh statistics snapshot).
async fn xact_commit(client: &tokio_postgres::Client, db: &str) -> i64 {
    let _ = client.execute("SELECT pg_stat_clear_snapshot()", &[]).await;
    client
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
            &[&db],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(0)
}

pub fn run(stack: &mut Stack, knobs: &Knobs, rt: &tokio::runtime::Runtime) -> AttackReport {
    let port = stack.gw.server.port;
    let gw = Charged::Process(stack.gw.server.proc.pid());
    let url = stack.scoped_url();
    // A direct connection for the statistics, not counted by the relay.
    let stats = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&stack.db.direct_url, tokio_postgres::NoTls)
            .await
            .expect("connect for pg_stat_database");
        tokio::spawn(conn);
        client
    });
    let part_db0 = stack.db.relay.snapshot();
    let part_x0 = rt.block_on(xact_commit(&stats, &stack.db.name));
    let mut runs: Vec<Vec<PhaseRun>> = vec![Vec::new(); PHASES.len()];
    for round in 0..knobs.rounds {
        for (i, phase) in PHASES.iter().enumerate() {
            let db0 = stack.db.relay.snapshot();
            let started = Instant::now();
            let spray = (*phase == "spray")
                .then(|| Spray::start(port, knobs.spray_conns, knobs.spray_tokens));
            let storm =
                (*phase == "storm").then(|| Storm::start(port, knobs.login_clients, Retry::Ignore));
            let valid = stack.scoped_wrk(&url, knobs).run();
            let spray = spray.map(Spray::finish);
            let storm = storm.map(Storm::finish);
            let secs = started.elapsed().as_secs_f64();
            let db = stack.db.relay.snapshot() - db0;
            let run = PhaseRun {
                valid,
                db,
                db_queries_per_s: db.queries as f64 / secs,
                db_round_trips_per_s: db.round_trips as f64 / secs,
                memory: gw.memory(),
                spray,
                storm,
            };
            eprintln!(
                "attack round {} {phase:>5}: {:.0} req/s p99 {:.0} us ({} non-2xx), db {:.0} queries/s, \
                 sprayed {:.0}/s, logins {:.0}/s, rss {:.1} MiB (peak {:.1})",
                round + 1,
                valid.rps,
                valid.p99_us,
                valid.non_2xx,
                run.db_queries_per_s,
                spray.map_or(0.0, |s| s.tokens_per_s),
                storm.map_or(0.0, |s| s.logins_per_s),
                run.memory.rss as f64 / 1048576.0,
                run.memory.hwm as f64 / 1048576.0,
            );
            runs[i].push(run);
        }
    }
    stack.assert_alive();
    let relay_queries = (stack.db.relay.snapshot() - part_db0).queries;
    std::thread::sleep(STATS_DELAY);
    let xact_commit = rt.block_on(xact_commit(&stats, &stack.db.name)) - part_x0;
    let quiet = runs[0].clone();
    let phases = PHASES
        .iter()
        .zip(runs)
        .map(|(phase, r)| Phase {
            phase,
            rps: median(r.iter().map(|x| x.valid.rps)),
            p99_us: median(r.iter().map(|x| x.valid.p99_us)),
            p99_vs_quiet: median(
                r.iter()
                    .zip(&quiet)
                    .map(|(x, q)| x.valid.p99_us / q.valid.p99_us),
            ),
            non_2xx: r
                .iter()
                .map(|x| x.valid.non_2xx + x.valid.socket_errors)
                .sum(),
            db_queries_per_s: median(r.iter().map(|x| x.db_queries_per_s)),
            db_round_trips_per_s: median(r.iter().map(|x| x.db_round_trips_per_s)),
            sprayed_per_s: r[0]
                .spray
                .map(|_| median(r.iter().filter_map(|x| x.spray).map(|s| s.tokens_per_s))),
            logins_per_s: r[0]
                .storm
                .map(|_| median(r.iter().filter_map(|x| x.storm).map(|s| s.logins_per_s))),
            memory: r.last().map(|x| x.memory).unwrap_or_default(),
            rounds: r,
        })
        .collect();
    AttackReport {
        phases,
        relay_queries,
        xact_commit,
    }
}
