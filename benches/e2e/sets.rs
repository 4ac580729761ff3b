//! Which argon2id set disturbs the proxy least: for each of OWASP's
//! equivalent sets, the gateway's proxy p99 while hashing threads like the
//! gateway's own (one per hashing thread it runs, `SCHED_IDLE`, memory
//! blocks reused) compute that set back to back in this process, against
//! quiet runs alternating with them. The hashing runs outside the gateway
//! because the gateway's set is fixed at build time; what it competes for
//! (the cores, the memory bandwidth and the last-level cache) is the same.
//! Also the hashes per second each set achieved beside the proxy load.
//!
//! And a control ([`controls`]): the same number of `SCHED_IDLE` threads
//! running a busy loop that touches no memory, beside scopegate and beside
//! nginx. Whatever p99 that costs is the scheduler's price for running
//! anything at the lowest priority on saturated cores, not argon2's nor
//! the gateway's.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use argon2::{Algorithm, Argon2, Block, Params, Version};
use scopegate::accounts::password::{lower_priority, OWASP_SETS};
use serde::Serialize;

use crate::knobs::Knobs;
use crate::load::Wrk;
use crate::rounds::median;
use crate::targets::Stack;

#[derive(Debug, Clone, Serialize)]
pub struct SetRow {
    pub m_kib: u32,
    pub t: u32,
    pub quiet_p99_us: f64,
    pub hashing_p99_us: f64,
    /// Per-round median of hashing p99 / quiet p99.
    pub p99_ratio: f64,
    pub rps_ratio: f64,
    /// Hashes per second the threads completed beside the proxy load.
    pub hashes_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ControlRow {
    /// The proxy loaded: `scopegate` or `nginx`.
    pub proxy: &'static str,
    pub quiet_p99_us: f64,
    pub busy_p99_us: f64,
    /// Per-round median of busy p99 / quiet p99.
    pub p99_ratio: f64,
    pub rps_ratio: f64,
}

/// `threads` threads at the hashing pool's priority, each doing `unit`
/// until `stop`; returns how many units they completed.
fn low_priority_work(
    threads: usize,
    stop: Arc<AtomicBool>,
    unit: impl Fn() -> Box<dyn FnMut()> + Send + Sync + 'static,
) -> std::thread::JoinHandle<u64> {
    let unit = Arc::new(unit);
    std::thread::spawn(move || {
        let done = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (stop, done, unit) = (stop.clone(), done.clone(), unit.clone());
                std::thread::spawn(move || {
                    lower_priority();
                    let mut work = unit();
                    while !stop.load(Ordering::Relaxed) {
                        work();
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
        done.load(Ordering::Relaxed)
    })
}

/// `threads` threads hashing with `(m, t)` until `stop`; returns the count.
fn hashing(threads: usize, m: u32, t: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    low_priority_work(threads, stop, move || {
        let params = Params::new(m, t, 1, Some(32)).expect("OWASP parameters");
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let mut blocks = vec![Block::default(); params.block_count()];
        Box::new(move || {
            let mut out = [0u8; 32];
            argon
                .hash_password_into_with_memory(
                    b"storm-password-123",
                    b"sixteen byte salt",
                    &mut out,
                    &mut blocks,
                )
                .expect("valid parameters");
        })
    })
}

/// `threads` threads spinning (registers only, no memory) until `stop`.
fn busy_loop(threads: usize, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    low_priority_work(threads, stop, || {
        Box::new(|| {
            let mut x = 1u64;
            for i in 0..1_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
            }
        })
    })
}

/// The control: scopegate and nginx, each quiet and beside [`busy_loop`]
/// threads, in alternating runs.
pub fn controls(stack: &Stack, knobs: &Knobs, threads: usize) -> Vec<ControlRow> {
    let scoped = stack.scoped_url();
    let nginx = stack.nginx_url();
    let runs: [(&'static str, Wrk<'_>); 2] = [
        ("scopegate", stack.scoped_wrk(&scoped, knobs)),
        ("nginx", stack.nginx_wrk(&nginx, knobs)),
    ];
    let mut rows = Vec::new();
    for (proxy, wrk) in runs {
        let (mut quiet, mut busy) = (Vec::new(), Vec::new());
        for _ in 0..knobs.rounds {
            quiet.push(wrk.run().expect_ok(proxy));
            let stop = Arc::new(AtomicBool::new(false));
            let spinner = busy_loop(threads, stop.clone());
            busy.push(wrk.run().expect_ok(proxy));
            stop.store(true, Ordering::Relaxed);
            let _ = spinner.join();
        }
        let row = ControlRow {
            proxy,
            quiet_p99_us: median(quiet.iter().map(|l| l.p99_us)),
            busy_p99_us: median(busy.iter().map(|l| l.p99_us)),
            p99_ratio: median(quiet.iter().zip(&busy).map(|(q, l)| l.p99_us / q.p99_us)),
            rps_ratio: median(quiet.iter().zip(&busy).map(|(q, l)| l.rps / q.rps)),
        };
        eprintln!(
            "{proxy} beside a SCHED_IDLE busy loop: p99 {:.2}x quiet, req/s {:.2}x",
            row.p99_ratio, row.rps_ratio
        );
        rows.push(row);
    }
    rows
}

pub fn run(stack: &Stack, knobs: &Knobs, threads: usize) -> Vec<SetRow> {
    let url = stack.scoped_url();
    let wrk = || {
        stack
            .scoped_wrk(&url, knobs)
            .run()
            .expect_ok("scopegate beside hashing")
    };
    let mut rows = Vec::new();
    for (m, t) in OWASP_SETS {
        let (mut quiet, mut loud, mut rates) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..knobs.rounds {
            quiet.push(wrk());
            let stop = Arc::new(AtomicBool::new(false));
            let started = Instant::now();
            let hasher = hashing(threads, m, t, stop.clone());
            loud.push(wrk());
            stop.store(true, Ordering::Relaxed);
            let hashes = hasher.join().unwrap_or(0);
            rates.push(hashes as f64 / started.elapsed().as_secs_f64());
        }
        let row = SetRow {
            m_kib: m,
            t,
            quiet_p99_us: median(quiet.iter().map(|l| l.p99_us)),
            hashing_p99_us: median(loud.iter().map(|l| l.p99_us)),
            p99_ratio: median(quiet.iter().zip(&loud).map(|(q, l)| l.p99_us / q.p99_us)),
            rps_ratio: median(quiet.iter().zip(&loud).map(|(q, l)| l.rps / q.rps)),
            hashes_per_s: median(rates),
        };
        eprintln!(
            "argon2id m={m} t={t}: proxy p99 {:.2}x quiet, req/s {:.2}x, {:.0} hashes/s beside it",
            row.p99_ratio, row.rps_ratio, row.hashes_per_s
        );
        rows.push(row);
    }
    rows
}
