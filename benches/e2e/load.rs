//! The load generators: `wrk` (HTTP/1.1, latency percentiles), `h2load`
//! (h2c prior knowledge) and `h2load --h1 --rps` (HTTP/1.1 at a fixed
//! offered rate), run as processes and their output parsed.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

/// What one load run measured.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Load {
    pub rps: f64,
    /// Latency percentiles (wrk only; 0 for h2load, which prints none).
    pub p50_us: f64,
    pub p99_us: f64,
    /// Mean latency (h2load's "time for request"; wrk's "Latency Avg").
    pub mean_us: f64,
    /// Requests completed in the run.
    pub requests: u64,
    /// Answers other than 2xx/3xx.
    pub non_2xx: u64,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
}

impl Load {
    /// Panics unless every request succeeded: a target that fails fast
    /// would otherwise look fast.
    pub fn expect_ok(self, what: &str) -> Load {
        assert!(
            self.non_2xx == 0 && self.socket_errors == 0,
            "{what}: {} non-2xx answers and {} socket errors in {} requests",
            self.non_2xx,
            self.socket_errors,
            self.requests
        );
        self
    }

    /// Panics unless the run carried at least 95% of the `rate` offered
    /// for `secs`: latencies of a target that fell behind (or lost
    /// connections) would not be comparable.
    pub fn expect_rate(self, what: &str, rate: u32, secs: u64) -> Load {
        let offered = u64::from(rate) * secs;
        assert!(
            self.requests * 100 >= offered * 95,
            "{what}: {} requests of {offered} offered; lower E2E_RATE",
            self.requests
        );
        self
    }
}

/// A latency as wrk and h2load print it (`46.00us`, `1.23ms`, `2.01s`),
/// in microseconds.
pub fn parse_latency(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000_000.0)
    } else {
        return None;
    };
    num.trim().parse::<f64>().ok().map(|v| v * mult)
}

/// One wrk run.
pub struct Wrk<'a> {
    pub url: &'a str,
    pub token: Option<&'a str>,
    pub secs: u64,
    pub conns: u32,
    pub threads: u32,
}

impl Wrk<'_> {
    pub fn run(&self) -> Load {
        let mut cmd = Command::new("wrk");
        cmd.args([
            &format!("-t{}", self.threads.min(self.conns)),
            &format!("-c{}", self.conns),
            &format!("-d{}s", self.secs),
            "--latency",
        ]);
        run_tool(cmd, "wrk", self.url, self.token, parse_wrk)
    }
}

/// Run a load tool (`cmd`, its options set) against `url` with the token's
/// `Authorization`, and parse its summary; panics if it printed none.
fn run_tool(
    mut cmd: Command,
    tool: &str,
    url: &str,
    token: Option<&str>,
    parse: fn(&str) -> Load,
) -> Load {
    if let Some(t) = token {
        cmd.args(["-H", &format!("authorization: Bearer {t}")]);
    }
    let out = cmd.arg(url).output().expect("run the load tool");
    let text = String::from_utf8_lossy(&out.stdout);
    let load = parse(&text);
    assert!(
        load.requests > 0,
        "{url}: {tool} printed no result:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    load
}

/// wrk's summary (with `--latency`).
pub fn parse_wrk(text: &str) -> Load {
    let mut load = Load::default();
    let mut in_distribution = false;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("Latency Distribution") {
            in_distribution = true;
        } else if let Some(v) = l.strip_prefix("Latency") {
            if !in_distribution {
                load.mean_us = v
                    .split_whitespace()
                    .next()
                    .and_then(parse_latency)
                    .unwrap_or(0.0);
            }
        } else if let Some(v) = l.strip_prefix("Requests/sec:") {
            load.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("50%") {
            load.p50_us = parse_latency(v).unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("99%") {
            load.p99_us = parse_latency(v).unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            load.non_2xx = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = l.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            load.socket_errors = v
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
        } else if let Some((n, _)) = l.split_once(" requests in ") {
            load.requests = n.trim().parse().unwrap_or(0);
        }
    }
    load
}

/// One h2load run: `conns` clients with `streams` concurrent streams each,
/// h2c with prior knowledge.
pub struct H2load<'a> {
    pub url: &'a str,
    pub token: Option<&'a str>,
    pub secs: u64,
    pub conns: u32,
    pub streams: u32,
}

impl H2load<'_> {
    pub fn run(&self) -> Load {
        let mut cmd = Command::new("h2load");
        cmd.args([
            "-t1",
            &format!("-c{}", self.conns),
            &format!("-m{}", self.streams),
            "-D",
            &self.secs.to_string(),
        ]);
        run_tool(cmd, "h2load", self.url, self.token, parse_h2load)
    }
}

