//! `GET /api/v1/data/machine/{id}`: raw readings page by page, or buckets with
//! mean/min/max/count. Every InfluxQL string is built from the typed, validated request.

use crate::QueryState;
use crate::store::machines::{self, MachineView};
use actix_web::{HttpResponse, web};
use domain::history::{Aggregate, HistoryParams, HistoryQuery, Interval, encode_cursor};
use domain::reading::{Field, Timestamp, Violation};
use platform::ApiError;
use platform::auth::{Authenticated, require};
use platform::error::FieldError;
use platform::influx::{InfluxError, ROLLUP_LOOKBACK_SECS, Series};
use platform::postgres::connection;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use uuid::Uuid;

const HOUR_NS: i64 = 3_600_000_000_000;

/// The aggregate cache: entries keyed by machine and every normalised parameter, stamped
/// with the rollup generation (bumped whenever late readings change past rollups), so a
/// stale entry is never served; one `MGET` reads the generation and the entry together.
mod cache {
    use super::{HistoryQuery, Timestamp, normalised};
    use deadpool_redis::redis;
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
        pub fn new(
            redis: &RedisClient,
            machine: &Uuid,
            query: &HistoryQuery,
            now: Timestamp,
        ) -> Self {
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
                key: redis.key(&format!("history:{machine}:{hex}")),
                ttl_secs,
                generation: redis.key(platform::influx::ROLLUP_GENERATION),
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
}

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn parameter_errors(violations: Vec<Violation>) -> ApiError {
    ApiError::validation(
        "invalid query parameters",
        violations
            .into_iter()
            .map(|v| {
                let error = FieldError::parameter(v.path, v.message);
                match v.value {
                    Some(value) => error.with_value(value),
                    None => error,
                }
            })
            .collect(),
    )
}

fn tz_clause(query: &HistoryQuery) -> String {
    if query.tz.is_utc() {
        String::new()
    } else {
        format!(" tz('{}')", query.tz.as_ref())
    }
}

/// The statement for a raw page; one row more than asked tells whether another page exists.
fn raw_statement(query: &HistoryQuery, id: &Uuid) -> String {
    let mut range = format!(
        "\"machine_id\" = '{id}' AND time >= {} AND time < {}",
        query.start.nanos(),
        query.end.nanos()
    );
    if let Some(after) = query.after {
        range.push_str(&format!(" AND time > {}", after.nanos()));
    }
    let offset = if query.offset > 0 {
        format!(" OFFSET {}", query.offset)
    } else {
        String::new()
    };
    let fields: Vec<String> = query
        .fields
        .iter()
        .map(|f| format!("\"{}\"", f.as_str()))
        .collect();
    format!(
        "SELECT {} FROM \"sensor_readings\" WHERE {range} ORDER BY time ASC LIMIT {}{offset}",
        fields.join(", "),
        query.limit + 1
    )
}

/// One slice of an aggregated request and where it is read from.
struct Part {
    from_rollup: bool,
    start: i64,
    end: i64,
}

/// Splits an aggregated request: whole hours old enough for the continuous queries (and the
/// late-hour maintenance) come from the `hourly` rollup, the rest from raw readings. Buckets
/// are then merged from sums, counts, minima and maxima, so the answer is the same number
/// either way. Zones other than UTC read raw data: their buckets need not align with UTC
/// hours (half-hour offsets).
fn plan(query: &HistoryQuery, now: Timestamp) -> Vec<Part> {
    let (start, end) = (query.start.nanos(), query.end.nanos());
    let whole = vec![Part {
        from_rollup: false,
        start,
        end,
    }];
    if !matches!(query.interval, Interval::Hour | Interval::Day) || !query.tz.is_utc() {
        return whole;
    }
    let horizon = now.nanos() - (ROLLUP_LOOKBACK_SECS + 600) * 1_000_000_000;
    // Saturating: a validated range may still touch the ends of the representable time.
    let first =
        (start.div_euclid(HOUR_NS) * HOUR_NS).saturating_add(if start.rem_euclid(HOUR_NS) == 0 {
            0
        } else {
            HOUR_NS
        });
    let last = end.min(horizon).div_euclid(HOUR_NS) * HOUR_NS;
    if first >= last {
        return whole;
    }
    let mut parts = Vec::with_capacity(3);
    if start < first {
        parts.push(Part {
            from_rollup: false,
            start,
            end: first,
        });
    }
    parts.push(Part {
        from_rollup: true,
        start: first,
        end: last,
    });
    if last < end {
        parts.push(Part {
            from_rollup: false,
            start: last,
            end,
        });
    }
    parts
}

/// Sum, count, min and max of every requested field per bucket, for one part.
fn aggregate_statement(query: &HistoryQuery, id: &Uuid, part: &Part) -> String {
    let selections: Vec<String> = query
        .fields
        .iter()
        .map(|f| {
            let f = f.as_str();
            if part.from_rollup {
                format!("sum(\"{f}_sum\") AS \"{f}_sum\", sum(\"{f}_count\") AS \"{f}_count\", min(\"{f}_min\") AS \"{f}_min\", max(\"{f}_max\") AS \"{f}_max\"")
            } else {
                format!("sum(\"{f}\") AS \"{f}_sum\", count(\"{f}\") AS \"{f}_count\", min(\"{f}\") AS \"{f}_min\", max(\"{f}\") AS \"{f}_max\"")
            }
        })
        .collect();
    let source = if part.from_rollup {
        "\"hourly\".\"sensor_readings\""
    } else {
        "\"sensor_readings\""
    };
    format!(
        "SELECT {} FROM {source} WHERE \"machine_id\" = '{id}' AND time >= {} AND time < {} GROUP BY time({}) fill(none){}",
        selections.join(", "),
        part.start,
        part.end,
        query.interval.as_str(),
        tz_clause(query)
    )
}

/// Running totals of one field in one bucket.
#[derive(Default, Clone, Copy)]
struct Totals {
    sum: f64,
    count: u64,
    min: Option<f64>,
    max: Option<f64>,
}

fn pick(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

/// Merges the parts' buckets and renders the requested aggregates.
fn merge(query: &HistoryQuery, answers: Vec<Vec<Series>>) -> Vec<Value> {
    let mut buckets: BTreeMap<i64, Vec<Totals>> = BTreeMap::new();
    for series in answers.into_iter().flatten() {
        let column = |name: String| series.columns.iter().position(|c| *c == name);
        let columns: Vec<[Option<usize>; 4]> = query
            .fields
            .iter()
            .map(|f| ["sum", "count", "min", "max"].map(|s| column(format!("{}_{s}", f.as_str()))))
            .collect();
        for row in &series.values {
            let Some(time) = row.first().and_then(Value::as_i64) else {
                continue;
            };
            let totals = buckets
                .entry(time)
                .or_insert_with(|| vec![Totals::default(); query.fields.len()]);
            for (t, [sum, count, min, max]) in totals.iter_mut().zip(&columns) {
                let value = |c: &Option<usize>| c.and_then(|c| row.get(c)).and_then(Value::as_f64);
                let n = value(count).unwrap_or(0.0) as u64;
                if n == 0 {
                    continue;
                }
                t.sum += value(sum).unwrap_or(0.0);
                t.count += n;
                t.min = pick(t.min, value(min), f64::min);
                t.max = pick(t.max, value(max), f64::max);
            }
        }
    }
    buckets
        .into_iter()
        .filter(|(_, totals)| totals.iter().any(|t| t.count > 0))
        .map(|(time, totals)| {
            let mut row = Map::new();
            row.insert("timestamp".to_owned(), Value::from(rfc3339(time)));
            for (field, t) in query.fields.iter().zip(totals) {
                for aggregate in &query.aggregates {
                    let value = match aggregate {
                        _ if t.count == 0 => Value::Null,
                        Aggregate::Mean => Value::from(t.sum / t.count as f64),
                        Aggregate::Min => t.min.map_or(Value::Null, Value::from),
                        Aggregate::Max => t.max.map_or(Value::Null, Value::from),
                        Aggregate::Count => Value::from(t.count),
                    };
                    row.insert(aggregate.column(*field), value);
                }
            }
            Value::Object(row)
        })
        .collect()
}

/// Raw rows, truncated to the page, and the pagination that goes with them.
fn raw_rows(query: &HistoryQuery, answers: Vec<Vec<Series>>) -> (Vec<Value>, Value) {
    let mut rows: Vec<Value> = Vec::new();
    for series in answers.into_iter().flatten() {
        for values in &series.values {
            let mut row = Map::new();
            for (column, value) in series.columns.iter().zip(values) {
                if column == "time" {
                    row.insert(
                        "timestamp".to_owned(),
                        Value::from(rfc3339(value.as_i64().unwrap_or_default())),
                    );
                } else {
                    row.insert(column.clone(), value.clone());
                }
            }
            rows.push(Value::Object(row));
        }
    }
    let has_more = rows.len() > query.limit;
    rows.truncate(query.limit);
    let next_cursor = rows
        .last()
        .filter(|_| has_more)
        .and_then(|r| r["timestamp"].as_str())
        .and_then(|t| Timestamp::parse_rfc3339(t).ok())
        .map(encode_cursor);
    // The total is known without a count query only once the last page is reached.
    let total = match (has_more, query.after, rows.len(), query.offset) {
        (false, None, 0, 0) => Some(0),
        (false, None, shown, offset) if shown > 0 => Some(offset + shown),
        _ => None,
    };
    let pagination = pagination(query, rows.len(), has_more, total, next_cursor);
    (rows, pagination)
}

/// The seed's `pagination` (limit, offset, has_more, returned_records, and total_records when
/// it is exact) plus our cursor for raw pages.
fn pagination(
    query: &HistoryQuery,
    returned: usize,
    has_more: bool,
    total: Option<usize>,
    next_cursor: Option<String>,
) -> Value {
    let mut page = json!({
        "limit": query.limit,
        "offset": query.offset,
        "has_more": has_more,
        "returned_records": returned,
        "next_cursor": next_cursor,
    });
    if let Some(total) = total {
        page["total_records"] = Value::from(total);
    }
    page
}

/// One page of an aggregated answer: every bucket is computed (bounded by
/// `query_max_points`), so the total is exact.
fn bucket_page(query: &HistoryQuery, buckets: &[Value]) -> (Vec<Value>, Value) {
    let page: Vec<Value> = buckets
        .iter()
        .skip(query.offset)
        .take(query.limit)
        .cloned()
        .collect();
    let has_more = query.offset.saturating_add(query.limit) < buckets.len();
    let info = pagination(query, page.len(), has_more, Some(buckets.len()), None);
    (page, info)
}

fn normalised(query: &HistoryQuery) -> Value {
    json!({
        "start_time": rfc3339(query.start.nanos()),
        "end_time": rfc3339(query.end.nanos()),
        "interval": query.interval.as_str(),
        "fields": query.fields.iter().map(Field::as_str).collect::<Vec<_>>(),
        "agg": if query.interval == Interval::Raw { Value::Null } else {
            json!(query.aggregates.iter().map(|a| a.as_str()).collect::<Vec<_>>())
        },
        "tz": query.tz.as_ref(),
        "limit": query.limit,
        "offset": query.offset,
    })
}

/// A machine's readings: raw, or bucketed (settled hours and days from the rollups).
#[utoipa::path(get, path = "/api/v1/data/machine/{id}", tag = "data", security(("bearer" = [])),
    params(
        ("id" = uuid::Uuid, Path, description = "The machine"),
        ("start_time" = String, Query, description = "RFC 3339, required"),
        ("end_time" = Option<String>, Query, description = "RFC 3339, default now"),
        ("interval" = Option<String>, Query, description = "raw (default), 1m, 5m, 15m, 1h, 1d"),
        ("fields" = Option<String>, Query, description = "Comma-separated subset of temperature, pressure, speed, or all (default)"),
        ("agg" = Option<String>, Query, description = "Comma-separated subset of mean, min, max, count (bucketed only)"),
        ("tz" = Option<String>, Query, description = "IANA zone for day buckets, default UTC"),
        ("limit" = Option<u32>, Query, description = "1..=10000, default 1000"),
        ("offset" = Option<u32>, Query, description = "Records to skip, default 0 (not with cursor)"),
        ("cursor" = Option<String>, Query, description = "pagination.next_cursor of the previous page")),
    responses(
        (status = 200, description = "`{status, machine, query, data: [{timestamp, <field>, <field>_min, …}], pagination: {limit, offset, has_more, returned_records, total_records (when exact), next_cursor}}`"),
        (status = 400, description = "Every parameter problem, each named", body = platform::openapi::ErrorResponse),
        (status = 403, description = "Not read:sensor_data", body = platform::openapi::ErrorResponse),
        (status = 404, description = "Unknown machine (`machine_id` echoes what was asked for)", body = platform::openapi::ErrorResponse),
        (status = 503, description = "InfluxDB unavailable", body = platform::openapi::ErrorResponse)))]
