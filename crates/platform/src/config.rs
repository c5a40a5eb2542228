//! Configuration: built-in defaults, then an optional TOML file, then `PLANTLINE_*` variables.
//!
//! `PLANTLINE_POSTGRES__URL=...` sets `postgres.url`; `__` separates sections. The file is named
//! by `PLANTLINE_CONFIG_FILE`. Values are validated once at boot and errors name the key.

use crate::server::ServiceName;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;

const DEFAULTS: &str = include_str!("defaults.toml");

/// Environment variable naming an optional TOML configuration file.
pub const CONFIG_FILE_ENV: &str = "PLANTLINE_CONFIG_FILE";

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or a value has the wrong type; the message names the key.
    #[error("configuration: {0}")]
    Source(#[from] config::ConfigError),
    /// A value has the right type but is out of range.
    #[error("configuration key `{key}`: {reason}")]
    Invalid {
        /// Dotted key, e.g. `postgres.pool_size`.
        key: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
}

/// Every setting a service may read. Each binary uses the sections it needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Where the HTTP server listens.
    pub http: HttpSettings,
    /// Logging format and filter.
    pub log: LogSettings,
    /// The registry database.
    pub postgres: PostgresSettings,
    /// Cache, latest values, rate limits, pub/sub.
    pub redis: RedisSettings,
    /// The time-series store.
    pub influx: InfluxSettings,
    /// The MQTT broker (used by mqtt-bridge).
    pub mqtt: MqttSettings,
    /// mqtt-bridge's spool and batching.
    pub bridge: BridgeSettings,
    /// The dashboard query-api serves.
    pub dashboard: DashboardSettings,
    /// Tokens: issuing (auth) and verifying (every HTTP service).
    pub auth: AuthSettings,
    /// query-api's live streams.
    pub stream: StreamSettings,
    /// How the write paths cache the machine registry.
    pub registry: RegistrySettings,
}

/// The machine registry as the write paths read it (Redis cache-aside over PostgreSQL, and
/// the last answers kept in process for PostgreSQL outages).
#[derive(Debug, Clone, Deserialize)]
pub struct RegistrySettings {
    /// How long a machine's entry stays in Redis (every registry write drops it at once).
    pub cache_ttl_secs: u64,
    /// While PostgreSQL cannot be reached, a machine's last known entry is served for at
    /// most this long after it was last confirmed; ingest for it stops after that.
    pub max_stale_secs: u64,
}

/// Live streams (query-api).
#[derive(Debug, Clone, Deserialize)]
pub struct StreamSettings {
    /// A comment is written this often whatever else flows, so a client that left is noticed
    /// (the write fails) and its stream released within about two intervals.
    pub heartbeat_secs: u64,
    /// Open streams per user and query-api replica; one more answers 429.
    pub max_per_user: usize,
}

/// Access tokens, refresh tokens and login throttling.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// `iss` of issued tokens, required of verified ones.
    pub issuer: String,
    /// `aud` of issued tokens, required of verified ones.
    pub audience: String,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    /// Clock skew tolerated on `exp`/`nbf`.
    pub leeway_secs: u64,
    /// PKCS#8 PEM Ed25519 private key `auth` signs with (auth only).
    pub signing_key_file: Option<String>,
    /// Comma-separated PEM public keys accepted besides the signing key's own: during a key
    /// rotation, the previous and the next key.
    pub public_key_files: String,
    /// How often each service polls the revocation list's version.
    pub revocation_poll_ms: u64,
    /// After this long without a successful sync, revocations count as unknown.
    pub revocation_stale_after_ms: u64,
    /// Failed logins per username within the window before 429.
    pub login_max_failures_per_user: u32,
    /// Failed logins per client address within the window before 429.
    pub login_max_failures_per_ip: u32,
    pub login_window_secs: u64,
    /// While PostgreSQL cannot be reached, a gateway whose exact credentials were verified
    /// within this long still gets tokens (auth) or writes (ingest-api).
    pub verified_gateway_ttl_secs: u64,
    /// How long ingest-api trusts a gateway id and secret it verified, before it checks them
    /// against PostgreSQL and argon2 again (a revocation of the gateway drops them sooner).
    pub gateway_secret_trust_secs: u64,
}