/// The numbers after `key` on h2load's line starting with `prefix`,
/// e.g. `requests: 9 total, 9 started, 9 done` -> `done` = 9.
fn h2_count(text: &str, prefix: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .and_then(|rest| {
            rest.split(',').find_map(|part| {
                let mut words = part.split_whitespace();
                let n = words.next()?;
                (words.next()? == key).then(|| n.parse().ok())?
            })
        })
        .unwrap_or(0)
}

/// h2load's summary.
pub fn parse_h2load(text: &str) -> Load {
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("finished in "))
        .and_then(|rest| rest.split(',').nth(1))
        .and_then(|v| v.trim().strip_suffix("req/s"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let done = h2_count(text, "requests:", "done");
    let ok = h2_count(text, "status codes:", "2xx") + h2_count(text, "status codes:", "3xx");
    let failed = h2_count(text, "requests:", "failed")
        + h2_count(text, "requests:", "errored")
        + h2_count(text, "requests:", "timeout");
    // min max mean sd +/-sd
    let mean_us = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("time for request:"))
        .and_then(|v| v.split_whitespace().nth(2))
        .and_then(parse_latency)
        .unwrap_or(0.0);
    Load {
        rps,
        p50_us: 0.0,
        p99_us: 0.0,
        mean_us,
        requests: done,
        non_2xx: done.saturating_sub(ok),
        socket_errors: failed,
    }
}

/// One paced HTTP/1.1 run: `conns` connections, each sending `per_conn`
/// requests a second (h2load's `--rps`) whatever the answers' pace, so
/// every target is offered the same load; latencies come from h2load's
/// per-request log (`log`, overwritten).
pub struct Paced<'a> {
    pub url: &'a str,
    pub token: Option<&'a str>,
    pub secs: u64,
    pub conns: u32,
    pub per_conn: u32,
    pub log: &'a Path,
}

impl Paced<'_> {
    pub fn run(&self) -> Load {
        let _ = std::fs::remove_file(self.log);
        let mut cmd = Command::new("h2load");
        cmd.args([
            "--h1",
            "-t1",
            &format!("-c{}", self.conns),
            &format!("--rps={}", self.per_conn),
            "-D",
            &self.secs.to_string(),
        ]);
        cmd.arg(format!("--log-file={}", self.log.display()));
        let mut load = run_tool(cmd, "h2load", self.url, self.token, parse_h2load);
        let log = std::fs::read_to_string(self.log).unwrap_or_default();
        let _ = std::fs::remove_file(self.log);
        (load.p50_us, load.p99_us) = log_percentiles(&log);
        load
    }
}

/// p50 and p99 of the durations in h2load's per-request log (one line per
/// request: start time, status, microseconds to the end of the response;
/// tab-separated). Nearest rank; 0 for an empty log.
pub fn log_percentiles(log: &str) -> (f64, f64) {
    let mut us: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.trim().parse().ok())
        .collect();
    if us.is_empty() {
        return (0.0, 0.0);
    }
    us.sort_unstable();
    let at = |q: f64| us[((q * us.len() as f64).ceil() as usize).clamp(1, us.len()) - 1] as f64;
    (at(0.50), at(0.99))
}
