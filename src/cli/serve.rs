//! `scopegate serve`: the gateway against the configured database (which
//! must exist and be migrated: `scopegate migrate`). `SIGHUP` reloads the
//! configuration file (`docs/operations.md`, "Reload").

use std::path::PathBuf;
use std::sync::Arc;

use super::{connect_configured, shutdown_signal, CliResult, Failure};
use crate::app::{App, State};
use crate::config::Config;

pub async fn serve(config: Config, path: PathBuf) -> CliResult {
    let pool = connect_configured(&config).await?;
    let app = App::build(config, pool).map_err(|e| Failure::runtime(e.to_string()))?;
    bootstrap(&app).await?;
    let reloader = tokio::spawn(reload_on_sighup(app.state().clone(), path));
    tracing::info!(proxy = %app.proxy_addr(), admin = %app.admin_addr(), "scopegate listening");
    app.run(shutdown_signal()).await;
    reloader.abort();
    tracing::info!("stopped");
    Ok(())
}

/// Every `SIGHUP`: re-read `path`; a valid file replaces the routes and
/// limits at once, an invalid one is logged with every error and the old
/// configuration keeps serving. A signal never stops the process.
async fn reload_on_sighup(state: Arc<State>, path: PathBuf) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; reload is unavailable");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        reload(&state, &path);
    }
}

/// Reload the configuration from `path` (see [`reload_on_sighup`]).
pub fn reload(state: &State, path: &std::path::Path) {
    match Config::load(path) {
        Ok(new) => {
            let pending = state.reload(&new);
            tracing::info!(
                file = %path.display(),
                routes = new.routes.len(),
                "configuration reloaded"
            );
            for section in pending {
                tracing::warn!(section, "changed settings take effect on restart only");
            }
        }
        Err(errors) => {
            state.gateway.reload_failed();
            for e in &errors.0 {
                tracing::error!(error = %e, "invalid configuration");
            }
            tracing::error!(
                file = %path.display(),
                errors = errors.0.len(),
                "reload refused; the previous configuration keeps serving"
            );
        }
    }
}

/// Create the bootstrap administrator if there is none (password printed
/// once on stdout, never logged).
pub(super) async fn bootstrap(app: &App) -> CliResult {
    let state = app.state();
    crate::accounts::bootstrap::bootstrap_and_print(&state.db, &state.oauth.hasher)
        .await
        .map_err(|e| Failure::runtime(format!("cannot create the bootstrap administrator: {e}")))
}
