//! `POST /api/v1/data/ingest`, and the InfluxDB-compatible routes (`influx_compat`) on the
//! same write path.

use crate::IngestState;
use crate::body::{self, Format};
use crate::influx_compat;
use crate::rate_limit::RateWindow;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use domain::MachineId;
use domain::ingest::{BatchError, ParsedBatch};
use domain::line_protocol;
use domain::reading::Violation;
use platform::ApiError;
use platform::auth::{Authenticated, require};
use platform::error::ErrorCode;
use platform::error::FieldError;
use serde::Serialize;
use std::collections::HashMap;
use std::time::Instant;
use storage::registry::MachineInfo;
use telemetry_writer::admit;

/// What the bookkeeping after a store gets even when the write used up the deadline.
const AFTER_STORE_AT_LEAST: std::time::Duration = std::time::Duration::from_millis(500);

/// Raw bodies up to this size are read; the `ingest_max_body_bytes` setting (≤ 16 MiB)
/// decides what is accepted, after decompression.
pub const MAX_RAW_BODY: usize = 16 * 1024 * 1024;

/// The JSON (and line protocol) endpoint, as readings are counted under it.
const INGEST_PATH: &str = "/api/v1/data/ingest";

platform::http_routes! {
    service: platform::ServiceName::IngestApi;
    "/api/v1/data/ingest" => { post: ingest },
    "/write" => { post: influx_compat::write_v1 },
    "/api/v2/write" => { post: influx_compat::write_v2 },
    "/ping" => { get: influx_compat::ping, head: influx_compat::ping_head },
}

/// A gateway's batch (documentation of the JSON body; parsing is `domain::ingest`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct IngestRequest {
    /// Who sent it (logged).
    #[schema(example = "gateway-hall-1")]
    gateway_id: Option<String>,
    /// When the gateway sent it, RFC 3339.
    timestamp: Option<String>,
    /// One entry per machine (at most `ingest_max_machines_per_batch`).
    batch: Vec<MachineReadings>,
}

/// One machine's readings in a batch.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct MachineReadings {
    machine_id: uuid::Uuid,
    /// Any label; the registry's label is written to the tags (a mismatch is logged).
    #[schema(example = "Vibration")]
    sensor_type: Option<String>,
    location: Option<String>,
    readings: Vec<ReadingBody>,
}

/// One reading: a timestamp and at least one value.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ReadingBody {
    /// RFC 3339 with an offset.
    #[schema(example = "2026-11-22T10:30:00Z")]
    timestamp: String,
    /// °C.
    temperature: Option<f64>,
    /// kPa.
    pressure: Option<f64>,
    /// rpm.
    speed: Option<f64>,
}

/// What became of a batch.
#[derive(Serialize, utoipa::ToSchema)]
struct IngestAnswer<'a> {
    status: BatchStatus,
    message: String,
    summary: IngestSummary<'a>,
    /// The batch's `gateway_id`, or the caller's name when it gave none.
    gateway_id: &'a str,
    /// Readings stored.
    stored: usize,
    /// Readings refused.
    rejected: usize,
    /// One entry per machine entry of the batch, in its order.
    details: Vec<MachineOutcome<'a>>,
    /// Every refused field (at most `MAX_FIELD_ERRORS`, then a count); only with `partial`.
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<FieldError>>,
}

/// `success` (201): every reading stored; `partial` (207): some refused.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum BatchStatus {
    Success,
    Partial,
}

/// The seed's summary of a batch.
#[derive(Serialize, utoipa::ToSchema)]
struct IngestSummary<'a> {
    gateway_id: &'a str,
    /// RFC 3339, microseconds, UTC.
    processed_at: String,
    /// Entries of the batch (the seed counts `len(batch)`).
    total_machines: usize,
    /// Readings stored.
    total_readings: usize,
}

/// What became of one machine's readings.
#[derive(Serialize, utoipa::ToSchema)]
struct MachineOutcome<'a> {
    /// As the batch spelled it; null when it named none.
    machine_id: Option<&'a str>,
    /// Readings stored: the seed's name for `stored`.
    readings_count: usize,
    status: MachineBatchStatus,
    stored: usize,
    rejected: usize,
}

