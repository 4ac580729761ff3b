//! The report: Markdown tables on stdout as each part finishes, and the
//! whole run as JSON under `target/e2e/` (`<UTC timestamp>.json` and
//! `latest.json`).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::attack::AttackReport;
use crate::knobs::Knobs;
use crate::memory::MemoryReport;
use crate::procs::version;
use crate::rounds::Row;
use crate::storm::StormReport;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
    pub nginx: String,
    pub wrk: String,
    pub h2load: String,
    /// `/proc/loadavg` when the run started and ended (a busy machine
    /// shows here).
    pub loadavg_start: String,
    pub loadavg_end: String,
}

impl Machine {
    fn probe() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default();
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            nginx: version("nginx", "-v"),
            wrk: version("wrk", "-v")
                .split(" Copyright")
                .next()
                .unwrap_or("")
                .to_owned(),
            h2load: version("h2load", "--version"),
            loadavg_start: read_trim("/proc/loadavg"),
            loadavg_end: String::new(),
        }
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub started: String,
    pub machine: Machine,
    pub knobs: Knobs,
    pub main: Option<Vec<Row>>,
    pub lowload: Option<Vec<Row>>,
    pub rate: Option<Vec<Row>>,
    pub h2c: Option<Vec<Row>>,
    pub storm: Option<StormReport>,
    pub attack: Option<AttackReport>,
    pub memory: Option<MemoryReport>,
    /// Parts skipped, and why.
    pub skipped: Vec<String>,
}

/// `YYYY-MM-DDTHH-MM-SSZ` (a file name) for a UNIX time.
fn timestamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}-{:02}-{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Report {
    pub fn new(knobs: &Knobs) -> Report {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Report {
            started: timestamp(now),
            machine: Machine::probe(),
            knobs: knobs.clone(),
            main: None,
            lowload: None,
            rate: None,
            h2c: None,
            storm: None,
            attack: None,
            memory: None,
            skipped: Vec::new(),
        }
    }

    /// Write `target/e2e/<started>.json` and `target/e2e/latest.json`;
    /// the first path.
    pub fn write(&mut self) -> std::io::Result<PathBuf> {
        self.machine.loadavg_end = read_trim("/proc/loadavg");
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
            .join("e2e");
        std::fs::create_dir_all(&dir)?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let path = dir.join(format!("{}.json", self.started));
        std::fs::write(&path, &json)?;
        std::fs::write(dir.join("latest.json"), &json)?;
        Ok(path)
    }

    pub fn print_header(&self) {
        let m = &self.machine;
        let k = &self.knobs;
        println!("# scopegate end-to-end load harness, {}", self.started);
        println!();
        println!(
            "{} cores ({}), kernel {}, {}, {}; load average at start {}",
            m.cores, m.cpu, m.kernel, m.nginx, m.wrk, m.loadavg_start
        );
        println!(
            "upstream `{}`, {} interleaved rounds of {} s, wrk -t{} -c{}, medians; ratios are per-round medians",
            match k.upstream {
                crate::knobs::Upstream::Fixed => "scopegate echo --fixed",
                crate::knobs::Upstream::Echo => "scopegate echo",
            },
            k.rounds,
            k.secs,
            k.wrk_threads,
            k.conns
        );
    }
}

fn ms(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn x(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.2}×"))
}

fn label(r: &Row) -> String {
    if r.logs {
        format!("{} (access log on)", r.target)
    } else {
        r.target.clone()
    }
}

pub fn print_main(rows: &[Row], knobs: &Knobs) {
    println!(
        "\n## HTTP/1.1, wrk -t{} -c{}\n",
        knobs.wrk_threads, knobs.conns
    );
    println!("| target | req/s | p50 | p99 | CPU-s/100k req | upstream CPU-s/100k | × nginx req/s | × nginx p99 | × nginx CPU | log lines/req |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.0} | {} | {} | {:.2} | {:.2} | {} | {} | {} | {} |",
            label(r),
            r.rps,
            ms(r.p50_us),
            ms(r.p99_us),
            r.cpu_per_100k,
            r.upstream_cpu_per_100k,
            x(r.vs_nginx.map(|v| v.rps)),
            x(r.vs_nginx.map(|v| v.p99)),
            x(r.vs_nginx.map(|v| v.cpu)),
            r.log_lines_per_request
                .map_or("—".into(), |v| format!("{v:.2}")),
        );
    }
    if rows.iter().any(|r| r.target == "direct") {
        println!("\nThe direct row's CPU is the upstream's own.");
    }
    println!("Ratios: against nginx of the same access-log setting, per round, then the median.");
}

pub fn print_lowload(rows: &[Row]) {
    println!("\n## One connection (wrk -t1 -c1)\n");
    println!("| target | req/s | p50 | p99 | added p50 vs direct | CPU-s/100k req |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.0} | {} | {} | {} | {:.2} |",
            r.target,
            r.rps,
            ms(r.p50_us),
            ms(r.p99_us),
            r.added_p50_us
                .filter(|_| r.target != "direct")
                .map_or("—".into(), |v| format!("{v:.0} µs")),
            r.cpu_per_100k
        );
    }
}

pub fn print_rate(rows: &[Row], knobs: &Knobs) {
    let per_conn = knobs.rate_per_conn();
    println!(
        "\n## Equal offered load (h2load --h1 -c{} --rps {per_conn}: {} requests a second)\n",
        knobs.conns,
        per_conn * knobs.conns
    );
    println!("| target | req/s | p50 | p99 | CPU-s/100k req | × nginx p99 | × nginx CPU |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.0} | {} | {} | {:.2} | {} | {} |",
            r.target,
            r.rps,
            ms(r.p50_us),
            ms(r.p99_us),
            r.cpu_per_100k,
            x(r.vs_nginx.map(|v| v.p99)),
            x(r.vs_nginx.map(|v| v.cpu)),
        );
    }
}

