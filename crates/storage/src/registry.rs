//! The machine registry as the write paths see it: Postgres is the truth, Redis a
//! cache-aside copy (`machine:{id}`, TTL, explicit invalidation on every registry write,
//! a short negative entry for unknown ids). One Redis round trip per batch, however many
//! machines it names. While PostgreSQL cannot be reached, each process serves the last
//! entry it saw of a machine (stale-while-error) for up to `registry.max_stale_secs`.

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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
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
    last_known: LastKnown,
}

/// The cache key of a machine.
pub fn cache_key(redis: &RedisClient, id: &MachineId) -> String {
    redis.key(&redis_keys::machine(id))
}

/// The last entry this process saw of each registered machine (from PostgreSQL, or from the
/// Redis copy of it), with when: what the registry serves while PostgreSQL cannot be
/// reached, for at most `max_stale` after it was last seen. Shared by the clones of a
/// registry (every actix worker), bounded by the machines registered.
#[derive(Clone)]
pub struct LastKnown {
    entries: Arc<RwLock<HashMap<MachineId, (MachineInfo, Instant)>>>,
    max_stale: Duration,
    /// `registry_stale_served_age_seconds`: the oldest entry the last lookup had to serve
    /// stale; 0 once PostgreSQL answers again.
    served_age: prometheus::IntGauge,
    /// Whether the outage was logged (once per outage).
    outage_logged: Arc<AtomicBool>,
}

/// How long a lookup waits for PostgreSQL.
const POSTGRES_DEADLINE: Duration = Duration::from_secs(2);

/// A seen entry is written again at most this often (a read lock on the hot path otherwise).
const CONFIRM_EVERY: Duration = Duration::from_secs(5);

impl LastKnown {
    /// Serves entries up to `max_stale` old.
    pub fn new(max_stale: Duration) -> Self {
        let served_age = prometheus::IntGauge::new(
            "registry_stale_served_age_seconds",
            "Age of the oldest machine entry served from memory because PostgreSQL could not be reached (0: PostgreSQL answers)",
        )
        .unwrap_or_else(|_| unreachable!("a valid metric name"));
        Self {
            entries: Arc::default(),
            max_stale,
            served_age,
            outage_logged: Arc::default(),
        }
    }

    /// The age gauge, for the service's metrics.
    pub fn gauge(&self) -> prometheus::IntGauge {
        self.served_age.clone()
    }

    fn saw(&self, info: &MachineInfo) {
        let id = MachineId::from(info.id);
        let recent = |entries: &HashMap<MachineId, (MachineInfo, Instant)>| {
            entries
                .get(&id)
                .is_some_and(|(known, at)| known == info && at.elapsed() < CONFIRM_EVERY)
        };
        if self.entries.read().is_ok_and(|entries| recent(&entries)) {
            return;
        }
        if let Ok(mut entries) = self.entries.write() {
            entries.insert(id, (info.clone(), Instant::now()));
        }
    }

    fn forget(&self, id: &MachineId) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(id);
        }
    }

    fn recall(&self, id: &MachineId) -> Option<(MachineInfo, Duration)> {
        let entries = self.entries.read().ok()?;
        let (info, at) = entries.get(id)?;
        let age = at.elapsed();
        (age <= self.max_stale).then(|| (info.clone(), age))
    }

    fn answered(&self) {
        self.served_age.set(0);
        if self.outage_logged.swap(false, Ordering::Relaxed) {
            tracing::info!("PostgreSQL answers again: machine entries are current");
        }
    }

    fn served_stale(&self, oldest: Duration, cause: &DbError) {
        self.served_age.set(oldest.as_secs() as i64);
        if !self.outage_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %cause, oldest_secs = oldest.as_secs(), max_stale_secs = self.max_stale.as_secs(), "PostgreSQL unreachable: serving machines' last known entries");
        }
    }
}

impl MachineRegistry {
    /// Entries live `cache_ttl_secs` in Redis (registry writes invalidate them at once); an
    /// unknown id's "not registered" thirty seconds, so a machine registered just now is seen
    /// soon. The last known entries are this registry's own until
    /// [`sharing`](Self::sharing) says otherwise.
    pub fn new(
        pg: PgPool,
        redis: RedisClient,
        settings: &platform::config::RegistrySettings,
    ) -> Self {
        Self {
            pg,
            redis,
            ttl_secs: settings.cache_ttl_secs,
            negative_ttl_secs: 30,
            last_known: LastKnown::new(Duration::from_secs(settings.max_stale_secs)),
        }
    }

    /// The same registry, keeping its last known entries in `last_known` (one per process).
    pub fn sharing(self, last_known: LastKnown) -> Self {
        Self { last_known, ..self }
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
                        self.last_known.saw(&info);
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
    /// (unknown ids as the short negative entry). When PostgreSQL cannot be reached, serves
    /// their last known entries; fails only when one of them has none young enough.
    async fn fill_from_postgres(
        &self,
        missing: &[MachineId],
        found: &mut Found,
        redis_answered: bool,
    ) -> Result<(), RegistryError> {
        let uuids: Vec<Uuid> = missing.iter().map(|id| *id.as_uuid()).collect();
        let rows = match self.read_postgres(&uuids).await {
            Ok(rows) => rows,
            Err(err) => return self.serve_last_known(missing, found, err),
        };
        self.last_known.answered();
        let mut by_id: HashMap<Uuid, MachineInfo> =
            rows.into_iter().map(|row| (row.id, row)).collect();
        let mut pipe = redis::pipe();
        for id in missing {
            let info = by_id.remove(id.as_uuid());
            let (value, ttl) = match &info {
                Some(info) => {
                    self.last_known.saw(info);
                    (
                        serde_json::to_string(info).unwrap_or_default(),
                        self.ttl_secs,
                    )
                }
                None => {
                    self.last_known.forget(id);
                    (NEGATIVE.to_owned(), self.negative_ttl_secs)
                }
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

    /// Within [`POSTGRES_DEADLINE`]: an ingest waits no longer before its machines' last
    /// known entries are served.
    async fn read_postgres(&self, ids: &[Uuid]) -> Result<Vec<MachineInfo>, DbError> {
        platform::postgres::within(POSTGRES_DEADLINE, async {
            let mut conn = connection(&self.pg).await?;
            machine_metadata::table
                .filter(machine_metadata::id.eq_any(ids))
                .select(MachineInfo::as_select())
                .load(&mut conn)
                .await
                .map_err(DbError::Query)
        })
        .await
    }

    /// Stale-while-error: every one of `missing` from the last known entries, or `cause`.
    fn serve_last_known(
        &self,
        missing: &[MachineId],
        found: &mut Found,
        cause: DbError,
    ) -> Result<(), RegistryError> {
        let mut served = Vec::with_capacity(missing.len());
        for id in missing {
            match self.last_known.recall(id) {
                Some(entry) => served.push((*id, entry)),
                None => return Err(RegistryError(cause)),
            }
        }
        let oldest = served.iter().map(|(_, (_, age))| *age).max();
        self.last_known
            .served_stale(oldest.unwrap_or_default(), &cause);
        for (id, (info, _)) in served {
            found.insert(id, Some(info));
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