impl AuthSettings {
    /// The signing key file, if one is configured (an empty value counts as none).
    pub fn signing_key_path(&self) -> Option<&str> {
        self.signing_key_file
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }

    /// The configured public key files, trimmed, empty entries skipped.
    pub fn public_key_paths(&self) -> impl Iterator<Item = &str> {
        self.public_key_files
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    /// Interface to bind; `127.0.0.1` locally, `0.0.0.0` in containers.
    pub host: String,
    /// Port; 0 picks a free one (tests). Unset means the service's own default.
    pub port: Option<u16>,
    /// actix worker threads; 0 means half the cores, at least one.
    pub workers: usize,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_timeout_secs: u64,
    /// No request waits longer for its answer (its response head): a handler still waiting
    /// then is answered 503. Above every dependency's own deadline.
    pub request_deadline_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    /// `RUST_LOG`-style filter, e.g. `info,plantline=debug`.
    pub level: String,
    /// `json` for machines, `pretty` for people at a terminal.
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable, coloured when attached to a terminal.
    Pretty,
}

/// PostgreSQL connection pool.
#[derive(Debug, Clone, Deserialize)]
pub struct PostgresSettings {
    /// `postgres://user:password@host:port/database`.
    pub url: SecretString,
    /// Maximum connections held by this process.
    pub pool_size: usize,
    /// How long to wait for a connection before failing the request.
    pub connect_timeout_ms: u64,
    /// Server-side `statement_timeout` of every connection: a statement running longer is
    /// cancelled by PostgreSQL itself.
    pub statement_timeout_ms: u64,
}

/// Redis connection pool.
#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    /// `redis://host:port/db`.
    pub url: SecretString,
    /// Prepended to every key and channel, so deployments (and tests) can share a server.
    pub key_prefix: String,
    /// Maximum connections held by this process.
    pub pool_size: usize,
    /// Upper bound for one command, connection included (deadpool-redis has none of its own).
    pub command_timeout_ms: u64,
}

/// InfluxDB 1.x HTTP API.
#[derive(Debug, Clone, Deserialize)]
pub struct InfluxSettings {
    /// Base URL, e.g. `http://127.0.0.1:8086`.
    pub url: String,
    /// Database holding `sensor_readings`.
    pub database: String,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// Upper bound for one HTTP call to InfluxDB.
    pub timeout_ms: u64,
    /// How long raw readings are kept (the `raw` retention policy); older readings are
    /// refused at ingest, since InfluxDB would drop them.
    pub raw_retention_weeks: u32,
    /// Comma-separated measurement names that line-protocol writes may use instead of
    /// `sensor_readings` (for tools that cannot rename theirs); stored as `sensor_readings`.
    pub measurement_aliases: String,
}

/// MQTT broker connection (mqtt-bridge).
#[derive(Debug, Clone, Deserialize)]
pub struct MqttSettings {
    /// `tcp://host:1883` (or `ssl://` with TLS).
    pub url: String,
    /// Stable client id, so the broker keeps the persistent session across restarts.
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// Prepended to every topic (tests isolate themselves with it); empty in production.
    pub topic_prefix: String,
    pub keep_alive_secs: u64,
    /// `3.1.1` or `5`.
    pub protocol: String,
    /// With `ssl://`: the CA bundle (PEM) the broker's certificate must chain to.
    pub ca_file: Option<String>,
    /// What the bridge subscribes to (under the topic prefix).
    pub topic_filter: String,
    /// When set, replicas subscribe as `$share/<group>/<filter>` and split one stream.
    pub shared_group: Option<String>,
    /// MQTT 5 only: how long the broker keeps the session while the bridge is away.
    pub session_expiry_secs: u32,
    /// Larger telemetry messages are dead-lettered without being parsed.
    pub max_payload_bytes: usize,
    /// Sparkplug B groups (factories) the bridge is the host application for,
    /// comma-separated; `+` for every group, empty for none. Not shared between replicas:
    /// one edge node's messages must all reach the same host.
    pub sparkplug_groups: String,
    /// The Sparkplug host id: STATE is published on `spBv1.0/STATE/{host_id}`.
    pub sparkplug_host_id: String,
}

