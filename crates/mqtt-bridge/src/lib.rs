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
pub mod names;
pub mod pipeline;
pub mod relay;
pub mod sparkplug;
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
use spool::{Spool, SpoolConfig, SpoolReader};
use std::sync::Arc;
use std::time::Duration;
use telemetry_writer::WritePathParts;

/// Builds the service and starts its broker session and pipeline in the background.
pub async fn build(settings: &Settings) -> Result<Application, StartupError> {
    let backends = Backends::connect(settings)?;
    let Backends { pg, redis, influx } = backends.clone();
    let metrics = Metrics::new(ServiceName::MqttBridge.as_str())?;
    let bridge_metrics = metrics::BridgeMetrics::register(&metrics)?;
    let ((spool, reader), (journal, journal_reader)) = open_spools(settings)?;
    bridge_metrics.spool(spool.stats());
    let broker = broker::BrokerSession::new(&settings.mqtt, spool.clone(), bridge_metrics.clone())?;
    let shared = WritePathParts::start(settings, &pg, &redis).await;
    let store_outage = pipeline::StoreOutage::default();
    let (sparkplug, rebirth_requests) = sparkplug_input(settings, &bridge_metrics)?;
    metrics.register(Box::new(shared.stale_registry_gauge()));
    let pipeline = pipeline::Pipeline {
        reader,
        spool: spool.clone(),
        writer: shared.writer(pg.clone(), redis.clone(), influx.clone()),
        settings: shared.settings.clone(),
        dead_letters: dead_letter::DeadLetterOutbox::new(
            journal.clone(),
            settings.mqtt.client_id.clone(),
            settings.mqtt.topic_prefix.clone(),
        ),
        metrics: bridge_metrics.clone(),
        topic_prefix: settings.mqtt.topic_prefix.clone(),
        batch_max_readings: settings.bridge.batch_max_readings,
        batch_max_bytes: settings.bridge.batch_max_bytes,
        store_outage: store_outage.clone(),
        linger: Duration::from_millis(settings.bridge.batch_linger_ms),
        sparkplug,
        names: names::MachineNames::new(pg.clone()),
    };
    let readiness = readiness(
        &broker,
        influx,
        store_outage,
        [spool.clone(), journal.clone()],
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
    app.spawn_background(dead_letter::courier(
        journal_reader,
        journal.clone(),
        broker.client(),
        broker.connected_flag(),
        shutdown.clone(),
    ));
    app.spawn_background(keep_spool(
        [spool.clone(), journal.clone()],
        bridge_metrics,
        (!settings.bridge.fsync_always())
            .then(|| Duration::from_millis(settings.bridge.fsync_interval_ms)),
        shutdown.clone(),
    ));
    if let Some(requests) = rebirth_requests {
        run_sparkplug(&app, settings, &broker, requests);
    }
    app.spawn_essential("broker session", async move {
        broker.run(spool, shutdown).await;
        journal.close();
    });
    Ok(app)
}

/// The pipeline's Sparkplug side and where its rebirth requests go, when the bridge is a
/// host for any group; its births are kept beside the spool.
fn sparkplug_input(
    settings: &Settings,
    metrics: &metrics::BridgeMetrics,
) -> Result<
    (
        Option<sparkplug::SparkplugInput>,
        Option<tokio::sync::mpsc::Receiver<sparkplug::host::NodeKey>>,
    ),
    StartupError,
> {
    if settings.mqtt.sparkplug_groups().is_empty() {
        return Ok((None, None));
    }
    let births = sparkplug::births::Births::open(
        std::path::Path::new(&settings.bridge.spool_dir).join("sparkplug-births"),
    )?;
    let (requests, receiver) = tokio::sync::mpsc::channel(256);
    let rebirths = sparkplug::commands::Rebirths::new(requests, metrics.sparkplug_metrics.clone());
    let input = sparkplug::SparkplugInput::new(
        settings.mqtt.topic_prefix.clone(),
        rebirths,
        births,
        metrics.clone(),
    );
    Ok((Some(input), Some(receiver)))
}

/// The Sparkplug host's tasks: rebirth requests out, and STATE.
fn run_sparkplug(
    app: &Application,
    settings: &Settings,
    broker: &broker::BrokerSession,
    requests: tokio::sync::mpsc::Receiver<sparkplug::host::NodeKey>,
) {
    app.spawn_background(sparkplug::commands::publish(
        broker.client(),
        settings.mqtt.topic_prefix.clone(),
        requests,
        app.shutdown_token(),
    ));
    app.spawn_background(sparkplug::state::run(
        settings.mqtt.clone(),
        broker.connected_flag(),
        app.shutdown_token(),
    ));
}

/// A spool's writing and reading sides.
type OpenSpool = (Spool, SpoolReader);

/// The spool and the dead-letter journal (a spool of its own in a subfolder).
fn open_spools(settings: &Settings) -> Result<(OpenSpool, OpenSpool), spool::SpoolError> {
    let spool_config = SpoolConfig {
        dir: settings.bridge.spool_dir.clone().into(),
        max_bytes: settings.bridge.spool_max_bytes,
        segment_bytes: settings.bridge.spool_segment_bytes,
        fsync_always: settings.bridge.fsync_always(),
        max_payload_bytes: settings.mqtt.max_payload_bytes,
    };
    let journal_config = SpoolConfig {
        dir: spool_config.dir.join("deadletters"),
        // Only `try_append`, which never waits: `/readyz` reports a backlog over the bound.
        max_bytes: u64::MAX,
        max_payload_bytes: usize::MAX,
        ..spool_config.clone()
    };
    // The spool first: a second bridge on the same folder is told about the spool.
    let spool = Spool::open(spool_config)?;
    Ok((spool, Spool::open(journal_config)?))
}

/// Ready while connected to the broker; degraded while InfluxDB, its writes, the spool, the
/// dead-letter journal or the caches are not well.
fn readiness(
    broker: &broker::BrokerSession,
    influx: platform::influx::InfluxClient,
    store_outage: pipeline::StoreOutage,
    [spool, journal]: [Spool; 2],
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
        journal_dependency(journal),
    ];
    dependencies.extend(stores);
    Readiness::new(dependencies, Duration::from_secs(2))
}

