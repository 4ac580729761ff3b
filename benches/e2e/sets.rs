//! Which argon2id set disturbs the proxy least: for each of OWASP's
//! equivalent sets, the gateway's proxy p99 while hashing threads like the
//! gateway's own (one per hashing thread it runs, `SCHED_IDLE`, memory
//! blocks reused) compute that set back to back in this process, against
//! quiet runs alternating with them. The hashing runs outside the gateway
//! because the gateway's set is fixed at build time; what it competes for
//! (the cores, the memory bandwidth and the last-level cache) is the same.
//! Also the hashes per second each set achieved beside the proxy load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use argon2::{Algorithm, Argon2, Block, Params, Version};
use scopegate::accounts::password::{lower_priority, OWASP_SETS};
use serde::Serialize;

use crate::knobs::Knobs;
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

/// `threads` threads hashing with `(m, t)` until `stop`; returns the count.
fn hashing(threads: usize, m: u32, t: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let done = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (stop, done) = (stop.clone(), done.clone());
                std::thread::spawn(move || {
                    lower_priority();
                    let params = Params::new(m, t, 1, Some(32)).expect("OWASP parameters");
                    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
                    let mut blocks = vec![Block::default(); params.block_count()];
                    let mut out = [0u8; 32];
                    while !stop.load(Ordering::Relaxed) {
                        argon
                            .hash_password_into_with_memory(
                                b"storm-password-123",
                                b"sixteen byte salt",
                                &mut out,
                                &mut blocks,
                            )
                            .expect("valid parameters");
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
