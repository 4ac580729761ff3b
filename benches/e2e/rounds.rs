//! Interleaved rounds: every target is loaded once per round (the order
//! rotated each round), so drift on a shared machine hits all of them
//! alike; results are medians over rounds, and ratios are taken within
//! each round before their median is.

use serde::Serialize;

use crate::cpu::Charged;
use crate::load::Load;
use crate::targets::Target;

/// One load run of one target, with the CPU it cost.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sample {
    #[serde(flatten)]
    pub load: Load,
    /// CPU-seconds the target's process(es) spent per 100k requests.
    pub cpu_per_100k: f64,
    /// CPU-seconds the upstream spent per 100k requests.
    pub upstream_cpu_per_100k: f64,
    /// Access-log lines written per request (targets that log).
    pub log_lines_per_request: Option<f64>,
}

/// Run `load` against `target`, reading CPU before and after.
pub fn measure(target: &Target<'_>, upstream: Charged, load: impl FnOnce() -> Load) -> Sample {
    if let Some(log) = target.log_file {
        // Appended to by its writer, so truncating is safe.
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .open(log)
            .and_then(|f| f.set_len(0));
    }
    let (cpu0, up0) = (target.charged.cpu_seconds(), upstream.cpu_seconds());
    let load = load();
    let (cpu1, up1) = (target.charged.cpu_seconds(), upstream.cpu_seconds());
    let per_100k = |s: f64| s / load.requests.max(1) as f64 * 100_000.0;
    let log_lines_per_request = target.log_file.map(|log| {
        let lines = std::fs::read(log)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .unwrap_or(0);
        lines as f64 / load.requests.max(1) as f64
    });
    Sample {
        load,
        cpu_per_100k: per_100k(cpu1 - cpu0),
        upstream_cpu_per_100k: per_100k(up1 - up0),
        log_lines_per_request,
    }
}

/// `rounds` rounds over `n` targets; `run(target, round)` measures one.
/// Returns the samples per target, in round order.
pub fn interleave(
    n: usize,
    rounds: usize,
    mut run: impl FnMut(usize, usize) -> Sample,
) -> Vec<Vec<Sample>> {
    let mut out = vec![Vec::with_capacity(rounds); n];
    for round in 0..rounds {
        for k in 0..n {
            let i = (round + k) % n;
            out[i].push(run(i, round));
        }
    }
    out
}

/// The median (the mean of the middle two for an even count); NaN if empty.
pub fn median(v: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.into_iter().collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Median over rounds of `f(a) / f(b)` within each round.
pub fn ratio(a: &[Sample], b: &[Sample], f: impl Fn(&Sample) -> f64) -> f64 {
    median(a.iter().zip(b).map(|(x, y)| f(x) / f(y)))
}

/// Per-round ratios against nginx (of the same access-log row set).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct VsNginx {
    pub rps: f64,
    pub p99: f64,
    pub cpu: f64,
}

/// One target's summary: medians over rounds, and the rounds themselves.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub target: String,
    pub logs: bool,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    pub cpu_per_100k: f64,
    pub upstream_cpu_per_100k: f64,
    pub log_lines_per_request: Option<f64>,
    pub vs_nginx: Option<VsNginx>,
    /// The ratios of each round.
    pub rounds_vs_nginx: Vec<VsNginx>,
    /// Median over rounds of this target's p50 minus direct's.
    pub added_p50_us: Option<f64>,
    pub rounds: Vec<Sample>,
}

impl Row {
    pub fn new(
        target: &Target<'_>,
        samples: &[Sample],
        nginx: Option<&[Sample]>,
        direct: Option<&[Sample]>,
    ) -> Row {
        let m = |f: fn(&Sample) -> f64| median(samples.iter().map(f));
        let logs = samples
            .iter()
            .filter_map(|s| s.log_lines_per_request)
            .collect::<Vec<_>>();
        Row {
            target: target.name.to_owned(),
            logs: target.logs,
            rps: m(|s| s.load.rps),
            p50_us: m(|s| s.load.p50_us),
            p99_us: m(|s| s.load.p99_us),
            mean_us: m(|s| s.load.mean_us),
            cpu_per_100k: m(|s| s.cpu_per_100k),
            upstream_cpu_per_100k: m(|s| s.upstream_cpu_per_100k),
            log_lines_per_request: (!logs.is_empty()).then(|| median(logs)),
            vs_nginx: nginx.map(|n| VsNginx {
                rps: ratio(samples, n, |s| s.load.rps),
                p99: ratio(samples, n, |s| s.load.p99_us),
                cpu: ratio(samples, n, |s| s.cpu_per_100k),
            }),
            rounds_vs_nginx: nginx.map_or(Vec::new(), |n| {
                samples
                    .iter()
                    .zip(n)
                    .map(|(s, n)| VsNginx {
                        rps: s.load.rps / n.load.rps,
                        p99: s.load.p99_us / n.load.p99_us,
                        cpu: s.cpu_per_100k / n.cpu_per_100k,
                    })
                    .collect()
            }),
            added_p50_us: direct.map(|d| {
                median(
                    samples
                        .iter()
                        .zip(d)
                        .map(|(s, d)| s.load.p50_us - d.load.p50_us),
                )
            }),
            rounds: samples.to_vec(),
        }
    }
}

/// Summarize interleaved samples: each row against the nginx row of its
/// row set and against direct.
pub fn rows(targets: &[Target<'_>], samples: &[Vec<Sample>]) -> Vec<Row> {
    let find = |name: &str, logs: bool| {
        targets
            .iter()
            .position(|t| t.name == name && t.logs == logs)
            .or_else(|| targets.iter().position(|t| t.name == name))
    };
    targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let nginx = find("nginx", t.logs).map(|j| samples[j].as_slice());
            let direct = find("direct", false).map(|j| samples[j].as_slice());
            Row::new(t, &samples[i], nginx, direct)
        })
        .collect()
}
