//! `GET /api/v1/data/machine/{id}`: raw readings page by page, or buckets with
//! mean/min/max/count. Every InfluxQL string is built from the typed, validated request.

use crate::QueryState;
use crate::history::merge::{bucket_page, merge, raw_rows};
use crate::history::{cache, influxql, normalised, plan};
use crate::store::machines::{self, MachineView};
use actix_web::{HttpResponse, web};
use domain::history::{HistoryParams, HistoryQuery, Interval};
use domain::reading::{Timestamp, Violation};
use platform::ApiError;
use platform::auth::{Authenticated, require};
use platform::error::FieldError;
use platform::influx::InfluxError;
use platform::postgres::connection;
use serde_json::{Value, json};
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
        plan::plan(&query, now)
    };
    let statements = if query.interval == Interval::Raw {
        influxql::raw_statement(&query, &machine.id)
    } else {
        parts
            .iter()
            .map(|p| influxql::aggregate_statement(&query, &machine.id, p))
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
