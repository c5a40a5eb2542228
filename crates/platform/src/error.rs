//! The one error body every Plantline endpoint answers with, and the one mapping to HTTP.
//!
//! `{"status":"error","code":"validation_failed","message":"...","errors":[{"field":..,"error":..,"value":..}]}`

use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::Serialize;
use std::fmt;

/// One problem with one part of a request.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct FieldError {
    /// Path into the JSON body, e.g. `batch[1].readings[0].timestamp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Query or path parameter name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// What is wrong, in words.
    pub error: String,
    /// The offending value, when it is safe to echo.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub value: Option<serde_json::Value>,
}

impl FieldError {
    /// A problem with a body field.
    pub fn field(path: impl Into<String>, error: impl Into<String>) -> Self {
        Self {
            field: Some(path.into()),
            parameter: None,
            error: error.into(),
            value: None,
        }
    }

    /// A problem with a query or path parameter.
    pub fn parameter(name: impl Into<String>, error: impl Into<String>) -> Self {
        Self {
            field: None,
            parameter: Some(name.into()),
            error: error.into(),
            value: None,
        }
    }

    /// Attaches the offending value; long text is cut (an echo is a hint, not a copy).
    pub fn with_value(mut self, value: impl Into<serde_json::Value>) -> Self {
        let value = value.into();
        self.value = Some(match value {
            serde_json::Value::String(text) if text.chars().count() > MAX_ECHO_CHARS => {
                let mut cut: String = text.chars().take(MAX_ECHO_CHARS).collect();
                cut.push('…');
                serde_json::Value::String(cut)
            }
            other => other,
        });
        self
    }
}

/// Most field errors one answer lists; the rest are counted in a last entry.
pub const MAX_FIELD_ERRORS: usize = 100;
/// Longest echoed value.
const MAX_ECHO_CHARS: usize = 256;

/// At most [`MAX_FIELD_ERRORS`] errors, then one saying how many more there were: a request
/// with two million bad fields gets a short answer.
pub fn capped(errors: Vec<FieldError>) -> Vec<FieldError> {
    // Already capped: the count entry is the only one naming neither field nor parameter.
    let marked = errors
        .last()
        .is_some_and(|e| e.field.is_none() && e.parameter.is_none());
    if marked && errors.len() <= MAX_FIELD_ERRORS + 1 {
        return errors;
    }
    let total = errors.len();
    capped_of(errors, total)
}

/// Like [`capped`], for a caller that converted only the first errors of `total`.
pub fn capped_of(mut errors: Vec<FieldError>, total: usize) -> Vec<FieldError> {
    if total > MAX_FIELD_ERRORS {
        let more = total - MAX_FIELD_ERRORS;
        errors.truncate(MAX_FIELD_ERRORS);
        errors.push(FieldError {
            field: None,
            parameter: None,
            error: format!("…and {more} more"),
            value: None,
        });
    }
    errors
}

/// Every error code an answer can carry: stable, machine-readable, one HTTP status each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A field or parameter breaks its rule (see `errors`).
    ValidationFailed,
    /// The body is not the document expected.
    MalformedBody,
    /// Any other refused request.
    BadRequest,
    /// The query string does not parse.
    InvalidQuery,
    /// A path parameter does not parse.
    InvalidPath,
    /// No usable credentials.
    Unauthorized,
    /// Valid credentials without the permission.
    Forbidden,
    /// No such resource.
    NotFound,
    /// The resource has no such method.
    MethodNotAllowed,
    /// The change collides with existing data (a duplicate name).
    Conflict,
    /// The change would leave no active manager.
    LastManager,
    /// Changed since the version sent in If-Match.
    PreconditionFailed,
    /// The body or batch is over its limit.
    PayloadTooLarge,
    /// A Content-Type or Content-Encoding the endpoint does not take.
    UnsupportedMediaType,
    /// Valid readings that the time-series store refused for their own sake (a field type
    /// it holds differently, a time outside its retention): retrying cannot help.
    StoreRefused,
    /// If-Match is required.
    PreconditionRequired,
    /// Over the caller's request rate.
    RateLimited,
    /// Too many failed logins.
    TooManyAttempts,
    /// Too many open live streams for this user.
    TooManyStreams,
    /// A dependency cannot serve now; retry after Retry-After.
    Unavailable,
    /// Our fault; the request id finds it in the logs.
    InternalError,
}

