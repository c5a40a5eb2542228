//! `/api/v1/machines`: the registry. Writes are audited, invalidate the write paths' cache,
//! and PATCH needs `If-Match` so two supervisors cannot overwrite each other silently.

use crate::QueryState;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use diesel_async::AsyncConnection;
use domain::{FactoryId, MachineId, MachineName, MachineStatus, SensorType};
use platform::ApiError;
use platform::auth::{Authenticated, require};
use platform::error::ErrorCode;
use platform::error::{FieldError, conflict_on_duplicate, reject_if_any};
use platform::openapi::Success;
use platform::pagination::{Page, Pagination};
use platform::postgres::connection;
use serde::{Deserialize, Serialize};
use storage::audit::{self, Actor, Change};
use storage::machines::{self, Filter, Machine, MachineChanges, MachineView, NewMachine};
use uuid::Uuid;

const DUPLICATE: &str = "a machine with this name exists in this factory";

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Exact location.
    location: Option<String>,
    /// `active`, `inactive`, `maintenance`, `error`.
    status: Option<String>,
    /// The plant's sensor label, matched case-insensitively (`temperature` finds "Temperature").
    sensor_type: Option<String>,
    factory_id: Option<String>,
    /// 1..=500, default 50.
    limit: Option<i64>,
    /// Default 0.
    offset: Option<i64>,
}

/// A machine's registry fields; on create `name` and `location` are required, on update
/// only what changes is sent.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MachineBody {
    /// Unique within its factory (any case), 1..=255 characters.
    #[schema(example = "CNC Mill 01")]
    name: Option<String>,
    /// 1..=255 characters, no line breaks, not ending with a backslash.
    #[schema(example = "Hall 1")]
    location: Option<String>,
    /// The plant's own label for the sensor package, 1..=64 characters, kept as given
    /// ("Temperature", "Vibration", "Flow meter").
    #[schema(example = "Vibration")]
    sensor_type: Option<String>,
    /// `active` (default), `inactive`, `maintenance`, `error`.
    status: Option<String>,
    /// Default `A`.
    factory_id: Option<String>,
}

/// Validated fields of a body; `None` where the body left them out.
struct Parsed {
    name: Option<String>,
    location: Option<String>,
    sensor_type: Option<String>,
    status: Option<MachineStatus>,
    factory_id: Option<String>,
}

/// `raw` parsed by `parse`, or its error pushed under `field`; `None` when absent or bad.
fn checked<T, E: ToString>(
    field: &str,
    raw: &Option<String>,
    parse: impl FnOnce(&str) -> Result<T, E>,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    let value = raw.as_deref()?;
    parse(value)
        .map_err(|err| errors.push(FieldError::field(field, err.to_string()).with_value(value)))
        .ok()
}

fn location(value: &str) -> Result<String, &'static str> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > 255 {
        Err("must be 1 to 255 characters and not blank")
    } else if value.ends_with('\\') || value.contains(['\n', '\r']) {
        // InfluxDB 1.x line protocol cannot carry either in a tag value.
        Err("must not end with a backslash or contain line breaks")
    } else {
        Ok(value.to_owned())
    }
}

fn parse_body(body: &MachineBody, errors: &mut Vec<FieldError>) -> Parsed {
    Parsed {
        name: checked("name", &body.name, MachineName::parse, errors)
            .map(|n| n.as_ref().to_owned()),
        location: checked("location", &body.location, location, errors),
        sensor_type: checked("sensor_type", &body.sensor_type, SensorType::parse, errors)
            .map(|t| t.as_ref().to_owned()),
        status: checked("status", &body.status, str::parse::<MachineStatus>, errors),
        factory_id: checked("factory_id", &body.factory_id, FactoryId::parse, errors)
            .map(|f| f.as_ref().to_owned()),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MachinePage<'a> {
    status: Success,
    /// Machines on this page.
    count: usize,
    /// Each with `machine_id` as well as `id`.
    #[schema(value_type = Vec<Object>)]
    machines: Vec<MachineView<'a>>,
    pagination: Pagination,
}

/// One machine, with `machine_id` as well as `id`; its ETag is in the header.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MachineAnswer<'a> {
    status: Success,
    #[schema(value_type = Object)]
    machine: MachineView<'a>,
}