impl MqttSettings {
    /// Whether MQTT 5 was asked for (validated: otherwise 3.1.1).
    pub fn is_v5(&self) -> bool {
        matches!(self.protocol.trim(), "5" | "5.0")
    }

    /// The shared group, if one is configured (an empty value counts as none).
    pub fn shared_group(&self) -> Option<&str> {
        self.shared_group
            .as_deref()
            .map(str::trim)
            .filter(|g| !g.is_empty())
    }

    /// The Sparkplug groups, trimmed, empty ones left out.
    pub fn sparkplug_groups(&self) -> Vec<&str> {
        self.sparkplug_groups
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .collect()
    }

    /// Every filter the bridge subscribes to: the telemetry filter, then one per Sparkplug
    /// group (`{prefix}spBv1.0/{group}/#`, never shared).
    pub fn subscriptions(&self) -> Vec<String> {
        let mut filters = vec![self.subscription()];
        filters.extend(
            self.sparkplug_groups()
                .into_iter()
                .map(|group| format!("{}spBv1.0/{group}/#", self.topic_prefix)),
        );
        filters
    }

    /// The subscription: the prefixed filter, inside `$share/<group>/` when shared.
    pub fn subscription(&self) -> String {
        let filter = format!("{}{}", self.topic_prefix, self.topic_filter);
        match self.shared_group() {
            Some(group) => format!("$share/{group}/{filter}"),
            None => filter,
        }
    }
}

/// How mqtt-bridge keeps what it acknowledged and how it batches writes.
#[derive(Debug, Clone, Deserialize)]
pub struct BridgeSettings {
    /// The spool folder: one per bridge instance (never shared between replicas).
    pub spool_dir: String,
    /// Spool size at which the bridge stops taking messages (the broker holds them).
    pub spool_max_bytes: u64,
    pub spool_segment_bytes: u64,
    /// `interval` (fsync every `fsync_interval_ms`) or `always` (before every acknowledgement).
    pub fsync: String,
    /// Period of the `interval` fsync policy.
    pub fsync_interval_ms: u64,
    /// Readings (and messages) per InfluxDB write.
    pub batch_max_readings: usize,
    /// Payload bytes per InfluxDB write: with messages of up to `mqtt.max_payload_bytes`, a
    /// count alone could make one write of a gigabyte.
    pub batch_max_bytes: usize,
    /// How long a partial batch waits for more readings before it is written.
    pub batch_linger_ms: u64,
}

/// The dashboard's built files (`make dashboard`).
#[derive(Debug, Clone, Deserialize)]
pub struct DashboardSettings {
    /// Folder holding `index.html` and its assets; read once when query-api starts.
    pub dir: String,
}

impl BridgeSettings {
    /// Whether every message is fsynced before it is acknowledged.
    pub fn fsync_always(&self) -> bool {
        self.fsync.trim() == "always"
    }
}

impl Settings {
    /// The port this service listens on: the configured one or the service's default.
    pub fn port_for(&self, service: ServiceName) -> u16 {
        self.http.port.unwrap_or(service.default_port())
    }

