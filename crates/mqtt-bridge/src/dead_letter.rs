//! Dead letters: a message the bridge cannot store goes to
//! `plantline/deadletter/{reason}` with the reason, the original topic and the payload, so an
//! operator can see and replay it; the bridge itself moves on.
//!
//! The pipeline writes each dead letter to a journal on disk (a spool of its own, under
//! `{spool_dir}/deadletters`) before it commits the batch, and never waits on the broker: a
//! courier task publishes the journal at QoS 1 and frees each dead letter only once the broker
//! has acknowledged it. A crash or a long broker outage therefore loses none. Delivery is at
//! least once: a crash before a commit (of the spool or of the journal) or a round sent again
//! after a partial failure repeats dead letters. With the disk full, the journal cannot take
//! them: they are held in memory until it can (see `DeadLetterOutbox::put`).

use crate::broker::off_runtime;
use crate::spool::{Next, Position, Record, Spool, SpoolReader};
use base64::Engine;
use domain::reading::Violation;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
    /// On a Sparkplug B topic, but not a Sparkplug B payload (protobuf) or topic.
    NotSparkplug,
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
            Self::NotSparkplug => "not_sparkplug",
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

/// The pipeline's side of the journal.
#[derive(Clone)]
pub struct DeadLetterOutbox {
    journal: Spool,
    /// The bridge's name, shown in each dead letter.
    instance: String,
    topic_prefix: String,
    /// Dead letters the journal could not take (a full disk): kept here and written first
    /// the next time, so that the batch can still be committed and free the disk.
    held: Arc<std::sync::Mutex<Vec<Journaled>>>,
}

/// A dead letter as the journal keeps it: topic, document, when its message arrived.
type Journaled = (String, Vec<u8>, i64);

/// Dead letters held in memory while the journal cannot be written; beyond, the oldest are
/// dropped (logged): they are reports about messages, and the readings are never among them.
const HELD_AT_MOST: usize = 10_000;

impl DeadLetterOutbox {
    /// Writes into `journal`, signing with `instance`.
    pub fn new(journal: Spool, instance: String, topic_prefix: String) -> Self {
        Self {
            journal,
            instance,
            topic_prefix,
            held: Arc::default(),
        }
    }

    /// Writes `letters` (after any held ones) to the journal without waiting. What the
    /// journal refuses (a full disk) is held in memory for the next call: the pipeline must
    /// still commit, because only its commit frees the disk the journal shares with the
    /// spool. Returns how many are held.
    pub fn put(&self, letters: &[(DeadLetter, Record)]) -> usize {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        held.extend(letters.iter().map(|(letter, record)| {
            (
                letter.topic(&self.topic_prefix),
                letter
                    .document(record, &self.instance)
                    .to_string()
                    .into_bytes(),
                record.received_ms,
            )
        }));
        let mut written = 0;
        for (topic, body, received_ms) in held.iter() {
            if let Err(err) = self.journal.try_append(topic, body, *received_ms) {
                tracing::error!(error = %err, held = held.len() - written, "dead-letter journal not writable: dead letters held in memory until it is");
                break;
            }
            written += 1;
        }
        held.drain(..written);
        if held.len() > HELD_AT_MOST {
            let dropped = held.len() - HELD_AT_MOST;
            held.drain(..dropped);
            tracing::error!(
                dropped,
                "too many dead letters held in memory: the oldest are dropped"
            );
        }
        held.len()
    }
}

/// Dead letters published per round; the broker acknowledges them together.
const COURIER_ROUND: usize = 100;
/// How long the broker has to acknowledge a round before it is sent again.
const ACK_DEADLINE: Duration = Duration::from_secs(30);

/// Publishes the journal in order until `shutdown`, each round freed only once the broker
/// acknowledged all of it; while the broker is away the journal waits.
pub async fn courier(
    mut reader: SpoolReader,
    journal: Spool,
    client: paho_mqtt::AsyncClient,
    connected: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        let (round, end) = next_round(&mut reader);
        let Some(end) = end else {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = reader.wait(Duration::from_secs(1)) => {}
            }
            continue;
        };
        loop {
            if connected.load(Ordering::Relaxed) {
                // Raced against the stop: publishing waits on paho's lock while the spool is
                // full, and the stop is what lets the lock go.
                let outcome = tokio::select! {
                    () = shutdown.cancelled() => return,
                    outcome = publish_round(&client, &round) => outcome,
                };
                match outcome {
                    Ok(()) => break,
                    Err(err) => {
                        tracing::warn!(error = %err, dead_letters = round.len(), "dead letters not acknowledged by the broker; sending them again");
                    }
                }
            }
            failures = (failures + 1).min(6);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(100 << failures)) => {}
            }
        }
        failures = 0;
        while let Err(err) = journal.commit(end, round.len() as u64) {
            // Not freeing them only means publishing them again after a restart.
            tracing::error!(error = %err, "dead-letter journal checkpoint not written; retrying");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// Up to [`COURIER_ROUND`] journaled dead letters and where they end.
fn next_round(reader: &mut SpoolReader) -> (Vec<Record>, Option<Position>) {
    let mut round = Vec::new();
    let mut end = None;
    while round.len() < COURIER_ROUND {
        match reader.next_record() {
            Ok(Next::Record(record, at)) => {
                round.push(record);
                end = Some(at);
            }
            Ok(Next::CaughtUp) => break,
            Err(err) => {
                tracing::error!(error = %err, "dead-letter journal unreadable; retrying");
                break;
            }
        }
    }
    (round, end)
}

/// Publishes a round at QoS 1 and waits for every acknowledgement.
async fn publish_round(
    client: &paho_mqtt::AsyncClient,
    round: &[Record],
) -> Result<(), paho_mqtt::Error> {
    let messages: Vec<paho_mqtt::Message> = round
        .iter()
        .map(|record| paho_mqtt::Message::new(record.topic.as_str(), record.payload.as_slice(), 1))
        .collect();
    let tokens = off_runtime(client, move |client| {
        messages
            .into_iter()
            .map(|message| client.publish(message))
            .collect::<Vec<_>>()
    })
    .await
    .ok_or(paho_mqtt::Error::General("publishing thread failed"))?;
    tokio::time::timeout(ACK_DEADLINE, futures_util::future::try_join_all(tokens))
        .await
        .map_err(|_| paho_mqtt::Error::Timeout)??;
    Ok(())
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
