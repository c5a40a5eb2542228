//! The alert list and acknowledgement (query-api's reads and its one write to `alerts`).

use super::Alert;
use crate::audit::{self, Actor, Change};
use crate::schema::alerts;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use domain::alerts::{Metric, Severity};
use uuid::Uuid;

/// Filters of the alert list (already validated); `None` means any.
#[derive(Debug, Default, Clone)]
pub struct AlertFilter {
    /// Open (`true`) or closed (`false`) alerts only.
    pub open: Option<bool>,
    pub severity: Option<Severity>,
    pub metric: Option<Metric>,
    pub machine: Option<Uuid>,
    /// Last seen at or after.
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// A page of alerts, newest activity first, and the total matching.
pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &AlertFilter,
    limit: i64,
    offset: i64,
) -> QueryResult<(Vec<Alert>, i64)> {
    let filtered = || {
        let mut q = alerts::table.into_boxed();
        match filter.open {
            Some(true) => q = q.filter(alerts::closed_at.is_null()),
            Some(false) => q = q.filter(alerts::closed_at.is_not_null()),
            None => {}
        }
        if let Some(severity) = filter.severity {
            q = q.filter(alerts::severity.eq(severity));
        }
        if let Some(metric) = filter.metric {
            q = q.filter(alerts::metric.eq(metric));
        }
        if let Some(machine) = filter.machine {
            q = q.filter(alerts::machine_id.eq(machine));
        }
        if let Some(since) = filter.since {
            q = q.filter(alerts::last_seen.ge(since));
        }
        if let Some(until) = filter.until {
            q = q.filter(alerts::last_seen.lt(until));
        }
        q
    };
    let page = filtered()
        .order((alerts::last_seen.desc(), alerts::id))
        .limit(limit)
        .offset(offset)
        .select(Alert::as_select())
        .load(conn)
        .await?;
    let total: i64 = filtered().count().get_result(conn).await?;
    Ok((page, total))
}

/// What acknowledging found.
#[derive(Debug)]
pub enum Acknowledged {
    /// Acknowledged now (and audited).
    Now(Alert),
    /// Someone acknowledged it before: the first acknowledgement stays.
    Already(Alert),
    NoSuchAlert,
}

/// Acknowledges an alert by `actor`, auditing it in the same transaction.
pub async fn acknowledge(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    actor: &Actor,
) -> QueryResult<Acknowledged> {
    conn.transaction(async move |conn| {
        let updated: Option<Alert> = diesel::update(
            alerts::table
                .filter(alerts::id.eq(id))
                .filter(alerts::acknowledged_at.is_null()),
        )
        .set((
            alerts::acknowledged_by.eq(actor.id),
            alerts::acknowledged_at.eq(Utc::now()),
        ))
        .returning(Alert::as_returning())
        .get_result(conn)
        .await
        .optional()?;
        if let Some(alert) = updated {
            audit::record(
                conn,
                actor,
                Change::of("alert.acknowledge", "alert", alert.id).after(&alert),
            )
            .await?;
            return Ok(Acknowledged::Now(alert));
        }
        let existing: Option<Alert> = alerts::table
            .filter(alerts::id.eq(id))
            .select(Alert::as_select())
            .first(conn)
            .await
            .optional()?;
        Ok(existing.map_or(Acknowledged::NoSuchAlert, Acknowledged::Already))
    })
    .await
}
