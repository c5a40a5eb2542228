//! `GET /api/v1/alerts` and `POST /api/v1/alerts/{id}/ack`.

use crate::QueryState;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use domain::alerts::{Metric, Severity};
use platform::ApiError;
use platform::auth::{Authenticated, require};
use platform::error::{FieldError, reject_if_any};
use platform::openapi::Success;
use platform::pagination::{Page, Pagination};
use platform::postgres::connection;
use serde::Deserialize;
use storage::alerts::queries::{self, Acknowledged, AlertFilter};
use storage::alerts::{Alert, AlertEvent};
use storage::audit::Actor;
use uuid::Uuid;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// `open`, `closed` or `all` (default).
    state: Option<String>,
    /// `warning` or `critical`.
    severity: Option<String>,
    /// `temperature`, `pressure` or `inactivity`.
    metric: Option<String>,
    /// A machine's UUID.
    machine_id: Option<String>,
    /// RFC 3339: last seen at or after.
    since: Option<String>,
    /// RFC 3339: first seen before.
    until: Option<String>,
    /// 1..=500, default 50.
    limit: Option<i64>,
    /// Default 0.
    offset: Option<i64>,
}

fn time_param(
    name: &str,
    value: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> Option<DateTime<Utc>> {
    let value = value?;
    match DateTime::parse_from_rfc3339(value) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            errors.push(
                FieldError::parameter(name, "must be an RFC 3339 time with an offset")
                    .with_value(value),
            );
            None
        }
    }
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AlertPage {
    status: Success,
    /// Newest first.
    #[schema(value_type = Vec<Object>)]
    alerts: Vec<Alert>,
    pagination: Pagination,
}

/// One alert, as it is now.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AlertAnswer {
    status: Success,
    #[schema(value_type = Object)]
    alert: Alert,
}

/// Checks every parameter, reporting each problem; returns the filter, limit and offset.
fn parse_query(query: &AlertQuery) -> Result<(AlertFilter, i64, i64), ApiError> {
    let mut errors = Vec::new();
    let (limit, offset) = Page {
        limit: query.limit,
        offset: query.offset,
    }
    .check(&mut errors);
    let open = match query.state.as_deref().unwrap_or("all") {
        "open" => Some(true),
        "closed" => Some(false),
        "all" => None,
        other => {
            errors.push(
                FieldError::parameter("state", "must be open, closed or all").with_value(other),
            );
            None
        }
    };
    let severity = query.severity.as_deref().and_then(|text| {
        let parsed = Severity::parse(text);
        if parsed.is_none() {
            errors.push(
                FieldError::parameter("severity", "must be warning or critical").with_value(text),
            );
        }
        parsed
    });
    let metric = query.metric.as_deref().and_then(|text| {
        let parsed = Metric::parse(text);
        if parsed.is_none() {
            errors.push(
                FieldError::parameter("metric", "must be temperature, pressure or inactivity")
                    .with_value(text),
            );
        }
        parsed
    });
    let machine = query
        .machine_id
        .as_deref()
        .and_then(|id| match id.parse::<Uuid>() {
            Ok(id) => Some(id),
            Err(_) => {
                errors.push(FieldError::parameter("machine_id", "must be a UUID").with_value(id));
                None
            }
        });
    let since = time_param("since", query.since.as_deref(), &mut errors);
    let until = time_param("until", query.until.as_deref(), &mut errors);
    reject_if_any("invalid query parameters", errors)?;
    let filter = AlertFilter {
        open,
        severity,
        metric,
        machine,
        since,
        until,
    };
    Ok((filter, limit, offset))
}

/// Alerts, newest first, filtered.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", security(("bearer" = [])), params(AlertQuery),
    responses(
        (status = 200, body = AlertPage, description = "The page of matching alerts"),
        (status = 400, description = "Bad parameters, each named", body = platform::openapi::ErrorResponse),
        (status = 403, description = "Not read:sensor_data", body = platform::openapi::ErrorResponse)))]
pub async fn list(
    state: web::Data<QueryState>,
    _caller: Authenticated<require::ReadSensorData>,
    query: web::Query<AlertQuery>,
) -> Result<HttpResponse, ApiError> {
    let (filter, limit, offset) = parse_query(&query)?;
    let mut conn = connection(&state.pg).await?;
    let (alerts, total) = queries::list(&mut conn, &filter, limit, offset).await?;
    let pagination = Pagination::of(limit, offset, alerts.len(), total);
    Ok(HttpResponse::Ok().json(AlertPage {
        status: Success::Success,
        alerts,
        pagination,
    }))
}

/// Acknowledges an alert (audited; idempotent: the first acknowledgement stays).
#[utoipa::path(post, path = "/api/v1/alerts/{id}/ack", tag = "alerts", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The alert")),
    responses(
        (status = 200, body = AlertAnswer, description = "The alert, acknowledged (by whoever was first)"),
        (status = 400, description = "Not a UUID", body = platform::openapi::ErrorResponse),
        (status = 403, description = "Not ack:alerts (supervisor, management)", body = platform::openapi::ErrorResponse),
        (status = 404, description = "No such alert", body = platform::openapi::ErrorResponse)))]
pub async fn acknowledge(
    state: web::Data<QueryState>,
    caller: Authenticated<require::AcknowledgeAlerts>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: Uuid = path.parse().map_err(|_| {
        ApiError::validation(
            "invalid alert id",
            vec![FieldError::parameter("id", "must be a UUID").with_value(path.as_str())],
        )
    })?;
    let actor = Actor::from_request(&caller, &req);
    let mut conn = connection(&state.pg).await?;
    let (alert, changed) = match queries::acknowledge(&mut conn, id, &actor).await? {
        Acknowledged::Now(alert) => (alert, true),
        Acknowledged::Already(alert) => (alert, false),
        Acknowledged::NoSuchAlert => return Err(ApiError::not_found("no such alert")),
    };
    if changed {
        state
            .alerts
            .announce(&[AlertEvent {
                event: storage::alerts::AlertChange::Acknowledged,
                alert: alert.clone(),
                location: None,
            }])
            .await;
    }
    Ok(HttpResponse::Ok().json(AlertAnswer {
        status: Success::Success,
        alert,
    }))
}
