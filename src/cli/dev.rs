//! `scopegate dev`, the one-command demo: an embedded Postgres cluster
//! (created on first run, reused after, stopped on exit if we started it),
//! migrations, the bootstrap admin, the echo upstream on 127.0.0.1:9000 and
//! the gateway, then a `curl` walk-through. `scopegate dev --reset` stops
//! and deletes the cluster.
//!
//! Where the cluster lives (`docs/operations.md`, "dev"): under
//! `.scopegate/postgres` in the working folder, except when running as
//! root. Then Postgres runs as the `postgres` user, which often cannot even
//! enter the checkout (a clone under a 0700 home or temporary folder), so
//! the cluster goes to a folder of its own outside it,
//! `/var/lib/scopegate-dev/<hash of the checkout's path>/postgres`, and
//! `.scopegate/cluster` records where. A cluster already under
//! `.scopegate/postgres` is reused wherever it was made.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest;

use super::serve::bootstrap;
use super::{connect_configured, shutdown_signal, CliResult, Failure};
use crate::app::App;
use crate::config::{Config, Secret};
use crate::db::embedded::{running_as_root, Binaries, Cluster};

/// Where `dev` keeps its cluster (when not root).
pub const DEV_DATA_DIR: &str = ".scopegate/postgres";
/// As root: the record of where the cluster is.
const DEV_CLUSTER_RECORD: &str = ".scopegate/cluster";
/// As root: the parent of every checkout's cluster folder.
const ROOT_CLUSTERS: &str = "/var/lib/scopegate-dev";
/// The database `dev` creates in its cluster.
const DEV_DATABASE: &str = "scopegate";
/// The demo upstream's address (`SCOPEGATE_DEV_UPSTREAM` overrides it).
pub const DEV_ECHO: &str = "127.0.0.1:9000";

/// The cluster folder for this working folder (see the module docs).
fn data_dir() -> Result<PathBuf, Failure> {
    let in_tree = PathBuf::from(DEV_DATA_DIR);
    if !running_as_root() || in_tree.join("PG_VERSION").is_file() {
        return Ok(in_tree);
    }
    if let Ok(recorded) = std::fs::read_to_string(DEV_CLUSTER_RECORD) {
        let recorded = PathBuf::from(recorded.trim());
        if recorded.is_absolute() {
            return Ok(recorded);
        }
    }
    let here = std::env::current_dir()
        .and_then(std::fs::canonicalize)
        .map_err(|e| Failure::runtime(format!("cannot resolve the working folder: {e}")))?;
    let digest = sha2::Sha256::digest(here.as_os_str().as_encoded_bytes());
    let dir = Path::new(ROOT_CLUSTERS)
        .join(hex::encode(&digest[..8]))
        .join("postgres");
    let parent = dir.parent().unwrap_or(Path::new(ROOT_CLUSTERS));
    let io =
        |e: std::io::Error| Failure::runtime(format!("cannot prepare {}: {e}", parent.display()));
    std::fs::create_dir_all(parent).map_err(io)?;
    // Traversable by the `postgres` user (the data folder itself is 0700).
    for d in [Path::new(ROOT_CLUSTERS), parent] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    }
    std::fs::create_dir_all(".scopegate")
        .and_then(|()| std::fs::write(DEV_CLUSTER_RECORD, format!("{}\n", dir.display())))
        .map_err(|e| Failure::runtime(format!("cannot write {DEV_CLUSTER_RECORD}: {e}")))?;
    Ok(dir)
}

/// `scopegate dev --reset`: stop the dev cluster and delete it.
pub fn reset() -> CliResult {
    let dir = data_dir()?;
    if !dir.join("PG_VERSION").is_file() {
        println!("no dev cluster in {}", dir.display());
    } else {
        let bins = Binaries::locate().map_err(|e| Failure::runtime(e.to_string()))?;
        let (cluster, _) =
            Cluster::open_or_init(bins, &dir).map_err(|e| Failure::runtime(e.to_string()))?;
        cluster
            .destroy()
            .map_err(|e| Failure::runtime(format!("cannot delete {}: {e}", dir.display())))?;
        println!("deleted the dev cluster in {}", dir.display());
    }
    let _ = std::fs::remove_file(DEV_CLUSTER_RECORD);
    Ok(())
}

