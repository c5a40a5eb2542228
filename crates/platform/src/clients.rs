//! The backing services' clients, built from the settings the same way by every service.

use crate::config::Settings;
use crate::health::{Dependency, Probe};
use crate::influx::InfluxClient;
use crate::postgres::PgPool;
use crate::redis::RedisClient;
use crate::server::StartupError;

/// PostgreSQL, Redis and InfluxDB clients (nothing connects until first used).
#[derive(Clone)]
pub struct Backends {
    pub pg: PgPool,
    /// Caches, counters, pub/sub.
    pub redis: RedisClient,
    /// The time-series store.
    pub influx: InfluxClient,
}

impl Backends {
    /// Builds the three clients; a malformed setting names its key.
    pub fn connect(settings: &Settings) -> Result<Self, StartupError> {
        Ok(Self {
            pg: crate::postgres::build_pool(&settings.postgres)?,
            redis: RedisClient::new(&settings.redis)?,
            influx: InfluxClient::new(&settings.influx)?,
        })
    }

    /// PostgreSQL and Redis as optional readiness dependencies: the write paths keep storing
    /// readings of cached machines while either is away.
    pub fn optional_stores(&self) -> [Dependency; 2] {
        [
            Dependency::optional("postgres", Probe::Postgres(self.pg.clone())),
            Dependency::optional("redis", Probe::Redis(self.redis.clone())),
        ]
    }
}