    /// Checks every section once at boot; the first problem found is reported.
    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_connections()?;
        self.stream.validate()?;
        self.influx.validate()?;
        self.mqtt.validate()?;
        self.validate_bridge()?;
        self.auth.validate()?;
        self.validate_timeouts()
    }

    fn validate_connections(&self) -> Result<(), ConfigError> {
        let pg_url = self.postgres.url.expose_secret();
        if !(pg_url.starts_with("postgres://") || pg_url.starts_with("postgresql://")) {
            return Err(invalid("postgres.url", "must start with postgres://"));
        }
        if self.postgres.pool_size < 2 {
            return Err(invalid("postgres.pool_size", "must be at least 2"));
        }
        let redis_url = self.redis.url.expose_secret();
        if !(redis_url.starts_with("redis://") || redis_url.starts_with("rediss://")) {
            return Err(invalid("redis.url", "must start with redis://"));
        }
        if self.redis.pool_size < 2 {
            return Err(invalid("redis.pool_size", "must be at least 2"));
        }
        if !(self.influx.url.starts_with("http://") || self.influx.url.starts_with("https://")) {
            return Err(invalid("influx.url", "must start with http://"));
        }
        Ok(())
    }

    /// The spool bounds depend on the MQTT payload bound: a segment holds at least two
    /// messages.
    fn validate_bridge(&self) -> Result<(), ConfigError> {
        if !matches!(self.bridge.fsync.trim(), "interval" | "always") {
            return Err(invalid("bridge.fsync", "must be interval or always"));
        }
        if self.bridge.spool_segment_bytes < 64 * 1024
            || self.bridge.spool_max_bytes < 2 * self.bridge.spool_segment_bytes
        {
            return Err(invalid(
                "bridge.spool_max_bytes",
                "segments must be at least 64 KiB and the spool at least two segments",
            ));
        }
        if (self.mqtt.max_payload_bytes as u64) * 2 > self.bridge.spool_segment_bytes {
            return Err(invalid(
                "mqtt.max_payload_bytes",
                "must be at most half of bridge.spool_segment_bytes",
            ));
        }
        if self.bridge.batch_max_readings == 0 {
            return Err(invalid("bridge.batch_max_readings", "must be at least 1"));
        }
        if self.bridge.batch_max_bytes == 0 {
            return Err(invalid("bridge.batch_max_bytes", "must be at least 1"));
        }
        if self.registry.cache_ttl_secs == 0 {
            return Err(invalid("registry.cache_ttl_secs", "must be at least 1"));
        }
        Ok(())
    }

    fn validate_timeouts(&self) -> Result<(), ConfigError> {
        for (key, ms) in [
            ("auth.revocation_poll_ms", self.auth.revocation_poll_ms),
            (
                "postgres.connect_timeout_ms",
                self.postgres.connect_timeout_ms,
            ),
            ("redis.command_timeout_ms", self.redis.command_timeout_ms),
            ("influx.timeout_ms", self.influx.timeout_ms),
            ("bridge.fsync_interval_ms", self.bridge.fsync_interval_ms),
        ] {
            if ms == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        Ok(())
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

impl StreamSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=300).contains(&self.heartbeat_secs) {
            return Err(invalid("stream.heartbeat_secs", "must be 1 to 300"));
        }
        if self.max_per_user == 0 {
            return Err(invalid("stream.max_per_user", "must be at least 1"));
        }
        Ok(())
    }
}

impl InfluxSettings {
    /// The names of `measurement_aliases`, trimmed, empty ones left out.
    pub fn measurement_aliases(&self) -> Vec<String> {
        self.measurement_aliases
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self
            .measurement_aliases()
            .iter()
            .any(|name| name.len() > 255 || name.chars().any(char::is_control))
        {
            return Err(invalid(
                "influx.measurement_aliases",
                "must be comma-separated names of at most 255 characters, without control characters",
            ));
        }
        if !(1..=5200).contains(&self.raw_retention_weeks) {
            return Err(invalid(
                "influx.raw_retention_weeks",
                "must be 1 to 5200 weeks",
            ));
        }
        if self.database.is_empty()
            || !self
                .database
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(invalid(
                "influx.database",
                "must be letters, digits and '_' only",
            ));
        }
        Ok(())
    }
}

impl MqttSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(self.url.starts_with("tcp://")
            || self.url.starts_with("mqtt://")
            || self.url.starts_with("ssl://"))
        {
            return Err(invalid("mqtt.url", "must start with tcp:// or ssl://"));
        }
        if !matches!(self.protocol.trim(), "3.1.1" | "5" | "5.0") {
            return Err(invalid("mqtt.protocol", "must be 3.1.1 or 5"));
        }
        if self.client_id.is_empty() || self.client_id.contains(['/', '+', '#']) {
            return Err(invalid(
                "mqtt.client_id",
                "must be non-empty, without '/', '+' or '#'",
            ));
        }
        if self.topic_filter.is_empty() || self.topic_filter.starts_with('$') {
            return Err(invalid(
                "mqtt.topic_filter",
                "must be a non-empty filter such as factory/+/machine/+/telemetry",
            ));
        }
        if self
            .shared_group()
            .is_some_and(|g| g.contains(['/', '+', '#']))
        {
            return Err(invalid(
                "mqtt.shared_group",
                "must not contain '/', '+' or '#'",
            ));
        }
        if self
            .sparkplug_groups()
            .iter()
            .any(|g| g.contains(['/', '#']) || (g.contains('+') && *g != "+"))
        {
            return Err(invalid(
                "mqtt.sparkplug_groups",
                "must be group ids without '/', '+' or '#', or a single '+' for every group",
            ));
        }
        if self.sparkplug_host_id.is_empty() || self.sparkplug_host_id.contains(['/', '+', '#']) {
            return Err(invalid(
                "mqtt.sparkplug_host_id",
                "must be non-empty, without '/', '+' or '#'",
            ));
        }
        Ok(())
    }
}

