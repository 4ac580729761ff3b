//! `scopegate serve`: the gateway against the configured database (which
//! must exist and be migrated: `scopegate migrate`).

use super::{connect_configured, shutdown_signal, CliResult, Failure};
use crate::app::App;
use crate::config::Config;

pub async fn serve(config: Config) -> CliResult {
    let pool = connect_configured(&config).await?;
    let app = App::build(config, pool).map_err(|e| Failure::runtime(e.to_string()))?;
    bootstrap(&app).await?;
    tracing::info!(proxy = %app.proxy_addr(), admin = %app.admin_addr(), "scopegate listening");
    app.run(shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}

/// Create the bootstrap administrator if there is none (password printed
/// once on stdout, never logged).
pub(super) async fn bootstrap(app: &App) -> CliResult {
    let state = app.state();
    crate::accounts::bootstrap::bootstrap_and_print(&state.db, &state.oauth.hasher)
        .await
        .map_err(|e| Failure::runtime(format!("cannot create the bootstrap administrator: {e}")))
}
