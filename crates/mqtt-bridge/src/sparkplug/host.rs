//! The host application's view of each edge node (Sparkplug 3.0 §7): which names its aliases
//! stand for, where its sequence number is, which of its devices are born. Kept in memory and
//! rebuilt from births. Every message passes through [`Host::handle`] in spool order, so a
//! replay rebuilds the same state; what this module decides is pure (no I/O), the pipeline
//! acts on the [`Outcome`].

use super::topic::{Kind, SparkplugTopic};
use domain::reading::Field;
use domain::sparkplug::{Metric, Payload, Value};
use std::collections::{HashMap, HashSet};

/// One edge node: `spBv1.0/{group}/…/{edge_node}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeKey {
    pub group: String,
    pub edge_node: String,
}

/// What a birth said a metric is.
#[derive(Debug, Clone)]
struct Known {
    name: String,
    datatype: Option<u32>,
}

#[derive(Debug, Default)]
struct Node {
    /// NBIRTH's `bdSeq`: an NDEATH with another one is an older session's.
    bd_seq: Option<u64>,
    /// The last sequence number seen; `None` until one is (and after a restart).
    seq: Option<u8>,
    born: bool,
    /// Alias → metric, for the node's and its devices' metrics (unique per edge node).
    aliases: HashMap<u64, Known>,
    /// Devices born since the node's birth.
    devices: HashSet<String>,
    /// (device, metric name) → datatype, from births.
    types: HashMap<(Option<String>, String), u32>,
}

/// One metric value that maps to a reading field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub field: Field,
    pub value: f64,
    /// The metric's own timestamp, else the payload's, else the receive time (ms).
    pub timestamp_ms: i64,
}

/// Whose values a message carries: a device, or the edge node itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The group: Plantline's factory id.
    pub group: String,
    /// The device id, or the edge node id for the node's own metrics.
    pub name: String,
    /// The edge node's own metrics (stored only when a machine is registered under its id).
    pub own: bool,
}

/// What the pipeline must do about one message.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// Whose the samples are (none for deaths, commands and refused messages).
    pub subject: Option<Subject>,
    pub samples: Vec<Sample>,
    /// Devices (or the edge node itself) that came online (`true`) or went offline.
    pub presence: Vec<(Subject, bool)>,
    /// Ask the edge node for a rebirth, and why.
    pub rebirth: Option<String>,
    /// Metrics that could not be named (an alias no birth defined): not stored.
    pub unnamed: usize,
    /// Named metrics that are not temperature, pressure or speed, or not a number.
    pub ignored: usize,
}

/// Every edge node this host has heard of.
#[derive(Debug, Default)]
pub struct Host {
    nodes: HashMap<NodeKey, Node>,
}

/// The reading field a metric name maps to: its last path segment, in any case
/// (`Temperature`, `Sensors/Pressure`, `speed`).
pub fn field_of(name: &str) -> Option<Field> {
    let last = name.rsplit('/').next().unwrap_or(name).trim();
    Field::parse(&last.to_ascii_lowercase())
}

impl Host {
    /// Applies one message; `received_ms` stands in for missing timestamps.
    pub fn handle(
        &mut self,
        topic: &SparkplugTopic,
        payload: &Payload,
        received_ms: i64,
    ) -> Outcome {
        let key = NodeKey {
            group: topic.group.clone(),
            edge_node: topic.edge_node.clone(),
        };
        let subject = Subject {
            group: topic.group.clone(),
            name: topic
                .device
                .clone()
                .unwrap_or_else(|| topic.edge_node.clone()),
            own: topic.device.is_none(),
        };
        let default_ms = payload.timestamp.map_or(received_ms, |t| t as i64);
        match topic.kind {
            Kind::NBirth => self.node_birth(key, subject, payload, default_ms),
            Kind::NDeath => self.node_death(&key, payload),
            Kind::NCmd | Kind::DCmd => Outcome::default(),
            kind => {
                // Only births make a node known: data of unknown nodes grows no state here.
                let Some(node) = self.nodes.get_mut(&key).filter(|node| node.born) else {
                    return Outcome {
                        rebirth: Some("data before the edge node's birth".to_owned()),
                        unnamed: payload.metrics.len(),
                        ..Outcome::default()
                    };
                };
                node.data(kind, subject, payload, default_ms)
            }
        }
    }

    /// Forgets where the node's sequence was (after a restart: what was missed meanwhile is
    /// not a gap).
    pub fn forget_sequence(&mut self, node: &NodeKey) {
        if let Some(node) = self.nodes.get_mut(node) {
            node.seq = None;
        }
    }

