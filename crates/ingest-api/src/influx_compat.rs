//! InfluxDB's own write API, for the tools that already speak it (Telegraf, Node-RED, the
//! InfluxDB client libraries): `POST /write` (1.x), `POST /api/v2/write` (2.x) and
//! `GET|HEAD /ping`. Behind them is the same write path as `/api/v1/data/ingest` — the
//! registry, validation, rate limits, latest values and alerts — and in front, InfluxDB's
//! manners: `204 No Content` when every line is stored, otherwise `{"error": "..."}` with the
//! same words in `X-Influxdb-Error`. A partial write stores the good lines and answers 400
//! naming the bad ones, as InfluxDB 1.x does.

use crate::IngestState;
use crate::body::Format;
use crate::influx_auth;
use crate::routes::{Stored, store_batch};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use domain::line_protocol::Precision;
use platform::ApiError;
use serde::Deserialize;

/// What `/ping` says it is: tools check for the header, not the number.
pub const VERSION: &str = concat!("1.8.10-plantline-", env!("CARGO_PKG_VERSION"));

/// Bad lines named in a partial write's answer; the rest are counted.
const NAMED_AT_MOST: usize = 10;

/// `/write`'s query (InfluxDB 1.x). `rp` is accepted and not used.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WriteV1Query {
    /// Must be the telemetry database (`influx.database`).
    db: Option<String>,
    /// Retention policy: accepted, the database's default is used.
    #[allow(dead_code)]
    rp: Option<String>,
    /// Timestamp precision: `n`/`ns` (default), `u`/`us`, `ms`, `s`.
    precision: Option<String>,
    /// A gateway's client id (with `p`); HTTP Basic is the better place for it.
    u: Option<String>,
    /// The gateway's client secret (with `u`).
    p: Option<String>,
}

/// `/api/v2/write`'s query (InfluxDB 2.x). `org` is accepted and not used.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WriteV2Query {
    /// Accepted, not used: one plant, one organisation.
    #[allow(dead_code)]
    org: Option<String>,
    /// Must be the telemetry database (`influx.database`).
    bucket: Option<String>,
    /// `ns` (default), `us`, `ms`, `s`.
    precision: Option<String>,
}

/// InfluxDB's error answer: `{"error": ...}` and the `X-Influxdb-Error` header.
fn influx_error(status: StatusCode, message: &str, retry_after: Option<u64>) -> HttpResponse {
    // A header value is one line of visible text.
    let header: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut answer = HttpResponse::build(status);
    answer
        .insert_header(("X-Influxdb-Version", VERSION))
        .insert_header(("X-Influxdb-Error", header));
    if let Some(secs) = retry_after {
        answer.insert_header(("Retry-After", secs.to_string()));
    }
    answer.json(ErrorBody { error: message })
}

/// `{"error": "..."}`, as InfluxDB answers.
#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// A Plantline refusal in InfluxDB's shape. InfluxDB says 400 for points it refuses, where
/// Plantline's JSON endpoint says 422.
fn from_api_error(err: &ApiError) -> HttpResponse {
    let status = match err.status() {
        StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
        other => other,
    };
    let mut message = err.message().to_owned();
    if let Some(first) = err.errors().first() {
        let at = first.field.as_deref().or(first.parameter.as_deref());
        message.push_str(&format!(
            ": {}{}",
            at.map(|a| format!("{a}: ")).unwrap_or_default(),
            first.error
        ));
    }
    influx_error(status, &message, err.retry_after_secs())
}

/// 204 when every line is stored; 400 naming the refused lines otherwise (the others are
/// stored, as in an InfluxDB partial write).
fn written(stored: &Stored) -> HttpResponse {
    let refused = &stored.parsed.violations;
    if refused.is_empty() {
        return HttpResponse::NoContent()
            .insert_header(("X-Influxdb-Version", VERSION))
            .finish();
    }
    let named: Vec<String> = refused
        .iter()
        .take(NAMED_AT_MOST)
        .map(|v| match &v.value {
            Some(value) => format!("{}: {} ({value})", v.path, v.message),
            None => format!("{}: {}", v.path, v.message),
        })
        .collect();
    let more = refused.len().saturating_sub(NAMED_AT_MOST);
    let message = format!(
        "partial write: {}{} dropped={}",
        named.join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        },
        stored.parsed.rejected_readings()
    );
    influx_error(StatusCode::BAD_REQUEST, &message, None)
}

/// What a write names besides its body.
struct WriteParams<'a> {
    /// The route, as readings are counted under it.
    endpoint: &'static str,
    /// `database` (1.x) or `bucket` (2.x), and its value.
    database: (&'static str, Option<&'a str>),
    precision: Option<&'a str>,
    /// `u` and `p` (1.x only).
    user: Option<&'a str>,
    password: Option<&'a str>,
}

