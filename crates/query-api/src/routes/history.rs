//! `GET /api/v1/data/machine/{id}`: raw readings page by page, or buckets with
//! mean/min/max/count. Every InfluxQL string is built from the typed, validated request.

use crate::QueryState;
use crate::store::machines;
use actix_web::{HttpResponse, web};
use domain::history::{HistoryParams, HistoryQuery, Interval, encode_cursor};
use domain::reading::{Field, Timestamp, Violation};
use platform::ApiError;
use platform::auth::{Authenticated, require};
use platform::error::FieldError;
use platform::influx::InfluxError;
use platform::postgres::connection;
use serde_json::{Map, Value, json};
use uuid::Uuid;

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

/// The InfluxQL statement for a validated request about machine `id`.
fn statement(query: &HistoryQuery, id: &Uuid) -> String {
    let mut range = format!(
        "\"machine_id\" = '{id}' AND time >= {} AND time < {}",
        query.start.nanos(),
        query.end.nanos()
    );
    if query.interval == Interval::Raw {
        if let Some(after) = query.after {
            range.push_str(&format!(" AND time > {}", after.nanos()));
        }
        let fields: Vec<String> = query
            .fields
            .iter()
            .map(|f| format!("\"{}\"", f.as_str()))
            .collect();
        // One row more than asked tells whether another page exists.
        return format!(
            "SELECT {} FROM \"sensor_readings\" WHERE {range} ORDER BY time ASC LIMIT {}",
            fields.join(", "),
            query.limit + 1
        );
    }
    let mut selections = Vec::new();
    for field in &query.fields {
        for aggregate in &query.aggregates {
            selections.push(format!(
                "{}(\"{}\") AS \"{}\"",
                aggregate.as_str(),
                field.as_str(),
                aggregate.column(*field)
            ));
        }
    }
    let tz = if query.tz.is_utc() {
        String::new()
    } else {
        format!(" tz('{}')", query.tz.as_ref())
    };
    format!(
        "SELECT {} FROM \"sensor_readings\" WHERE {range} GROUP BY time({}) fill(none){tz}",
        selections.join(", "),
        query.interval.as_str()
    )
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
    })
}

/// `GET /api/v1/data/machine/{id}?start_time&end_time&interval&fields&agg&tz&limit&cursor`
pub async fn machine_history(
    state: web::Data<QueryState>,
    _caller: Authenticated<require::ReadSensorData>,
    id: web::Path<Uuid>,
    params: web::Query<HistoryParams>,
) -> Result<HttpResponse, ApiError> {
    let now = Timestamp::from_nanos(chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default());
    let max_points = state.settings.i64("query_max_points");
    let query = HistoryQuery::parse(&params, now, max_points).map_err(parameter_errors)?;
    let mut conn = connection(&state.pg).await?;
    let machine = machines::find(&mut conn, *id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such machine"))?;
    drop(conn);

    let answer = state
        .influx
        .query(&statement(&query, &machine.id))
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
    let mut rows: Vec<Value> = Vec::new();
    for series in answer.into_iter().flatten() {
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
    let mut pagination = json!({"limit": query.limit, "has_more": false, "next_cursor": null});
    if query.interval == Interval::Raw && rows.len() > query.limit {
        rows.truncate(query.limit);
        let last = rows
            .last()
            .and_then(|r| r["timestamp"].as_str())
            .and_then(|t| Timestamp::parse_rfc3339(t).ok());
        if let Some(last) = last {
            pagination =
                json!({"limit": query.limit, "has_more": true, "next_cursor": encode_cursor(last)});
        }
    }
    Ok(HttpResponse::Ok().json(json!({
        "status": "success",
        "machine": machine,
        "query": normalised(&query),
        "data": rows,
        "pagination": pagination,
    })))
}
