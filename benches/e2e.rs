//! End-to-end load harness: `wrk` against
//!
//! - `direct`:    the echo upstream itself;
//! - `nginx`:     nginx `proxy_pass` to the same upstream, no auth (the bar);
//! - `scopegate`: the gateway (a separate `scopegate serve` process) with a
//!   cached valid token on a route that requires a scope,
//!
//! in interleaved rounds, so drift on this shared machine hits all three
//! alike; reported as medians and as ratios within each round.
//!
//! Run: `cargo bench --bench e2e` (needs `wrk` and `nginx`, e.g.
//! `apt-get install wrk nginx-light`, and the Postgres server binaries).
//! Knobs: `E2E_ROUNDS` (3), `E2E_SECS` (4), `E2E_CONNS` (64), and
//! `E2E_PUBLIC=1` to proxy through a public route without a token (the
//! proxy machinery alone, without authorization).
//!
//! A second part measures the gateway's p99 while password logins run at
//! their maximum rate (target: p99 within 1.2x), alternating runs
//! without and with a login storm from `E2E_LOGIN_CLIENTS` (6) clients.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scopegate::db::embedded::free_port;
use scopegate::testing::{insert_token, TestDb};

struct Killed(Child);

impl Drop for Killed {
    /// SIGTERM first (nginx's master must stop its workers itself; a
    /// SIGKILL would orphan them), SIGKILL only if it lingers.
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Wait until something accepts connections on `port` (no fixed sleeps).
fn wait_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing listens on {port}"
        );
        std::thread::yield_now();
    }
}

#[derive(Debug, Clone, Copy)]
struct Run {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
}

fn parse_latency(s: &str) -> Option<f64> {
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

fn wrk(url: &str, token: Option<&str>, secs: u64, conns: u32) -> Run {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t1",
        &format!("-c{conns}"),
        &format!("-d{secs}s"),
        "--latency",
    ]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.arg(url).output().expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut run = Run {
        rps: 0.0,
        p50_us: 0.0,
        p99_us: 0.0,
    };
    let mut non_2xx = 0u64;
    for line in text.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            run.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("50%") {
            run.p50_us = parse_latency(v).unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("99%") {
            run.p99_us = parse_latency(v).unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v.trim().parse().unwrap_or(0);
        }
    }
    assert_eq!(non_2xx, 0, "{url}: non-2xx responses:\n{text}");
    assert!(
        run.rps > 0.0,
        "wrk printed no result:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run
}

/// One HTTP/1.1 POST on a kept-alive socket; the status code.
fn post(stream: &mut TcpStream, path: &str, body: &str) -> std::io::Result<u16> {
    use std::io::Read;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            return Ok(head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0));
        }
    }
}

