//! `GET /api/v1/data/machine/{id}`: raw readings page by page, or buckets with
//! mean/min/max/count. Every InfluxQL string is built from the typed, validated request.

use crate::QueryState;
use crate::history::merge::{bucket_page, merge, raw_rows};
use crate::history::{cache, influxql, normalised, plan, plan_parts};
use actix_web::{HttpResponse, web};
use domain::history::{HistoryParams, HistoryQuery, Interval};
use domain::reading::{Timestamp, Violation};
use platform::ApiError;
use platform::auth::{Authenticated, require};
use platform::error::FieldError;
use platform::influx::{InfluxError, Series};
use platform::openapi::Success;
use platform::postgres::connection;
use serde::Serialize;
use serde_json::{Value, json};
use storage::machines::{self, Machine, MachineView};
use uuid::Uuid;

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

/// A page of a machine's readings or buckets.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MachineHistory<'a> {
    status: Success,
    /// The registry's machine, with `machine_id`.
    #[schema(value_type = Object)]
    machine: MachineView<'a>,
    /// The request as understood: `start_time`, `end_time`, `interval`, `fields`, `agg`
    /// (null when raw), `tz`, `limit`, `offset`, `source` (`raw` or `hourly rollup + raw`),
    /// and for buckets `cache` (`hit` or `miss`).
    #[schema(value_type = Object)]
    query: Value,
    /// `{timestamp, <field>, …}` per reading, or per bucket `<field>` (mean) and
    /// `<field>_min`, `<field>_max`, `<field>_count` as asked.
    #[schema(value_type = Vec<Object>)]
    data: Vec<Value>,
    /// `{limit, offset, has_more, returned_records, next_cursor}`, and `total_records` when
    /// it is exact.
    #[schema(value_type = Object)]
    pagination: Value,
}

fn answer(machine: &Machine, query: Value, data: Vec<Value>, pagination: Value) -> HttpResponse {
    HttpResponse::Ok().json(MachineHistory {
        status: Success::Success,
        machine: MachineView::from(machine),
        query,
        data,
        pagination,
    })
}

/// The registered machine `id` names; a path that is no UUID names no machine: the seed
/// answers that with the same 404.
async fn find_machine(state: &QueryState, id: &str) -> Result<Machine, ApiError> {
    let not_found = || {
        let echo: String = id.chars().take(256).collect();
        ApiError::not_found("Machine not found").with_detail("machine_id", echo)
    };
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    let mut conn = connection(&state.pg).await?;
    machines::find(&mut conn, id).await?.ok_or_else(not_found)
}

/// The answer from a cached window: its buckets, paged as asked.
fn cached(query: &HistoryQuery, machine: &Machine, hit: &Value) -> HttpResponse {
    let mut echo = normalised(query);
    echo["source"] = hit["source"].clone();
    echo["cache"] = Value::from("hit");
    let buckets = hit["data"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let (data, pagination) = bucket_page(query, buckets);
    answer(machine, echo, data, pagination)
}

/// Runs the statements of the request's parts, all in one InfluxDB request.
async fn read(
    state: &QueryState,
    query: &HistoryQuery,
    machine: &Uuid,
    parts: &[plan::Part],
) -> Result<Vec<Vec<Series>>, ApiError> {
    let statements = if query.interval == Interval::Raw {
        influxql::raw_statement(query, machine)
    } else {
        parts
            .iter()
            .map(|p| influxql::aggregate_statement(query, machine, p))
            .collect::<Vec<_>>()
            .join("; ")
    };
    state
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
        (status = 200, body = MachineHistory, description = "The page of readings or buckets"),
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
    let machine = find_machine(&state, &id).await?;

    // Aggregates of a window are cached (Redis); what can still change is cached briefly.
    let cache = (query.interval != Interval::Raw)
        .then(|| cache::Entry::new(&state.redis, &machine.id, &query, now));
    let (hit, generation) = match &cache {
        Some(entry) => entry.get(&state.redis).await,
        None => (None, None),
    };
    if let Some(hit) = hit {
        return Ok(cached(&query, &machine, &hit));
    }
    let parts = if query.interval == Interval::Raw {
        Vec::new()
    } else {
        plan_parts(&state.redis, &query, now).await
    };
    let answers = read(&state, &query, &machine.id, &parts).await?;
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
    Ok(answer(&machine, echo, rows, pagination))
}
