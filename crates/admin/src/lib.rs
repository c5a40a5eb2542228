//! One-shot operations, run by `make run`, CI and the Kubernetes migrate Job.

pub mod demo;
pub mod keys;

use platform::influx::{InfluxClient, SchemaReport};
use platform::{Settings, StartupError};

/// What a migration run changed.
#[derive(Debug)]
pub struct MigrationReport {
    /// Postgres migration versions applied by this run.
    pub postgres_applied: Vec<String>,
    /// InfluxDB objects created or altered by this run.
    pub influx: SchemaReport,
}

/// Applies Postgres migrations and the InfluxDB schema. Idempotent: a second run changes nothing.
pub async fn migrate(settings: &Settings) -> Result<MigrationReport, StartupError> {
    let postgres_applied = platform::postgres::run_migrations(&settings.postgres.url).await?;
    let influx = InfluxClient::new(&settings.influx)?.ensure_schema().await?;
    Ok(MigrationReport {
        postgres_applied,
        influx,
    })
}