/// `success`: every reading stored; `partial`: some; `rejected`: none.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum MachineBatchStatus {
    Success,
    Partial,
    Rejected,
}

/// The answer's `errors`: at most [`platform::error::MAX_FIELD_ERRORS`], then a count.
fn field_errors(violations: &[Violation]) -> Vec<FieldError> {
    let listed = violations.len().min(platform::error::MAX_FIELD_ERRORS);
    let errors: Vec<FieldError> = violations[..listed]
        .iter()
        .map(|v| {
            let error = FieldError::field(v.path.clone(), v.message.clone());
            match &v.value {
                Some(value) => error.with_value(value.clone()),
                None => error,
            }
        })
        .collect();
    platform::error::capped_of(errors, violations.len())
}

/// What the registry lookup found: the machines that may send, and which metrics of each
/// have an open alert (read in the same Redis round trip).
struct Registered {
    known: HashMap<MachineId, MachineInfo>,
    open_alerts: HashMap<uuid::Uuid, Option<String>>,
}

/// Rejects machines the registry does not know or has switched off; returns the known ones.
/// The caller's rate window is checked in the same Redis round trip.
async fn check_registry(
    state: &IngestState,
    endpoint: &str,
    parsed: &mut ParsedBatch,
    window: &RateWindow,
) -> Result<Registered, ApiError> {
    let ids: Vec<MachineId> = parsed
        .machines
        .iter()
        .filter(|m| !m.readings.is_empty())
        .filter_map(|m| m.machine_id)
        .collect();
    // The caller's rate counter and the machines' open-alert keys come with the lookup.
    let mut also = vec![window.key.clone()];
    also.extend(
        ids.iter()
            .map(|id| storage::alerts::open_key(state.writer.redis(), id.as_uuid())),
    );
    let (found, counters) = state.writer.lookup(&ids, &also).await.map_err(|err| {
        tracing::error!(error = %err, "machine registry unavailable (Redis and Postgres)");
        ApiError::unavailable("the machine registry is unavailable, retry shortly", 5)
    })?;
    window.check(
        counters.first().and_then(Option::as_deref),
        state
            .settings
            .get(domain::settings::key::GATEWAY_RATE_LIMIT_PER_MINUTE),
    )?;
    let open_alerts = ids
        .iter()
        .zip(counters.into_iter().skip(1))
        .map(|(id, open)| (*id.as_uuid(), open))
        .collect();
    let mut known = HashMap::new();
    let mut refused = Vec::new();
    for (index, machine) in parsed.machines.iter().enumerate() {
        let Some(id) = machine.machine_id.filter(|_| !machine.readings.is_empty()) else {
            continue;
        };
        match admit(found.get(&id).and_then(Option::as_ref), None) {
            Ok(info) => {
                known.insert(id, info.clone());
            }
            Err(refusal) => refused.push((index, refusal)),
        }
    }
    for (index, refusal) in refused {
        let count = parsed.machines[index].readings.len();
        state.metrics.rejected(endpoint, refusal.code(), count);
        parsed.reject_machine(index, refusal.reason());
    }
    Ok(Registered { known, open_alerts })
}

/// Stores a gateway's batch: JSON (optionally gzip) or InfluxDB line protocol. Valid readings
/// are stored even when others are rejected (207 lists every rejected field).
#[utoipa::path(post, path = "/api/v1/data/ingest", tag = "ingest",
    security(("bearer" = [])),
    params(("precision" = Option<String>, Query, description = "Line protocol only: ns (default), us, ms or s")),
    request_body(description = "A batch", content(
        (IngestRequest = "application/json"),
        (String = "text/plain", example = "sensor_readings,machine_id=0b6f1c3e-8a51-4c7e-9a01-000000000001 temperature=72.5 1763807400000000000"))),
    responses(
        (status = 201, body = IngestAnswer, description = "Every reading stored (`status: success`)"),
        (status = 207, body = IngestAnswer, description = "Some readings stored, the rest refused by validation, the registry or InfluxDB itself (`status: partial`, with `errors`)"),
        (status = 400, description = "Nothing valid, or a malformed body", body = platform::openapi::ErrorResponse),
        (status = 401, description = "No valid token", body = platform::openapi::ErrorResponse),
        (status = 403, description = "Not write:sensor_data", body = platform::openapi::ErrorResponse),
        (status = 413, description = "Body or batch too large", body = platform::openapi::ErrorResponse),
        (status = 422, description = "InfluxDB refused every valid reading for its own sake (`store_refused`, reasons in `errors`): retrying cannot help", body = platform::openapi::ErrorResponse),
        (status = 415, description = "Neither JSON nor line protocol", body = platform::openapi::ErrorResponse),
        (status = 429, description = "Rate limit; see Retry-After", body = platform::openapi::ErrorResponse),
        (status = 503, description = "InfluxDB unavailable: nothing stored, retry after Retry-After", body = platform::openapi::ErrorResponse)))]