pub fn print_h2c(rows: &[Row], knobs: &Knobs) {
    println!(
        "\n## h2c, h2load -t1 -c{} -m{}\n",
        knobs.h2_conns, knobs.h2_streams
    );
    println!("| target | req/s | mean latency | CPU-s/100k req | × nginx req/s | × nginx CPU |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.0} | {} | {:.2} | {} | {} |",
            r.target,
            r.rps,
            ms(r.mean_us),
            r.cpu_per_100k,
            x(r.vs_nginx.map(|v| v.rps)),
            x(r.vs_nginx.map(|v| v.cpu)),
        );
    }
}

pub fn print_storm(s: &StormReport) {
    println!(
        "\n## Logins next to proxying ({} login clients, a 503's `Retry-After` {})\n",
        s.clients,
        match s.retry {
            crate::storm::Retry::Honor => "honored",
            crate::storm::Retry::Ignore => "ignored",
        }
    );
    println!(
        "One verify {:.1} ms with {} hashing threads: limit {:.0} logins/s. One login on the idle gateway {:.1} ms.\n",
        s.verify_ms, s.hash_threads, s.limit_logins_per_s, s.idle_login_ms
    );
    println!("| | logins/s | ÷ limit | refused/s | proxy p99 | × quiet p99 | × quiet req/s |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| storm alone | {:.0} | {:.2} | {:.0} | — | — | — |",
        s.alone.logins_per_s, s.alone_vs_limit, s.alone.refused_per_s
    );
    println!(
        "| quiet proxy load | — | — | — | {} | 1.00× | 1.00× |",
        ms(s.quiet_p99_us)
    );
    println!(
        "| proxy load + storm | {:.0} | {:.2} | {:.0} | {} | {:.2}× | {:.2}× |",
        s.loaded_logins_per_s,
        s.loaded_vs_limit,
        s.loaded_refused_per_s,
        ms(s.stormy_p99_us),
        s.p99_ratio,
        s.rps_ratio
    );
    println!("\nThe proxy beside {} threads hashing each OWASP argon2id set back to back (`SCHED_IDLE`):\n", s.hash_threads);
    println!(
        "| set (m KiB / t) | hashes/s beside the load | proxy p99 | × quiet p99 | × quiet req/s |"
    );
    println!("|---|---|---|---|---|");
    for r in &s.sets {
        println!(
            "| {} / {} | {:.0} | {} | {:.2}× | {:.2}× |",
            r.m_kib,
            r.t,
            r.hashes_per_s,
            ms(r.hashing_p99_us),
            r.p99_ratio,
            r.rps_ratio
        );
    }
    println!(
        "\nThe control: the same {} threads (`SCHED_IDLE`) running a busy loop that touches no memory, beside each proxy:\n",
        s.hash_threads
    );
    println!("| proxy | quiet p99 | p99 beside the loop | × quiet p99 | × quiet req/s |");
    println!("|---|---|---|---|---|");
    for c in &s.controls {
        println!(
            "| {} | {} | {} | {:.2}× | {:.2}× |",
            c.proxy,
            ms(c.quiet_p99_us),
            ms(c.busy_p99_us),
            c.p99_ratio,
            c.rps_ratio
        );
    }
}

pub fn print_attack(a: &AttackReport, knobs: &Knobs) {
    println!(
        "\n## Under attack (valid traffic: wrk -c{} with a cached token; spray: {} connections, up to {} random tokens a round)\n",
        knobs.conns, knobs.spray_conns, knobs.spray_tokens
    );
    println!("| phase | valid req/s | valid p99 | × quiet p99 | failed | DB queries/s | DB round trips/s | sprayed tokens/s | logins/s | RSS | peak RSS |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1048576.0);
    let opt = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.0}"));
    for p in &a.phases {
        println!(
            "| {} | {:.0} | {} | {:.2}× | {} | {:.0} | {:.0} | {} | {} | {} | {} |",
            p.phase,
            p.rps,
            ms(p.p99_us),
            p.p99_vs_quiet,
            p.non_2xx,
            p.db_queries_per_s,
            p.db_round_trips_per_s,
            opt(p.sprayed_per_s),
            opt(p.logins_per_s),
            mib(p.memory.rss),
            mib(p.memory.hwm),
        );
    }
    println!(
        "\nCross-check: the relay counted {} queries over the part; Postgres committed {} transactions (`pg_stat_database.xact_commit`).",
        a.relay_queries, a.xact_commit
    );
}

pub fn print_memory(m: &MemoryReport) {
    println!("\n## Token cache\n");
    println!("| | heap (allocator-counted) | RSS |");
    println!("|---|---|---|");
    println!(
        "| bytes per cached token ({} tokens; RSS {:.1} → {:.1} MiB) | {:.0} | {:.0} |",
        m.tokens,
        m.rss_before as f64 / 1048576.0,
        m.rss_after as f64 / 1048576.0,
        m.heap_bytes_per_token,
        m.bytes_per_token
    );
    println!(
        "| of which moka's own entry (as many 16-byte keys, 8-byte values, per-entry expiry, alone) | {:.0} | {:.0} |",
        m.moka_heap_bytes_per_entry, m.moka_bytes_per_entry
    );
    println!(
        "| database round trips (queries) per cold token | {:.0} ({:.0}) | |",
        m.cold_round_trips, m.cold_queries
    );
    println!(
        "| the first cold token: connection opened, statement prepared | {} round trips ({} queries, {} connections) | |",
        m.first_cold.round_trips, m.first_cold.queries, m.first_cold.connections
    );
}