impl ErrorCode {
    /// The code as answers spell it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ValidationFailed => "validation_failed",
            Self::MalformedBody => "malformed_body",
            Self::BadRequest => "bad_request",
            Self::InvalidQuery => "invalid_query",
            Self::InvalidPath => "invalid_path",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict => "conflict",
            Self::LastManager => "last_manager",
            Self::PreconditionFailed => "precondition_failed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::StoreRefused => "store_refused",
            Self::PreconditionRequired => "precondition_required",
            Self::RateLimited => "rate_limited",
            Self::TooManyAttempts => "too_many_attempts",
            Self::TooManyStreams => "too_many_streams",
            Self::Unavailable => "unavailable",
            Self::InternalError => "internal_error",
        }
    }

    /// The HTTP status that goes with it.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::ValidationFailed => StatusCode::BAD_REQUEST,
            Self::MalformedBody => StatusCode::BAD_REQUEST,
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::InvalidQuery => StatusCode::BAD_REQUEST,
            Self::InvalidPath => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict => StatusCode::CONFLICT,
            Self::LastManager => StatusCode::CONFLICT,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::StoreRefused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            Self::TooManyStreams => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error answered to a client. Build it with the constructors; each has a stable `code`.
#[derive(Debug, Clone)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    errors: Vec<FieldError>,
    retry_after_secs: Option<u64>,
    details: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    status: &'static str,
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
    #[serde(flatten)]
    details: &'a serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    /// An error of `code` (which fixes the status) with a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            errors: Vec::new(),
            retry_after_secs: None,
            details: serde_json::Map::new(),
        }
    }

    /// Adds a top-level member naming what the error is about (the seed's 404 echoes the
    /// `machine_id` it was asked for).
    pub fn with_detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// 400 with the list of problems.
    pub fn validation(message: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Self::new(ErrorCode::ValidationFailed, message).with_errors(errors)
    }

    /// 400 for a body that is not the JSON we expect.
    pub fn malformed_body(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::MalformedBody, message)
    }

    /// 401: no usable credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// 403: valid credentials, missing permission.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// 404 for a named resource.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// 503: a dependency cannot serve us now; the client may retry after the given seconds.
    pub fn unavailable(message: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut err = Self::new(ErrorCode::Unavailable, message);
        err.retry_after_secs = Some(retry_after_secs);
        err
    }

    /// 500: our fault. The message must not leak internals; log the cause before calling this.
    pub fn internal() -> Self {
        Self::new(
            ErrorCode::InternalError,
            "internal error; the request id identifies it in our logs",
        )
    }

    /// Adds per-field problems (at most [`MAX_FIELD_ERRORS`] are listed).
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = capped(errors);
        self
    }

    /// Sets `Retry-After`.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code.as_str()
    }

    /// The per-field problems.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// The sentence for a human.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// `Retry-After`, when the caller should come back.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after_secs
    }

    pub(crate) fn body_json(&self) -> String {
        serde_json::to_string(&ErrorBody {
            status: "error",
            code: self.code.as_str(),
            message: &self.message,
            errors: &self.errors,
            details: &self.details,
        })
        .unwrap_or_else(|_| {
            r#"{"status":"error","code":"internal_error","message":"error body"}"#.to_owned()
        })
    }

    /// The generic error for a bare status (404 for an unknown route, 405, ...).
    pub(crate) fn for_status(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::NOT_FOUND => (ErrorCode::NotFound, "no such resource"),
            StatusCode::METHOD_NOT_ALLOWED => (
                ErrorCode::MethodNotAllowed,
                "this method is not allowed on this resource",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => {
                (ErrorCode::PayloadTooLarge, "request body is too large")
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                ErrorCode::UnsupportedMediaType,
                "unsupported Content-Type or Content-Encoding",
            ),
            s if s.is_server_error() => (ErrorCode::InternalError, "internal error"),
            _ => (ErrorCode::BadRequest, "bad request"),
        };
        Self::new(code, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status().as_u16(),
            self.code.as_str(),
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status());
        response.content_type("application/json");
        if let Some(secs) = self.retry_after_secs {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if self.status() == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.body(self.body_json())
    }
}

impl From<crate::postgres::DbError> for ApiError {
    fn from(err: crate::postgres::DbError) -> Self {
        use crate::postgres::DbError;
        match err {
            DbError::Pool(reason) => {
                tracing::error!(error = %reason, "Postgres unavailable");
                Self::unavailable("the database is unavailable, retry shortly", 5)
            }
            DbError::Query(diesel::result::Error::NotFound) => Self::not_found("no such resource"),
            DbError::Query(diesel::result::Error::DatabaseError(kind, info))
                if is_data_error(&kind, info.message()) =>
            {
                // The boundary should have refused this value; PostgreSQL did. Still the
                // client's data, so a 400, and a bug for us to find.
                tracing::error!(
                    message = info.message(),
                    "bug: a client value reached PostgreSQL unchecked"
                );
                Self::validation(
                    "a value in the request cannot be stored",
                    vec![FieldError::field("body", info.message().to_owned())],
                )
            }
            other => {
                tracing::error!(error = %other, "database operation failed");
                Self::internal()
            }
        }
    }
}

