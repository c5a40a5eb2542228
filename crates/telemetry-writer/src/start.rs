//! What every writing service starts the same way: runtime settings loaded and kept fresh,
//! the latest-values script loaded, and the watch on whether dashboards listen.

use crate::TelemetryWriter;
use platform::influx::InfluxClient;
use platform::postgres::PgPool;
use platform::redis::RedisClient;
use platform::{Application, Settings};
use storage::latest::LiveAudience;
use storage::registry::{LastKnown, MachineRegistry};
use storage::settings::LiveSettings;

/// The write path's process-wide parts.
#[derive(Clone)]
pub struct WritePathParts {
    /// Validation bounds, limits and thresholds, as stored.
    pub settings: LiveSettings,
    /// Whether anyone watches live readings (else they are not published).
    pub audience: LiveAudience,
    pg: PgPool,
    redis: RedisClient,
    registry: platform::config::RegistrySettings,
    /// The machines' last known entries, one map for the whole process.
    last_known: LastKnown,
}

impl WritePathParts {
    /// Loads what can be loaded now; a missing PostgreSQL or Redis is logged and retried by
    /// the background tasks ([`run_in`](Self::run_in)).
    pub async fn start(settings: &Settings, pg: &PgPool, redis: &RedisClient) -> Self {
        let live = LiveSettings::load(settings.influx.raw_retention_weeks, pg).await;
        if let Err(err) = storage::latest::load_script(redis).await {
            tracing::warn!(error = %err, "Redis lost: latest-value script not loaded; sending it inline until Redis is back");
        }
        Self {
            settings: live,
            audience: LiveAudience::default(),
            pg: pg.clone(),
            redis: redis.clone(),
            registry: settings.registry.clone(),
            last_known: LastKnown::new(std::time::Duration::from_secs(
                settings.registry.max_stale_secs,
            )),
        }
    }

    /// `registry_stale_served_age_seconds`, for the service's metrics.
    pub fn stale_registry_gauge(&self) -> prometheus::IntGauge {
        self.last_known.gauge()
    }

    /// Keeps the settings and the audience current until the service stops.
    pub fn run_in(&self, app: &Application) {
        self.settings.keep_fresh(self.pg.clone(), app);
        // Without this poll `listening()` stays false and live updates are never published.
        app.spawn_background(
            self.audience
                .clone()
                .run(self.redis.clone(), app.shutdown_token()),
        );
    }

    /// The alert bookkeeping on these connections, for the background jobs.
    pub fn alert_engine(&self, pg: PgPool, redis: RedisClient) -> storage::alerts::AlertEngine {
        storage::alerts::AlertEngine::new(pg, redis, self.settings.clone())
    }

    /// A writer on these connections (ingest-api builds one per actix worker).
    pub fn writer(&self, pg: PgPool, redis: RedisClient, influx: InfluxClient) -> TelemetryWriter {
        TelemetryWriter {
            alerts: self.alert_engine(pg.clone(), redis.clone()),
            pg: pg.clone(),
            registry: MachineRegistry::new(pg, redis.clone(), &self.registry)
                .sharing(self.last_known.clone()),
            group: crate::group::WriteGroup::new(influx.clone(), redis.clone()),
            influx,
            redis,
            audience: self.audience.clone(),
        }
    }
}
