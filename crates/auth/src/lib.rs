//! `auth`: logins, tokens, users and gateway clients.

use platform::health::{Dependency, Probe, Readiness};
use platform::metrics::Metrics;
use platform::redis::RedisClient;
use platform::{Application, ServiceName, ServiceParts, Settings, StartupError};
use std::time::Duration;

/// Builds the service from configuration. Backing services may still be down: the pools
/// connect lazily and `/readyz` says what is missing.
pub async fn build(settings: &Settings) -> Result<Application, StartupError> {
    let pg = platform::postgres::build_pool(&settings.postgres)?;
    let redis = RedisClient::new(&settings.redis)?;
    let readiness = Readiness::new(
        vec![
            Dependency::required("postgres", Probe::Postgres(pg)),
            // Login keeps working without Redis (throttling degrades); see the README.
            Dependency::optional("redis", Probe::Redis(redis)),
        ],
        Duration::from_secs(2),
    );
    let parts = ServiceParts {
        service: ServiceName::Auth,
        readiness,
        metrics: Metrics::new(ServiceName::Auth.as_str()),
        routes: |_cfg: &mut actix_web::web::ServiceConfig| {},
    };
    Ok(Application::build(settings, parts)?)
}