pub async fn machine_history(
    state: web::Data<QueryState>,
    _caller: Authenticated<require::ReadSensorData>,
    id: web::Path<String>,
    params: web::Query<HistoryParams>,
) -> Result<HttpResponse, ApiError> {
    let now = Timestamp::from_nanos(chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default());
    let max_points = state.settings.get(domain::settings::key::QUERY_MAX_POINTS);
    let query = HistoryQuery::parse(&params, now, max_points).map_err(parameter_errors)?;
    // A path that is no UUID names no machine: the seed answers that with the same 404.
    let not_found = || {
        let echo: String = id.chars().take(256).collect();
        ApiError::not_found("Machine not found").with_detail("machine_id", echo)
    };
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    let mut conn = connection(&state.pg).await?;
    let machine = machines::find(&mut conn, id).await?.ok_or_else(not_found)?;
    drop(conn);

    // Aggregates of a window are cached (Redis); what can still change is cached briefly.
    let cache = (query.interval != Interval::Raw)
        .then(|| cache::Entry::new(&state.redis, &machine.id, &query, now));
    let (hit, generation) = match &cache {
        Some(entry) => entry.get(&state.redis).await,
        None => (None, None),
    };
    if let Some(hit) = hit {
        let mut echo = normalised(&query);
        echo["source"] = hit["source"].clone();
        echo["cache"] = Value::from("hit");
        let buckets = hit["data"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let (data, pagination) = bucket_page(&query, buckets);
        return Ok(HttpResponse::Ok().json(json!({
            "status": "success",
            "machine": MachineView::from(&machine),
            "query": echo,
            "data": data,
            "pagination": pagination,
        })));
    }
    let parts = if query.interval == Interval::Raw {
        Vec::new()
    } else {
        plan(&query, now)
    };
    let statements = if query.interval == Interval::Raw {
        raw_statement(&query, &machine.id)
    } else {
        parts
            .iter()
            .map(|p| aggregate_statement(&query, &machine.id, p))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let answers = state
        .influx
        .query(&statements)
        .await
        .map_err(|err| match err {
            // The only statement error a validated request can cause: a zone InfluxDB does not know.
            InfluxError::Statement(message) | InfluxError::Status { body: message, .. }
                if message.contains("time zone") =>
            {
                parameter_errors(vec![Violation::new(
                    "tz",
                    "unknown time zone",
                    Some(Value::from(query.tz.as_ref())),
                )])
            }
            other => {
                tracing::error!(error = %other, "history query failed");
                ApiError::unavailable("the time-series store is unavailable, retry shortly", 5)
            }
        })?;
    let mut echo = normalised(&query);
    echo["source"] = Value::from(if parts.iter().any(|p| p.from_rollup) {
        "hourly rollup + raw"
    } else {
        "raw"
    });
    let (rows, pagination) = if query.interval == Interval::Raw {
        raw_rows(&query, answers)
    } else {
        // The cache keeps every bucket; each answer shows its page of them.
        let buckets = merge(&query, answers);
        if let (Some(entry), Some(generation)) = (&cache, &generation) {
            entry
                .put(
                    &state.redis,
                    generation,
                    &json!({"source": echo["source"], "data": buckets}),
                )
                .await;
            echo["cache"] = Value::from("miss");
        }
        bucket_page(&query, &buckets)
    };
    Ok(HttpResponse::Ok().json(json!({
        "status": "success",
        "machine": MachineView::from(&machine),
        "query": echo,
        "data": rows,
        "pagination": pagination,
    })))
}
