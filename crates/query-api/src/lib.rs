//! `query-api`: every read (history, latest values, the fleet), the machine registry's and
//! the settings' writes (audited), alert acknowledgement, the live stream and the
//! dashboard's files. It must not write telemetry, alerts or rollups: those are the write
//! path's (`telemetry-writer`, its background jobs run by ingest-api).

mod dashboard;
mod history;
mod latest_values;
mod live;
pub mod routes;

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
    pub registry: storage::registry::MachineRegistry,
    pub influx: InfluxClient,
    pub settings: storage::settings::LiveSettings,
    pub alerts: storage::alerts::AlertEngine,
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
        storage::settings::LiveSettings::load(settings.influx.raw_retention_weeks, &pg).await;
    let alerts =
        storage::alerts::AlertEngine::new(pg.clone(), redis.clone(), live_settings.clone());
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
    let registry =
        storage::registry::MachineRegistry::new(pg.clone(), redis.clone(), &settings.registry);
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
    live_settings.keep_fresh(pg, &app);
    app.spawn_background(hub.run(redis.clone(), registry, app.shutdown_token()));
    Ok(app)
}
