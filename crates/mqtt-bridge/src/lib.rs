//! `mqtt-bridge`: MQTT telemetry → spool → validated readings → InfluxDB.
//!
//! The broker session appends every message to the on-disk spool before the broker gets its
//! PUBACK; the pipeline replays the spool in order, validates with the same domain code as
//! ingest-api, writes micro-batches to InfluxDB and only then moves the spool's checkpoint.
//! Messages that can never be stored go to the dead-letter topic.

pub mod broker;
pub mod dead_letter;
pub mod metrics;
pub mod pipeline;
pub mod relay;
pub mod spool;

/// The bridge's HTTP side: only the probes and its OpenAPI document.
pub mod routes {
    platform::http_routes! {
        service: platform::ServiceName::MqttBridge;
    }
}

use platform::health::{Dependency, Probe, Readiness};
use platform::influx::InfluxClient;
use platform::metrics::Metrics;
use platform::redis::RedisClient;
use platform::registry::MachineRegistry;
use platform::settings_store::LiveSettings;
use platform::{Application, ServiceName, ServiceParts, Settings, StartupError};
use spool::{Spool, SpoolConfig};
use std::sync::Arc;
use std::time::Duration;

/// Builds the service and starts its broker session and pipeline in the background.
pub async fn build(settings: &Settings) -> Result<Application, StartupError> {
    let pg = platform::postgres::build_pool(&settings.postgres)?;
    let redis = RedisClient::new(&settings.redis)?;
    let influx = InfluxClient::new(&settings.influx)?;
    let metrics = Metrics::new(ServiceName::MqttBridge.as_str());
    let bridge_metrics = metrics::BridgeMetrics::register(&metrics);
    let (spool, reader) = Spool::open(SpoolConfig {
        dir: settings.bridge.spool_dir.clone().into(),
        max_bytes: settings.bridge.spool_max_bytes,
        segment_bytes: settings.bridge.spool_segment_bytes,
        fsync_always: settings.bridge.fsync_always(),
        max_payload_bytes: settings.mqtt.max_payload_bytes,
    })?;
    bridge_metrics.spool(spool.stats());
    let broker = broker::BrokerSession::new(&settings.mqtt, spool.clone(), bridge_metrics.clone())?;
    let live_settings = LiveSettings::new(settings.influx.raw_retention_weeks);
    if let Err(err) = live_settings.refresh(&pg).await {
        tracing::warn!(error = %err, "settings not loaded at start; using defaults until Postgres answers");
    }
    if let Err(err) = platform::latest::load_script(&redis).await {
        tracing::warn!(error = %err, "Redis lost: latest-value script not loaded; sending it inline until Redis is back");
    }
    let audience = platform::latest::LiveAudience::default();
    let pipeline = pipeline::Pipeline {
        reader,
        spool: spool.clone(),
        registry: MachineRegistry::new(pg.clone(), redis.clone(), 300, 30),
        influx: influx.clone(),
        redis: redis.clone(),
        settings: live_settings.clone(),
        audience: audience.clone(),
        dead_letters: pipeline::DeadLetterOutbox {
            client: broker.client(),
            instance: settings.mqtt.client_id.clone(),
            topic_prefix: settings.mqtt.topic_prefix.clone(),
        },
        metrics: bridge_metrics.clone(),
        alerts: platform::alerts::AlertEngine::new(
            pg.clone(),
            redis.clone(),
            live_settings.clone(),
        ),
        topic_prefix: settings.mqtt.topic_prefix.clone(),
        batch_max_readings: settings.bridge.batch_max_readings,
        linger: Duration::from_millis(settings.bridge.batch_linger_ms),
    };
    let spool_probe = spool.clone();
    let readiness = Readiness::new(
        vec![
            Dependency::required("mqtt", Probe::Connection(broker.connected_flag())),
            // InfluxDB outages are absorbed by the spool; the registry is read through caches.
            Dependency::optional("influxdb", Probe::Influx(influx)),
            Dependency::optional(
                "spool",
                Probe::Local(Arc::new(move || {
                    let stats = spool_probe.stats();
                    if stats.full {
                        Err(format!(
                            "full ({} of {} bytes): messages are not being acknowledged",
                            stats.pending_bytes, stats.max_bytes
                        ))
                    } else {
                        serde_json::to_value(stats).map_err(|e| e.to_string())
                    }
                })),
            ),
            Dependency::optional("postgres", Probe::Postgres(pg.clone())),
            Dependency::optional("redis", Probe::Redis(redis.clone())),
        ],
        Duration::from_secs(2),
    );
    let parts = ServiceParts {
        service: ServiceName::MqttBridge,
        readiness,
        metrics,
        // No HTTP API to protect: the broker authenticates the publishers.
        verification: None,
        routes: routes::configure,
    };
    let app = Application::build(settings, parts)?;
    let shutdown = app.shutdown_token();
    app.spawn_essential("pipeline", pipeline.run(shutdown.clone()));
    app.spawn_background(live_settings.run_refresh(
        pg,
        Duration::from_millis(500),
        shutdown.clone(),
    ));
    app.spawn_background(audience.run(redis.clone(), shutdown.clone()));
    app.spawn_background(relay::alerts_to_mqtt(
        redis,
        broker.client(),
        settings.mqtt.topic_prefix.clone(),
        shutdown.clone(),
    ));
    app.spawn_background(keep_spool(
        spool.clone(),
        bridge_metrics,
        (!settings.bridge.fsync_always())
            .then(|| Duration::from_millis(settings.bridge.fsync_interval_ms)),
        shutdown.clone(),
    ));
    app.spawn_essential("broker session", async move {
        broker.run(shutdown).await;
        // After the last message was taken: flush it to disk.
        spool.close();
    });
    Ok(app)
}

/// The `interval` fsync policy's tick, and the spool gauges.
async fn keep_spool(
    spool: Spool,
    metrics: metrics::BridgeMetrics,
    fsync_every: Option<Duration>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let every = fsync_every.unwrap_or(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        if fsync_every.is_some() {
            let spool = spool.clone();
            match tokio::task::spawn_blocking(move || spool.sync()).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::error!(error = %err, "spool fsync failed"),
                Err(err) => tracing::error!(error = %err, "spool fsync task failed"),
            }
        }
        metrics.spool(spool.stats());
    }
}