/// Password logins as fast as the server takes them until `stop`; counts
/// successful logins.
fn login_storm(
    port: u16,
    clients: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<u64>> {
    use std::sync::atomic::Ordering;
    (0..clients)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut ok = 0u64;
                let body = "grant_type=password&username=storm&password=storm-password-123";
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                        continue;
                    };
                    while !stop.load(Ordering::Relaxed) {
                        match post(&mut s, "/oauth/token", body) {
                            Ok(200) => ok += 1,
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                }
                ok
            })
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn nginx_conf(dir: &Path, listen: u16, upstream: u16) -> String {
    format!(
        "worker_processes 2;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\nevents {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
           fastcgi_temp_path {dir}/fcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
           upstream echo {{ server 127.0.0.1:{upstream}; keepalive 128; }}\n\
           server {{\n    listen 127.0.0.1:{listen};\n    location / {{\n      proxy_pass http://echo;\n\
               proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n}}\n",
        dir = dir.display()
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / `cargo test --benches` probes
    }
    for tool in ["wrk", "nginx"] {
        if !have(tool) {
            eprintln!("e2e: `{tool}` is not installed (apt-get install wrk nginx-light); skipping");
            return;
        }
    }
    let rounds: usize = std::env::var("E2E_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let secs: u64 = std::env::var("E2E_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let conns: u32 = std::env::var("E2E_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let public = std::env::var("E2E_PUBLIC").is_ok_and(|v| v == "1");
    let bin = env!("CARGO_BIN_EXE_scopegate");
    let dir = tempfile::tempdir().unwrap();

    // Database with one token that holds the route's scope.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (db_url, token) = rt.block_on(async {
        let db = TestDb::new().await;
        let token = insert_token(&db.pool(), "bench", &["bench:read"], 86_400).await;
        (db.url.expose().to_owned(), token)
    });

    let echo_port = free_port().unwrap();
    let _echo = Killed(
        Command::new(bin)
            .args(["echo", "--listen", &format!("127.0.0.1:{echo_port}")])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(echo_port);

    let nginx_port = free_port().unwrap();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, nginx_conf(dir.path(), nginx_port, echo_port)).unwrap();
    let _nginx = Killed(
        Command::new("nginx")
            .args(["-c", conf.to_str().unwrap(), "-g", "daemon off;"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(nginx_port);

    let gw_port = free_port().unwrap();
    let admin_port = free_port().unwrap();
    let cfg = dir.path().join("scopegate.toml");
    let mut f = std::fs::File::create(&cfg).unwrap();
    write!(
        f,
        "[server]\nlisten = \"127.0.0.1:{gw_port}\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n\
         [cache]\nmax_staleness_secs = 5\n\
         [[routes]]\nname = \"bench\"\npath = \"/\"\nupstream = \"http://127.0.0.1:{echo_port}\"\n{}\n",
        if public { "public = true" } else { "scopes = [\"bench:read\"]" }
    )
    .unwrap();
    drop(f);
    let _gw = Killed(
        Command::new(bin)
            .args(["--config", cfg.to_str().unwrap(), "serve"])
            .env("SCOPEGATE_DATABASE_URL", &db_url)
            .env("SCOPEGATE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(gw_port);

    let path = "/bench/items?id=42";
    let targets: [(&str, String, Option<&str>); 3] = [
        (
            "direct",
            format!("http://127.0.0.1:{echo_port}{path}"),
            None,
        ),
        (
            "nginx",
            format!("http://127.0.0.1:{nginx_port}{path}"),
            None,
        ),
        (
            "scopegate",
            format!("http://127.0.0.1:{gw_port}{path}"),
            Some(token.as_str()),
        ),
    ];
    // Warm-up: connection pools, the token cache.
    for (_, url, tok) in &targets {
        wrk(url, *tok, 1, conns);
    }
    let mut results: Vec<[Run; 3]> = Vec::new();
    for round in 0..rounds {
        let mut row = [Run {
            rps: 0.0,
            p50_us: 0.0,
            p99_us: 0.0,
        }; 3];
        for (i, (name, url, tok)) in targets.iter().enumerate() {
            row[i] = wrk(url, *tok, secs, conns);
            eprintln!(
                "round {} {:>9}: {:>9.0} req/s  p50 {:>7.0} us  p99 {:>7.0} us",
                round + 1,
                name,
                row[i].rps,
                row[i].p50_us,
                row[i].p99_us
            );
        }
        results.push(row);
    }
    println!("\nwrk -t1 -c{conns} -d{secs}s, {rounds} interleaved rounds, medians:");
    println!("| target | req/s | p50 | p99 |");
    println!("|---|---|---|---|");
    for (i, (name, _, _)) in targets.iter().enumerate() {
        println!(
            "| {name} | {:.0} | {:.0} us | {:.0} us |",
            median(results.iter().map(|r| r[i].rps).collect()),
            median(results.iter().map(|r| r[i].p50_us).collect()),
            median(results.iter().map(|r| r[i].p99_us).collect()),
        );
    }
    let ratio = median(results.iter().map(|r| r[2].rps / r[1].rps).collect());
    let added_p50 = median(results.iter().map(|r| r[2].p50_us - r[0].p50_us).collect());
    let p99_ratio = median(results.iter().map(|r| r[2].p99_us / r[1].p99_us).collect());
    println!("\nscopegate / nginx throughput (per-round median): {ratio:.2}x");
    println!("scopegate p99 / nginx p99 (per-round median): {p99_ratio:.2}x");
    println!("added p50 vs direct (per-round median): {added_p50:.0} us");

    if public {
        return;
    }
    // p99 of proxied requests while logins run at their maximum rate.
    let clients: usize = std::env::var("E2E_LOGIN_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut create = Command::new(bin)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "account",
            "create",
            "storm",
        ])
        .env("SCOPEGATE_DATABASE_URL", &db_url)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    if let Some(mut stdin) = create.stdin.take() {
        stdin.write_all(b"storm-password-123\n").unwrap();
    }
    assert!(
        create.wait().unwrap().success(),
        "cannot create the storm account"
    );
    let url = &targets[2].1;
    let mut quiet = Vec::new();
    let mut stormy = Vec::new();
    let mut rates = Vec::new();
    for round in 0..rounds {
        let q = wrk(url, Some(&token), secs, conns);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let started = Instant::now();
        let storm = login_storm(gw_port, clients, stop.clone());
        let l = wrk(url, Some(&token), secs, conns);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let logins: u64 = storm.into_iter().map(|h| h.join().unwrap_or(0)).sum();
        let rate = logins as f64 / started.elapsed().as_secs_f64();
        eprintln!(
            "round {} quiet: {:.0} req/s p99 {:.0} us | logins {:.0}/s: {:.0} req/s p99 {:.0} us",
            round + 1,
            q.rps,
            q.p99_us,
            rate,
            l.rps,
            l.p99_us
        );
        quiet.push(q);
        stormy.push(l);
        rates.push(rate);
    }
    println!(
        "\nwith a login storm ({clients} clients, {:.0} logins/s): p99 {:.0} us vs {:.0} us quiet = {:.2}x; throughput {:.2}x",
        median(rates),
        median(stormy.iter().map(|r| r.p99_us).collect()),
        median(quiet.iter().map(|r| r.p99_us).collect()),
        median(quiet.iter().zip(&stormy).map(|(q, l)| l.p99_us / q.p99_us).collect()),
        median(quiet.iter().zip(&stormy).map(|(q, l)| l.rps / q.rps).collect()),
    );
}