async fn ingest(
    state: web::Data<IngestState>,
    caller: Authenticated<require::WriteSensorData>,
    req: HttpRequest,
    raw: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let format = body::format(&req)?;
    let Stored { parsed, stored } =
        store_batch(&state, &caller, INGEST_PATH, format, &req, raw).await?;
    if stored == 0 {
        return Err(ApiError::validation(
            "no valid readings in the request; nothing was stored",
            field_errors(&parsed.violations),
        ));
    }
    Ok(answer(&parsed, &caller.username, stored))
}

/// What became of a batch: the parsed batch (with every refused reading among its
/// violations) and how many readings are stored.
pub(crate) struct Stored {
    pub parsed: ParsedBatch,
    pub stored: usize,
}

/// The write path every ingest endpoint shares: decode and validate, ask the registry (and
/// the caller's rate window), write what is valid, then latest values and alerts within the
/// deadline. `stored` is 0, with nothing written, when no reading was valid; an error only
/// for what refuses the batch whole. Readings are counted under `endpoint`, the route they
/// came through.
pub(crate) async fn store_batch(
    state: &IngestState,
    caller: &platform::auth::Principal,
    endpoint: &'static str,
    format: Format,
    req: &HttpRequest,
    raw: web::Bytes,
) -> Result<Stored, ApiError> {
    let deadline = Instant::now() + state.deadline;
    let window = RateWindow::current(state.writer.redis(), &caller.subject);
    let mut parsed = parse(state, endpoint, req, format, raw, &caller.username)?;

    let Registered { known, open_alerts } =
        check_registry(state, endpoint, &mut parsed, &window).await?;
    log_label_mismatches(&parsed, &known);
    if parsed.valid_readings() == 0 {
        return Ok(Stored { parsed, stored: 0 });
    }

    // The batch's machines that are written, by their index in `parsed`.
    let owners: Vec<usize> = parsed
        .machines
        .iter()
        .enumerate()
        .filter(|(_, m)| !m.readings.is_empty())
        .filter(|(_, m)| m.machine_id.is_some_and(|id| known.contains_key(&id)))
        .map(|(index, _)| index)
        .collect();
    let to_write = written_of(&parsed, &known, &owners);
    // The Redis side of the bookkeeping goes with the write (one round trip per group of
    // concurrent requests); the caller's rate count is part of it.
    let books = state
        .writer
        .bookkeeping(&to_write, |pipe| window.count(pipe));
    let outcome = store(state, endpoint, &to_write, deadline, books).await?;
    if !outcome.refused.is_empty() {
        reject_refused(state, endpoint, &mut parsed, &owners, outcome.refused);
    }
    let stored = parsed.valid_readings();
    if stored == 0 {
        return Err(ApiError::new(
            ErrorCode::StoreRefused,
            "the time-series store refused every reading; nothing was stored",
        )
        .with_errors(field_errors(&parsed.violations)));
    }
    state.metrics.stored(endpoint, stored);
    let written = written_of(&parsed, &known, &owners);
    // The readings are stored: latest values and alerts must not hold the answer past the
    // deadline when Redis or PostgreSQL hang (they are best effort either way).
    let bookkeeping = async {
        if outcome.bookkept {
            state
                .writer
                .judge_alerts(&written, Some(&open_alerts))
                .await;
        } else {
            state
                .writer
                .after_store(&written, |pipe| window.count(pipe), Some(&open_alerts))
                .await;
        }
    };
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(AFTER_STORE_AT_LEAST);
    if tokio::time::timeout(left, bookkeeping).await.is_err() {
        tracing::warn!(
            waited_ms = left.as_millis() as u64,
            "latest values and alerts not updated before the deadline; the readings are stored"
        );
    }

    Ok(Stored { parsed, stored })
}