    fn node_birth(
        &mut self,
        key: NodeKey,
        subject: Subject,
        payload: &Payload,
        default_ms: i64,
    ) -> Outcome {
        let mut node = Node {
            bd_seq: bd_seq(&payload.metrics),
            seq: payload.seq.map(|s| s as u8),
            born: true,
            ..Node::default()
        };
        node.learn(None, &payload.metrics);
        let mut outcome = Outcome {
            presence: vec![(subject.clone(), true)],
            ..Outcome::default()
        };
        node.read(None, &payload.metrics, default_ms, &mut outcome);
        outcome.subject = Some(subject);
        let new_session = node.bd_seq;
        let same_session =
            |old: &Node| old.born && old.bd_seq.is_some() && old.bd_seq == new_session;
        // Devices must be born again after their node. A rebirth within the same session
        // (same bdSeq: the host asked for it) does not take them offline meanwhile.
        if let Some(old) = self.nodes.insert(key.clone(), node)
            && !same_session(&old)
        {
            outcome
                .presence
                .extend(old.devices.into_iter().map(|device| {
                    let subject = Subject {
                        group: key.group.clone(),
                        name: device,
                        own: false,
                    };
                    (subject, false)
                }));
        }
        outcome
    }

    fn node_death(&mut self, key: &NodeKey, payload: &Payload) -> Outcome {
        let Some(node) = self.nodes.get_mut(key) else {
            return Outcome::default();
        };
        // An NDEATH of an older session (its will, delivered late) says nothing of this one.
        if let (Some(born), Some(died)) = (node.bd_seq, bd_seq(&payload.metrics))
            && born != died
        {
            return Outcome::default();
        }
        let subject = |name: String, own: bool| Subject {
            group: key.group.clone(),
            name,
            own,
        };
        let mut presence = vec![(subject(key.edge_node.clone(), true), false)];
        presence.extend(
            node.devices
                .drain()
                .map(|device| (subject(device, false), false)),
        );
        node.born = false;
        node.aliases.clear();
        node.seq = None;
        Outcome {
            presence,
            ..Outcome::default()
        }
    }
}

impl Node {
    /// A born node's DBIRTH, DDEATH, NDATA or DDATA.
    fn data(
        &mut self,
        kind: Kind,
        subject: Subject,
        payload: &Payload,
        default_ms: i64,
    ) -> Outcome {
        let mut outcome = Outcome::default();
        let in_order = self.follow_sequence(payload.seq);
        if !in_order {
            outcome.rebirth = Some("a gap in the sequence numbers".to_owned());
        }
        let device = (!subject.own).then_some(subject.name.as_str());
        match kind {
            Kind::DDeath => {
                if self.devices.remove(&subject.name) {
                    outcome.presence.push((subject, false));
                }
                return outcome;
            }
            Kind::DBirth => {
                self.learn(device, &payload.metrics);
                self.devices.insert(subject.name.clone());
                outcome.presence.push((subject.clone(), true));
            }
            _ if device.is_some_and(|d| !self.devices.contains(d)) => {
                outcome.rebirth = Some(format!("device {} sent before its birth", subject.name));
                outcome.unnamed = payload.metrics.len();
                return outcome;
            }
            _ => {}
        }
        self.read(device, &payload.metrics, default_ms, &mut outcome);
        if outcome.unnamed > 0 && outcome.rebirth.is_none() {
            outcome.rebirth = Some("an alias no birth defined".to_owned());
        }
        outcome.subject = Some(subject);
        outcome
    }

    /// Records `seq`; whether it follows the previous one (a first or missing one does).
    fn follow_sequence(&mut self, seq: Option<u64>) -> bool {
        let Some(seq) = seq.map(|s| s as u8) else {
            return true;
        };
        let expected = self.seq.map(|previous| previous.wrapping_add(1));
        self.seq = Some(seq);
        expected.is_none_or(|expected| expected == seq)
    }

    /// A birth's metrics: every alias and the name and type it stands for, and each name's
    /// type (for DATA that names a metric and leaves its type out).
    fn learn(&mut self, device: Option<&str>, metrics: &[Metric]) {
        for metric in metrics {
            let Some(name) = &metric.name else { continue };
            if let Some(datatype) = metric.datatype {
                self.types
                    .insert((device.map(str::to_owned), name.clone()), datatype);
            }
            if let Some(alias) = metric.alias {
                self.aliases.insert(
                    alias,
                    Known {
                        name: name.clone(),
                        datatype: metric.datatype,
                    },
                );
            }
        }
    }

