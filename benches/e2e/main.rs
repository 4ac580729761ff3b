//! End-to-end load harness (issue "Performance"; README, "Benchmarks").
//!
//! Processes under test, all on loopback, each its own process:
//!
//! - `direct`: the upstream itself (`scopegate echo --fixed` by default);
//! - `nginx`: `proxy_pass` to it (keep-alive upstream, 2 workers), the bar;
//! - `bare`: a minimal hyper proxy with scopegate's server and client
//!   settings and nothing else ([`bare`]), the reference for what plain
//!   proxying costs;
//! - `scopegate`: `scopegate serve`, a cached valid token on a route that
//!   requires a scope, and its public route without a token.
//!
//! Parts (`E2E_PARTS`), each in interleaved rounds with medians: the main
//! comparison with access logs off and on ([`compare`]), one connection,
//! one offered rate for all, h2c through h2load, logins next to proxying
//! ([`storm`]), load under token spraying and a login storm ([`attack`]),
//! and the token cache's memory and cold-path round trips ([`memory`]). Markdown on stdout, JSON
//! under `target/e2e/` ([`report`]).
//!
//! Run: `cargo bench --bench e2e` (needs `wrk`, `nginx`, optionally
//! `h2load`: `apt-get install -y wrk nginx-light nghttp2-client`, and the
//! Postgres server binaries). Not part of `cargo test`: without `--bench`
//! (which `cargo bench` passes) it does nothing.

mod attack;
mod bare;
mod compare;
mod cpu;
mod heap;
mod http1;
mod knobs;
mod load;
mod memory;
mod pgrelay;
mod procs;
mod report;
mod rounds;
mod sets;
mod storm;
mod targets;

use scopegate::testing::{insert_token, TestDb};

use crate::knobs::Knobs;
use crate::pgrelay::Relay;
use crate::report::Report;
use crate::targets::{Database, Stack};

// mimalloc like scopegate's binary (and the bare proxy, which is this
// binary), able to count the heap for the token-cache figure.
#[global_allocator]
static GLOBAL: heap::Counting = heap::Counting;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("bare-proxy") {
        bare::main(&args[2..]);
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches` and `cargo bench -- --list` probes.
        return;
    }
    for tool in ["wrk", "nginx"] {
        if !procs::have(tool) {
            eprintln!(
                "e2e: `{tool}` is not installed (apt-get install -y wrk nginx-light nghttp2-client); skipping"
            );
            return;
        }
    }
    let knobs = Knobs::from_env();
    let mut report = Report::new(&knobs);
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");

    let (db, token) = rt.block_on(async {
        let db = TestDb::new().await;
        let token = insert_token(&db.pool(), "bench", &["bench:read"], 86_400).await;
        let cfg: tokio_postgres::Config = db.url.expose().parse().expect("the test URL parses");
        let pg = match cfg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let port = cfg.get_ports().first().copied().unwrap_or(5432);
        let target = tokio::net::lookup_host((pg.as_str(), port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .expect("the test server's address");
        let relay = Relay::start(target).await.expect("start the relay");
        let db = Database::new(db.url.expose().to_owned(), db.name.clone(), relay);
        (db, token)
    });
    let mut stack = Stack::start(&knobs, db, token);
    report.print_header();

    if knobs.wants("main") {
        let rows = compare::main_rows(&mut stack, &knobs);
        report::print_main(&rows, &knobs);
        report.main = Some(rows);
    }
    if knobs.wants("lowload") {
        let rows = compare::lowload_rows(&mut stack, &knobs);
        report::print_lowload(&rows);
        report.lowload = Some(rows);
    }
    if knobs.wants("rate") && h2load_for("rate", &mut report) {
        let rows = compare::rate_rows(&mut stack, &knobs);
        report::print_rate(&rows, &knobs);
        report.rate = Some(rows);
    }
    if knobs.wants("h2c") && h2load_for("h2c", &mut report) {
        let rows = compare::h2c_rows(&mut stack, &knobs);
        report::print_h2c(&rows, &knobs);
        report.h2c = Some(rows);
    }
    if knobs.wants("storm") || knobs.wants("attack") {
        storm::create_account(&stack.gw, &stack.db.relay_url);
    }
    if knobs.wants("storm") {
        let s = storm::run(&mut stack, &knobs, &rt);
        report::print_storm(&s);
        report.storm = Some(s);
    }
    if knobs.wants("attack") {
        let a = attack::run(&mut stack, &knobs, &rt);
        report::print_attack(&a, &knobs);
        report.attack = Some(a);
    }
    if knobs.wants("memory") {
        let m = memory::run(&stack.db, knobs.mem_tokens, &rt);
        report::print_memory(&m);
        report.memory = Some(m);
    }
    match report.write() {
        Ok(path) => println!("\nJSON: {}", path.display()),
        Err(e) => eprintln!("e2e: cannot write the JSON report: {e}"),
    }
}

/// Whether `h2load` is installed; if not, `part` is noted as skipped.
fn h2load_for(part: &str, report: &mut Report) -> bool {
    if procs::have("h2load") {
        return true;
    }
    let note =
        format!("{part}: skipped, `h2load` is not installed (apt-get install -y nghttp2-client)");
    println!("\n{note}");
    report.skipped.push(note);
    false
}
