//! Request bodies: content negotiation, gzip with a bound on the decompressed size.

use actix_web::HttpRequest;
use actix_web::http::header;
use domain::line_protocol::Precision;
use platform::ApiError;
use platform::error::ErrorCode;
use platform::error::FieldError;
use std::io::Read;

/// What the body is.
pub enum Format {
    /// The seed's JSON batch.
    Json,
    /// InfluxDB line protocol, with its timestamp precision.
    LineProtocol(Precision),
}

fn unsupported(message: &str) -> ApiError {
    ApiError::new(ErrorCode::UnsupportedMediaType, message.to_owned())
}

/// Picks the format from `Content-Type` (and `?precision=` for line protocol).
pub fn format(req: &HttpRequest) -> Result<Format, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match content_type.as_str() {
        "application/json" => Ok(Format::Json),
        "text/plain" => {
            let precision = match query_value(req.query_string(), "precision") {
                None => Precision::Nanoseconds,
                Some(value) => Precision::parse(&value).ok_or_else(|| {
                    ApiError::validation(
                        "invalid query parameters",
                        vec![
                            FieldError::parameter("precision", "must be ns, us, ms or s")
                                .with_value(value),
                        ],
                    )
                })?,
            };
            Ok(Format::LineProtocol(precision))
        }
        _ => Err(unsupported(
            "Content-Type must be application/json (batch) or text/plain (InfluxDB line protocol)",
        )),
    }
}

fn query_value(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// The body, gunzipped when `Content-Encoding: gzip`; refuses more than `max_bytes` either way
/// (a small gzip body can expand enormously).
pub fn decode(
    req: &HttpRequest,
    raw: bytes::Bytes,
    max_bytes: usize,
) -> Result<bytes::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body exceeds {max_bytes} bytes (setting ingest_max_body_bytes)"),
        )
    };
    let encoding = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("identity") => {
            if raw.len() > max_bytes {
                Err(too_large())
            } else {
                Ok(raw)
            }
        }
        Some("gzip") => {
            let mut decoded = Vec::with_capacity((raw.len() * 4).min(max_bytes + 1));
            flate2::read::GzDecoder::new(&raw[..])
                .take(max_bytes as u64 + 1)
                .read_to_end(&mut decoded)
                .map_err(|e| ApiError::malformed_body(format!("invalid gzip body: {e}")))?;
            if decoded.len() > max_bytes {
                return Err(too_large());
            }
            Ok(decoded.into())
        }
        Some(other) => Err(unsupported(&format!(
            "Content-Encoding {other} is not supported; send gzip or no encoding"
        ))),
    }
}