/// A registered machine; its ETag and Location are in the headers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MachineCreated<'a> {
    status: Success,
    #[schema(example = "Machine created successfully")]
    message: &'static str,
    machine_id: Uuid,
    #[schema(value_type = Object)]
    machine: MachineView<'a>,
}

fn with_etag(status: StatusCode, machine: &Machine) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::ETAG, machine.etag()))
        .json(MachineAnswer {
            status: Success::Success,
            machine: MachineView::from(machine),
        })
}

fn not_found() -> ApiError {
    ApiError::not_found("no such machine")
}

/// Drops the write paths' cached copy. A failure must not undo the committed change, so it
/// is retried in the background until the entry is gone or would have expired anyway.
async fn invalidate(state: &QueryState, id: Uuid) {
    let registry = state.registry.clone();
    let machine = MachineId::from(id);
    if registry.invalidate(&machine).await.is_ok() {
        return;
    }
    tracing::warn!(machine_id = %id, "Redis lost: machine cache not invalidated; retrying in the background");
    tokio::spawn(async move {
        for attempt in 1..=60u32 {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            if registry.invalidate(&machine).await.is_ok() {
                tracing::info!(machine_id = %id, attempt, "machine cache invalidated after Redis came back");
                return;
            }
        }
        tracing::error!(machine_id = %id, "machine cache could not be invalidated; it expires by TTL");
    });
}

/// The registry, filtered and paged.
#[utoipa::path(get, path = "/api/v1/machines", tag = "registry", security(("bearer" = [])), params(ListQuery),
    responses(
        (status = 200, body = MachinePage, description = "The page of matching machines"),
        (status = 400, description = "Bad filter or paging", body = platform::openapi::ErrorResponse),
        (status = 403, description = "Not read:machines", body = platform::openapi::ErrorResponse)))]
pub async fn list(
    state: web::Data<QueryState>,
    _caller: Authenticated<require::ReadMachines>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let mut errors = Vec::new();
    let (limit, offset) = Page {
        limit: query.limit,
        offset: query.offset,
    }
    .check(&mut errors);
    let filter = Filter::parse(
        query.location,
        query.status,
        query.sensor_type,
        query.factory_id,
        &mut errors,
    );
    reject_if_any("invalid query parameters", errors)?;
    let mut conn = connection(&state.pg).await?;
    let (page, total) = machines::list(&mut conn, &filter, limit, offset).await?;
    let machines: Vec<MachineView<'_>> = page.iter().map(MachineView::from).collect();
    Ok(HttpResponse::Ok().json(MachinePage {
        status: Success::Success,
        count: machines.len(),
        machines,
        pagination: Pagination::of(limit, offset, page.len(), total),
    }))
}

/// The seed's spelling of `GET /api/v1/machines` (same filters, same answer).
#[utoipa::path(get, path = "/api/v1/data/machines", tag = "registry", security(("bearer" = [])), params(ListQuery),
    responses(
        (status = 200, body = MachinePage, description = "As `GET /api/v1/machines`"),
        (status = 400, description = "Bad filter or paging", body = platform::openapi::ErrorResponse),
        (status = 403, description = "Not read:machines", body = platform::openapi::ErrorResponse)))]
pub async fn seed_list(
    state: web::Data<QueryState>,
    caller: Authenticated<require::ReadMachines>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    list(state, caller, query).await
}

/// The seed's spelling of `POST /api/v1/machines` (same body, same answer).
#[utoipa::path(post, path = "/api/v1/data/machine", tag = "registry", security(("bearer" = [])),
    request_body = MachineBody,
    responses(
        (status = 201, body = MachineCreated, description = "As `POST /api/v1/machines`"),
        (status = 400, description = "Invalid fields, each named", body = platform::openapi::ErrorResponse),
        (status = 403, description = "Not write:machines (supervisor, management)", body = platform::openapi::ErrorResponse),
        (status = 409, description = "A machine with this name exists in this factory", body = platform::openapi::ErrorResponse)))]
