//! Logging: JSON lines on stdout with the service name, request id and span fields flattened
//! to the top level, so operators can filter on `request_id` without digging into nesting.

use crate::config::{LogFormat, LogSettings};
use crate::server::ServiceName;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber once; later calls (tests spawning several apps) are no-ops.
pub fn init(service: ServiceName, settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match settings.format {
        LogFormat::Json => {
            let mut layer = json_subscriber::JsonLayer::stdout();
            layer.with_timer("timestamp", tracing_subscriber::fmt::time::SystemTime);
            layer.with_level("level");
            layer.with_target("target");
            layer.add_static_field("service", serde_json::Value::from(service.as_str()));
            layer.with_flattened_event();
            layer.with_top_level_flattened_span_list();
            registry.with(layer).try_init()
        }
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_target(true))
            .try_init(),
    };
    // Already installed (several services in one test process): keep the first one.
    let _ = installed;
}
