//! Schema migrations: the plain SQL files under `migrations/`, embedded at
//! compile time and applied in order by refinery, which records them in its
//! `refinery_schema_history` table. Running twice applies nothing the
//! second time.

use deadpool_postgres::Pool;

use super::DbError;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// What one run applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub applied: Vec<String>,
}

pub async fn run(pool: &Pool) -> Result<Report, MigrateError> {
    let mut conn = pool.get().await.map_err(DbError::from)?;
    let client: &mut tokio_postgres::Client = &mut conn;
    let report = embedded::migrations::runner()
        .set_grouped(false)
        .run_async(client)
        .await
        .map_err(|e| MigrateError::Failed(e.to_string()))?;
    Ok(Report {
        applied: report
            .applied_migrations()
            .iter()
            .map(|m| format!("V{}__{}", m.version(), m.name()))
            .collect(),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("migration failed: {0}")]
    Failed(String),
}