pub async fn seed_create(
    state: web::Data<QueryState>,
    caller: Authenticated<require::WriteMachines>,
    req: HttpRequest,
    body: platform::Json<MachineBody>,
) -> Result<HttpResponse, ApiError> {
    create(state, caller, req, body).await
}

/// One machine, with `ETag: "v<version>"` for a later `If-Match`.
#[utoipa::path(get, path = "/api/v1/machines/{id}", tag = "registry", security(("bearer" = [])), params(("id" = uuid::Uuid, Path, description = "The machine")),
    responses(
        (status = 200, body = MachineAnswer, description = "The machine"),
        (status = 403, description = "Not read:machines", body = platform::openapi::ErrorResponse),
        (status = 404, description = "Unknown machine", body = platform::openapi::ErrorResponse)))]
pub async fn get(
    state: web::Data<QueryState>,
    _caller: Authenticated<require::ReadMachines>,
    id: web::Path<MachineId>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = connection(&state.pg).await?;
    let machine = machines::find(&mut conn, *id.as_uuid())
        .await?
        .ok_or_else(not_found)?;
    Ok(with_etag(StatusCode::OK, &machine))
}

/// Registers a machine (audited).
#[utoipa::path(post, path = "/api/v1/machines", tag = "registry", security(("bearer" = [])),
    request_body = MachineBody,
    responses(
        (status = 201, body = MachineCreated, description = "Registered"),
        (status = 400, description = "Invalid fields, each named", body = platform::openapi::ErrorResponse),
        (status = 403, description = "Not write:machines (supervisor, management)", body = platform::openapi::ErrorResponse),
        (status = 409, description = "A machine with this name exists in this factory", body = platform::openapi::ErrorResponse)))]
pub async fn create(
    state: web::Data<QueryState>,
    caller: Authenticated<require::WriteMachines>,
    req: HttpRequest,
    body: platform::Json<MachineBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut errors = Vec::new();
    let parsed = parse_body(&body, &mut errors);
    for (field, present) in [
        ("name", &body.name),
        ("location", &body.location),
        ("sensor_type", &body.sensor_type),
    ] {
        if present.is_none() {
            errors.push(FieldError::field(field, "is required"));
        }
    }
    reject_if_any("invalid machine", errors)?;
    let (Some(name), Some(location), Some(sensor_type)) =
        (parsed.name, parsed.location, parsed.sensor_type)
    else {
        return Err(ApiError::validation("invalid machine", Vec::new()));
    };
    let new = NewMachine {
        name,
        location,
        sensor_type,
        status: parsed.status.unwrap_or(MachineStatus::Active),
        factory_id: parsed.factory_id.unwrap_or_else(|| "A".to_owned()),
    };
    let actor = Actor::from_request(&caller, &req);
    let mut conn = connection(&state.pg).await?;
    let machine = conn
        .transaction::<_, ApiError, _>(async move |conn| {
            let machine = machines::insert(conn, new)
                .await
                .map_err(|e| conflict_on_duplicate(e, DUPLICATE))?;
            audit::record(
                conn,
                &actor,
                Change::of("machine.create", "machine", machine.id).after(&machine),
            )
            .await?;
            Ok(machine)
        })
        .await?;
    // Clears a negative cache entry left by ingest attempts before registration.
    invalidate(&state, machine.id).await;
    let mut response = HttpResponse::Created()
        .insert_header((header::ETAG, machine.etag()))
        .json(MachineCreated {
            status: Success::Success,
            message: "Machine created successfully",
            machine_id: machine.id,
            machine: MachineView::from(&machine),
        });
    if let Ok(location) = header::HeaderValue::from_str(&format!("/api/v1/machines/{}", machine.id))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

fn if_match(req: &HttpRequest) -> Result<i64, ApiError> {
    let value = req
        .headers()
        .get(header::IF_MATCH)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::PreconditionRequired,
                "send If-Match with the ETag of the version you edited (GET the machine first)",
            )
        })?
        .to_str()
        .unwrap_or("");
    value
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .strip_prefix('v')
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            ApiError::validation(
                "invalid If-Match",
                vec![
                    FieldError::parameter("If-Match", "must be an ETag such as \"v3\"")
                        .with_value(value),
                ],
            )
        })
}

