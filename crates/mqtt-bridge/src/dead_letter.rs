//! Dead letters: a message the bridge cannot store goes to
//! `plantline/deadletter/{reason}` with the reason, the original topic and the payload, so an
//! operator can see and replay it; the bridge itself moves on.

use crate::spool::Record;
use base64::Engine;
use domain::reading::Violation;
use serde_json::{Value, json};

/// Why a message was not (fully) stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not `factory/{factory_id}/machine/{machine_id}/telemetry`.
    BadTopic,
    /// Larger than `mqtt.max_payload_bytes`, or more readings than a message may carry.
    TooLarge,
    NotJson,
    /// JSON, but not one reading or `{"readings": [...]}`.
    BadShape,
    /// One or more readings failed validation (the valid ones of the message were stored).
    InvalidReading,
    /// The machine is not in the registry.
    UnknownMachine,
    /// The machine is switched off in the registry.
    InactiveMachine,
    /// The registry puts the machine in another factory than the topic does.
    FactoryMismatch,
    /// InfluxDB refused the readings for good (not a transient failure).
    StoreRejected,
}

impl Reason {
    /// The label in metrics and the last topic level.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::BadTopic => "bad_topic",
            Self::TooLarge => "too_large",
            Self::NotJson => "not_json",
            Self::BadShape => "bad_shape",
            Self::InvalidReading => "invalid_reading",
            Self::UnknownMachine => "unknown_machine",
            Self::InactiveMachine => "inactive_machine",
            Self::FactoryMismatch => "factory_mismatch",
            Self::StoreRejected => "store_rejected",
        }
    }

    /// From the write path's refusal of a machine.
    pub fn of_refusal(refusal: &telemetry_writer::Refusal) -> Self {
        match refusal {
            telemetry_writer::Refusal::UnknownMachine => Self::UnknownMachine,
            telemetry_writer::Refusal::InactiveMachine => Self::InactiveMachine,
            telemetry_writer::Refusal::FactoryMismatch { .. } => Self::FactoryMismatch,
        }
    }

    /// From [`domain::ingest::PayloadError::reason`].
    pub fn of_payload_error(error: &domain::ingest::PayloadError) -> Self {
        match error {
            domain::ingest::PayloadError::NotJson(_) => Self::NotJson,
            domain::ingest::PayloadError::Shape(_) => Self::BadShape,
            domain::ingest::PayloadError::TooLarge(_) => Self::TooLarge,
        }
    }
}

/// A message on its way to the dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub reason: Reason,
    /// One sentence for a human.
    pub detail: String,
    /// Field-level problems, with paths such as `readings[2].temperature`.
    pub errors: Vec<Violation>,
}

impl DeadLetter {
    /// A dead letter without field-level problems.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// Adds field-level problems.
    pub fn with_errors(mut self, errors: Vec<Violation>) -> Self {
        self.errors = errors;
        self
    }

    /// `{prefix}plantline/deadletter/{reason}`.
    pub fn topic(&self, prefix: &str) -> String {
        format!("{prefix}plantline/deadletter/{}", self.reason.as_str())
    }

    /// The JSON document published: reason, detail, errors, the original topic and payload
    /// (as text when it is UTF-8, else base64), when it arrived and which bridge saw it.
    pub fn document(&self, record: &Record, bridge: &str) -> Value {
        let errors: Vec<Value> = self
            .errors
            .iter()
            .map(|v| {
                let mut error = json!({"field": v.path, "message": v.message});
                if let Some(value) = &v.value {
                    error["value"] = value.clone();
                }
                error
            })
            .collect();
        let mut doc = json!({
            "reason": self.reason.as_str(),
            "detail": self.detail,
            "errors": errors,
            "topic": record.topic,
            "received_at": chrono::DateTime::from_timestamp_millis(record.received_ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            "bridge": bridge,
        });
        match std::str::from_utf8(&record.payload) {
            Ok(text) => doc["payload"] = text.into(),
            Err(_) => {
                doc["payload_base64"] = base64::engine::general_purpose::STANDARD
                    .encode(&record.payload)
                    .into();
            }
        }
        if let Some(size) = record.truncated_from {
            doc["payload_truncated_from_bytes"] = size.into();
        }
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: &[u8]) -> Record {
        Record {
            topic: "factory/A/machine/x/telemetry".into(),
            payload: payload.to_vec(),
            received_ms: 1_700_000_000_000,
            truncated_from: None,
            traceparent: None,
        }
    }

    #[test]
    fn text_payloads_are_kept_as_text_and_binary_ones_as_base64() {
        let letter =
            DeadLetter::new(Reason::NotJson, "not JSON").with_errors(vec![Violation::new(
                "payload",
                "not JSON: expected value",
                None,
            )]);
        let doc = letter.document(&record(b"hello"), "b1");
        assert_eq!(doc["reason"], "not_json");
        assert_eq!(doc["payload"], "hello");
        assert_eq!(doc["topic"], "factory/A/machine/x/telemetry");
        assert_eq!(doc["errors"][0]["field"], "payload");
        assert_eq!(doc["received_at"], "2023-11-14T22:13:20.000Z");
        let doc = letter.document(&record(&[0xff, 0x00, 0xfe]), "b1");
        assert_eq!(doc["payload_base64"], "/wD+");
        assert!(doc.get("payload").is_none());
        assert_eq!(letter.topic("p/"), "p/plantline/deadletter/not_json");
    }
}