impl AuthSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.access_ttl_secs < 60 || self.access_ttl_secs > 3600 {
            return Err(invalid("auth.access_ttl_secs", "must be 60 to 3600"));
        }
        if self.refresh_ttl_secs < self.access_ttl_secs {
            return Err(invalid(
                "auth.refresh_ttl_secs",
                "must be at least auth.access_ttl_secs",
            ));
        }
        if self.leeway_secs > 300 {
            return Err(invalid("auth.leeway_secs", "must be at most 300"));
        }
        if self.revocation_stale_after_ms < 2 * self.revocation_poll_ms {
            return Err(invalid(
                "auth.revocation_stale_after_ms",
                "must be at least twice auth.revocation_poll_ms",
            ));
        }
        Ok(())
    }
}

impl PostgresSettings {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

impl HttpSettings {
    /// [`request_deadline_ms`](Self::request_deadline_ms) as a duration.
    pub fn request_deadline(&self) -> Duration {
        Duration::from_millis(self.request_deadline_ms)
    }
}

impl RedisSettings {
    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }
}

impl InfluxSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Loads defaults, the optional file named by `PLANTLINE_CONFIG_FILE`, then `PLANTLINE_*`
/// variables, and validates the result.
pub fn load_settings() -> Result<Settings, ConfigError> {
    load_settings_from(std::env::vars())
}

/// Like [`load_settings`] with an explicit environment, so tests need not touch the process's.
pub fn load_settings_from(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, ConfigError> {
    let mut vars: std::collections::HashMap<String, String> = vars
        .into_iter()
        .filter(|(key, _)| key.starts_with("PLANTLINE_"))
        .collect();
    let config_file = vars.remove(CONFIG_FILE_ENV);
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
    if let Some(path) = config_file {
        builder = builder.add_source(config::File::new(&path, config::FileFormat::Toml));
    }
    let settings: Settings = builder
        .add_source(
            config::Environment::with_prefix("PLANTLINE")
                .prefix_separator("_")
                .separator("__")
                .source(Some(vars)),
        )
        .build()?
        .try_deserialize()?;
    settings.validate()?;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_load_and_environment_overrides_them() {
        let defaults = load_settings_from(env(&[])).unwrap();
        assert_eq!(defaults.influx.database, "telemetry");
        assert_eq!(defaults.port_for(ServiceName::Auth), 8081);

        let custom = load_settings_from(env(&[
            ("PLANTLINE_HTTP__PORT", "9999"),
            ("PLANTLINE_POSTGRES__POOL_SIZE", "7"),
            ("PLANTLINE_INFLUX__DATABASE", "plant_b"),
        ]))
        .unwrap();
        assert_eq!(custom.port_for(ServiceName::Auth), 9999);
        assert_eq!(custom.postgres.pool_size, 7);
        assert_eq!(custom.influx.database, "plant_b");
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = load_settings_from(env(&[("PLANTLINE_POSTGRES__POOL_SIZE", "1")])).unwrap_err();
        assert!(err.to_string().contains("postgres.pool_size"), "{err}");

        let err = load_settings_from(env(&[("PLANTLINE_HTTP__PORT", "eighty")])).unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");

        let err =
            load_settings_from(env(&[("PLANTLINE_INFLUX__DATABASE", "x; DROP")])).unwrap_err();
        assert!(err.to_string().contains("influx.database"), "{err}");
    }
}