/// PostgreSQL's data exceptions (class 22: bad encoding, NUL, too long, out of range) and
/// integrity checks that only client data can fail. diesel gives us the message, not the
/// SQLSTATE, for the data class.
fn is_data_error(kind: &diesel::result::DatabaseErrorKind, message: &str) -> bool {
    use diesel::result::DatabaseErrorKind as K;
    matches!(kind, K::CheckViolation | K::NotNullViolation)
        || [
            "invalid byte sequence",
            "value too long",
            "out of range",
            "invalid input syntax",
            "character with byte sequence",
            "unsupported Unicode escape",
        ]
        .iter()
        .any(|needle| message.contains(needle))
}

impl From<diesel::result::Error> for ApiError {
    fn from(err: diesel::result::Error) -> Self {
        crate::postgres::DbError::Query(err).into()
    }
}

impl From<crate::redis::RedisError> for ApiError {
    fn from(err: crate::redis::RedisError) -> Self {
        tracing::error!(error = %err, "Redis unavailable");
        Self::unavailable("a required cache is unavailable, retry shortly", 5)
    }
}

/// Maps a unique-constraint violation to 409 with `message`; anything else as usual.
pub fn conflict_on_duplicate(err: diesel::result::Error, message: &str) -> ApiError {
    use diesel::result::{DatabaseErrorKind, Error};
    match err {
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            ApiError::new(ErrorCode::Conflict, message.to_owned())
        }
        other => other.into(),
    }
}

/// 400 listing every problem, or nothing.
pub fn reject_if_any(message: &str, errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(message.to_owned(), errors))
    }
}

/// JSON body extractor settings: size limit and errors as [`ApiError`] naming the problem.
pub fn json_config(limit_bytes: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit_bytes)
        .error_handler(|err, _req: &HttpRequest| {
            use actix_web::error::JsonPayloadError as E;
            let api = match &err {
                E::OverflowKnownLength { .. } | E::Overflow { .. } => {
                    ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE)
                }
                E::ContentType => ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    "Content-Type must be application/json",
                ),
                E::Deserialize(e) => ApiError::malformed_body(format!("invalid JSON body: {e}")),
                other => ApiError::malformed_body(format!("unreadable body: {other}")),
            };
            api.into()
        })
}

/// Query-string extractor settings: errors as [`ApiError`].
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        ApiError::new(
            ErrorCode::InvalidQuery,
            format!("invalid query string: {err}"),
        )
        .into()
    })
}

/// Path extractor settings: errors as [`ApiError`].
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _req| {
        ApiError::new(
            ErrorCode::InvalidPath,
            format!("invalid path parameter: {err}"),
        )
        .into()
    })
}

/// Turns any error response that is not JSON yet (actix's 404, 405, ...) into our error body,
/// so clients never have to parse text/plain or empty error bodies.
pub fn json_error_responses<B>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let already_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if already_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let api = ApiError::for_status(res.status());
    let (req, response) = res.into_parts();
    let mut response = response.set_body(api.body_json());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let res = ServiceResponse::new(req, response)
        .map_into_boxed_body()
        .map_into_right_body();
    Ok(ErrorHandlerResponse::Response(res))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    #[test]
    fn body_has_the_contract_shape_and_headers() {
        let err = ApiError::validation(
            "invalid query",
            vec![FieldError::parameter("start_time", "required")],
        );
        let response = err.error_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = response.into_body().try_into_bytes().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["status"], "error");
        assert_eq!(json["code"], "validation_failed");
        assert_eq!(json["errors"][0]["parameter"], "start_time");
        assert!(json["errors"][0].get("field").is_none());
    }

    #[test]
    fn error_lists_stop_at_a_hundred_and_say_how_many_more() {
        let many: Vec<FieldError> = (0..2_000_000)
            .map(|i| FieldError::field(format!("f{i}"), "bad"))
            .collect();
        let listed = capped(many);
        assert_eq!(listed.len(), MAX_FIELD_ERRORS + 1);
        assert_eq!(listed[MAX_FIELD_ERRORS].error, "…and 1999900 more");
        assert_eq!(
            capped(listed.clone()),
            listed,
            "capping twice changes nothing"
        );
        let echo = FieldError::field("f", "bad").with_value("x".repeat(10_000));
        assert_eq!(echo.value.unwrap().as_str().unwrap().chars().count(), 257);
    }

    #[test]
    fn unavailable_sets_retry_after_and_unauthorized_sets_challenge() {
        let response = ApiError::unavailable("influx down", 5).error_response();
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "5");
        let response = ApiError::unauthorized("no token").error_response();
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer"
        );
    }
}
