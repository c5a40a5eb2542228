//! Latest values: one machine, or the whole fleet in one call. Redis first (kept current by
//! both write paths, newest by reading time); InfluxDB when Redis is away or has nothing.

use crate::QueryState;
use crate::latest_values::latest_for;
use actix_web::{HttpResponse, web};
use domain::reading::Field;
use platform::ApiError;
use platform::auth::{Authenticated, require};
use platform::error::reject_if_any;
use platform::openapi::Success;
use platform::postgres::connection;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use storage::machines::{self, Filter, Machine};
use storage::presence::{self, Presence};
use uuid::Uuid;

/// A field's newest value.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LatestValue {
    value: f64,
    /// When it was measured, RFC 3339 in UTC.
    timestamp: String,
}

/// Each field's newest value; null for a field the machine never sent.
#[derive(Default, Serialize, utoipa::ToSchema)]
pub struct LatestFields {
    temperature: Option<LatestValue>,
    pressure: Option<LatestValue>,
    speed: Option<LatestValue>,
}

fn render(fields: Option<&HashMap<&'static str, (f64, i64)>>) -> LatestFields {
    let mut latest = LatestFields::default();
    for field in Field::ALL {
        let slot = match field {
            Field::Temperature => &mut latest.temperature,
            Field::Pressure => &mut latest.pressure,
            Field::Speed => &mut latest.speed,
        };
        *slot = fields
            .and_then(|f| f.get(field.as_str()))
            .map(|(value, ts)| LatestValue {
                value: *value,
                timestamp: chrono::DateTime::from_timestamp_nanos(*ts)
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            });
    }
    latest
}

/// Whether a machine is online, as its Sparkplug B edge node last said (births and deaths);
/// both null for machines that never spoke Sparkplug.
#[derive(Default, Serialize, utoipa::ToSchema)]
pub struct Online {
    online: Option<bool>,
    /// Since when, RFC 3339 in UTC.
    online_since: Option<String>,
}

impl Online {
    fn of(presence: Option<&Presence>) -> Self {
        presence.map_or_else(Self::default, |p| Self {
            online: Some(p.online),
            online_since: Some(p.since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        })
    }
}

/// One machine's latest values.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MachineLatest {
    status: Success,
    #[schema(value_type = Object)]
    machine: Machine,
    latest: LatestFields,
    #[serde(flatten)]
    online: Online,
    /// Where the values came from: `cache` (Redis), `store` (InfluxDB) or `cache+store`.
    source: &'static str,
}

/// The latest values of every matching machine.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FleetLatest<'a> {
    status: Success,
    count: usize,
    machines: Vec<FleetMachine<'a>>,
    /// Where the values came from: `cache` (Redis), `store` (InfluxDB) or `cache+store`.
    source: &'static str,
}

/// A machine of the fleet and its latest values.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FleetMachine<'a> {
    #[schema(value_type = Object)]
    machine: &'a Machine,
    latest: LatestFields,
    #[serde(flatten)]
    online: Online,
}

/// A machine's newest value per field (Redis, falling back to InfluxDB).
#[utoipa::path(get, path = "/api/v1/data/machine/{id}/latest", tag = "data", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The machine")),
    responses(
        (status = 200, body = MachineLatest, description = "The machine and its newest value per field"),
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
    let presence = presence::of(&mut conn, &[machine.id]).await?;
    drop(conn);
    let (latest, source) = latest_for(&state, &[machine.id]).await?;
    let latest = render(latest.get(&machine.id));
    Ok(HttpResponse::Ok().json(MachineLatest {
        status: Success::Success,
        online: Online::of(presence.get(&machine.id)),
        machine,
        latest,
        source,
    }))
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
    factory_id: Option<String>,
}

/// Every matching machine with its latest values, in one answer.
#[utoipa::path(get, path = "/api/v1/data/latest", tag = "data", security(("bearer" = [])), params(FleetQuery),
    responses(
        (status = 200, body = FleetLatest, description = "Every matching machine with its newest value per field"),
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
    let ids: Vec<Uuid> = fleet.iter().map(|m| m.id).collect();
    let presence = presence::of(&mut conn, &ids).await?;
    drop(conn);
    let (latest, source) = if ids.is_empty() {
        (HashMap::new(), "cache")
    } else {
        latest_for(&state, &ids).await?
    };
    let machines: Vec<FleetMachine<'_>> = fleet
        .iter()
        .map(|m| FleetMachine {
            machine: m,
            latest: render(latest.get(&m.id)),
            online: Online::of(presence.get(&m.id)),
        })
        .collect();
    Ok(HttpResponse::Ok().json(FleetLatest {
        status: Success::Success,
        count: machines.len(),
        machines,
        source,
    }))
}
