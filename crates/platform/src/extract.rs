//! The request boundary: JSON bodies and query strings are held to the text rule
//! ([`domain::text`]) before any handler sees them, and every refusal names the field.
//!
//! `Json<T>` replaces actix's extractor for that reason: actix's error for a bad body says
//! "line 1 column 40", ours says `batch[0].name`.

use crate::error::ErrorCode;
use crate::error::{ApiError, FieldError};
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use domain::text::{TextError, first_control};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Largest JSON body the services' own endpoints accept (ingest reads its body itself).
pub const MAX_JSON_BODY: usize = 256 * 1024;

/// A JSON request body, deserialised with every string checked and errors naming the field.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// The body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        })
        .unwrap_or(false)
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = is_json(req);
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !json {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    "Content-Type must be application/json",
                ));
            }
            let bytes = body.await.map_err(|err| {
                if err.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE)
                } else {
                    ApiError::malformed_body(format!("unreadable body: {err}"))
                }
            })?;
            parse_body(&bytes).map(Json)
        })
    }
}

/// Deserialises a JSON body: parsed once as a document (strict: trailing bytes, lone
/// surrogates and numbers out of range are refused wherever they are, ignored fields
/// included), held to the text rule, then read into the type with the failing path named.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.len() > MAX_JSON_BODY {
        return Err(ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE));
    }
    let document: Value = serde_json::from_slice(bytes)
        .map_err(|err| ApiError::malformed_body(format!("invalid JSON body: {err}")))?;
    if let Some((path, c)) = control_in(&document, String::new()) {
        return Err(control_refusal(path, c));
    }
    serde_path_to_error::deserialize(document).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = format!("invalid JSON body: {inner}");
        if path == "." {
            ApiError::malformed_body(message)
        } else {
            ApiError::validation(message, vec![FieldError::field(path, inner.to_string())])
        }
    })
}

fn control_refusal(path: String, c: char) -> ApiError {
    ApiError::validation(
        "invalid request body",
        vec![FieldError::field(
            path,
            TextError::Control(u32::from(c)).to_string(),
        )],
    )
}

/// The text rule over a whole JSON document: 400 naming the first key or string that holds a
/// control character. Free for bodies without a backslash, DEL or C1 byte (nearly all).
pub fn check_json_text(bytes: &[u8]) -> Result<(), ApiError> {
    if may_hold_control(bytes)
        && let Ok(value) = serde_json::from_slice::<Value>(bytes)
        && let Some((path, c)) = control_in(&value, String::new())
    {
        return Err(ApiError::validation(
            "invalid request body",
            vec![FieldError::field(
                path,
                TextError::Control(u32::from(c)).to_string(),
            )],
        ));
    }
    Ok(())
}

/// Whether JSON text could contain a control character inside a string: only as an escape
/// (`\u0000`, `\n`, …), a raw DEL, or a raw C1 character (UTF-8 `C2 80`–`C2 9F`).
fn may_hold_control(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, b)| {
        *b == b'\\'
            || *b == 0x7f
            || (*b == 0xc2 && bytes.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)))
    })
}

/// The path of the first key or string value holding a control character.
fn control_in(value: &Value, path: String) -> Option<(String, char)> {
    match value {
        Value::String(text) => first_control(text).map(|c| (path_or_body(path), c)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| control_in(item, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            let here = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            match first_control(key) {
                Some(c) => Some((here, c)),
                None => control_in(item, here),
            }
        }),
        _ => None,
    }
}

fn path_or_body(path: String) -> String {
    if path.is_empty() {
        "body".to_owned()
    } else {
        path
    }
}

/// The text rule for a query string, checked for every request before routing: each name and
/// value, percent-decoded, must be UTF-8 without control characters. `Err` names the first
/// offending parameter.
pub fn check_query(query: &str) -> Result<(), ApiError> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |part: &str| -> Result<String, TextError> {
            let plus_as_space = part.replace('+', " ");
            let bytes: Vec<u8> = percent_encoding::percent_decode_str(&plus_as_space).collect();
            let text = String::from_utf8(bytes).map_err(|_| TextError::NotUtf8)?;
            match first_control(&text) {
                Some(c) => Err(TextError::Control(u32::from(c))),
                None => Ok(text),
            }
        };
        let name_text = decode(name).map_err(|err| refuse_parameter(name, err))?;
        decode(value).map_err(|err| refuse_parameter(&name_text, err))?;
    }
    Ok(())
}

fn refuse_parameter(name: &str, err: TextError) -> ApiError {
    // The name itself may be the bad part: show it escaped, never raw.
    let shown: String = name.chars().flat_map(char::escape_default).collect();
    ApiError::validation(
        "invalid query string",
        vec![FieldError::parameter(shown, err.to_string())],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Machine {
        name: String,
        tags: Vec<String>,
        limit: Option<u32>,
    }

    fn errors_of(err: ApiError) -> serde_json::Value {
        serde_json::from_str::<Value>(&err.body_json()).unwrap()["errors"].clone()
    }

    #[test]
    fn a_control_character_anywhere_in_a_body_names_its_field() {
        for (body, path) in [
            (r#"{"name":"a\u0000b","tags":[]}"#, "name"),
            (r#"{"name":"ok","tags":["x","y\n"]}"#, "tags[1]"),
            ("{\"name\":\"del\u{7f}\",\"tags\":[]}", "name"),
            ("{\"name\":\"c1\u{85}\",\"tags\":[]}", "name"),
            (r#"{"name":"ok","tags":[],"b\u0007d":1}"#, "b\u{7}d"),
        ] {
            let err = parse_body::<Machine>(body.as_bytes()).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(errors_of(err)[0]["field"], path, "{body}");
        }
        let ok: Machine = parse_body(br#"{"name":"Mill \"7\" \u00e9","tags":["a/b"]}"#).unwrap();
        assert_eq!(ok.name, "Mill \"7\" é");
    }

    #[test]
    fn text_after_the_document_cannot_smuggle_a_control_character_past_the_rule() {
        for body in [
            "{\"name\":\"a\\u0000\",\"tags\":[]} x",
            "{\"name\":\"ok\",\"tags\":[],\"ignored\":\"\\ud800\"}",
            "{\"name\":\"ok\",\"tags\":[],\"ignored\":1e999}",
        ] {
            let err = parse_body::<Machine>(body.as_bytes()).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{body}");
        }
    }

    #[test]
    fn type_errors_name_the_field_and_syntax_errors_the_body() {
        let err = parse_body::<Machine>(br#"{"name":"m","tags":[],"limit":"x"}"#).unwrap_err();
        assert_eq!(errors_of(err)[0]["field"], "limit");
        let err = parse_body::<Machine>(br#"{"name":"m","#).unwrap_err();
        assert_eq!(err.code(), "malformed_body");
    }

    #[test]
    fn query_strings_are_decoded_then_held_to_the_rule() {
        assert!(check_query("location=Hall%201&limit=5&a+b=c%2Bd&flag").is_ok());
        for (query, parameter) in [
            ("location=a%00", "location"),
            ("location=a%0A", "location"),
            ("x=%FF%FE", "x"),
            ("na%07me=1", "na%07me"),
        ] {
            let err = check_query(query).unwrap_err();
            assert_eq!(errors_of(err)[0]["parameter"], parameter, "{query}");
        }
    }
}
