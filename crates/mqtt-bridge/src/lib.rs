//! `mqtt-bridge`: MQTT telemetry → validated readings → InfluxDB.

pub mod broker;

use platform::health::{Dependency, Probe, Readiness};
use platform::influx::InfluxClient;
use platform::metrics::Metrics;
use platform::redis::RedisClient;
use platform::{Application, ServiceName, ServiceParts, Settings, StartupError};
use std::time::Duration;

/// Builds the service and starts its broker session in the background.
pub async fn build(settings: &Settings) -> Result<Application, StartupError> {
    let pg = platform::postgres::build_pool(&settings.postgres)?;
    let redis = RedisClient::new(&settings.redis)?;
    let influx = InfluxClient::new(&settings.influx)?;
    let broker = broker::BrokerSession::new(&settings.mqtt)?;
    let readiness = Readiness::new(
        vec![
            Dependency::required("mqtt", Probe::Connection(broker.connected_flag())),
            // InfluxDB outages are absorbed by the spool; the registry is read through caches.
            Dependency::optional("influxdb", Probe::Influx(influx)),
            Dependency::optional("postgres", Probe::Postgres(pg)),
            Dependency::optional("redis", Probe::Redis(redis)),
        ],
        Duration::from_secs(2),
    );
    let parts = ServiceParts {
        service: ServiceName::MqttBridge,
        readiness,
        metrics: Metrics::new(ServiceName::MqttBridge.as_str()),
        // No HTTP API to protect: the broker authenticates the publishers.
        verification: None,
        routes: |_cfg: &mut actix_web::web::ServiceConfig| {},
    };
    let app = Application::build(settings, parts)?;
    app.spawn_background(broker.run(app.shutdown_token()));
    Ok(app)
}
