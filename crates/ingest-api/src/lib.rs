//! `ingest-api`: the gateways' HTTP write path into InfluxDB.

use platform::auth::Verification;
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
    let metrics = Metrics::new(ServiceName::IngestApi.as_str());
    let verification = Verification::from_settings(&settings.auth, redis.clone(), &metrics)?;
    let readiness = Readiness::new(
        vec![
            Dependency::required("influxdb", Probe::Influx(influx)),
            // Cached machines keep flowing while Postgres or Redis is away.
            Dependency::optional("postgres", Probe::Postgres(pg)),
            Dependency::optional("redis", Probe::Redis(redis.clone())),
        ],
        Duration::from_secs(2),
    );
    let parts = ServiceParts {
        service: ServiceName::IngestApi,
        readiness,
        metrics,
        verification: Some(verification),
        routes: |_cfg: &mut actix_web::web::ServiceConfig| {},
    };
    Ok(Application::build(settings, parts)?)
}
