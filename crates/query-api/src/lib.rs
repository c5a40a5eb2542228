//! `query-api`: history, latest values, the machine registry, configuration and the dashboard.

use platform::health::{Dependency, Probe, Readiness};
use platform::influx::InfluxClient;
use platform::metrics::Metrics;
use platform::redis::RedisClient;
use platform::{Application, ServiceName, ServiceParts, Settings, StartupError};
use std::time::Duration;

/// Builds the service from configuration.
pub async fn build(settings: &Settings) -> Result<Application, StartupError> {
    let pg = platform::postgres::build_pool(&settings.postgres)?;
    let redis = RedisClient::new(&settings.redis)?;
    let influx = InfluxClient::new(&settings.influx)?;
    let readiness = Readiness::new(
        vec![
            Dependency::required("postgres", Probe::Postgres(pg)),
            Dependency::required("influxdb", Probe::Influx(influx)),
            // Reads go to the source while the cache is away.
            Dependency::optional("redis", Probe::Redis(redis)),
        ],
        Duration::from_secs(2),
    );
    let parts = ServiceParts {
        service: ServiceName::QueryApi,
        readiness,
        metrics: Metrics::new(ServiceName::QueryApi.as_str()),
        routes: |_cfg: &mut actix_web::web::ServiceConfig| {},
    };
    Ok(Application::build(settings, parts)?)
}
