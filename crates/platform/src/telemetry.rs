//! Logging: JSON lines on stdout with the service name, request id and span fields flattened
//! to the top level, so operators can filter on `request_id` without digging into nesting.
//!
//! Tracing: when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (and not empty), spans are exported over
//! OTLP/HTTP (JSON) to it, W3C `traceparent` is read from requests and written on InfluxDB
//! calls. Unset, no exporter, no propagator, no layer: nothing is paid.

use crate::config::{LogFormat, LogSettings};
use crate::server::ServiceName;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

static TRACER_PROVIDER: std::sync::OnceLock<opentelemetry_sdk::trace::SdkTracerProvider> =
    std::sync::OnceLock::new();

/// Whether spans are exported (OTLP endpoint configured at start).
pub fn exporting() -> bool {
    TRACER_PROVIDER.get().is_some()
}

/// An OTLP exporter when `OTEL_EXPORTER_OTLP_ENDPOINT` says where to.
fn otlp_layer<S>(service: ServiceName) -> Option<impl tracing_subscriber::Layer<S>>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    use opentelemetry::trace::TracerProvider as _;
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default();
    if endpoint.trim().is_empty() {
        return None;
    }
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpJson)
        .build()
    {
        Ok(exporter) => exporter,
        Err(err) => {
            eprintln!(
                "{}: tracing disabled, OTLP exporter: {err}",
                service.as_str()
            );
            return None;
        }
    };
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.as_str())
                .build(),
        )
        .build();
    let tracer = provider.tracer(service.as_str());
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    TRACER_PROVIDER.set(provider).ok()?;
    Some(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// [`flush`], waiting at most `limit`: a silent collector must not hold up an exit.
pub fn flush_within(limit: std::time::Duration) {
    let (done, finished) = std::sync::mpsc::channel();
    let flushing = std::thread::Builder::new()
        .name("telemetry-flush".into())
        .spawn(move || {
            flush();
            let _ = done.send(());
        });
    if flushing.is_ok() && finished.recv_timeout(limit).is_err() {
        eprintln!("tracing: spans not flushed within {} ms", limit.as_millis());
    }
}

/// Sends the spans still buffered (at shutdown).
pub fn flush() {
    if let Some(provider) = TRACER_PROVIDER.get()
        && let Err(err) = provider.shutdown()
    {
        eprintln!("tracing: flushing spans failed: {err}");
    }
}

/// Makes `span` a child of the caller's trace (W3C `traceparent`), when exporting.
pub fn continue_trace(span: &tracing::Span, headers: &actix_web::http::header::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    struct Headers<'a>(&'a actix_web::http::header::HeaderMap);
    impl opentelemetry::propagation::Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }
    if !exporting() {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    let _ = span.set_parent(parent);
}

/// Ties `span` (one batch of many messages) to its publishers' traces, when exporting: the
/// first valid `traceparent` becomes its parent, so a single traced message's trace runs on
/// into the batch's store calls; the other traces are linked (at most 32).
pub fn join_traces<'a>(span: &tracing::Span, traceparents: impl Iterator<Item = &'a str>) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if !exporting() {
        return;
    }
    let mut seen = std::collections::HashSet::new();
    let mut parented = false;
    for traceparent in traceparents {
        let carrier =
            std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        let context = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
        let remote = context.span().span_context().clone();
        if !remote.is_valid() || !seen.insert(remote.trace_id()) {
            continue;
        }
        if !parented {
            let _ = span.set_parent(context);
            parented = true;
        } else if seen.len() <= 33 {
            span.add_link(remote);
        }
    }
}

/// The current span's `traceparent`, for an outgoing call (when exporting).
pub fn traceparent() -> Option<(String, String)> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if !exporting() {
        return None;
    }
    let context = tracing::Span::current().context();
    let mut carrier = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut carrier));
    carrier.remove_entry("traceparent")
}

/// Installs the global subscriber once; later calls (tests spawning several apps) are no-ops.
pub fn init(service: ServiceName, settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // The log level filters logs only: spans go to the OTLP exporter at info whatever it is.
    // Without an endpoint there is no such layer, so info spans cost nothing more.
    let otlp = otlp_layer(service)
        .map(|layer| layer.with_filter(tracing_subscriber::filter::LevelFilter::INFO));
    let registry = tracing_subscriber::registry().with(otlp);
    let installed = match settings.format {
        LogFormat::Json => {
            let mut layer = json_subscriber::JsonLayer::stdout();
            layer.with_timer("timestamp", tracing_subscriber::fmt::time::SystemTime);
            layer.with_level("level");
            layer.with_target("target");
            layer.add_static_field("service", serde_json::Value::from(service.as_str()));
            layer.with_flattened_event();
            layer.with_top_level_flattened_span_list();
            registry.with(layer.with_filter(filter)).try_init()
        }
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(true)
                    .with_filter(filter),
            )
            .try_init(),
    };
    // Already installed (several services in one test process): keep the first one.
    let _ = installed;
}
