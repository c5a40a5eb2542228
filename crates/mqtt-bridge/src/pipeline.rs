//! From the spool to InfluxDB: read spooled messages in order, validate them with the same
//! domain code as ingest-api, write one line-protocol batch per `batch_max_readings` readings
//! (or messages), `batch_max_bytes` of payload or `batch_linger_ms`, and move the spool's checkpoint only once InfluxDB has answered.
//! While InfluxDB is away the batch is retried with backoff and new messages wait in the
//! spool; messages that can never be stored become dead letters.

use crate::dead_letter::{DeadLetter, DeadLetterOutbox, Reason};
use crate::metrics::BridgeMetrics;
use crate::names::MachineNames;
use crate::sparkplug::host::Subject;
use crate::sparkplug::{Decoded, SparkplugInput};
use crate::spool::{Next, Position, Record, Spool, SpoolReader};
use domain::mqtt::TelemetryTopic;
use domain::reading::{Reading, ReadingRules};
use domain::{FactoryId, MachineId};
use platform::influx::InfluxError;
use std::time::{Duration, Instant};
use storage::registry::{Found, MachineInfo};
use storage::settings::LiveSettings;
use telemetry_writer::{TelemetryWriter, admit};
use tokio_util::sync::CancellationToken;

/// Everything the pipeline talks to.
pub struct Pipeline {
    /// Where messages come from.
    pub reader: SpoolReader,
    /// Where progress is committed.
    pub spool: Spool,
    /// Admission, the InfluxDB write and what follows it: shared with ingest-api.
    pub writer: TelemetryWriter,
    /// Validation bounds, refreshed from Postgres.
    pub settings: LiveSettings,
    /// Dead letters are journaled on disk; a courier publishes them.
    pub dead_letters: DeadLetterOutbox,
    pub metrics: BridgeMetrics,
    /// Deployment topic prefix (empty in production).
    pub topic_prefix: String,
    /// Readings (and messages) per write.
    pub batch_max_readings: usize,
    /// Payload bytes per write: a few large messages make a batch too.
    pub batch_max_bytes: usize,
    /// Why InfluxDB is not taking writes now, for `/readyz`.
    pub store_outage: StoreOutage,
    /// How long a partial batch waits.
    pub linger: Duration,
    /// Sparkplug B host state, when the bridge is a host for any group.
    pub sparkplug: Option<SparkplugInput>,
    /// Machines Sparkplug devices name by their registered name.
    pub names: MachineNames,
}

/// Why InfluxDB is not taking the bridge's writes, while it is not; shared with `/readyz`.
#[derive(Clone, Default)]
pub struct StoreOutage(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl StoreOutage {
    fn set(&self, reason: Option<String>) {
        if let Ok(mut current) = self.0.lock() {
            *current = reason;
        }
    }

    /// The last failure's words while the outage lasts.
    pub fn reason(&self) -> Option<String> {
        self.0.lock().ok().and_then(|current| current.clone())
    }
}

/// A spooled message after parsing, before the registry is asked.
enum Item {
    Telemetry {
        topic: TelemetryTopic,
        readings: Vec<Reading>,
        problems: Option<DeadLetter>,
        record: Record,
    },
    /// A Sparkplug device's (or edge node's) readings; `machine` once its name is resolved.
    Sparkplug {
        factory: FactoryId,
        subject: Subject,
        machine: Option<MachineId>,
        readings: Vec<Reading>,
        problems: Option<DeadLetter>,
        record: Record,
    },
    /// Handled, nothing to store (Sparkplug deaths, commands, STATE).
    Done(Record),
    Dead(DeadLetter, Record),
}

impl Item {
    fn record(&self) -> &Record {
        match self {
            Self::Telemetry { record, .. }
            | Self::Sparkplug { record, .. }
            | Self::Done(record)
            | Self::Dead(_, record) => record,
        }
    }

    fn readings(&self) -> usize {
        match self {
            Self::Telemetry { readings, .. } | Self::Sparkplug { readings, .. } => readings.len(),
            Self::Done(_) | Self::Dead(..) => 0,
        }
    }
}

/// A Sparkplug message's item.
fn sparkplug_item(decoded: Decoded, record: Record) -> Item {
    match decoded {
        Decoded::Readings {
            factory,
            subject,
            readings,
            problems,
        } => Item::Sparkplug {
            machine: None,
            factory,
            subject,
            readings,
            problems,
            record,
        },
        Decoded::Nothing => Item::Done(record),
        Decoded::Dead(letter) => Item::Dead(letter, record),
    }
}

#[derive(Default)]
struct Batch {
    items: Vec<Item>,
    readings: usize,
    /// Payload bytes of its messages.
    bytes: usize,
    end: Position,
}

fn decode(record: Record, prefix: &str, rules: &ReadingRules, max_readings: usize) -> Item {
    if let Some(size) = record.truncated_from {
        let letter = DeadLetter::new(
            Reason::TooLarge,
            format!("payload of {size} bytes is over the limit"),
        );
        return Item::Dead(letter, record);
    }
    let topic = match TelemetryTopic::parse(&record.topic, prefix) {
        Ok(topic) => topic,
        Err(err) => return Item::Dead(DeadLetter::new(Reason::BadTopic, err.to_string()), record),
    };
    match domain::ingest::parse_payload(&record.payload, rules, max_readings) {
        Err(err) => {
            let letter = DeadLetter::new(Reason::of_payload_error(&err), &err.violation().message)
                .with_errors(vec![err.violation().clone()]);
            Item::Dead(letter, record)
        }
        Ok(parsed) => {
            let problems = (!parsed.violations.is_empty()).then(|| {
                DeadLetter::new(
                    Reason::InvalidReading,
                    format!(
                        "{} of {} readings failed validation; the valid ones were stored",
                        parsed.violations.len(),
                        parsed.violations.len() + parsed.readings.len()
                    ),
                )
                .with_errors(parsed.violations)
            });
            Item::Telemetry {
                topic,
                readings: parsed.readings,
                problems,
                record,
            }
        }
    }
}

/// How long to wait before the next attempt after `failures` failed ones.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis((100u64 << failures.min(6)).min(5_000))
}

