//! The harness's knobs, all from the environment (README, "Benchmarks").

use serde::Serialize;

/// Which access-log row sets the main comparison runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Logs {
    Off,
    On,
    Both,
}

impl Logs {
    pub fn off(self) -> bool {
        matches!(self, Logs::Off | Logs::Both)
    }
    pub fn on(self) -> bool {
        matches!(self, Logs::On | Logs::Both)
    }
}

/// The upstream every target forwards to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Upstream {
    /// `scopegate echo --fixed`: a constant 2-byte answer.
    Fixed,
    /// `scopegate echo`: JSON describing every request.
    Echo,
}

/// The parts of the harness, in the order they run.
pub const PARTS: [&str; 7] = [
    "main", "lowload", "rate", "h2c", "storm", "attack", "memory",
];

#[derive(Debug, Clone, Serialize)]
pub struct Knobs {
    /// `E2E_ROUNDS` (3): interleaved rounds; medians are taken over them.
    pub rounds: usize,
    /// `E2E_SECS` (4): seconds per load run.
    pub secs: u64,
    /// `E2E_CONNS` (64): wrk connections for the main comparison.
    pub conns: u32,
    /// `E2E_WRK_THREADS` (1): wrk threads.
    pub wrk_threads: u32,
    /// `E2E_LOGS` (both): access-log row sets, `off`, `on` or `both`.
    pub logs: Logs,
    /// `E2E_UPSTREAM` (fixed): `fixed` or `echo`.
    pub upstream: Upstream,
    /// `E2E_PARTS` (all): comma-separated subset of [`PARTS`].
    pub parts: Vec<String>,
    /// `E2E_RATE` (32000): requests a second offered in the `rate` part,
    /// spread over `E2E_CONNS` connections whatever the answers' pace.
    pub rate: u32,
    /// `E2E_H2_CONNS` (16) and `E2E_H2_STREAMS` (4): h2load clients and
    /// concurrent streams per client (64 requests in flight, like wrk).
    pub h2_conns: u32,
    pub h2_streams: u32,
    /// `E2E_LOGIN_CLIENTS` (6): clients logging in during a login storm.
    pub login_clients: usize,
    /// `E2E_STORM_RETRY` (honor): whether those clients wait as a 503's
    /// `Retry-After` says (`honor`) or retry at once (`ignore`). The attack
    /// part's storm always ignores it.
    pub storm_retry: crate::storm::Retry,
    /// `E2E_SPRAY_TOKENS` (100000): distinct random tokens sprayed per
    /// attack round (fewer if the run ends first).
    pub spray_tokens: u64,
    /// `E2E_SPRAY_CONNS` (8): connections spraying them.
    pub spray_conns: usize,
    /// `E2E_MEM_TOKENS` (100000): tokens cached for the bytes-per-token figure.
    pub mem_tokens: usize,
}

fn num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse() {
            Ok(n) => n,
            Err(_) => panic!("{name}={v:?} is not a number"),
        },
        _ => default,
    }
}

fn word(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

impl Knobs {
    pub fn from_env() -> Knobs {
        let logs = match word("E2E_LOGS", "both").as_str() {
            "off" => Logs::Off,
            "on" => Logs::On,
            "both" => Logs::Both,
            other => panic!("E2E_LOGS={other:?}: expected off, on or both"),
        };
        let upstream = match word("E2E_UPSTREAM", "fixed").as_str() {
            "fixed" => Upstream::Fixed,
            "echo" => Upstream::Echo,
            other => panic!("E2E_UPSTREAM={other:?}: expected fixed or echo"),
        };
        let parts: Vec<String> = match word("E2E_PARTS", "all").as_str() {
            "all" => PARTS.iter().map(|p| (*p).to_owned()).collect(),
            list => list
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
        };
        for p in &parts {
            assert!(
                PARTS.contains(&p.as_str()),
                "E2E_PARTS: unknown part {p:?} (known: {})",
                PARTS.join(", ")
            );
        }
        let rounds = num("E2E_ROUNDS", 3usize);
        assert!(rounds >= 1, "E2E_ROUNDS must be at least 1");
        Knobs {
            rounds,
            secs: num("E2E_SECS", 4u64).max(1),
            conns: num("E2E_CONNS", 64u32).max(1),
            wrk_threads: num("E2E_WRK_THREADS", 1u32).max(1),
            logs,
            upstream,
            parts,
            rate: num("E2E_RATE", 32_000u32).max(1),
            h2_conns: num("E2E_H2_CONNS", 16u32).max(1),
            h2_streams: num("E2E_H2_STREAMS", 4u32).max(1),
            login_clients: num("E2E_LOGIN_CLIENTS", 6usize).max(1),
            storm_retry: match word("E2E_STORM_RETRY", "honor").as_str() {
                "honor" => crate::storm::Retry::Honor,
                "ignore" => crate::storm::Retry::Ignore,
                other => panic!("E2E_STORM_RETRY={other:?}: expected honor or ignore"),
            },
            spray_tokens: num("E2E_SPRAY_TOKENS", 100_000u64),
            spray_conns: num("E2E_SPRAY_CONNS", 8usize).max(1),
            mem_tokens: num("E2E_MEM_TOKENS", 100_000usize).max(1),
        }
    }

    /// What each connection offers in the `rate` part (h2load's `--rps`
    /// is per connection): `E2E_RATE` spread over `E2E_CONNS`.
    pub fn rate_per_conn(&self) -> u32 {
        (self.rate / self.conns).max(1)
    }

    pub fn wants(&self, part: &str) -> bool {
        self.parts.iter().any(|p| p == part)
    }
}
