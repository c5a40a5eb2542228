//! Reading latest values: Redis first (kept current by the write path, newest by reading
//! time); InfluxDB for machines Redis has nothing for, or for all while Redis is away.

use crate::QueryState;
use deadpool_redis::redis;
use domain::reading::Field;
use platform::ApiError;
use serde_json::Value;
use std::collections::HashMap;
use storage::latest::latest_key;
use uuid::Uuid;

/// Per machine: field → (value, timestamp ns).
pub(crate) type Latest = HashMap<Uuid, HashMap<&'static str, (f64, i64)>>;

fn from_hash(hash: &HashMap<String, String>) -> HashMap<&'static str, (f64, i64)> {
    Field::ALL
        .iter()
        .filter_map(|f| {
            let value = hash.get(f.as_str())?.parse().ok()?;
            let ts = hash.get(&format!("{}_ts", f.as_str()))?.parse().ok()?;
            Some((f.as_str(), (value, ts)))
        })
        .collect()
}

async fn from_redis(state: &QueryState, ids: &[Uuid]) -> Option<Latest> {
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.cmd("HGETALL").arg(latest_key(&state.redis, id));
    }
    match state
        .redis
        .query_pipeline::<Vec<HashMap<String, String>>>(&pipe)
        .await
    {
        Ok(hashes) => Some(
            ids.iter()
                .copied()
                .zip(hashes.iter().map(from_hash))
                .collect(),
        ),
        Err(err) => {
            tracing::warn!(error = %err, "Redis lost: latest values read from InfluxDB; retrying Redis on the next request");
            None
        }
    }
}

/// `last()` per field from InfluxDB, grouped by machine (one request, three statements).
async fn from_influx(state: &QueryState, ids: &[Uuid]) -> Result<Latest, ApiError> {
    let machines = ids
        .iter()
        .map(|id| format!("machine_id = '{id}'"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let statements = Field::ALL
        .iter()
        .map(|f| {
            format!(
                "SELECT last(\"{0}\") AS \"{0}\" FROM \"sensor_readings\" WHERE ({machines}) GROUP BY \"machine_id\"",
                f.as_str()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let answer = state.influx.query(&statements).await.map_err(|err| {
        tracing::error!(error = %err, "InfluxDB unavailable for latest values");
        ApiError::unavailable("the time-series store is unavailable, retry shortly", 5)
    })?;
    let mut latest: Latest = HashMap::new();
    for (field, series_list) in Field::ALL.iter().zip(answer) {
        for series in series_list {
            let Some(id) = series.tags.get("machine_id").and_then(|m| m.parse().ok()) else {
                continue;
            };
            let Some(row) = series.values.first() else {
                continue;
            };
            if let (Some(ts), Some(value)) = (
                row.first().and_then(Value::as_i64),
                row.get(1).and_then(Value::as_f64),
            ) {
                latest
                    .entry(id)
                    .or_default()
                    .insert(field.as_str(), (value, ts));
            }
        }
    }
    Ok(latest)
}

/// Redis for what it has; InfluxDB for the rest (machines Redis has nothing for, or all of
/// them while Redis is away).
pub(crate) async fn latest_for(
    state: &QueryState,
    ids: &[Uuid],
) -> Result<(Latest, &'static str), ApiError> {
    let Some(mut cached) = from_redis(state, ids).await else {
        return Ok((from_influx(state, ids).await?, "store"));
    };
    let missing: Vec<Uuid> = ids
        .iter()
        .copied()
        .filter(|id| cached.get(id).is_none_or(HashMap::is_empty))
        .collect();
    if missing.is_empty() {
        return Ok((cached, "cache"));
    }
    cached.extend(from_influx(state, &missing).await?);
    Ok((cached, "cache+store"))
}
