//! `query-api`: every read (history, latest values, the fleet), the machine registry's and
//! the settings' writes (audited), alert acknowledgement, the live stream and the
//! dashboard's files. It must not write telemetry; its two background jobs that write
//! (inactivity sweep, late-hour rollups) are to move to a worker.

mod dashboard;
mod history;
mod live;
pub mod rollups;
pub mod routes;
mod store;

use platform::auth::Verification;
use platform::clients::Backends;
use platform::health::{Dependency, Probe, Readiness};
use platform::influx::InfluxClient;
use platform::metrics::Metrics;
use platform::postgres::PgPool;
use platform::redis::RedisClient;
use platform::{Application, ServiceName, ServiceParts, Settings, StartupError};
use std::time::Duration;

/// What the handlers share.
pub(crate) struct QueryState {
    pub pg: PgPool,
    pub redis: RedisClient,
    pub registry: platform::registry::MachineRegistry,
    pub influx: InfluxClient,
    pub settings: platform::settings_store::LiveSettings,
    pub alerts: platform::alerts::AlertEngine,
    pub live: live::LiveHub,
    /// Events skipped for stream clients that fell behind.
    pub stream_lagged: prometheus::IntCounter,
    /// Keep-alive interval and per-user cap of live streams.
    pub stream: platform::config::StreamSettings,
    /// Open streams per user.
    pub stream_slots: routes::StreamSlots,
}

/// Builds the service from configuration.
pub async fn build(settings: &Settings) -> Result<Application, StartupError> {
    let Backends { pg, redis, influx } = Backends::connect(settings)?;
    let metrics = Metrics::new(ServiceName::QueryApi.as_str())?;
    let verification = Verification::from_settings(&settings.auth, redis.clone(), &metrics)?;
    let readiness = Readiness::new(
        vec![
            Dependency::required("postgres", Probe::Postgres(pg.clone())),
            Dependency::required("influxdb", Probe::Influx(influx.clone())),
            // Reads go to the source while the cache is away.
            Dependency::optional("redis", Probe::Redis(redis.clone())),
        ],
        Duration::from_secs(2),
    );
    let live_settings =
        platform::settings_store::LiveSettings::new(settings.influx.raw_retention_weeks);
    if let Err(err) = live_settings.refresh(&pg).await {
        tracing::warn!(error = %err, "settings not loaded at start; using defaults until Postgres answers");
    }
    let alerts =
        platform::alerts::AlertEngine::new(pg.clone(), redis.clone(), live_settings.clone());
    let hub = live::LiveHub::default();
    let stream_lagged = prometheus::IntCounter::new(
        "stream_events_skipped_total",
        "Live events skipped because a stream client fell behind",
    )?;
    metrics.register(Box::new(stream_lagged.clone()));
    let streams_open = prometheus::IntGauge::new(
        "streams_open",
        "Live streams open now (a client that left is released at the next keep-alive)",
    )?;
    metrics.register(Box::new(streams_open.clone()));
    let registry = platform::registry::MachineRegistry::new(pg.clone(), redis.clone(), 300, 30);
    let state = actix_web::web::Data::new(QueryState {
        live: hub.clone(),
        stream_lagged,
        stream: settings.stream.clone(),
        stream_slots: routes::StreamSlots::new(streams_open),
        alerts: alerts.clone(),
        registry: registry.clone(),
        influx: influx.clone(),
        settings: live_settings.clone(),
        pg: pg.clone(),
        redis: redis.clone(),
    });
    let dashboard = actix_web::web::Data::new(dashboard::Dashboard::load(std::path::Path::new(
        &settings.dashboard.dir,
    )));
    let parts = ServiceParts {
        service: ServiceName::QueryApi,
        readiness,
        metrics,
        verification: Some(verification),
        routes: move |cfg: &mut actix_web::web::ServiceConfig| {
            cfg.app_data(state.clone()).app_data(dashboard.clone());
            routes::configure(cfg);
        },
    };
    let app = Application::build(settings, parts)?;
    app.spawn_background(live_settings.run_refresh(
        pg,
        Duration::from_millis(500),
        app.shutdown_token(),
    ));
    app.spawn_background(hub.run(redis.clone(), registry, app.shutdown_token()));
    app.spawn_background(sweep_inactivity(
        alerts,
        Duration::from_secs(5),
        app.shutdown_token(),
    ));
    app.spawn_background(rollups::run(
        influx,
        redis,
        Duration::from_secs(10),
        app.shutdown_token(),
    ));
    Ok(app)
}

/// Checks for silent machines every `every` (each replica does; the upsert is idempotent).
async fn sweep_inactivity(
    alerts: platform::alerts::AlertEngine,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match alerts.sweep_inactivity().await {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("inactivity sweep works again");
            }
            Ok(_) => {}
            Err(err) if !failing => {
                failing = true;
                tracing::warn!(error = %err, "inactivity sweep failed; retrying");
            }
            Err(_) => {}
        }
    }
}
