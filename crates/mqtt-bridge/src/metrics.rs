//! mqtt-bridge's own metrics.

use crate::spool::SpoolStats;
use platform::metrics::Metrics;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts};

/// Messages by outcome, dead letters by reason, batches, write latency, spool depth.
#[derive(Clone)]
pub struct BridgeMetrics {
    /// `received`, `stored`, `spooled` (waited in the spool for InfluxDB), `dead_lettered`.
    pub messages: IntCounterVec,
    /// `messages{outcome="received"}`, resolved once: it is counted in paho's callback.
    pub received: prometheus::IntCounter,
    /// Dead letters by reason.
    pub dead_letters: IntCounterVec,
    /// Readings written to InfluxDB.
    pub readings_stored: prometheus::IntCounter,
    /// Readings per InfluxDB write.
    pub batch_readings: Histogram,
    /// InfluxDB write latency (one attempt).
    pub write_seconds: Histogram,
    /// Time inside paho's message callback (spool append): the broker waits this long for
    /// each PUBACK.
    pub append_seconds: Histogram,
    spool_bytes: IntGauge,
    spool_messages: IntGauge,
    spool_full: IntGauge,
    spool_damaged: IntGauge,
    /// Dead letters on disk that the broker has not acknowledged yet.
    pub dead_letters_pending: IntGauge,
    /// Sparkplug B: metrics that could not be named (`unnamed`) or are not readings
    /// (`ignored`), and rebirths asked for (`rebirth_requested`).
    pub sparkplug_metrics: IntCounterVec,
}

fn sparkplug_counter() -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(
        Opts::new(
            "bridge_sparkplug_total",
            "Sparkplug B metrics not stored (unnamed: an unknown alias; ignored: not a reading) and rebirths requested",
        ),
        &["what"],
    )
}

impl BridgeMetrics {
    /// Creates and registers the families.
    pub fn register(metrics: &Metrics) -> prometheus::Result<Self> {
        let messages = IntCounterVec::new(
            Opts::new("bridge_messages_total", "MQTT messages by outcome"),
            &["outcome"],
        )?;
        let this = Self {
            received: messages.with_label_values(&["received"]),
            messages,
            dead_letters: IntCounterVec::new(
                Opts::new(
                    "bridge_dead_letters_total",
                    "Dead-lettered messages by reason",
                ),
                &["reason"],
            )?,
            readings_stored: prometheus::IntCounter::new(
                "bridge_readings_stored_total",
                "Readings written to InfluxDB",
            )?,
            batch_readings: Histogram::with_opts(
                HistogramOpts::new("bridge_batch_readings", "Readings per InfluxDB write").buckets(
                    vec![
                        1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
                    ],
                ),
            )?,
            write_seconds: Histogram::with_opts(
                HistogramOpts::new("bridge_influx_write_seconds", "InfluxDB write latency")
                    .buckets(vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    ]),
            )?,
            append_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "bridge_spool_append_seconds",
                    "Spool append time per message (before the PUBACK)",
                )
                .buckets(vec![
                    0.00001, 0.00003, 0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0,
                ]),
            )?,
            spool_bytes: IntGauge::new(
                "bridge_spool_bytes",
                "Spooled bytes not yet stored in InfluxDB",
            )?,
            spool_messages: IntGauge::new(
                "bridge_spool_messages",
                "Spooled messages not yet stored in InfluxDB",
            )?,
            spool_full: IntGauge::new(
                "bridge_spool_full",
                "1 while the spool is full and messages are not acknowledged",
            )?,
            spool_damaged: IntGauge::new(
                "bridge_spool_damaged_bytes_skipped",
                "Bytes of damaged spool records skipped since start (the intact ones after them are replayed)",
            )?,
            dead_letters_pending: IntGauge::new(
                "bridge_dead_letters_pending",
                "Dead letters kept on disk until the broker acknowledges them",
            )?,
            sparkplug_metrics: sparkplug_counter()?,
        };
        metrics.register(Box::new(this.sparkplug_metrics.clone()));
        metrics.register(Box::new(this.dead_letters_pending.clone()));
        metrics.register(Box::new(this.messages.clone()));
        metrics.register(Box::new(this.dead_letters.clone()));
        metrics.register(Box::new(this.readings_stored.clone()));
        metrics.register(Box::new(this.batch_readings.clone()));
        metrics.register(Box::new(this.write_seconds.clone()));
        metrics.register(Box::new(this.append_seconds.clone()));
        metrics.register(Box::new(this.spool_bytes.clone()));
        metrics.register(Box::new(this.spool_messages.clone()));
        metrics.register(Box::new(this.spool_full.clone()));
        metrics.register(Box::new(this.spool_damaged.clone()));
        Ok(this)
    }

    /// Counts `count` messages under `outcome`.
    pub fn count(&self, outcome: &str, count: usize) {
        if count > 0 {
            self.messages
                .with_label_values(&[outcome])
                .inc_by(count as u64);
        }
    }

    /// Mirrors the spool's depth.
    pub fn spool(&self, stats: SpoolStats) {
        self.spool_bytes.set(stats.pending_bytes as i64);
        self.spool_messages.set(stats.pending_messages as i64);
        self.spool_full.set(i64::from(stats.full));
        self.spool_damaged.set(stats.damaged_bytes_skipped as i64);
    }
}
