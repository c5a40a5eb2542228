//! `ingest-api`: the gateways' HTTP way in. It owns decoding the body (JSON, gzip, line
//! protocol), the per-caller rate window and the HTTP answer (2xx only for what InfluxDB
//! acknowledged); parsing is `domain`'s and everything after admission is the write path's
//! (`telemetry-writer`). It must not write to a store by any other road.

mod body;
mod influx_auth;
mod influx_compat;
mod metrics;
mod rate_limit;
pub mod routes;

use platform::auth::Verification;
use platform::clients::Backends;
use platform::health::{Dependency, Probe, Readiness};
use platform::metrics::Metrics;
use platform::{Application, ServiceName, ServiceParts, Settings, StartupError};
use std::sync::Arc;
use std::time::Duration;
use storage::credentials::{GatewayCredentials, SecretChecker};
use storage::hashing::HashPool;
use storage::settings::LiveSettings;
use storage::throttle::LoginThrottle;
use telemetry_writer::WritePathParts;

/// What the handler shares.
pub(crate) struct IngestState {
    pub writer: telemetry_writer::TelemetryWriter,
    pub settings: LiveSettings,
    pub metrics: metrics::IngestMetrics,
    /// The whole request, retries included, must finish within this.
    pub deadline: Duration,
    /// The telemetry database: the only `db`/`bucket` InfluxDB-compatible writes may name.
    pub database: String,
    /// Gateway ids and secrets sent with InfluxDB-compatible writes, verified once and then
    /// remembered (one cache for the process, shared by the workers).
    pub gateways: Arc<GatewayCredentials>,
    /// How long a verified secret is trusted before it is checked again.
    pub trust_secret_for: Duration,
    /// Measurements line protocol may name instead of `sensor_readings`.
    pub measurement_aliases: Arc<[String]>,
}

/// Builds the service from configuration.
pub async fn build(settings: &Settings) -> Result<Application, StartupError> {
    let backends = Backends::connect(settings)?;
    let metrics = Metrics::new(ServiceName::IngestApi.as_str())?;
    let verification =
        Verification::from_settings(&settings.auth, backends.redis.clone(), &metrics)?;
    let shared = WritePathParts::start(settings, &backends.pg, &backends.redis).await;
    let ingest_metrics = metrics::IngestMetrics::register(&metrics)?;
    metrics.register(Box::new(shared.stale_registry_gauge()));
    let gateways = Arc::new(gateway_credentials(settings, &backends, &metrics)?);
    let worker_settings = settings.clone();
    let worker_shared = shared.clone();
    // Each actix worker (one thread, one runtime) gets its own connection pools, so the
    // connections' I/O is driven on the thread that uses them: no cross-thread wake-ups on
    // every request. The settings were validated above; building from them cannot fail.
    let worker_state = move || -> Result<IngestState, StartupError> {
        let own = Backends::connect(&worker_settings)?;
        Ok(IngestState {
            writer: worker_shared
                .writer(own.pg, own.redis, own.influx)
                .observing_shared_writes(ingest_metrics.requests_per_write.clone()),
            settings: worker_shared.settings.clone(),
            metrics: ingest_metrics.clone(),
            deadline: worker_settings.influx.timeout(),
            database: worker_settings.influx.database.clone(),
            gateways: gateways.clone(),
            trust_secret_for: Duration::from_secs(worker_settings.auth.gateway_secret_trust_secs),
            measurement_aliases: worker_settings.influx.measurement_aliases().into(),
        })
    };
    // Fail at start, not in a worker, if anything about them is wrong.
    let fallback = actix_web::web::Data::new(worker_state()?);
    let mut dependencies = vec![Dependency::required(
        "influxdb",
        Probe::Influx(backends.influx.clone()),
    )];
    dependencies.extend(backends.optional_stores());
    let readiness = Readiness::new(dependencies, Duration::from_secs(2));
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
    shared.run_in(&app);
    telemetry_writer::jobs::run_in(
        &app,
        shared.alert_engine(backends.pg.clone(), backends.redis.clone()),
        backends.influx.clone(),
        backends.redis.clone(),
    );
    Ok(app)
}

/// The gateway credential checks of the InfluxDB-compatible writes: rare (a verified secret
/// is remembered), so one hashing thread that gives its memory back, and the same throttle
/// as `auth`'s token endpoint, so guessing a secret here is no cheaper than there.
fn gateway_credentials(
    settings: &Settings,
    backends: &Backends,
    metrics: &Metrics,
) -> Result<GatewayCredentials, StartupError> {
    let checks = prometheus::IntCounter::new(
        "password_checks_total",
        "argon2 verifications run (gateway secrets sent with InfluxDB-compatible writes)",
    )?;
    metrics.register(Box::new(checks.clone()));
    Ok(GatewayCredentials::new(
        backends.pg.clone(),
        SecretChecker::new(HashPool::occasional(checks)?)?,
        LoginThrottle::new(backends.redis.clone(), &settings.auth),
        Duration::from_secs(settings.auth.verified_gateway_ttl_secs),
    ))
}