/// Decodes the body and validates it reading by reading: JSON (optionally gzip) or line
/// protocol. Refuses it whole only when it is malformed or too large.
fn parse(
    state: &IngestState,
    endpoint: &str,
    req: &HttpRequest,
    format: Format,
    raw: web::Bytes,
    caller: &str,
) -> Result<ParsedBatch, ApiError> {
    let (rules, limits) = (
        state.settings.reading_rules(),
        state.settings.batch_limits(),
    );
    let max_body = state
        .settings
        .get(domain::settings::key::INGEST_MAX_BODY_BYTES) as usize;
    let body = body::decode(req, raw, max_body)?;

    let started = Instant::now();
    let parsed = match format {
        Format::Json => {
            platform::extract::check_json_text(&body)?;
            domain::ingest::parse_json(&body, &rules, &limits)
        }
        Format::LineProtocol(precision) => match std::str::from_utf8(&body) {
            Ok(text) => {
                let format = line_protocol::LineFormat {
                    precision,
                    aliases: &state.measurement_aliases,
                };
                line_protocol::parse(text, &format, &rules, &limits)
            }
            Err(_) => return Err(ApiError::malformed_body("line protocol must be UTF-8")),
        },
    };
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(BatchError::Malformed(v)) => {
            return Err(
                ApiError::malformed_body(format!("invalid request body: {}", v.message))
                    .with_errors(field_errors(&[v])),
            );
        }
        Err(BatchError::TooLarge(v)) => {
            return Err(ApiError::new(ErrorCode::PayloadTooLarge, v.message.clone())
                .with_errors(field_errors(&[v])));
        }
    };
    state
        .metrics
        .rejected(endpoint, "validation", parsed.rejected_readings());
    tracing::debug!(
        endpoint,
        gateway_id = parsed.gateway_id.as_deref().unwrap_or(caller),
        machines = parsed.machines.len(),
        readings = parsed.valid_readings(),
        rejected = parsed.rejected_readings(),
        validation_us = started.elapsed().as_micros() as u64,
        "payload validated"
    );
    Ok(parsed)
}

/// The readings to write: the machines at `owners`, with their registry entries.
fn written_of<'a>(
    parsed: &'a ParsedBatch,
    known: &'a HashMap<MachineId, MachineInfo>,
    owners: &[usize],
) -> Vec<(&'a MachineInfo, &'a [domain::reading::Reading])> {
    owners
        .iter()
        .map(|&index| &parsed.machines[index])
        .filter_map(|m| Some((known.get(&m.machine_id?)?, m.readings.as_slice())))
        .collect()
}

/// Writes the readings to InfluxDB within the deadline (up to 3 attempts per write), with
/// their Redis bookkeeping `books` when the write is shared; 503 when InfluxDB is out, then
/// nothing is acknowledged. Returns the points InfluxDB refused for their own sake (the rest
/// are stored), by line, and whether `books` went to Redis.
async fn store(
    state: &IngestState,
    endpoint: &str,
    written: &[(&MachineInfo, &[domain::reading::Reading])],
    deadline: Instant,
    books: deadpool_redis::redis::Pipeline,
) -> Result<telemetry_writer::WriteOutcome, ApiError> {
    let lines = telemetry_writer::encode(written.iter().copied());
    let readings: usize = written.iter().map(|(_, r)| r.len()).sum();
    let write_started = Instant::now();
    let outcome = state
        .writer
        .write_within(lines, deadline, 3, Some(books))
        .await;
    state
        .metrics
        .write_seconds
        .observe(write_started.elapsed().as_secs_f64());
    outcome.map_err(|err| {
        state
            .metrics
            .rejected(endpoint, "store_unavailable", readings);
        tracing::error!(
            error = %err,
            endpoint,
            readings,
            attempts = 3,
            "InfluxDB write failed after the final attempt; nothing acknowledged"
        );
        ApiError::unavailable(
            "the time-series store did not acknowledge the write; nothing was stored, retry",
            5,
        )
    })
}

