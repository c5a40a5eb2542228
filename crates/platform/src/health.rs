//! `/healthz` (the process lives), `/readyz` (its dependencies answer) and `/metrics`.

use crate::influx::InfluxClient;
use crate::metrics::Metrics;
use crate::postgres::{self, PgPool};
use crate::redis::RedisClient;
use crate::server::ServiceName;
use actix_web::{HttpResponse, web};
use futures_util::future::join_all;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Something a service talks to.
#[derive(Clone)]
pub enum Probe {
    Postgres(PgPool),
    Redis(RedisClient),
    /// The time-series store.
    Influx(InfluxClient),
    /// A long-lived connection whose state a background task keeps (e.g. the MQTT session).
    Connection(Arc<AtomicBool>),
    /// Something in the process itself (e.g. the bridge's spool): `Ok` carries details to show.
    Local(LocalProbe),
}

/// A check of the service's own state, e.g. how full a spool is.
pub type LocalProbe = Arc<dyn Fn() -> Result<serde_json::Value, String> + Send + Sync>;

/// A probe plus whether the service can do its job without it.
#[derive(Clone)]
pub struct Dependency {
    name: &'static str,
    probe: Probe,
    required: bool,
}

impl Dependency {
    /// A dependency without which the service cannot serve: `/readyz` answers 503 when it is down.
    pub fn required(name: &'static str, probe: Probe) -> Self {
        Self {
            name,
            probe,
            required: true,
        }
    }

    /// A dependency the service degrades without (e.g. Redis as a cache): reported, not fatal.
    pub fn optional(name: &'static str, probe: Probe) -> Self {
        Self {
            name,
            probe,
            required: false,
        }
    }

    async fn check(&self) -> Result<Option<serde_json::Value>, String> {
        match &self.probe {
            Probe::Postgres(pool) => postgres::ping(pool).await.map_err(|e| e.to_string()),
            Probe::Redis(client) => client.ping().await.map_err(|e| e.to_string()),
            Probe::Influx(client) => client.ping().await.map_err(|e| e.to_string()),
            Probe::Connection(up) => {
                if up.load(Ordering::Relaxed) {
                    Ok(())
                } else {
                    Err("not connected".to_owned())
                }
            }
            Probe::Local(check) => return check().map(Some),
        }
        .map(|()| None)
    }
}

/// The dependencies `/readyz` checks, all at once, each within `timeout`.
#[derive(Clone)]
pub struct Readiness {
    dependencies: Arc<Vec<Dependency>>,
    timeout: Duration,
}

/// One dependency's state in the `/readyz` answer.
#[derive(Debug, Serialize)]
pub struct DependencyState {
    /// `up` or `down`.
    pub status: &'static str,
    /// Whether the service is not ready while this is down.
    pub required: bool,
    /// Round-trip time of the probe.
    pub latency_ms: f64,
    /// Why it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What a local probe reports besides up/down (e.g. spool depth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// The `/readyz` answer.
#[derive(Debug, Serialize)]
pub struct ReadinessReport {
    /// `ready`, `degraded` (an optional dependency is down) or `not_ready`.
    pub status: &'static str,
    pub service: &'static str,
    /// Each dependency by name.
    pub dependencies: BTreeMap<&'static str, DependencyState>,
}

impl Readiness {
    /// Checks these dependencies, each bounded by `timeout`.
    pub fn new(dependencies: Vec<Dependency>, timeout: Duration) -> Self {
        Self {
            dependencies: Arc::new(dependencies),
            timeout,
        }
    }

    /// Probes every dependency concurrently.
    pub async fn report(&self, service: ServiceName) -> ReadinessReport {
        let checks = self.dependencies.iter().map(|dependency| async move {
            let started = Instant::now();
            let outcome = match tokio::time::timeout(self.timeout, dependency.check()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("no answer within {:?}", self.timeout)),
            };
            let (detail, error) = match outcome {
                Ok(detail) => (detail, None),
                Err(error) => (None, Some(error)),
            };
            let state = DependencyState {
                status: if error.is_none() { "up" } else { "down" },
                required: dependency.required,
                latency_ms: (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
                error,
                detail,
            };
            (dependency.name, state)
        });
        let dependencies: BTreeMap<_, _> = join_all(checks).await.into_iter().collect();
        let down = |required: bool| {
            dependencies
                .values()
                .any(|d| d.required == required && d.error.is_some())
        };
        let status = if down(true) {
            "not_ready"
        } else if down(false) {
            "degraded"
        } else {
            "ready"
        };
        ReadinessReport {
            status,
            service: service.as_str(),
            dependencies,
        }
    }
}

/// Registers `/healthz`, `/readyz` and `/metrics`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "probes",
    responses((status = 200, description = "`{\"status\":\"ok\",\"service\",\"version\"}`")))]
pub(crate) async fn healthz(service: web::Data<ServiceName>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "service": service.as_str(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Readiness: every required dependency answers (optional ones may be down: `degraded`).
#[utoipa::path(get, path = "/readyz", tag = "probes", responses(
    (status = 200, description = "`ready` or `degraded`, with each dependency's state, latency and error"),
    (status = 503, description = "`not_ready`: a required dependency is down")))]
pub(crate) async fn readyz(
    service: web::Data<ServiceName>,
    readiness: web::Data<Readiness>,
) -> HttpResponse {
    let report = readiness.report(**service).await;
    if report.status == "not_ready" {
        tracing::warn!(dependencies = ?report.dependencies.iter().filter(|(_, d)| d.error.is_some()).map(|(n, _)| n).collect::<Vec<_>>(), "not ready");
        HttpResponse::ServiceUnavailable().json(report)
    } else {
        HttpResponse::Ok().json(report)
    }
}

/// Prometheus metrics (through nginx only from private addresses).
#[utoipa::path(get, path = "/metrics", tag = "probes",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}