/// Ready while the spool can write and has room; otherwise messages are not acknowledged.
fn spool_dependency(spool: Spool) -> Dependency {
    Dependency::optional(
        "spool",
        Probe::Local(Arc::new(move || {
            let stats = spool.stats();
            if let Some(error) = &stats.write_error {
                Err(format!(
                    "cannot write ({error}): messages are not being acknowledged until it can"
                ))
            } else if stats.full {
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

/// Dead letters on disk that the broker has not acknowledged: degraded past a backlog of
/// [`JOURNAL_BACKLOG`] or while the journal cannot be written.
fn journal_dependency(journal: Spool) -> Dependency {
    Dependency::optional(
        "dead_letters",
        Probe::Local(Arc::new(move || {
            let stats = journal.stats();
            if let Some(error) = &stats.write_error {
                Err(format!("cannot write the dead-letter journal ({error})"))
            } else if stats.pending_messages > JOURNAL_BACKLOG {
                Err(format!(
                    "{} dead letters ({} bytes) wait for the broker to acknowledge them",
                    stats.pending_messages, stats.pending_bytes
                ))
            } else {
                Ok(serde_json::json!({"pending": stats.pending_messages}))
            }
        })),
    )
}

/// Dead letters waiting for the broker beyond which `/readyz` says so.
const JOURNAL_BACKLOG: u64 = 10_000;

/// The `interval` fsync policy's tick (for the spool and the dead-letter journal), and the
/// gauges of both.
async fn keep_spool(
    spools: [Spool; 2],
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
            for spool in &spools {
                let spool = spool.clone();
                match tokio::task::spawn_blocking(move || spool.sync()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => tracing::error!(error = %err, "spool fsync failed"),
                    Err(err) => tracing::error!(error = %err, "spool fsync task failed"),
                }
            }
        }
        metrics.spool(spools[0].stats());
        metrics
            .dead_letters_pending
            .set(spools[1].stats().pending_messages as i64);
    }
}
