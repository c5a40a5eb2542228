//! ingest-api's own metrics.

use platform::metrics::Metrics;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts};

/// Readings by endpoint and outcome, write latency, batch sizes.
#[derive(Clone)]
pub struct IngestMetrics {
    /// Readings accepted (`outcome="stored"`) or rejected (`outcome="rejected"`, by reason),
    /// by the endpoint they came through (`/api/v1/data/ingest`, `/write`, `/api/v2/write`).
    pub readings: IntCounterVec,
    /// Latency of the InfluxDB write (retries included).
    pub write_seconds: Histogram,
    /// Readings per request.
    pub batch_readings: Histogram,
    /// Requests whose points each InfluxDB write carried (group commit).
    pub requests_per_write: Histogram,
}

impl IngestMetrics {
    /// Creates and registers the families.
    pub fn register(metrics: &Metrics) -> prometheus::Result<Self> {
        let readings = IntCounterVec::new(
            Opts::new(
                "ingest_readings_total",
                "Readings by endpoint, outcome and rejection reason",
            ),
            &["endpoint", "outcome", "reason"],
        )?;
        let write_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "ingest_influx_write_seconds",
                "InfluxDB write latency, retries included",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )?;
        let batch_readings = Histogram::with_opts(
            HistogramOpts::new("ingest_batch_readings", "Readings per ingest request").buckets(
                vec![
                    1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 20000.0,
                ],
            ),
        )?;
        let requests_per_write = Histogram::with_opts(
            HistogramOpts::new(
                "ingest_influx_requests_per_write",
                "Ingest requests whose points one InfluxDB write carried (concurrent requests share writes)",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
        )?;
        metrics.register(Box::new(readings.clone()));
        metrics.register(Box::new(requests_per_write.clone()));
        metrics.register(Box::new(write_seconds.clone()));
        metrics.register(Box::new(batch_readings.clone()));
        Ok(Self {
            readings,
            write_seconds,
            batch_readings,
            requests_per_write,
        })
    }

    /// Counts readings of `endpoint` rejected under `reason`.
    pub fn rejected(&self, endpoint: &str, reason: &str, count: usize) {
        if count > 0 {
            self.readings
                .with_label_values(&[endpoint, "rejected", reason])
                .inc_by(count as u64);
        }
    }

    /// Counts readings of `endpoint` that InfluxDB acknowledged.
    pub fn stored(&self, endpoint: &str, count: usize) {
        self.readings
            .with_label_values(&[endpoint, "stored", ""])
            .inc_by(count as u64);
        self.batch_readings.observe(count as f64);
    }
}
