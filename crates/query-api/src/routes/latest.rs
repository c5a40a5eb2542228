//! Latest values: one machine, or the whole fleet in one call. Redis first (kept current by
//! both write paths, newest by reading time); InfluxDB when Redis is away or has nothing.

use crate::QueryState;
use crate::store::machines::{self, Filter, Machine};
use actix_web::{HttpResponse, web};
use deadpool_redis::redis;
use domain::reading::Field;
use platform::ApiError;
use platform::auth::{Authenticated, require};
use platform::error::reject_if_any;
use platform::latest::latest_key;
use platform::postgres::connection;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use uuid::Uuid;

/// Per machine: field → (value, timestamp ns).
type Latest = HashMap<Uuid, HashMap<&'static str, (f64, i64)>>;

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
async fn latest_for(state: &QueryState, ids: &[Uuid]) -> Result<(Latest, &'static str), ApiError> {
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

fn render(fields: Option<&HashMap<&'static str, (f64, i64)>>) -> Value {
    let mut object = Map::new();
    for field in Field::ALL {
        let entry = fields.and_then(|f| f.get(field.as_str())).map(|(value, ts)| {
            json!({
                "value": value,
                "timestamp": chrono::DateTime::from_timestamp_nanos(*ts).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            })
        });
        object.insert(field.as_str().to_owned(), entry.unwrap_or(Value::Null));
    }
    Value::Object(object)
}

/// A machine's newest value per field (Redis, falling back to InfluxDB).
#[utoipa::path(get, path = "/api/v1/data/machine/{id}/latest", tag = "data", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The machine")),
    responses(
        (status = 200, description = "`{status, machine, latest: {<field>: {value, timestamp} | null}, source}`"),
        (status = 403, description = "Not read:sensor_data", body = platform::openapi::ErrorResponse),
        (status = 404, description = "Unknown machine", body = platform::openapi::ErrorResponse)))]
pub async fn machine(
    state: web::Data<QueryState>,
    _caller: Authenticated<require::ReadSensorData>,
    id: web::Path<domain::MachineId>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = connection(&state.pg).await?;
    let machine: Machine = machines::find(&mut conn, *id.as_uuid())
        .await?
        .ok_or_else(|| ApiError::not_found("no such machine"))?;
    drop(conn);
    let (latest, source) = latest_for(&state, &[machine.id]).await?;
    Ok(HttpResponse::Ok().json(json!({
        "status": "success",
        "machine": machine,
        "latest": render(latest.get(&machine.id)),
        "source": source,
    })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FleetQuery {
    /// Exact location.
    location: Option<String>,
    /// `active`, `inactive`, `maintenance`, `error`.
    status: Option<String>,
    /// `temperature`, `pressure`, `speed`, `multi`.
    sensor_type: Option<String>,
    /// Factory id.
    factory_id: Option<String>,
}

/// Every matching machine with its latest values, in one answer.
#[utoipa::path(get, path = "/api/v1/data/latest", tag = "data", security(("bearer" = [])), params(FleetQuery),
    responses(
        (status = 200, description = "`{count, machines: [{machine, latest}]}`"),
        (status = 400, description = "Bad filter", body = platform::openapi::ErrorResponse),
        (status = 403, description = "Not read:sensor_data", body = platform::openapi::ErrorResponse)))]
pub async fn fleet(
    state: web::Data<QueryState>,
    _caller: Authenticated<require::ReadSensorData>,
    query: web::Query<FleetQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let mut errors = Vec::new();
    let filter = Filter::parse(
        query.location,
        query.status,
        query.sensor_type,
        query.factory_id,
        &mut errors,
    );
    reject_if_any("invalid query parameters", errors)?;
    let mut conn = connection(&state.pg).await?;
    // A plant has hundreds to thousands of machines: one page holds them all.
    let (fleet, _) = machines::list(&mut conn, &filter, 10_000, 0).await?;
    drop(conn);
    let ids: Vec<Uuid> = fleet.iter().map(|m| m.id).collect();
    let (latest, source) = if ids.is_empty() {
        (HashMap::new(), "cache")
    } else {
        latest_for(&state, &ids).await?
    };
    let machines: Vec<Value> = fleet
        .iter()
        .map(|m| json!({"machine": m, "latest": render(latest.get(&m.id))}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "status": "success",
        "count": machines.len(),
        "machines": machines,
        "source": source,
    })))
}
