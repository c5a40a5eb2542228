//! The aggregate cache: entries keyed by machine and every normalised parameter, stamped
//! with the rollup generation (bumped whenever late readings change past rollups), so a
//! stale entry is never served; one `MGET` reads the generation and the entry together.

use super::normalised;
use deadpool_redis::redis;
use domain::history::HistoryQuery;
use domain::reading::Timestamp;
use platform::influx::ROLLUP_LOOKBACK_SECS;
use platform::redis::RedisClient;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub struct Entry {
    key: String,
    ttl_secs: u64,
    generation: String,
}

impl Entry {
    pub fn new(redis: &RedisClient, machine: &Uuid, query: &HistoryQuery, now: Timestamp) -> Self {
        // Entries hold every bucket; each answer takes its page, so paging is no key.
        let mut key = normalised(query);
        if let Some(fields) = key.as_object_mut() {
            fields.remove("limit");
            fields.remove("offset");
        }
        let digest = Sha256::digest(key.to_string().as_bytes());
        let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
        let age_secs = now.nanos().saturating_sub(query.end.nanos()) / 1_000_000_000;
        // Settled past (rolled up, late data tracked by the generation): an hour.
        // Otherwise new readings may still land in the window: a few seconds.
        let ttl_secs = if age_secs > ROLLUP_LOOKBACK_SECS + 600 {
            3600
        } else {
            5
        };
        Self {
            key: redis.key(&platform::redis_keys::history(machine, &hex)),
            ttl_secs,
            generation: redis.key(platform::redis_keys::ROLLUP_GENERATION),
        }
    }

    /// The cached answer if present and of the current generation, and that generation
    /// (to stamp a new entry with: the one read before computing). Redis trouble: a miss.
    pub async fn get(&self, redis: &RedisClient) -> (Option<Value>, Option<String>) {
        let values: Vec<Option<String>> = match redis
            .query(redis::cmd("MGET").arg(&self.generation).arg(&self.key))
            .await
        {
            Ok(values) => values,
            Err(err) => {
                tracing::warn!(error = %err, "Redis lost: history served from InfluxDB; retrying the cache on the next request");
                return (None, None);
            }
        };
        let generation = values.first().cloned().flatten().unwrap_or_default();
        let hit = values
            .get(1)
            .cloned()
            .flatten()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .filter(|entry| entry["generation"].as_str() == Some(generation.as_str()))
            .map(|entry| entry["answer"].clone());
        (hit, Some(generation))
    }

    /// Stores an answer under `generation` (best effort).
    pub async fn put(&self, redis: &RedisClient, generation: &str, answer: &Value) {
        let entry = serde_json::json!({"generation": generation, "answer": answer});
        let stored: Result<(), _> = redis
            .query(
                redis::cmd("SET")
                    .arg(&self.key)
                    .arg(entry.to_string())
                    .arg("EX")
                    .arg(self.ttl_secs),
            )
            .await;
        if let Err(err) = stored {
            tracing::warn!(error = %err, "Redis lost: history answer not cached");
        }
    }
}