/// Changes a machine (audited); `If-Match` with the ETag you read is required.
#[utoipa::path(patch, path = "/api/v1/machines/{id}", tag = "registry", security(("bearer" = [])),
    params(
        ("id" = uuid::Uuid, Path, description = "The machine"),
        ("If-Match" = String, Header, description = "The ETag read, e.g. \"v3\"")),
    request_body = MachineBody,
    responses(
        (status = 200, body = MachineAnswer, description = "The machine as changed"),
        (status = 400, description = "Invalid fields", body = platform::openapi::ErrorResponse),
        (status = 403, description = "Not write:machines", body = platform::openapi::ErrorResponse),
        (status = 404, description = "Unknown machine", body = platform::openapi::ErrorResponse),
        (status = 409, description = "Duplicate name in the factory", body = platform::openapi::ErrorResponse),
        (status = 412, description = "Changed since you read it", body = platform::openapi::ErrorResponse),
        (status = 428, description = "If-Match missing", body = platform::openapi::ErrorResponse)))]
pub async fn update(
    state: web::Data<QueryState>,
    caller: Authenticated<require::WriteMachines>,
    req: HttpRequest,
    id: web::Path<MachineId>,
    body: platform::Json<MachineBody>,
) -> Result<HttpResponse, ApiError> {
    let id = *id.into_inner().as_uuid();
    let expected = if_match(&req)?;
    let body = body.into_inner();
    let mut errors = Vec::new();
    let parsed = parse_body(&body, &mut errors);
    if [
        &body.name,
        &body.location,
        &body.sensor_type,
        &body.status,
        &body.factory_id,
    ]
    .iter()
    .all(|f| f.is_none())
    {
        errors.push(FieldError::field("body", "nothing to change"));
    }
    reject_if_any("invalid machine", errors)?;
    let changes = MachineChanges {
        name: parsed.name,
        location: parsed.location,
        sensor_type: parsed.sensor_type,
        status: parsed.status,
        factory_id: parsed.factory_id,
    };
    let actor = Actor::from_request(&caller, &req);
    let mut conn = connection(&state.pg).await?;
    let machine = conn
        .transaction::<_, ApiError, _>(async move |conn| {
            let before = machines::find(conn, id).await?.ok_or_else(not_found)?;
            let Some(after) = machines::update_if_version(conn, id, expected, changes)
                .await
                .map_err(|e| conflict_on_duplicate(e, DUPLICATE))?
            else {
                return Err(ApiError::new(
                    ErrorCode::PreconditionFailed,
                    format!("the machine changed since version {expected}; it is now at {}: reload and retry", before.etag()),
                ));
            };
            audit::record(conn, &actor, Change::of("machine.update", "machine", id).before(&before).after(&after))
            .await?;
            Ok(after)
        })
        .await?;
    invalidate(&state, id).await;
    Ok(with_etag(StatusCode::OK, &machine))
}

/// Removes a machine from the registry (audited); its telemetry stays in InfluxDB.
#[utoipa::path(delete, path = "/api/v1/machines/{id}", tag = "registry", security(("bearer" = [])), params(("id" = uuid::Uuid, Path, description = "The machine")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not delete:machines (management)", body = platform::openapi::ErrorResponse),
        (status = 404, description = "Unknown machine", body = platform::openapi::ErrorResponse),
        (status = 503, description = "Token revocations not in sync: administrative calls fail closed", body = platform::openapi::ErrorResponse)))]
pub async fn delete(
    state: web::Data<QueryState>,
    caller: Authenticated<require::DeleteMachines>,
    req: HttpRequest,
    id: web::Path<MachineId>,
) -> Result<HttpResponse, ApiError> {
    let id = *id.into_inner().as_uuid();
    let actor = Actor::from_request(&caller, &req);
    let mut conn = connection(&state.pg).await?;
    conn.transaction::<_, ApiError, _>(async move |conn| {
        let before = machines::find(conn, id).await?.ok_or_else(not_found)?;
        machines::delete(conn, id).await?;
        audit::record(
            conn,
            &actor,
            Change::of("machine.delete", "machine", id).before(&before),
        )
        .await?;
        Ok(())
    })
    .await?;
    invalidate(&state, id).await;
    Ok(HttpResponse::NoContent().finish())
}