/// `scopegate dev`.
pub async fn dev(mut config: Config) -> CliResult {
    let mut cluster = None;
    if config.database.url.is_none() {
        let dir = data_dir()?;
        let (c, url) = tokio::task::spawn_blocking(move || start_embedded(&dir))
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

    let echo_addr: SocketAddr = std::env::var("SCOPEGATE_DEV_UPSTREAM")
        .unwrap_or_else(|_| DEV_ECHO.to_owned())
        .parse()
        .map_err(|_| Failure::usage("SCOPEGATE_DEV_UPSTREAM is not an IP:port address"))?;
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
    let echo_addr = echo_listener.local_addr().unwrap_or(echo_addr);
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
    match demo_client(app.state(), echo_addr).await {
        Ok(client_id) => eprint!(
            "{}",
            code_walkthrough(
                &app.state().config.oauth.issuer,
                proxy,
                &client_id,
                echo_addr
            )
        ),
        Err(e) => eprintln!("warning: cannot register the demo OAuth client: {e}"),
    }
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

/// The demo public client's name.
pub const DEMO_CLIENT: &str = "demo-app";
/// The scope the demo client may obtain, and that `config/dev.toml`'s
/// `demo` route requires: the browser flow hands out tokens for the demo
/// and nothing else (never `scopegate:admin`).
pub const DEMO_SCOPE: &str = "demo:read";
/// The account the walk-through signs in as (the bootstrap administrator).
const DEMO_USER: &str = "admin";

/// Why the demo client could not be set up.
#[derive(Debug, thiserror::Error)]
enum DemoError {
    #[error(transparent)]
    Client(#[from] crate::clients::store::ClientError),
    #[error(transparent)]
    Account(#[from] crate::accounts::store::StoreError),
}

/// Register the demo public client (`demo-app`, allowed [`DEMO_SCOPE`]
/// only, redirected to the echo upstream's `/callback`), or reuse it;
/// create the scope and grant it to `admin` so signing in as `admin` gets
/// a demo token. Returns the client's `client_id`.
async fn demo_client(state: &crate::app::State, echo: SocketAddr) -> Result<String, DemoError> {
    use crate::accounts::{catalog, store::StoreError};
    use crate::clients::store;
    match catalog::create_scope(
        &state.db,
        "Demo (read)",
        DEMO_SCOPE,
        Some("scopegate dev's demo"),
    )
    .await
    {
        Ok(_) | Err(StoreError::DuplicateScope(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match crate::accounts::store::grant(&state.db, DEMO_USER, &[DEMO_SCOPE.into()], &[]).await {
        Ok(_) => {}
        // Bootstrap named the administrator otherwise (`admin` exists
        // without the admin scope): the walk-through's sign-in is the
        // operator's to adapt.
        Err(StoreError::UnknownAccount(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let redirect = format!("http://{echo}/callback");
    if let Some(c) = store::find(&state.db, DEMO_CLIENT).await? {
        if c.public && c.redirect_uris.contains(&redirect) && c.scopes == [DEMO_SCOPE] {
            return Ok(c.client_id);
        }
        // The echo moved (another port), or an older `dev` registered it
        // with other scopes: register the client afresh (deleting it
        // revokes what it issued).
        store::delete(&state.db, c.id).await?;
    }
    let created = store::create(
        &state.db,
        store::NewClient {
            name: DEMO_CLIENT.into(),
            scopes: vec![DEMO_SCOPE.into()],
            redirect_uris: vec![redirect],
            public: true,
        },
    )
    .await?;
    eprintln!(
        "registered the demo public OAuth client {DEMO_CLIENT} ({}, scope {DEMO_SCOPE})",
        created.client.client_id
    );
    Ok(created.client.client_id)
}

/// The authorization code flow with PKCE, for the demo client. The
/// verifier is RFC 7636 Appendix B's: fine for a demo, never for an app.
fn code_walkthrough(issuer: &str, proxy: SocketAddr, client_id: &str, echo: SocketAddr) -> String {
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = crate::clients::codes::challenge_of(VERIFIER);
    let redirect = format!("http://{echo}/callback");
    let g = format!("http://{proxy}");
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", &redirect)
        .append_pair("scope", DEMO_SCOPE)
        .append_pair("state", "demo")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    format!(
        "\nAuthorization code with PKCE (the demo public client {DEMO_CLIENT}, scope {DEMO_SCOPE}):\n\
         \x20 open in a browser and sign in as {DEMO_USER}:\n\
         \x20 authorize: {issuer}/oauth/authorize?{query}\n\
         \x20 # the echo upstream then shows the URL it was sent to: copy its code=... value\n\
         \x20 CODE_TOKEN=$(curl -s {issuer}/oauth/token -d grant_type=authorization_code -d client_id={client_id} \\\n\
         \x20     --data-urlencode redirect_uri={redirect} -d code_verifier={VERIFIER} -d code=PASTE_THE_CODE \\\n\
         \x20     | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')\n\
         \x20 curl -i -H \"Authorization: Bearer $CODE_TOKEN\" {g}/demo/hello         # 200: the token holds {DEMO_SCOPE}\n\
         \x20 curl -i -H \"Authorization: Bearer $CODE_TOKEN\" {g}/admin-area/hello   # 403: and nothing else\n\
         \x20 curl -s {issuer}/.well-known/oauth-authorization-server   # the server's metadata (RFC 8414)\n\n"
    )
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