impl Pipeline {
    /// Runs until `shutdown`; whatever is not committed then is replayed at the next start.
    pub async fn run(mut self, shutdown: CancellationToken) {
        while let Some(batch) = self.gather(&shutdown).await {
            if !self.store(batch, &shutdown).await {
                return;
            }
        }
    }

    /// Reads the next batch; `None` once `shutdown` fires.
    async fn gather(&mut self, shutdown: &CancellationToken) -> Option<Batch> {
        let mut batch = Batch::default();
        let mut started: Option<Instant> = None;
        let rules = self.settings.reading_rules();
        let max_readings = self.settings.batch_limits().max_readings;
        loop {
            if shutdown.is_cancelled() {
                return None;
            }
            match self.reader.next_record() {
                Ok(Next::Record(record, end)) => {
                    batch.bytes += record.payload.len();
                    let item = match &mut self.sparkplug {
                        Some(sparkplug)
                            if crate::sparkplug::topic::is_sparkplug(
                                &record.topic,
                                &self.topic_prefix,
                            ) =>
                        {
                            sparkplug_item(sparkplug.decode(&record, &rules), record)
                        }
                        _ => decode(record, &self.topic_prefix, &rules, max_readings),
                    };
                    batch.readings += item.readings();
                    batch.items.push(item);
                    batch.end = end;
                    started.get_or_insert_with(Instant::now);
                    if batch.readings >= self.batch_max_readings
                        || batch.items.len() >= self.batch_max_readings
                        || batch.bytes >= self.batch_max_bytes
                    {
                        return Some(batch);
                    }
                }
                Ok(Next::CaughtUp) => match started.map(|at| at.elapsed()) {
                    // Nothing yet: sleep until the writer appends.
                    None => tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = self.reader.wait(Duration::from_secs(1)) => {}
                    },
                    Some(waited) if waited >= self.linger => return Some(batch),
                    // A partial batch: let more arrive for the rest of the linger instead of
                    // waking for every message.
                    Some(waited) => tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep(self.linger - waited) => {}
                    },
                },
                Err(err) => {
                    tracing::error!(error = %err, "spool unreadable; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// Stores a batch (retrying while InfluxDB or the registry is away) and commits it.
    /// `false` when `shutdown` interrupted it (nothing committed: replayed next start).
    /// One span per micro-batch — the registry lookup, the InfluxDB write, latest values and
    /// alerts are its children — continuing its publishers' traces when they sent any.
    async fn store(&mut self, batch: Batch, shutdown: &CancellationToken) -> bool {
        use tracing::Instrument;
        let span = tracing::info_span!(
            "bridge.batch",
            messages = batch.items.len(),
            readings = batch.readings
        );
        // Before the span is entered: a started span's parent can no longer change.
        platform::telemetry::join_traces(
            &span,
            batch
                .items
                .iter()
                .filter_map(|item| item.record().traceparent.as_deref()),
        );
        self.store_in(batch, shutdown).instrument(span).await
    }

    async fn store_in(&mut self, mut batch: Batch, shutdown: &CancellationToken) -> bool {
        if !self.resolve_names(&mut batch, shutdown).await {
            return false;
        }
        let Some(machines) = self.machines(&batch, shutdown).await else {
            return false;
        };
        let messages = batch.items.len();
        let (stored, mut letters) = admit_items(batch.items, &machines);
        let Some(rejected) = self.write(&stored, shutdown).await else {
            return false;
        };
        let mut kept = Vec::with_capacity(stored.len());
        for (index, (info, readings, record)) in stored.into_iter().enumerate() {
            match rejected.iter().find(|(i, _)| *i == index) {
                Some((_, reason)) => letters.push((
                    DeadLetter::new(Reason::StoreRejected, format!("InfluxDB refused: {reason}")),
                    record,
                )),
                None => kept.push((info, readings)),
            }
        }
        self.count_stored(&kept);
        self.after_store(&kept).await;
        self.record_presence().await;
        // Journaled before the commit: a crash between the two dead-letters the batch's
        // messages again at replay rather than never.
        self.dead_letter(&letters);
        self.commit(batch.end, messages as u64, shutdown).await
    }

    fn count_stored(&self, kept: &[(MachineInfo, Vec<Reading>)]) {
        let readings: usize = kept.iter().map(|(_, r)| r.len()).sum();
        self.metrics.readings_stored.inc_by(readings as u64);
        self.metrics.count("stored", kept.len());
        if readings > 0 {
            self.metrics.batch_readings.observe(readings as f64);
        }
    }

    /// Journals `letters` for the courier (never waiting: see `DeadLetterOutbox::put`).
    fn dead_letter(&self, letters: &[(DeadLetter, Record)]) {
        for (letter, record) in letters {
            tracing::info!(
                reason = letter.reason.as_str(),
                topic = %record.topic,
                detail = %letter.detail,
                "message dead-lettered"
            );
            self.metrics
                .dead_letters
                .with_label_values(&[letter.reason.as_str()])
                .inc();
        }
        self.dead_letters.put(letters);
        self.metrics.count("dead_lettered", letters.len());
    }

    /// Frees the spool up to `end`; `false` only when shutdown came first.
    async fn commit(&mut self, end: Position, messages: u64, shutdown: &CancellationToken) -> bool {
        // The host state a replay from `end` starts with.
        if let Some(sparkplug) = &mut self.sparkplug {
            sparkplug.keep_births();
        }
        let mut failures = 0;
        while let Err(err) = self.spool.commit(end, messages) {
            // Not committing only means replaying (InfluxDB overwrites identical points).
            failures += 1;
            tracing::error!(error = %err, "spool checkpoint not written; retrying");
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(backoff(failures)) => {}
            }
        }
        self.metrics.spool(self.spool.stats());
        true
    }

    /// Sparkplug devices get their machine id (names resolved, retried while PostgreSQL is
    /// away); `false` on shutdown.
    async fn resolve_names(&mut self, batch: &mut Batch, shutdown: &CancellationToken) -> bool {
        let mut failures = 0;
        for item in &mut batch.items {
            let Item::Sparkplug {
                factory,
                subject,
                machine: machine @ None,
                ..
            } = item
            else {
                continue;
            };
            loop {
                match self.names.resolve(factory.as_ref(), &subject.name).await {
                    Ok(found) => {
                        *machine = found;
                        break;
                    }
                    Err(err) => {
                        failures += 1;
                        if failures == 1 {
                            tracing::warn!(error = %err, "machine names unavailable; messages wait in the spool");
                        }
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => return false,
                    () = tokio::time::sleep(backoff(failures)) => {}
                }
            }
        }
        true
    }

    /// The registry entries of the batch's machines, retried while Redis and Postgres are
    /// both away (the messages wait in the spool meanwhile).
    async fn machines(&self, batch: &Batch, shutdown: &CancellationToken) -> Option<Found> {
        let mut ids: Vec<MachineId> = batch
            .items
            .iter()
            .filter_map(|item| match item {
                Item::Telemetry { topic, .. } => Some(topic.machine_id),
                Item::Sparkplug { machine, .. } => *machine,
                Item::Done(_) | Item::Dead(..) => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut failures = 0;
        loop {
            match self.writer.lookup(&ids, &[]).await {
                Ok((found, _)) => return Some(found),
                Err(err) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(error = %err, "machine registry unavailable; messages wait in the spool");
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(backoff(failures)) => {}
            }
        }
    }

    /// Writes every message's readings in one request, retrying while InfluxDB is out. When
    /// InfluxDB refuses points for their own sake, narrows down to the messages that hold
    /// them: returns their indexes with InfluxDB's reason. `None` on shutdown.
    async fn write(
        &self,
        stored: &[(MachineInfo, Vec<Reading>, Record)],
        shutdown: &CancellationToken,
    ) -> Option<Vec<(usize, String)>> {
        if stored.is_empty() {
            return Some(Vec::new());
        }
        let messages: Vec<String> = stored
            .iter()
            .map(|(info, readings, _)| telemetry_writer::encode([(info, readings.as_slice())]))
            .collect();
        let units: Vec<&str> = messages.iter().map(String::as_str).collect();
        let outcome = telemetry_writer::refusals::narrow(
            &units,
            |lines: String| async move {
                match self
                    .write_until_answered(lines, stored.len(), shutdown)
                    .await
                {
                    None => Err(None),
                    Some(result) => result.map_err(Some),
                }
            },
            |err: &Option<InfluxError>| err.as_ref().map(ToString::to_string),
        )
        .await;
        match outcome {
            Ok(refused) => {
                if !refused.is_empty() {
                    tracing::error!(
                        refused = refused.len(),
                        messages = stored.len(),
                        "InfluxDB refused some messages' readings; the rest are stored"
                    );
                }
                Some(refused.into_iter().map(|r| (r.index, r.reason)).collect())
            }
            Err(None) => None,
            // Neither an outage (retried inside) nor a refusal: nothing else reaches here,
            // but if it ever does, the batch is replayed after a restart rather than lost.
            Err(Some(err)) => {
                tracing::error!(error = %err, "InfluxDB write failed in an unexpected way; holding the batch");
                shutdown.cancelled().await;
                None
            }
        }
    }

    /// One write, retried while InfluxDB is out (unreachable, 5xx, and 401/403/404:
    /// credentials or a database are the store's problem, not the messages'). `Some(Err)` only
    /// for a refusal of the points themselves.
    async fn write_until_answered(
        &self,
        lines: String,
        messages: usize,
        shutdown: &CancellationToken,
    ) -> Option<Result<(), InfluxError>> {
        let lines = bytes::Bytes::from(lines);
        let mut failures = 0;
        let mut outage_started: Option<Instant> = None;
        loop {
            let started = Instant::now();
            let outcome = self.writer.write_once(lines.clone()).await;
            self.metrics
                .write_seconds
                .observe(started.elapsed().as_secs_f64());
            match outcome {
                Err(err) if err.is_outage() => {
                    failures += 1;
                    self.store_outage.set(Some(err.to_string()));
                    if outage_started.is_none() {
                        outage_started = Some(Instant::now());
                        self.metrics.count("spooled", messages);
                        tracing::warn!(error = %err, messages, "InfluxDB unavailable: messages wait in the spool; retrying");
                    }
                    self.metrics.spool(self.spool.stats());
                }
                outcome => {
                    if let Some(since) = outage_started {
                        self.store_outage.set(None);
                        tracing::info!(
                            outage_ms = since.elapsed().as_millis() as u64,
                            "InfluxDB answers again; replaying the spool"
                        );
                    }
                    return Some(outcome);
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(backoff(failures)) => {}
            }
        }
    }

    /// Sparkplug births and deaths: which machines are online, recorded and announced (best
    /// effort, like latest values: logged when PostgreSQL or Redis are away).
    async fn record_presence(&mut self) {
        let Some(sparkplug) = &mut self.sparkplug else {
            return;
        };
        for (subject, online, at_ms) in sparkplug.take_presence() {
            let machine = match self.names.resolve(&subject.group, &subject.name).await {
                Ok(found) => found,
                Err(err) => {
                    tracing::warn!(error = %err, device = %subject.name, "presence not recorded: machine names unavailable");
                    None
                }
            };
            let Some(machine) = machine else { continue };
            let since = chrono::DateTime::from_timestamp_millis(at_ms).unwrap_or_default();
            self.writer
                .record_presence(machine, storage::presence::Presence { online, since })
                .await;
        }
    }

    /// Latest values, late rollup hours, live updates and alerts: best effort.
    async fn after_store(&self, kept: &[(MachineInfo, Vec<Reading>)]) {
        let written: Vec<(&MachineInfo, &[Reading])> = kept
            .iter()
            .map(|(info, readings)| (info, readings.as_slice()))
            .collect();
        self.writer.after_store(&written, |_| {}, None).await;
    }
}

/// Messages the registry admits, with their readings; and what becomes a dead letter.
type Admitted = (
    Vec<(MachineInfo, Vec<Reading>, Record)>,
    Vec<(DeadLetter, Record)>,
);

/// Splits a batch into what the registry admits and what becomes a dead letter (unparsable,
/// unknown or refused machines, and the refused part of a partly valid message).
fn admit_items(items: Vec<Item>, machines: &Found) -> Admitted {
    let mut letters = Vec::new();
    let mut stored = Vec::new();
    for item in items {
        let (machine, factory, readings, problems, record) = match item {
            Item::Done(_) => continue,
            Item::Dead(letter, record) => {
                letters.push((letter, record));
                continue;
            }
            Item::Telemetry {
                topic,
                readings,
                problems,
                record,
            } => (
                topic.machine_id,
                topic.factory_id,
                readings,
                problems,
                record,
            ),
            Item::Sparkplug {
                machine: Some(machine),
                subject,
                ..
            } if subject.own && machines.get(&machine).and_then(Option::as_ref).is_none() => {
                // An edge node's id shaped like a machine id, of no machine: not ours.
                continue;
            }
            Item::Sparkplug {
                machine: Some(machine),
                factory,
                readings,
                problems,
                record,
                ..
            } => (machine, factory, readings, problems, record),
            Item::Sparkplug {
                machine: None,
                factory,
                subject,
                record,
                ..
            } => {
                // An edge node's own metrics are someone's only when a machine bears its id.
                if !subject.own {
                    let detail = format!(
                        "no machine named {:?} (or with that id) in factory {factory}",
                        subject.name
                    );
                    letters.push((DeadLetter::new(Reason::UnknownMachine, detail), record));
                }
                continue;
            }
        };
        let entry = machines.get(&machine).and_then(Option::as_ref);
        match admit(entry, Some(factory.as_ref())) {
            Err(refusal) => letters.push((
                DeadLetter::new(Reason::of_refusal(&refusal), refusal.describe(&machine)),
                record,
            )),
            Ok(info) => {
                if let Some(letter) = problems {
                    letters.push((letter, record.clone()));
                }
                if !readings.is_empty() {
                    stored.push((info.clone(), readings, record));
                }
            }
        }
    }
    (stored, letters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::reading::Timestamp;

    const M: &str = "550e8400-e29b-41d4-a716-446655440000";

    fn record(topic: &str, payload: &str) -> Record {
        Record {
            topic: topic.into(),
            payload: payload.as_bytes().to_vec(),
            received_ms: 0,
            truncated_from: None,
            traceparent: None,
        }
    }

    fn reason(item: &Item) -> Option<&'static str> {
        match item {
            Item::Dead(letter, _) => Some(letter.reason.as_str()),
            Item::Telemetry { problems, .. } | Item::Sparkplug { problems, .. } => {
                problems.as_ref().map(|l| l.reason.as_str())
            }
            Item::Done(_) => None,
        }
    }

    #[test]
    fn each_kind_of_bad_message_gets_its_reason() {
        let rules =
            ReadingRules::defaults(Timestamp::parse_rfc3339("2025-01-15T12:00:00Z").unwrap());
        let topic = format!("p/factory/A/machine/{M}/telemetry");
        let good = r#"{"timestamp":"2025-01-15T11:59:00Z","temperature":70}"#;
        let cases = [
            (topic.as_str(), good, None),
            ("p/factory/A/machine/m1/telemetry", good, Some("bad_topic")),
            (topic.as_str(), "not json", Some("not_json")),
            (topic.as_str(), r#"{"humidity":1}"#, Some("bad_shape")),
            (
                topic.as_str(),
                r#"{"timestamp":"2025-01-15T11:59:00Z","temperature":9999}"#,
                Some("invalid_reading"),
            ),
            (
                topic.as_str(),
                r#"{"readings":[{"speed":1},{"speed":2},{"speed":3}]}"#,
                Some("too_large"),
            ),
        ];
        for (topic, payload, expected) in cases {
            let item = decode(record(topic, payload), "p/", &rules, 2);
            assert_eq!(reason(&item), expected, "{topic} {payload}");
        }
        let mut big = record(&topic, good);
        big.truncated_from = Some(1 << 20);
        assert_eq!(reason(&decode(big, "p/", &rules, 2)), Some("too_large"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) < backoff(2));
        assert_eq!(backoff(30), Duration::from_millis(5_000));
    }
}