/// The shared body of both writes: who writes, the database, the precision, then the write
/// path.
async fn write(
    state: &IngestState,
    params: WriteParams<'_>,
    req: &HttpRequest,
    raw: web::Bytes,
) -> HttpResponse {
    let caller = match influx_auth::writer(state, req, params.user, params.password).await {
        Ok(caller) => caller,
        Err(err) => return from_api_error(&err),
    };
    let (parameter, database) = params.database;
    match database {
        None => {
            return influx_error(
                StatusCode::BAD_REQUEST,
                &format!("{parameter} is required"),
                None,
            );
        }
        Some(name) if name != state.database => {
            return influx_error(
                StatusCode::NOT_FOUND,
                &format!("{parameter} not found: \"{name}\""),
                None,
            );
        }
        Some(_) => {}
    }
    let precision = match params.precision.map(Precision::parse) {
        None => Precision::Nanoseconds,
        Some(Some(precision)) => precision,
        Some(None) => {
            return influx_error(
                StatusCode::BAD_REQUEST,
                "precision must be one of n, ns, u, us, ms, s",
                None,
            );
        }
    };
    let format = Format::LineProtocol(precision);
    match store_batch(state, &caller, params.endpoint, format, req, raw).await {
        Ok(stored) => written(&stored),
        Err(err) => from_api_error(&err),
    }
}

/// Writes line protocol as InfluxDB 1.x does (`sensor_readings` points, tag `machine_id`).
/// A gateway authenticates with its client id and secret (HTTP Basic, or `u`/`p`), or any
/// caller with an access token.
#[utoipa::path(post, path = "/write", tag = "influxdb-compatible",
    security(("bearer" = []), ("gateway_basic" = [])),
    params(WriteV1Query),
    request_body(content = String, content_type = "text/plain",
        example = "sensor_readings,machine_id=0b6f1c3e-8a51-4c7e-9a01-000000000001 temperature=72.5,speed=1200i 1763807400"),
    responses(
        (status = 204, description = "Every line stored"),
        (status = 400, description = "Bad lines (the good ones are stored and the answer names the bad ones: `partial write: ...`), no database, or a bad precision; `{\"error\": ...}` and `X-Influxdb-Error`"),
        (status = 401, description = "No valid token or gateway credentials"),
        (status = 403, description = "Not write:sensor_data"),
        (status = 404, description = "Another database than the telemetry one"),
        (status = 413, description = "Body too large"),
        (status = 429, description = "Rate limit; see Retry-After"),
        (status = 503, description = "InfluxDB unavailable: nothing stored, retry after Retry-After")))]
pub async fn write_v1(
    state: web::Data<IngestState>,
    query: web::Query<WriteV1Query>,
    req: HttpRequest,
    raw: web::Bytes,
) -> HttpResponse {
    let params = WriteParams {
        endpoint: "/write",
        database: ("database", query.db.as_deref()),
        precision: query.precision.as_deref(),
        user: query.u.as_deref(),
        password: query.p.as_deref(),
    };
    write(&state, params, &req, raw).await
}

/// Writes line protocol as InfluxDB 2.x does: `Authorization: Token <client_id>:<secret>`
/// for a gateway, or `Token`/`Bearer` with an access token.
#[utoipa::path(post, path = "/api/v2/write", tag = "influxdb-compatible",
    security(("bearer" = []), ("gateway_token" = [])),
    params(WriteV2Query),
    request_body(content = String, content_type = "text/plain",
        example = "sensor_readings,machine_id=0b6f1c3e-8a51-4c7e-9a01-000000000001 temperature=72.5 1763807400000000000"),
    responses(
        (status = 204, description = "Every line stored"),
        (status = 400, description = "Bad lines (the good ones are stored; the answer names the bad ones), no bucket, or a bad precision"),
        (status = 401, description = "No valid token or gateway credentials"),
        (status = 403, description = "Not write:sensor_data"),
        (status = 404, description = "Another bucket than the telemetry database"),
        (status = 413, description = "Body too large"),
        (status = 429, description = "Rate limit; see Retry-After"),
        (status = 503, description = "InfluxDB unavailable: nothing stored, retry after Retry-After")))]
pub async fn write_v2(
    state: web::Data<IngestState>,
    query: web::Query<WriteV2Query>,
    req: HttpRequest,
    raw: web::Bytes,
) -> HttpResponse {
    let params = WriteParams {
        endpoint: "/api/v2/write",
        database: ("bucket", query.bucket.as_deref()),
        precision: query.precision.as_deref(),
        user: None,
        password: None,
    };
    write(&state, params, &req, raw).await
}

/// InfluxDB's liveness probe, which tools call before they write.
#[utoipa::path(get, path = "/ping", tag = "influxdb-compatible",
    responses((status = 204, description = "Up; `X-Influxdb-Version` says what answers")))]
pub async fn ping() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header(("X-Influxdb-Version", VERSION))
        .insert_header(("X-Influxdb-Build", "plantline"))
        .finish()
}

/// [`ping`] without a body, as some clients probe.
#[utoipa::path(head, path = "/ping", tag = "influxdb-compatible",
    responses((status = 204, description = "Up; `X-Influxdb-Version` says what answers")))]
pub async fn ping_head() -> HttpResponse {
    ping().await
}