/// Takes the readings InfluxDB refused (by line of the write, which follows `owners` and
/// each machine's readings in order) out of the batch, with InfluxDB's reasons.
fn reject_refused(
    state: &IngestState,
    endpoint: &str,
    parsed: &mut ParsedBatch,
    owners: &[usize],
    refused: Vec<telemetry_writer::Refused>,
) {
    state
        .metrics
        .rejected(endpoint, "store_refused", refused.len());
    let mut per_machine: HashMap<usize, Vec<(usize, String)>> = HashMap::new();
    let mut refused = refused.into_iter().peekable();
    let mut first_line = 0;
    for &index in owners {
        let count = parsed.machines[index].readings.len();
        while let Some(point) = refused.next_if(|r| r.index < first_line + count) {
            tracing::warn!(machine_id = %parsed.machines[index].raw_machine_id, reason = %point.reason, "InfluxDB refused a reading");
            per_machine
                .entry(index)
                .or_default()
                .push((point.index - first_line, point.reason));
        }
        first_line += count;
    }
    for (index, points) in per_machine {
        parsed.reject_refused(index, points);
    }
}

/// Logs where a gateway describes a machine differently from the registry (sensor type,
/// location, factory): the registry's values are written, the batch is never refused for it.
fn log_label_mismatches(parsed: &ParsedBatch, known: &HashMap<MachineId, MachineInfo>) {
    for machine in &parsed.machines {
        let Some(info) = machine.machine_id.and_then(|id| known.get(&id)) else {
            continue;
        };
        let claimed = &machine.claimed;
        let sensor_differs = claimed.sensor_type.as_deref().is_some_and(|sent| {
            !domain::SensorType::parse(&info.sensor_type).is_ok_and(|label| label.matches(sent))
        });
        let differs = |sent: &Option<String>, registered: &str| {
            sent.as_deref().is_some_and(|sent| sent != registered)
        };
        if sensor_differs
            || differs(&claimed.location, &info.location)
            || differs(&claimed.factory_id, &info.factory_id)
        {
            tracing::info!(
                machine_id = %machine.raw_machine_id,
                sent_sensor_type = claimed.sensor_type.as_deref(),
                sent_location = claimed.location.as_deref(),
                sent_factory_id = claimed.factory_id.as_deref(),
                sensor_type = %info.sensor_type,
                location = %info.location,
                factory_id = %info.factory_id,
                "the gateway describes the machine differently from the registry; the registry's tags are stored"
            );
        }
    }
}

/// 201 when every reading was stored, 207 otherwise: the seed's `summary` and per-machine
/// `details`, plus our counts and every rejected field.
fn answer(parsed: &ParsedBatch, caller: &str, stored: usize) -> HttpResponse {
    let rejected = parsed.rejected_readings();
    let details = parsed
        .machines
        .iter()
        .map(|m| MachineOutcome {
            machine_id: Some(m.raw_machine_id.as_str()).filter(|id| !id.is_empty()),
            readings_count: m.readings.len(),
            status: match (m.readings.len(), m.rejected) {
                (0, _) => MachineBatchStatus::Rejected,
                (_, 0) => MachineBatchStatus::Success,
                _ => MachineBatchStatus::Partial,
            },
            stored: m.readings.len(),
            rejected: m.rejected,
        })
        .collect();
    let (status, word, message) = if rejected == 0 {
        (
            StatusCode::CREATED,
            BatchStatus::Success,
            "Batch ingestion completed".to_owned(),
        )
    } else {
        (
            StatusCode::MULTI_STATUS,
            BatchStatus::Partial,
            format!("stored {stored} readings, rejected {rejected}"),
        )
    };
    let gateway_id = parsed.gateway_id.as_deref().unwrap_or(caller);
    // Every entry of the batch (the seed counts `len(batch)`); line protocol's stand-in for
    // lines too broken to name a machine is none.
    let total_machines = parsed.machines.iter().filter(|m| m.path != "body").count();
    HttpResponse::build(status).json(IngestAnswer {
        status: word,
        message,
        summary: IngestSummary {
            gateway_id,
            processed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            total_machines,
            total_readings: stored,
        },
        gateway_id,
        stored,
        rejected,
        details,
        errors: (rejected > 0).then(|| field_errors(&parsed.violations)),
    })
}
