//! `mqtt-bridge`: MQTT telemetry → spool → validated readings → the write path.
//!
//! It owns the broker session, the on-disk spool, dead letters and the status topic: every
//! message is appended to the spool before the broker gets its PUBACK; the pipeline replays
//! the spool in order, parses with the same domain code as ingest-api, hands the readings to
//! `telemetry-writer` in micro-batches and only then moves the spool's checkpoint. Messages
//! that can never be stored go to the dead-letter topic. It must not write to a store by any
//! other road.

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

use platform::clients::Backends;
use platform::health::{Dependency, Probe, Readiness};
use platform::metrics::Metrics;
use platform::{Application, ServiceName, ServiceParts, Settings, StartupError};
use spool::{Spool, SpoolConfig};
use std::sync::Arc;
use std::time::Duration;
use telemetry_writer::WritePathParts;

/// Builds the service and starts its broker session and pipeline in the background.
pub async fn build(settings: &Settings) -> Result<Application, StartupError> {
    let backends = Backends::connect(settings)?;
    let Backends { pg, redis, influx } = backends.clone();
    let metrics = Metrics::new(ServiceName::MqttBridge.as_str())?;
    let bridge_metrics = metrics::BridgeMetrics::register(&metrics)?;
    let (spool, reader) = Spool::open(SpoolConfig {
        dir: settings.bridge.spool_dir.clone().into(),
        max_bytes: settings.bridge.spool_max_bytes,
        segment_bytes: settings.bridge.spool_segment_bytes,
        fsync_always: settings.bridge.fsync_always(),
        max_payload_bytes: settings.mqtt.max_payload_bytes,
    })?;
    bridge_metrics.spool(spool.stats());
    let broker = broker::BrokerSession::new(&settings.mqtt, spool.clone(), bridge_metrics.clone())?;
    let shared = WritePathParts::start(settings, &pg, &redis).await;
    let store_outage = pipeline::StoreOutage::default();
    metrics.register(Box::new(shared.stale_registry_gauge()));
    let pipeline = pipeline::Pipeline {
        reader,
        spool: spool.clone(),
        writer: shared.writer(pg.clone(), redis.clone(), influx.clone()),
        settings: shared.settings.clone(),
        dead_letters: pipeline::DeadLetterOutbox::start(
            broker.client(),
            settings.mqtt.client_id.clone(),
            settings.mqtt.topic_prefix.clone(),
        )?,
        metrics: bridge_metrics.clone(),
        topic_prefix: settings.mqtt.topic_prefix.clone(),
        batch_max_readings: settings.bridge.batch_max_readings,
        batch_max_bytes: settings.bridge.batch_max_bytes,
        store_outage: store_outage.clone(),
        linger: Duration::from_millis(settings.bridge.batch_linger_ms),
    };
    let readiness = readiness(
        &broker,
        influx,
        store_outage,
        spool.clone(),
        backends.optional_stores(),
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
    shared.run_in(&app);
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

/// Ready while connected to the broker; degraded while InfluxDB, its writes, the spool or the
/// caches are not well.
fn readiness(
    broker: &broker::BrokerSession,
    influx: platform::influx::InfluxClient,
    store_outage: pipeline::StoreOutage,
    spool: Spool,
    stores: [Dependency; 2],
) -> Readiness {
    let mut dependencies = vec![
        Dependency::required("mqtt", Probe::Connection(broker.connected_flag())),
        // InfluxDB outages are absorbed by the spool; the registry is read through caches.
        Dependency::optional("influxdb", Probe::Influx(influx)),
        // InfluxDB may answer its ping and still refuse writes (401, 404, 5xx).
        Dependency::optional(
            "influxdb_writes",
            Probe::Local(Arc::new(move || match store_outage.reason() {
                Some(reason) => Err(format!(
                    "writes failing, messages held in the spool: {reason}"
                )),
                None => Ok(serde_json::json!("writing")),
            })),
        ),
        spool_dependency(spool),
    ];
    dependencies.extend(stores);
    Readiness::new(dependencies, Duration::from_secs(2))
}

/// Ready while the spool has room; full means messages are no longer acknowledged.
fn spool_dependency(spool: Spool) -> Dependency {
    Dependency::optional(
        "spool",
        Probe::Local(Arc::new(move || {
            let stats = spool.stats();
            if stats.full {
                Err(format!(
                    "full ({} of {} bytes): messages are not being acknowledged",
                    stats.pending_bytes, stats.max_bytes
                ))
            } else {
                serde_json::to_value(stats).map_err(|e| e.to_string())
            }
        })),
    )
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
