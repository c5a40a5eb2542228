//! The machine registry as the write paths see it: Postgres is the truth, Redis a
//! cache-aside copy (`machine:{id}`, TTL, explicit invalidation on every registry write,
//! a short negative entry for unknown ids). One Redis round trip per batch, however many
//! machines it names.

use crate::schema::machine_metadata;
use deadpool_redis::redis;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::{MachineId, MachineStatus};
use platform::postgres::{DbError, PgPool, connection};
use platform::redis::RedisClient;
use platform::redis_keys;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

/// What the write paths need to know about a machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Queryable, Selectable)]
#[diesel(table_name = machine_metadata)]
pub struct MachineInfo {
    pub id: Uuid,
    pub name: String,
    /// Where it stands (a tag).
    pub location: String,
    /// Its sensor package (a tag).
    pub sensor_type: String,
    pub status: MachineStatus,
    /// Its factory (a tag).
    pub factory_id: String,
}

/// Why the registry could not answer.
#[derive(Debug, thiserror::Error)]
#[error("machine registry unavailable: {0}")]
pub struct RegistryError(#[from] DbError);

const NEGATIVE: &str = "-";

/// Cache-aside reader (and invalidator) of `machine_metadata`.
/// What a lookup found: every asked id, `None` for ids the registry does not know.
pub type Found = HashMap<MachineId, Option<MachineInfo>>;

#[derive(Clone)]
pub struct MachineRegistry {
    pg: PgPool,
    redis: RedisClient,
    ttl_secs: u64,
    negative_ttl_secs: u64,
}

/// The cache key of a machine.
pub fn cache_key(redis: &RedisClient, id: &MachineId) -> String {
    redis.key(&redis_keys::machine(id))
}

impl MachineRegistry {
    /// Entries live five minutes (registry writes invalidate them at once); an unknown id's
    /// "not registered" thirty seconds, so a machine registered just now is seen soon.
    pub fn new(pg: PgPool, redis: RedisClient) -> Self {
        Self {
            pg,
            redis,
            ttl_secs: 300,
            negative_ttl_secs: 30,
        }
    }

    /// Looks up every id; `None` for ids the registry does not know.
    pub async fn lookup(&self, ids: &[MachineId]) -> Result<Found, RegistryError> {
        self.lookup_with(ids, &[]).await.map(|(found, _)| found)
    }

    /// Like [`lookup`](Self::lookup), reading `also` (full keys) in the same Redis round
    /// trip — the write paths fetch their rate counter with it. `also`'s values are `None`
    /// when Redis is away.
    #[tracing::instrument(name = "registry.lookup", skip_all, fields(machines = ids.len()))]
    pub async fn lookup_with(
        &self,
        ids: &[MachineId],
        also: &[String],
    ) -> Result<(Found, Vec<Option<String>>), RegistryError> {
        let mut found = HashMap::with_capacity(ids.len());
        if ids.is_empty() && also.is_empty() {
            return Ok((found, Vec::new()));
        }
        let mut keys: Vec<String> = ids.iter().map(|id| cache_key(&self.redis, id)).collect();
        keys.extend(also.iter().cloned());
        let cached: Option<Vec<Option<String>>> = match self
            .redis
            .query(redis::cmd("MGET").arg(&keys))
            .await
        {
            Ok(values) => Some(values),
            Err(err) => {
                tracing::warn!(error = %err, "Redis lost: reading machines from Postgres; retrying Redis on the next request");
                None
            }
        };
        let mut missing = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            match cached
                .as_ref()
                .and_then(|c| c.get(i))
                .and_then(Option::as_ref)
            {
                Some(text) if text == NEGATIVE => {
                    found.insert(*id, None);
                }
                Some(text) => match serde_json::from_str::<MachineInfo>(text) {
                    Ok(info) => {
                        found.insert(*id, Some(info));
                    }
                    Err(_) => missing.push(*id),
                },
                None => missing.push(*id),
            }
        }
        let extra = match &cached {
            Some(values) => values.iter().skip(ids.len()).cloned().collect(),
            None => vec![None; also.len()],
        };
        if missing.is_empty() {
            return Ok((found, extra));
        }
        self.fill_from_postgres(&missing, &mut found, cached.is_some())
            .await?;
        Ok((found, extra))
    }

    /// Reads `missing` from PostgreSQL into `found` and, when Redis answered, caches them
    /// (unknown ids as the short negative entry).
    async fn fill_from_postgres(
        &self,
        missing: &[MachineId],
        found: &mut Found,
        redis_answered: bool,
    ) -> Result<(), RegistryError> {
        let uuids: Vec<Uuid> = missing.iter().map(|id| *id.as_uuid()).collect();
        let mut conn = connection(&self.pg).await?;
        let rows: Vec<MachineInfo> = machine_metadata::table
            .filter(machine_metadata::id.eq_any(&uuids))
            .select(MachineInfo::as_select())
            .load(&mut conn)
            .await
            .map_err(DbError::Query)?;
        let mut by_id: HashMap<Uuid, MachineInfo> =
            rows.into_iter().map(|row| (row.id, row)).collect();
        let mut pipe = redis::pipe();
        for id in missing {
            let info = by_id.remove(id.as_uuid());
            let (value, ttl) = match &info {
                Some(info) => (
                    serde_json::to_string(info).unwrap_or_default(),
                    self.ttl_secs,
                ),
                None => (NEGATIVE.to_owned(), self.negative_ttl_secs),
            };
            pipe.cmd("SET")
                .arg(cache_key(&self.redis, id))
                .arg(value)
                .arg("EX")
                .arg(ttl)
                .ignore();
            found.insert(*id, info);
        }
        if redis_answered && let Err(err) = self.redis.query_pipeline::<()>(&pipe).await {
            tracing::warn!(error = %err, "Redis lost: machine cache not filled");
        }
        Ok(())
    }

    /// Drops a machine's cache entry (every registry write calls this).
    pub async fn invalidate(&self, id: &MachineId) -> Result<(), platform::redis::RedisError> {
        self.redis
            .query::<()>(redis::cmd("DEL").arg(cache_key(&self.redis, id)))
            .await
    }
}
