//! `scopegate dev`, the one-command demo: an embedded Postgres cluster under
//! `.scopegate/postgres` (created on first run, reused after, stopped on
//! exit if we started it), migrations, the bootstrap admin, the echo
//! upstream on 127.0.0.1:9000 and the gateway, then a `curl` walk-through.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::serve::bootstrap;
use super::{connect_configured, shutdown_signal, CliResult, Failure};
use crate::app::App;
use crate::config::{Config, Secret};
use crate::db::embedded::{Binaries, Cluster};

/// Where `dev` keeps its cluster.
pub const DEV_DATA_DIR: &str = ".scopegate/postgres";
/// The database `dev` creates in its cluster.
const DEV_DATABASE: &str = "scopegate";
/// The demo upstream's address.
pub const DEV_ECHO: &str = "127.0.0.1:9000";

/// `scopegate dev`.
pub async fn dev(mut config: Config) -> CliResult {
    let mut cluster = None;
    if config.database.url.is_none() {
        let (c, url) = tokio::task::spawn_blocking(|| start_embedded(Path::new(DEV_DATA_DIR)))
            .await
            .map_err(|e| Failure::runtime(e.to_string()))??;
        config.database.url = Some(url);
        cluster = Some(c);
    }
    let result = run_dev(config).await;
    if let Some((cluster, started)) = cluster {
        if started {
            eprintln!("stopping the embedded Postgres cluster");
            let stopped = tokio::task::spawn_blocking(move || cluster.stop(false)).await;
            if let Ok(Err(e)) = stopped {
                eprintln!("warning: {e}");
            }
        }
    }
    result
}

/// Start (or reuse) the cluster in `dir` and make sure the dev database exists.
/// Returns the cluster, whether we started it, and the database URL.
fn start_embedded(dir: &Path) -> Result<((Cluster, bool), Secret), Failure> {
    let bins = Binaries::locate().map_err(|e| Failure::runtime(e.to_string()))?;
    let (cluster, created) =
        Cluster::open_or_init(bins, dir).map_err(|e| Failure::runtime(e.to_string()))?;
    if created {
        eprintln!(
            "created a Postgres cluster in {}",
            cluster.data_dir().display()
        );
    } else {
        eprintln!(
            "reusing the Postgres cluster in {}",
            cluster.data_dir().display()
        );
    }
    let started = cluster
        .start(false)
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let admin_url = cluster.url("postgres");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let created_db = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_database WHERE datname = $1",
                &[&DEV_DATABASE],
            )
            .await?
            .is_some();
        if !exists {
            client
                .batch_execute(&format!("CREATE DATABASE {DEV_DATABASE}"))
                .await?;
        }
        Ok::<_, tokio_postgres::Error>(!exists)
    });
    match created_db {
        Ok(_) => {}
        Err(e) => {
            if started {
                let _ = cluster.stop(false);
            }
            return Err(Failure::runtime(format!(
                "cannot prepare the dev database: {e}"
            )));
        }
    }
    let url = Secret::new(cluster.url(DEV_DATABASE));
    Ok(((cluster, started), url))
}

async fn run_dev(config: Config) -> CliResult {
    let pool = connect_configured(&config).await?;
    let report = crate::db::migrate::run(&pool)
        .await
        .map_err(|e| Failure::runtime(e.to_string()))?;
    if !report.applied.is_empty() {
        eprintln!("applied migrations: {}", report.applied.join(", "));
    }

    let echo_addr: SocketAddr = DEV_ECHO
        .parse()
        .map_err(|_| Failure::runtime("bad echo address"))?;
    let echo_listener = crate::server::bind(echo_addr).map_err(|e| {
        Failure::runtime(format!(
            "cannot listen on {echo_addr} for the demo upstream: {e}"
        ))
    })?;
    let app = App::build(config, pool).map_err(|e| Failure::runtime(e.to_string()))?;
    bootstrap(&app).await?;
    let proxy = app.proxy_addr();
    let admin = app.admin_addr();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut echo_stop = stop_rx.clone();
    let echo = tokio::spawn(crate::server::serve(
        echo_listener,
        Arc::new(crate::echo::Echo),
        Default::default(),
        async move {
            let _ = echo_stop.wait_for(|s| *s).await;
        },
    ));
    eprintln!();
    eprintln!("scopegate dev is running:");
    eprintln!("  gateway        http://{proxy}");
    eprintln!("  admin          http://{admin}  (/healthz, /readyz)");
    eprintln!("  demo upstream  http://{echo_addr}");
    eprintln!();
    eprint!("{}", walkthrough(proxy));
    eprintln!("Press Ctrl-C to stop.");
    let mut app_stop = stop_rx;
    let run = tokio::spawn(app.run(async move {
        let _ = app_stop.wait_for(|s| *s).await;
    }));
    shutdown_signal().await;
    eprintln!("shutting down");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(35), async {
        let _ = run.await;
        let _ = echo.await;
    })
    .await;
    Ok(())
}

/// The copy-paste tour of `config/dev.toml`'s routes.
fn walkthrough(proxy: SocketAddr) -> String {
    let g = format!("http://{proxy}");
    format!(
        "Walk-through (copy and paste):\n\
         \x20 curl -i {g}/public/hello                 # 200: public route, no token needed\n\
         \x20 curl -i {g}/admin-area/hello             # 401: this route needs a token\n\
         \x20 export ADMIN_PASSWORD='...'              # the admin password printed when it was created\n\
         \x20 TOKEN=$(curl -s {g}/oauth/token -d grant_type=password -d username=admin \\\n\
         \x20     --data-urlencode \"password=$ADMIN_PASSWORD\" | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')\n\
         \x20 curl -i -H \"Authorization: Bearer $TOKEN\" {g}/admin-area/hello   # 200: admin holds scopegate:admin\n\
         \x20 curl -i -H \"Authorization: Bearer $TOKEN\" {g}/reports            # 403: nobody holds reports:read\n\
         \x20 curl -i -H \"Authorization: Bearer sga_bogus\" {g}/admin-area/x    # 401: invalid_token\n"
    )
}
