//! The command line, at the edge of the crate: clap definitions, dispatch,
//! and one file per command group ([`serve`], [`dev`], [`account`] for
//! accounts, scopes and roles, [`client`] for OAuth clients, [`route`] for
//! `route explain` and `check-config`), plus [`logs`] (where log lines go,
//! and in which format). Commands call into the library and print what it
//! returns; nothing below this module prints or knows about exit codes.
//!
//! Exit codes (`docs/operations.md`): 0 ok, 1 runtime failure, 2 usage or
//! configuration error. Errors are one line naming what to fix.

pub mod account;
pub mod client;
pub mod dev;
pub mod logs;
pub mod route;
pub mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser, Debug)]
#[command(
    name = "scopegate",
    version,
    about = "A reverse-proxy authorization gateway (OAuth2 bearer tokens, scopes)"
)]
pub struct Cli {
    /// Configuration file [default: config/scopegate.toml; `dev` uses config/dev.toml]
    #[arg(long, global = true, env = "SCOPEGATE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log line format on stderr: `text` (coloured only on a terminal) or
    /// `json` (one object per line)
    #[arg(
        long,
        global = true,
        env = "SCOPEGATE_LOG_FORMAT",
        value_enum,
        default_value_t = logs::LogFormat::Text
    )]
    pub log_format: logs::LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway (proxy listener + admin listener) against the configured database
    Serve,
    /// One-command demo: embedded Postgres, migrations, bootstrap admin, echo upstream, gateway
    Dev {
        /// Stop the dev cluster and delete its data, then exit
        #[arg(long)]
        reset: bool,
    },
    /// Apply pending database migrations (idempotent)
    Migrate,
    /// Validate the configuration; print every error with its location
    CheckConfig,
    /// Inspect routing
    Route {
        #[command(subcommand)]
        command: RouteCommand,
    },
    /// Manage accounts (passwords from stdin or a prompt, never arguments)
    Account {
        #[command(subcommand)]
        command: account::AccountCommand,
    },
    /// Manage scopes
    Scope {
        #[command(subcommand)]
        command: account::ScopeCommand,
    },
    /// Manage roles
    Role {
        #[command(subcommand)]
        command: account::RoleCommand,
    },
    /// Manage OAuth clients (secrets are printed once, never stored in clear)
    Client {
        #[command(subcommand)]
        command: client::ClientCommand,
    },
    /// Run a small upstream that answers with the request it saw, as JSON
    Echo {
        /// Address to listen on
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
        /// Answer every request with 200 and the 2-byte body `ok` instead,
        /// without describing it (a benchmark upstream that costs next to nothing)
        #[arg(long)]
        fixed: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum RouteCommand {
    /// Which route matches METHOD PATH, and what it requires
    Explain {
        method: String,
        path: String,
        /// Host header to match with
        #[arg(long)]
        host: Option<String>,
    },
}

/// A failure with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// Usage or configuration error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    /// Runtime failure (exit 1).
    pub fn runtime(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

pub type CliResult = Result<(), Failure>;

/// A store's error, as the commands over a store (`account`, `scope`,
/// `role`, `client`) report it: a problem with what was asked (a bad
/// value, a duplicate, an unknown name) exits 2, the database or the
/// machine failing exits 1.
pub trait StoreFailure: std::fmt::Display {
    fn is_usage(&self) -> bool;
}

impl StoreFailure for crate::accounts::store::StoreError {
    fn is_usage(&self) -> bool {
        crate::accounts::store::StoreError::is_usage(self)
    }
}

impl StoreFailure for crate::clients::store::ClientError {
    fn is_usage(&self) -> bool {
        crate::clients::store::ClientError::is_usage(self)
    }
}

impl<E: StoreFailure> From<E> for Failure {
    fn from(e: E) -> Failure {
        if e.is_usage() {
            Failure::usage(e.to_string())
        } else {
            Failure::runtime(e.to_string())
        }
    }
}

/// Connect to the configured database and run `f` (whose store errors
/// become exit codes through [`StoreFailure`]).
pub fn with_pool<F, Fut>(config: &Option<PathBuf>, f: F) -> CliResult
where
    F: FnOnce(crate::db::DbPool) -> Fut,
    Fut: std::future::Future<Output = CliResult>,
{
    let config = load_config(config, false)?;
    runtime()?.block_on(async {
        let pool = connect_configured(&config).await?;
        f(pool).await
    })
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let _log_guard = logs::init(cli.log_format);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// The configuration path for a command.
pub fn config_path(cli_path: &Option<PathBuf>, dev: bool) -> PathBuf {
    match cli_path {
        Some(p) => p.clone(),
        None if dev => PathBuf::from("config/dev.toml"),
        None => crate::config::default_path(),
    }
}

/// Load the configuration or fail with every error (exit 2).
pub fn load_config(cli_path: &Option<PathBuf>, dev: bool) -> Result<Config, Failure> {
    Config::load(&config_path(cli_path, dev)).map_err(|e| Failure::usage(e.to_string()))
}

pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the async runtime: {e}")))
}

fn run(cli: Cli) -> CliResult {
    match &cli.command {
        Command::CheckConfig => route::check_config(&cli.config),
        Command::Route {
            command: RouteCommand::Explain { method, path, host },
        } => route::explain(&cli.config, method, path, host.as_deref()),
        Command::Migrate => {
            let config = load_config(&cli.config, false)?;
            runtime()?.block_on(async {
                let pool = connect_configured(&config).await?;
                let report = crate::db::migrate::run(&pool)
                    .await
                    .map_err(|e| Failure::runtime(e.to_string()))?;
                if report.applied.is_empty() {
                    println!("database is up to date; nothing applied");
                } else {
                    println!(
                        "applied {} migration(s): {}",
                        report.applied.len(),
                        report.applied.join(", ")
                    );
                }
                Ok(())
            })
        }
        Command::Echo { listen, fixed } => runtime()?.block_on(async {
            let listener = crate::server::bind(*listen)
                .map_err(|e| Failure::runtime(format!("cannot listen on {listen}: {e}")))?;
            eprintln!(
                "{} upstream listening on http://{}",
                if *fixed { "fixed-response" } else { "echo" },
                listener.local_addr().unwrap_or(*listen)
            );
            let limits = crate::server::Limits::default();
            if *fixed {
                let handler = Arc::new(crate::echo::Fixed);
                crate::server::serve(listener, handler, limits, shutdown_signal()).await;
            } else {
                let handler = Arc::new(crate::echo::Echo);
                crate::server::serve(listener, handler, limits, shutdown_signal()).await;
            }
            Ok(())
        }),
        Command::Account { command } => account::account(&cli.config, command),
        Command::Scope { command } => account::scope(&cli.config, command),
        Command::Role { command } => account::role(&cli.config, command),
        Command::Client { command } => client::client(&cli.config, command),
        Command::Serve => {
            let config = load_config(&cli.config, false)?;
            let path = config_path(&cli.config, false);
            runtime()?.block_on(serve::serve(config, path))
        }
        Command::Dev { reset: true } => dev::reset(),
        Command::Dev { reset: false } => {
            let config = load_config(&cli.config, true)?;
            runtime()?.block_on(dev::dev(config))
        }
    }
}

/// How long commands wait for the database at startup:
/// `SCOPEGATE_CONNECT_PATIENCE_SECS`, default 30.
fn connect_patience() -> Duration {
    let secs = std::env::var("SCOPEGATE_CONNECT_PATIENCE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// Connect to the configured database, waiting for it (see
/// [`connect_patience`]), with the TLS its `sslmode` asks for. A CA file
/// that cannot be used is a configuration error (exit 2) naming the file.
pub async fn connect_configured(config: &Config) -> Result<crate::db::DbPool, Failure> {
    let url = config.database.url.as_ref().ok_or_else(|| {
        Failure::usage(
            "no database configured: set database.url in the config file or SCOPEGATE_DATABASE_URL",
        )
    })?;
    // Reads the CA file: off the async workers.
    let database = config.database.clone();
    let tls = tokio::task::spawn_blocking(move || crate::db::DbTls::from_config(&database))
        .await
        .map_err(|e| Failure::runtime(format!("cannot set up database TLS: {e}")))?
        .map_err(|e| Failure::usage(format!("database.url: {e}")))?;
    crate::db::connect(url, &tls, config.database.pool_size, connect_patience())
        .await
        .map_err(|e| Failure::runtime(e.to_string()))
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
