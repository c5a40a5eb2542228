//! Prometheus metrics: one registry per running service (so in-process tests do not mix).

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use std::sync::Arc;

/// The HTTP metrics every service has, plus the registry services add their own to.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    resident_memory: IntGauge,
}

impl Metrics {
    /// Creates the registry with the HTTP families registered.
    pub fn new(service: &str) -> prometheus::Result<Self> {
        let registry = Registry::new_custom(
            Some("plantline".to_owned()),
            Some(std::iter::once(("service".to_owned(), service.to_owned())).collect()),
        )
        .unwrap_or_default();
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["method", "route", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route"],
        )?;
        let resident_memory = IntGauge::new("process_resident_memory_bytes", "Resident set size")?;
        let metrics = Self {
            inner: Arc::new(Inner {
                registry,
                http_requests,
                http_duration,
                resident_memory,
            }),
        };
        metrics.register(Box::new(metrics.inner.http_requests.clone()));
        metrics.register(Box::new(metrics.inner.http_duration.clone()));
        metrics.register(Box::new(metrics.inner.resident_memory.clone()));
        Ok(metrics)
    }

    /// Adds a service-specific collector. A duplicate name is a programming error, logged once.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        if let Err(err) = self.inner.registry.register(collector) {
            tracing::error!(error = %err, "metric registered twice");
        }
    }

    /// Records one finished HTTP request.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.inner
            .http_requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.inner
            .http_duration
            .with_label_values(&[method, route])
            .observe(seconds);
    }

    /// Renders the Prometheus text exposition.
    pub fn render(&self) -> String {
        if let Some(rss) = resident_memory_bytes() {
            self.inner.resident_memory.set(rss);
        }
        let mut buffer = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(err) = encoder.encode(&self.inner.registry.gather(), &mut buffer) {
            tracing::error!(error = %err, "could not encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// Current RSS from `/proc/self/statm` (Linux); `None` elsewhere.
fn resident_memory_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_recorded_requests_with_service_label() {
        let metrics = Metrics::new("auth").unwrap();
        metrics.observe_request("GET", "/healthz", 200, 0.001);
        let text = metrics.render();
        assert!(
            text.contains(r#"plantline_http_requests_total{method="GET",route="/healthz",status="200",service="auth"} 1"#),
            "{text}"
        );
        assert!(text.contains("plantline_process_resident_memory_bytes"));
    }
}