    /// The samples among `metrics`, counting what cannot be named or is not ours.
    fn read(
        &self,
        device: Option<&str>,
        metrics: &[Metric],
        default_ms: i64,
        outcome: &mut Outcome,
    ) {
        for metric in metrics {
            let known = metric.alias.and_then(|alias| self.aliases.get(&alias));
            let (name, birth_type) = match (&metric.name, known) {
                (Some(name), known) => {
                    let by_name = || {
                        self.types
                            .get(&(device.map(str::to_owned), name.clone()))
                            .copied()
                    };
                    (
                        name.as_str(),
                        known.and_then(|k| k.datatype).or_else(by_name),
                    )
                }
                (None, Some(known)) => (known.name.as_str(), known.datatype),
                (None, None) => {
                    outcome.unnamed += 1;
                    continue;
                }
            };
            match (field_of(name), metric.number(birth_type)) {
                (Some(field), Some(value)) => outcome.samples.push(Sample {
                    field,
                    value,
                    timestamp_ms: metric.timestamp.map_or(default_ms, |t| t as i64),
                }),
                _ => outcome.ignored += 1,
            }
        }
    }
}

/// The `bdSeq` metric of an NBIRTH or NDEATH (Int64 or UInt64 as publishers differ).
fn bd_seq(metrics: &[Metric]) -> Option<u64> {
    metrics
        .iter()
        .find(|m| m.name.as_deref() == Some("bdSeq"))
        .and_then(|m| match m.value {
            Some(Value::Long(v)) => Some(v),
            Some(Value::Int(v)) => Some(u64::from(v)),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::sparkplug::data_type::{DOUBLE, INT32, INT64};

    fn topic(kind: Kind, device: Option<&str>) -> SparkplugTopic {
        SparkplugTopic {
            group: "A".into(),
            kind,
            edge_node: "edge-1".into(),
            device: device.map(Into::into),
        }
    }

    fn named(name: &str, alias: u64, value: Value, datatype: u32) -> Metric {
        Metric {
            name: Some(name.into()),
            alias: Some(alias),
            datatype: Some(datatype),
            value: Some(value),
            ..Metric::default()
        }
    }

    fn aliased(alias: u64, value: Value) -> Metric {
        Metric {
            alias: Some(alias),
            value: Some(value),
            ..Metric::default()
        }
    }

    fn payload(seq: u64, metrics: Vec<Metric>) -> Payload {
        Payload {
            timestamp: Some(1_000),
            metrics,
            seq: Some(seq),
            uuid: None,
        }
    }

    /// A host that has seen NBIRTH (bdSeq 4, seq 0) and DBIRTH of `press` (seq 1).
    fn born() -> Host {
        let mut host = Host::default();
        let nbirth = payload(0, vec![named("bdSeq", 99, Value::Long(4), INT64)]);
        host.handle(&topic(Kind::NBirth, None), &nbirth, 0);
        let dbirth = payload(
            1,
            vec![
                named("Sensors/Temperature", 1, Value::Double(60.0), DOUBLE),
                named("Speed", 2, Value::Int(1200), INT32),
                named("Door open", 3, Value::Boolean(false), 11),
            ],
        );
        let outcome = host.handle(&topic(Kind::DBirth, Some("press")), &dbirth, 0);
        assert_eq!(outcome.samples.len(), 2, "{outcome:?}");
        assert_eq!(outcome.ignored, 1);
        assert_eq!(outcome.presence.len(), 1);
        host
    }

    #[test]
    fn aliases_from_the_birth_name_the_data_and_timestamps_are_the_metrics() {
        let mut host = born();
        let mut speed = aliased(2, Value::Int(1300));
        speed.timestamp = Some(5_000);
        let data = payload(2, vec![aliased(1, Value::Double(61.5)), speed]);
        let outcome = host.handle(&topic(Kind::DData, Some("press")), &data, 0);
        assert_eq!(outcome.rebirth, None);
        assert_eq!(
            outcome.samples,
            [
                Sample {
                    field: Field::Temperature,
                    value: 61.5,
                    timestamp_ms: 1_000
                },
                Sample {
                    field: Field::Speed,
                    value: 1300.0,
                    timestamp_ms: 5_000
                },
            ]
        );
        assert_eq!(outcome.subject.map(|s| s.name), Some("press".to_owned()));
    }

    #[test]
    fn a_gap_an_unknown_alias_or_data_before_birth_ask_for_a_rebirth() {
        let mut host = born();
        let gap = host.handle(
            &topic(Kind::DData, Some("press")),
            &payload(5, vec![aliased(1, Value::Double(61.0))]),
            0,
        );
        assert!(gap.rebirth.is_some_and(|r| r.contains("gap")));
        assert_eq!(gap.samples.len(), 1, "what can be named is kept");

        let unknown = host.handle(
            &topic(Kind::DData, Some("press")),
            &payload(6, vec![aliased(42, Value::Double(1.0))]),
            0,
        );
        assert_eq!((unknown.unnamed, unknown.samples.len()), (1, 0));
        assert!(unknown.rebirth.is_some_and(|r| r.contains("alias")));

        let stranger = host.handle(
            &topic(Kind::DData, Some("lathe")),
            &payload(7, vec![aliased(1, Value::Double(1.0))]),
            0,
        );
        assert!(stranger.samples.is_empty() && stranger.rebirth.is_some());

        let mut fresh = Host::default();
        let early = fresh.handle(
            &topic(Kind::NData, None),
            &payload(0, vec![named("Temperature", 1, Value::Double(1.0), DOUBLE)]),
            0,
        );
        assert!(early.samples.is_empty() && early.rebirth.is_some());
    }

    #[test]
    fn deaths_mark_offline_and_a_late_will_of_an_older_session_is_ignored() {
        let mut host = born();
        let stale = payload(0, vec![named("bdSeq", 99, Value::Long(3), INT64)]);
        assert_eq!(
            host.handle(&topic(Kind::NDeath, None), &stale, 0),
            Outcome::default()
        );
        let ddeath = host.handle(&topic(Kind::DDeath, Some("press")), &payload(2, vec![]), 0);
        assert_eq!(ddeath.presence.len(), 1);
        assert!(!ddeath.presence[0].1);
        let death = payload(0, vec![named("bdSeq", 99, Value::Long(4), INT64)]);
        let outcome = host.handle(&topic(Kind::NDeath, None), &death, 0);
        assert_eq!(
            outcome.presence,
            [(
                Subject {
                    group: "A".into(),
                    name: "edge-1".into(),
                    own: true
                },
                false
            )]
        );
        // After the death, data needs a new birth.
        let after = host.handle(&topic(Kind::NData, None), &payload(1, vec![]), 0);
        assert!(after.rebirth.is_some());
    }

    #[test]
    fn a_rebirth_keeps_devices_online_and_names_without_aliases_keep_their_type() {
        let mut host = born();
        // Named, no alias, no datatype: the birth's Int32 for that name holds (not UInt32).
        let speed = Metric {
            name: Some("Speed".into()),
            value: Some(Value::Int(u32::MAX)),
            ..Metric::default()
        };
        let data = host.handle(
            &topic(Kind::DData, Some("press")),
            &payload(2, vec![speed]),
            0,
        );
        assert_eq!(data.samples[0].value, -1.0);
        // The host asked; the node is born again in the same session (same bdSeq).
        let again = payload(0, vec![named("bdSeq", 99, Value::Long(4), INT64)]);
        let rebirth = host.handle(&topic(Kind::NBirth, None), &again, 0);
        assert!(
            rebirth.presence.iter().all(|(_, online)| *online),
            "{rebirth:?}"
        );
        // A new session's birth takes the old devices offline until they are born again.
        let new_session = payload(0, vec![named("bdSeq", 99, Value::Long(5), INT64)]);
        host.handle(&topic(Kind::DBirth, Some("press")), &payload(1, vec![]), 0);
        let fresh = host.handle(&topic(Kind::NBirth, None), &new_session, 0);
        assert!(
            fresh
                .presence
                .iter()
                .any(|(s, online)| s.name == "press" && !online)
        );
        // A death of a device that was never born says nothing.
        let ghost = host.handle(&topic(Kind::DDeath, Some("ghost")), &payload(1, vec![]), 0);
        assert!(ghost.presence.is_empty());
        // Data of a node never born leaves no state behind.
        let stranger = SparkplugTopic {
            edge_node: "edge-9".into(),
            ..topic(Kind::NData, None)
        };
        let outcome = host.handle(
            &stranger,
            &payload(3, vec![aliased(1, Value::Double(1.0))]),
            0,
        );
        assert_eq!(outcome.unnamed, 1);
        assert!(!host.nodes.keys().any(|k| k.edge_node == "edge-9"));
    }

    #[test]
    fn the_sequence_wraps_at_256_and_metric_names_map_by_their_last_segment() {
        let mut node = Node::default();
        assert!(node.follow_sequence(Some(255)));
        assert!(node.follow_sequence(Some(0)));
        assert!(!node.follow_sequence(Some(2)));
        assert_eq!(field_of("Sensors/Pressure"), Some(Field::Pressure));
        assert_eq!(field_of("SPEED"), Some(Field::Speed));
        assert_eq!(field_of("Temperature/Setpoint"), None);
    }
}
