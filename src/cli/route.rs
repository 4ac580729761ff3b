//! `scopegate check-config` and `scopegate route explain`.

use std::fmt::Write;
use std::path::PathBuf;

use super::{config_path, load_config, CliResult, Failure};
use crate::config::{Access, Config};
use crate::gateway::{self, Explanation};

/// Validate the configuration; print every error with its location.
pub fn check_config(cli_path: &Option<PathBuf>) -> CliResult {
    let path = config_path(cli_path, false);
    match Config::load(&path) {
        Ok(c) => {
            // The CA file of `database.url` is read at startup; a broken
            // one is a configuration error here too.
            crate::db::DbTls::from_config(&c.database)
                .map_err(|e| Failure::usage(format!("{}: database.url: {e}", path.display())))?;
            println!("{}: ok ({} routes)", path.display(), c.routes.len());
            Ok(())
        }
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("{e}");
            }
            Err(Failure::usage(format!(
                "{} error(s) in {}",
                errs.0.len(),
                path.display()
            )))
        }
    }
}

/// Which route matches `METHOD PATH`, and what it requires.
pub fn explain(
    cli_path: &Option<PathBuf>,
    method: &str,
    path: &str,
    host: Option<&str>,
) -> CliResult {
    let config = load_config(cli_path, false)?;
    let e =
        gateway::explain(&config, method, path, host).map_err(|e| Failure::usage(e.to_string()))?;
    println!("{}", describe(&e));
    Ok(())
}

fn describe(e: &Explanation) -> String {
    let c = &e.route;
    let mut out = String::new();
    // Writing to a String cannot fail.
    if let Some(n) = &e.normalized {
        let _ = writeln!(out, "normalized path: {n}");
    }
    let _ = writeln!(out, "route: {} (routes[{}])", c.name, e.index);
    let _ = writeln!(out, "prefix: {}{}", c.host.as_deref().unwrap_or(""), c.path);
    let _ = writeln!(out, "upstream: {}", e.upstream_url);
    match &c.access {
        Access::Public => {
            let _ = writeln!(out, "requires: nothing (public)");
        }
        Access::Token { all, any } => {
            let _ = writeln!(out, "requires: a valid Bearer token");
            if !all.is_empty() {
                let _ = writeln!(out, "  all of: {}", all.join(" "));
            }
            if !any.is_empty() {
                let _ = writeln!(out, "  any of: {}", any.join(" "));
            }
        }
    }
    let _ = write!(
        out,
        "timeout: {}s, authorization forwarded: {}",
        c.timeout.as_secs(),
        c.forward_authorization
    );
    out
}
