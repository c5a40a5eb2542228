//! What every writing service starts the same way: runtime settings loaded and kept fresh,
//! the latest-values script loaded, and the watch on whether dashboards listen.

use crate::TelemetryWriter;
use platform::influx::InfluxClient;
use platform::latest::LiveAudience;
use platform::postgres::PgPool;
use platform::redis::RedisClient;
use platform::registry::MachineRegistry;
use platform::settings_store::LiveSettings;
use platform::{Application, Settings};
use std::time::Duration;

/// How long a registry entry stays in Redis, and an unknown id's "not registered".
const REGISTRY_TTL_SECS: u64 = 300;
const UNKNOWN_MACHINE_TTL_SECS: u64 = 30;
/// How often settings are reloaded from PostgreSQL.
const SETTINGS_REFRESH: Duration = Duration::from_millis(500);

/// The write path's process-wide parts.
#[derive(Clone)]
pub struct WritePathParts {
    /// Validation bounds, limits and thresholds, as stored.
    pub settings: LiveSettings,
    /// Whether anyone watches live readings (else they are not published).
    pub audience: LiveAudience,
    pg: PgPool,
    redis: RedisClient,
}

impl WritePathParts {
    /// Loads what can be loaded now; a missing PostgreSQL or Redis is logged and retried by
    /// the background tasks ([`run_in`](Self::run_in)).
    pub async fn start(settings: &Settings, pg: &PgPool, redis: &RedisClient) -> Self {
        let live = LiveSettings::new(settings.influx.raw_retention_weeks);
        if let Err(err) = live.refresh(pg).await {
            tracing::warn!(error = %err, "settings not loaded at start; using defaults until Postgres answers");
        }
        if let Err(err) = platform::latest::load_script(redis).await {
            tracing::warn!(error = %err, "Redis lost: latest-value script not loaded; sending it inline until Redis is back");
        }
        Self {
            settings: live,
            audience: LiveAudience::default(),
            pg: pg.clone(),
            redis: redis.clone(),
        }
    }

    /// Keeps the settings and the audience current until the service stops.
    pub fn run_in(&self, app: &Application) {
        app.spawn_background(self.settings.clone().run_refresh(
            self.pg.clone(),
            SETTINGS_REFRESH,
            app.shutdown_token(),
        ));
        // Without this poll `listening()` stays false and live updates are never published.
        app.spawn_background(
            self.audience
                .clone()
                .run(self.redis.clone(), app.shutdown_token()),
        );
    }

    /// A writer on these connections (ingest-api builds one per actix worker).
    pub fn writer(&self, pg: PgPool, redis: RedisClient, influx: InfluxClient) -> TelemetryWriter {
        TelemetryWriter {
            alerts: platform::alerts::AlertEngine::new(
                pg.clone(),
                redis.clone(),
                self.settings.clone(),
            ),
            registry: MachineRegistry::new(
                pg,
                redis.clone(),
                REGISTRY_TTL_SECS,
                UNKNOWN_MACHINE_TTL_SECS,
            ),
            influx,
            redis,
            audience: self.audience.clone(),
        }
    }
}
