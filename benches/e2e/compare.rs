//! The throughput comparisons, each in interleaved rounds:
//!
//! - `main`: wrk at `E2E_CONNS` against direct, nginx, bare, scopegate
//!   (cached token, scoped route) and scopegate's public route, with
//!   access logs off, and again with them on for nginx and scopegate;
//! - `lowload`: one connection (`wrk -c1 -t1`): the latency each proxy
//!   adds over direct;
//! - `rate`: the same four offered one fixed rate (`E2E_RATE`) over
//!   HTTP/1.1: latency at equal load, which a closed loop like wrk's
//!   cannot show (a slower proxy there is simply offered less);
//! - `h2c`: h2load with prior knowledge against the same four.

use crate::knobs::Knobs;
use crate::load::{H2load, Load, Paced, Wrk};
use crate::rounds::{interleave, measure, rows, Row};
use crate::targets::{Stack, Target};

fn progress(part: &str, round: usize, t: &Target<'_>, s: &crate::rounds::Sample) {
    // h2load prints no percentiles.
    let percentiles = if s.load.p50_us > 0.0 {
        format!(
            "p50 {:>6.0} us  p99 {:>6.0} us  ",
            s.load.p50_us, s.load.p99_us
        )
    } else {
        String::new()
    };
    eprintln!(
        "{part} round {} {:>16}{}: {:>8.0} req/s  {percentiles}mean {:>6.0} us  cpu {:.2} s/100k",
        round + 1,
        t.name,
        if t.logs { " (logs)" } else { "" },
        s.load.rps,
        s.load.mean_us,
        s.cpu_per_100k
    );
}

/// `wrk -t1` for one second at `conns` connections: warms connection
/// pools and the token cache.
fn warm(t: &Target<'_>, conns: u32) {
    Wrk {
        url: &t.url,
        token: t.token,
        secs: 1,
        conns,
        threads: 1,
    }
    .run()
    .expect_ok(t.name);
}

/// One part: `warm` each of `targets_of`, then `load` them in interleaved
/// rounds, each run measured ([`measure`]) and reported as it ends; the
/// rows of medians.
fn compared(
    part: &str,
    stack: &mut Stack,
    knobs: &Knobs,
    targets_of: impl Fn(&Stack) -> Vec<Target<'_>>,
    warm: impl Fn(&Target<'_>),
    load: impl Fn(&Target<'_>) -> Load,
) -> Vec<Row> {
    targets_of(stack).iter().for_each(&warm);
    let samples = {
        let targets = targets_of(stack);
        let upstream = stack.upstream_charged();
        interleave(targets.len(), knobs.rounds, |i, round| {
            let t = &targets[i];
            let s = measure(t, upstream, || load(t));
            progress(part, round, t, &s);
            s
        })
    };
    stack.assert_alive();
    let targets = targets_of(stack);
    rows(&targets, &samples)
}

fn wrk_rows(
    part: &str,
    stack: &mut Stack,
    targets_of: impl Fn(&Stack) -> Vec<Target<'_>>,
    knobs: &Knobs,
    conns: u32,
    threads: u32,
) -> Vec<Row> {
    compared(
        part,
        stack,
        knobs,
        targets_of,
        |t| warm(t, conns),
        |t| {
            Wrk {
                url: &t.url,
                token: t.token,
                secs: knobs.secs,
                conns,
                threads,
            }
            .run()
            .expect_ok(t.name)
        },
    )
}

/// The main comparison.
pub fn main_rows(stack: &mut Stack, knobs: &Knobs) -> Vec<Row> {
    wrk_rows(
        "main",
        stack,
        |s| s.main_targets(knobs),
        knobs,
        knobs.conns,
        knobs.wrk_threads,
    )
}

/// One connection: added latency at low load.
pub fn lowload_rows(stack: &mut Stack, knobs: &Knobs) -> Vec<Row> {
    wrk_rows("lowload", stack, |s| s.basic_targets(false), knobs, 1, 1)
}

/// h2c through h2load.
pub fn h2c_rows(stack: &mut Stack, knobs: &Knobs) -> Vec<Row> {
    let h2 = |t: &Target<'_>, secs: u64| {
        H2load {
            url: &t.url,
            token: t.token,
            secs,
            conns: knobs.h2_conns,
            streams: knobs.h2_streams,
        }
        .run()
        .expect_ok(t.name)
    };
    compared(
        "h2c",
        stack,
        knobs,
        |s| s.basic_targets(true),
        |t| {
            h2(t, 1);
        },
        |t| h2(t, knobs.secs),
    )
}

/// The same offered rate for every target (HTTP/1.1, h2load `--rps`).
pub fn rate_rows(stack: &mut Stack, knobs: &Knobs) -> Vec<Row> {
    let log = std::env::temp_dir().join(format!("scopegate-e2e-rate-{}.log", std::process::id()));
    let per_conn = knobs.rate_per_conn();
    compared(
        "rate",
        stack,
        knobs,
        |s| s.basic_targets(false),
        |t| warm(t, knobs.conns),
        |t| {
            Paced {
                url: &t.url,
                token: t.token,
                secs: knobs.secs,
                conns: knobs.conns,
                per_conn,
                log: &log,
            }
            .run()
            .expect_ok(t.name)
            .expect_rate(t.name, per_conn * knobs.conns, knobs.secs)
        },
    )
}
