//! `ingest-api`: the gateways' HTTP write path into InfluxDB.
//!
//! Validate (domain), look the machines up (registry cache), encode one line-protocol body,
//! write it once with bounded retries, and only then answer 2xx; afterwards update the
//! latest values and tell live dashboards.

mod body;
mod metrics;
mod rate_limit;
pub mod routes;

use platform::auth::Verification;
use platform::health::{Dependency, Probe, Readiness};
use platform::influx::InfluxClient;
use platform::metrics::Metrics;
use platform::redis::RedisClient;
use platform::registry::MachineRegistry;
use platform::settings_store::LiveSettings;
use platform::{Application, ServiceName, ServiceParts, Settings, StartupError};
use std::time::Duration;

/// What the handler shares.
pub(crate) struct IngestState {
    pub registry: MachineRegistry,
    pub influx: InfluxClient,
    pub redis: RedisClient,
    pub settings: LiveSettings,
    pub audience: platform::latest::LiveAudience,
    pub metrics: metrics::IngestMetrics,
    pub alerts: platform::alerts::AlertEngine,
    /// The whole request, retries included, must finish within this.
    pub deadline: Duration,
}

/// Builds the service from configuration.
pub async fn build(settings: &Settings) -> Result<Application, StartupError> {
    let pg = platform::postgres::build_pool(&settings.postgres)?;
    let redis = RedisClient::new(&settings.redis)?;
    let influx = InfluxClient::new(&settings.influx)?;
    let metrics = Metrics::new(ServiceName::IngestApi.as_str());
    let verification = Verification::from_settings(&settings.auth, redis.clone(), &metrics)?;
    if let Err(err) = platform::latest::load_script(&redis).await {
        tracing::warn!(error = %err, "Redis lost: latest-value script not loaded; sending it inline until Redis is back");
    }
    let live_settings = LiveSettings::new(settings.influx.raw_retention_weeks);
    let audience = platform::latest::LiveAudience::default();
    // Start with the stored settings when Postgres is there; the refresh task keeps trying.
    if let Err(err) = live_settings.refresh(&pg).await {
        tracing::warn!(error = %err, "settings not loaded at start; using defaults until Postgres answers");
    }
    let ingest_metrics = metrics::IngestMetrics::register(&metrics);
    let worker_settings = settings.clone();
    let (worker_live, worker_audience) = (live_settings.clone(), audience.clone());
    // Each actix worker (one thread, one runtime) gets its own connection pools, so the
    // connections' I/O is driven on the thread that uses them: no cross-thread wake-ups on
    // every request. The settings were validated above; building from them cannot fail.
    let worker_state = move || -> Result<IngestState, StartupError> {
        let redis = RedisClient::new(&worker_settings.redis)?;
        let pg = platform::postgres::build_pool(&worker_settings.postgres)?;
        Ok(IngestState {
            alerts: platform::alerts::AlertEngine::new(
                pg.clone(),
                redis.clone(),
                worker_live.clone(),
            ),
            registry: MachineRegistry::new(pg, redis.clone(), 300, 30),
            influx: InfluxClient::new(&worker_settings.influx)?,
            redis,
            settings: worker_live.clone(),
            audience: worker_audience.clone(),
            metrics: ingest_metrics.clone(),
            deadline: worker_settings.influx.timeout(),
        })
    };
    // Fail at start, not in a worker, if anything about them is wrong.
    let fallback = actix_web::web::Data::new(worker_state()?);
    let readiness = Readiness::new(
        vec![
            Dependency::required("influxdb", Probe::Influx(influx)),
            // Cached machines keep flowing while Postgres or Redis is away.
            Dependency::optional("postgres", Probe::Postgres(pg.clone())),
            Dependency::optional("redis", Probe::Redis(redis.clone())),
        ],
        Duration::from_secs(2),
    );
    let parts = ServiceParts {
        service: ServiceName::IngestApi,
        readiness,
        metrics,
        verification: Some(verification),
        routes: move |cfg: &mut actix_web::web::ServiceConfig| {
            let state = worker_state()
                .map(actix_web::web::Data::new)
                .unwrap_or_else(|_| fallback.clone());
            cfg.app_data(state);
            // Raw bodies up to 16 MiB; the live setting decides what is accepted.
            cfg.app_data(actix_web::web::PayloadConfig::new(routes::MAX_RAW_BODY));
            routes::configure(cfg);
        },
    };
    let app = Application::build(settings, parts)?;
    // Without this poll `listening()` stays false and live updates are never published.
    app.spawn_background(audience.run(redis.clone(), app.shutdown_token()));
    app.spawn_background(live_settings.run_refresh(
        pg,
        Duration::from_millis(500),
        app.shutdown_token(),
    ));
    Ok(app)
}
