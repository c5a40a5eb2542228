//! `GET /api/v1/alerts` and `POST /api/v1/alerts/{id}/ack`.

use crate::QueryState;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use domain::alerts::{Metric, Severity};
use platform::ApiError;
use platform::alerts::{Alert, AlertEvent};
use platform::audit::{self, Actor, Change};
use platform::auth::{Authenticated, require};
use platform::error::{FieldError, Page, offset_pagination, reject_if_any};
use platform::postgres::connection;
use platform::schema::alerts;
use serde::Deserialize;
use serde_json::json;
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

/// Alerts, newest first, filtered.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", security(("bearer" = [])), params(AlertQuery),
    responses(
        (status = 200, description = "`{status, alerts: [alert], pagination: {limit, offset, total, has_more}}`"),
        (status = 400, description = "Bad parameters, each named", body = platform::openapi::ErrorResponse),
        (status = 403, description = "Not read:sensor_data", body = platform::openapi::ErrorResponse)))]
pub async fn list(
    state: web::Data<QueryState>,
    _caller: Authenticated<require::ReadSensorData>,
    query: web::Query<AlertQuery>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let (limit, offset) = Page {
        limit: query.limit,
        offset: query.offset,
    }
    .check(&mut errors);
    let open_state = match query.state.as_deref().unwrap_or("all") {
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
    if let Some(severity) = &query.severity
        && Severity::parse(severity).is_none()
    {
        errors.push(
            FieldError::parameter("severity", "must be warning or critical")
                .with_value(severity.as_str()),
        );
    }
    if let Some(metric) = &query.metric
        && Metric::parse(metric).is_none()
    {
        errors.push(
            FieldError::parameter("metric", "must be temperature, pressure or inactivity")
                .with_value(metric.as_str()),
        );
    }
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

    let filtered = || {
        let mut q = alerts::table.into_boxed();
        match open_state {
            Some(true) => q = q.filter(alerts::closed_at.is_null()),
            Some(false) => q = q.filter(alerts::closed_at.is_not_null()),
            None => {}
        }
        if let Some(severity) = &query.severity {
            q = q.filter(alerts::severity.eq(severity.clone()));
        }
        if let Some(metric) = &query.metric {
            q = q.filter(alerts::metric.eq(metric.clone()));
        }
        if let Some(machine) = machine {
            q = q.filter(alerts::machine_id.eq(machine));
        }
        if let Some(since) = since {
            q = q.filter(alerts::last_seen.ge(since));
        }
        if let Some(until) = until {
            q = q.filter(alerts::last_seen.lt(until));
        }
        q
    };
    let mut conn = connection(&state.pg).await?;
    let page: Vec<Alert> = filtered()
        .order((alerts::last_seen.desc(), alerts::id))
        .limit(limit)
        .offset(offset)
        .select(Alert::as_select())
        .load(&mut conn)
        .await?;
    let total: i64 = filtered().count().get_result(&mut conn).await?;
    Ok(HttpResponse::Ok().json(json!({
        "status": "success",
        "alerts": page,
        "pagination": offset_pagination(limit, offset, page.len(), total),
    })))
}

/// Acknowledges an alert (audited; idempotent: the first acknowledgement stays).
#[utoipa::path(post, path = "/api/v1/alerts/{id}/ack", tag = "alerts", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The alert")),
    responses(
        (status = 200, description = "`{status, alert}`"),
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
    let subject = caller.subject;
    let mut conn = connection(&state.pg).await?;
    let (alert, changed) = conn
        .transaction::<_, ApiError, _>(async move |conn| {
            let updated: Option<Alert> = diesel::update(
                alerts::table
                    .filter(alerts::id.eq(id))
                    .filter(alerts::acknowledged_at.is_null()),
            )
            .set((
                alerts::acknowledged_by.eq(subject),
                alerts::acknowledged_at.eq(Utc::now()),
            ))
            .returning(Alert::as_returning())
            .get_result(conn)
            .await
            .optional()?;
            match updated {
                Some(alert) => {
                    audit::record(
                        conn,
                        &actor,
                        Change::of("alert.acknowledge", "alert", alert.id).after(&alert),
                    )
                    .await?;
                    Ok((alert, true))
                }
                None => {
                    let existing: Option<Alert> = alerts::table
                        .filter(alerts::id.eq(id))
                        .select(Alert::as_select())
                        .first(conn)
                        .await
                        .optional()?;
                    existing
                        .map(|alert| (alert, false))
                        .ok_or_else(|| ApiError::not_found("no such alert"))
                }
            }
        })
        .await?;
    if changed {
        state
            .alerts
            .announce(&[AlertEvent {
                event: platform::alerts::AlertChange::Acknowledged,
                alert: alert.clone(),
            }])
            .await;
    }
    Ok(HttpResponse::Ok().json(json!({"status": "success", "alert": alert})))
}
