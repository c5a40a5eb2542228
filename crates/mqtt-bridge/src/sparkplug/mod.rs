//! Sparkplug B: machines that speak the industrial MQTT standard report without a translator.
//! The bridge is a Sparkplug host application: it subscribes to `spBv1.0/{group}/#`, spools
//! every message before its PUBACK like the JSON topic's, and the pipeline decodes them in
//! spool order through [`host::Host`] (births, aliases, sequence numbers, deaths).
//!
//! Mapping: the group is the factory; a device is a machine, named by its machine id or by its
//! registered name in that factory; an edge node's own metrics count only when a machine is
//! registered under the edge node's id. Metrics map to fields by their last path segment, any
//! case; other metrics are counted and ignored.

pub mod births;
pub mod commands;
pub mod host;
pub mod state;
pub mod topic;

use crate::dead_letter::{DeadLetter, Reason};
use crate::spool::Record;
use domain::FactoryId;
use domain::reading::{Reading, ReadingRules, Timestamp};
use domain::sparkplug::Payload;
use host::{Host, NodeKey, Outcome, Sample, Subject};
use prost::Message;
use std::collections::BTreeMap;

/// What a Sparkplug message comes to, for the pipeline.
pub enum Decoded {
    /// Readings of a device (or of the edge node itself), validated; refused readings are
    /// the dead letter.
    Readings {
        factory: FactoryId,
        subject: Subject,
        readings: Vec<Reading>,
        problems: Option<DeadLetter>,
    },
    /// Nothing to store (a death, a command, STATE, a birth without values, a message that
    /// could not be named): handled.
    Nothing,
    /// Not a Sparkplug message at all.
    Dead(DeadLetter),
}

/// The pipeline's Sparkplug side: the host state, the births it must keep, rebirth requests.
pub struct SparkplugInput {
    host: Host,
    prefix: String,
    rebirths: commands::Rebirths,
    births: births::Births,
    metrics: crate::metrics::BridgeMetrics,
    /// Presence changes decoded since the pipeline last took them: who, online, when (ms).
    presence: Vec<(Subject, bool, i64)>,
}

impl SparkplugInput {
    /// Rebuilt from the births kept at the last commit (a replay starts there).
    pub fn new(
        prefix: String,
        rebirths: commands::Rebirths,
        births: births::Births,
        metrics: crate::metrics::BridgeMetrics,
    ) -> Self {
        let mut host = Host::default();
        for record in births.load() {
            if let Ok(topic::Parsed::Message(topic)) = topic::parse(&record.topic, &prefix)
                && let Ok(payload) = Payload::decode(record.payload.as_slice())
            {
                host.handle(&topic, &payload, record.received_ms);
                // The sequence goes on from wherever the node is now.
                host.forget_sequence(&NodeKey {
                    group: topic.group,
                    edge_node: topic.edge_node,
                });
            }
        }
        Self {
            host,
            prefix,
            rebirths,
            births,
            metrics,
            presence: Vec::new(),
        }
    }

    /// The presence changes decoded since the last call, in order.
    pub fn take_presence(&mut self) -> Vec<(Subject, bool, i64)> {
        std::mem::take(&mut self.presence)
    }

    /// Decodes one spooled message and applies it to the host state.
    pub fn decode(&mut self, record: &Record, rules: &ReadingRules) -> Decoded {
        let topic = match topic::parse(&record.topic, &self.prefix) {
            Ok(topic::Parsed::Message(topic)) => topic,
            Ok(topic::Parsed::State) => return Decoded::Nothing,
            Err(err) => return Decoded::Dead(DeadLetter::new(Reason::NotSparkplug, err)),
        };
        let payload = match Payload::decode(record.payload.as_slice()) {
            Ok(payload) => payload,
            Err(err) => {
                return Decoded::Dead(DeadLetter::new(
                    Reason::NotSparkplug,
                    format!("not a Sparkplug B payload: {err}"),
                ));
            }
        };
        let outcome = self.host.handle(&topic, &payload, record.received_ms);
        // Only births the host took (a DBIRTH of an unborn node is not one).
        let accepted = match topic.kind {
            topic::Kind::NBirth => true,
            topic::Kind::DBirth => outcome.presence.iter().any(|(_, online)| *online),
            _ => false,
        };
        if accepted {
            self.births.note(
                record,
                &topic.group,
                &topic.edge_node,
                topic.device.as_deref(),
            );
        }
        self.act_on(&topic, &outcome, record.received_ms);
        // The bridge's own receive time, not the edge node's: an NDEATH sent as a will was
        // built when the node connected, before its births. (From the spool: a replay gives
        // the same time.)
        let at = record.received_ms;
        self.presence.extend(
            outcome
                .presence
                .iter()
                .map(|(subject, online)| (subject.clone(), *online, at)),
        );
        let Some(subject) = outcome.subject else {
            return Decoded::Nothing;
        };
        let Ok(factory) = FactoryId::parse(&subject.group) else {
            return Decoded::Dead(DeadLetter::new(
                Reason::NotSparkplug,
                format!("group id {:?} is not a valid factory id", subject.group),
            ));
        };
        if outcome.samples.is_empty() {
            return Decoded::Nothing;
        }
        let (readings, violations) = readings(&outcome.samples, rules);
        let problems = (!violations.is_empty()).then(|| {
            DeadLetter::new(
                Reason::InvalidReading,
                format!(
                    "{} Sparkplug values failed validation; the valid ones were stored",
                    violations.len()
                ),
            )
            .with_errors(violations)
        });
        Decoded::Readings {
            factory,
            subject,
            readings,
            problems,
        }
    }

    /// Rebirth requests, presence and counts of what was not stored.
    fn act_on(&mut self, topic: &topic::SparkplugTopic, outcome: &Outcome, received_ms: i64) {
        let sparkplug = &self.metrics.sparkplug_metrics;
        sparkplug
            .with_label_values(&["unnamed"])
            .inc_by(outcome.unnamed as u64);
        sparkplug
            .with_label_values(&["ignored"])
            .inc_by(outcome.ignored as u64);
        for (subject, online) in &outcome.presence {
            tracing::info!(
                group = %subject.group,
                device = %subject.name,
                online,
                "Sparkplug presence changed"
            );
        }
        if let Some(reason) = &outcome.rebirth {
            let node = NodeKey {
                group: topic.group.clone(),
                edge_node: topic.edge_node.clone(),
            };
            self.rebirths.request(node, reason, received_ms);
        }
    }

    /// The births seen since the last commit are kept (called just before the commit).
    pub fn keep_births(&mut self) {
        self.births.keep();
    }
}

/// Readings from samples: one per timestamp, validated with the JSON path's rules.
fn readings(
    samples: &[Sample],
    rules: &ReadingRules,
) -> (Vec<Reading>, Vec<domain::reading::Violation>) {
    let mut by_time: BTreeMap<i64, [Option<f64>; 3]> = BTreeMap::new();
    for sample in samples {
        by_time.entry(sample.timestamp_ms).or_default()[sample.field as usize] = Some(sample.value);
    }
    let mut violations = Vec::new();
    let readings = by_time
        .into_iter()
        .filter_map(|(ms, values)| {
            let timestamp = Timestamp::from_nanos(ms.saturating_mul(1_000_000));
            let path = || format!("metrics@{ms}");
            rules.reading(path, Ok(timestamp), values, &mut violations)
        })
        .collect();
    (readings, violations)
}
