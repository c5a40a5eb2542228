//! The gateway batch: parsed from JSON (the seed's body) or line protocol, validated reading
//! by reading, so one bad reading rejects only itself and one bad machine only its readings.

use crate::ids::MachineId;
use crate::reading::{Field, Reading, ReadingRules, Timestamp, Violation};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;

/// Size limits of one request, from the typed settings.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_machines: usize,
    /// Readings per request, all machines together.
    pub max_readings: usize,
}

/// Why a whole request was refused before looking at readings.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchError {
    /// Not the expected document (bad JSON, wrong types, unknown fields, duplicate keys).
    Malformed(Violation),
    /// More machines or readings than allowed.
    TooLarge(Violation),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIngest<'a> {
    gateway_id: String,
    timestamp: String,
    #[serde(borrow)]
    batch: Vec<RawMachineBatch<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMachineBatch<'a> {
    #[serde(borrow)]
    machine_id: Lenient<'a>,
    #[serde(default, borrow)]
    sensor_type: Option<Lenient<'a>>,
    #[serde(default, borrow)]
    location: Option<Lenient<'a>>,
    #[serde(borrow)]
    readings: Vec<RawReading<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReading<'a> {
    #[serde(default, borrow)]
    timestamp: Option<Lenient<'a>>,
    #[serde(default, borrow)]
    temperature: Option<Lenient<'a>>,
    #[serde(default, borrow)]
    pressure: Option<Lenient<'a>>,
    #[serde(default, borrow)]
    speed: Option<Lenient<'a>>,
}

/// A scalar whose type is checked per reading rather than per request: a wrong type rejects
/// one reading (207), not the batch. Strings are borrowed from the body when possible, so a
/// valid batch is parsed without an allocation per reading.
pub(crate) enum Lenient<'a> {
    Number(f64),
    Text(Cow<'a, str>),
    Other(Value),
}

impl Lenient<'_> {
    fn echo(&self) -> Value {
        match self {
            Self::Number(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
            Self::Text(text) => Value::from(text.as_ref()),
            Self::Other(value) => value.clone(),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Lenient<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Lenient<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON scalar")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Lenient::Number(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Lenient::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Lenient::Number(v as f64))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Lenient::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Lenient::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Lenient::Other(Value::Bool(v)))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Lenient::Other(Value::Null))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Lenient::Other(Value::from("[array]")))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Lenient::Other(Value::from("{object}")))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// One machine's part of a batch after validation.
#[derive(Debug, Clone)]
pub struct MachineBatch {
    /// Position in the request (`batch[i]`, or the first line naming the machine).
    pub index: usize,
    /// How the request spelled the machine id (echoed in the answer).
    pub raw_machine_id: String,
    /// The parsed id, if it is one.
    pub machine_id: Option<MachineId>,
    pub readings: Vec<Reading>,
    /// Readings refused by validation.
    pub rejected: usize,
    /// The request's path prefix for this machine's machine-level errors.
    pub path: String,
    /// The tags the gateway claimed for the machine; the registry's values are written, a
    /// mismatch is only logged (gateways name things their own way).
    pub claimed: ClaimedTags,
}

/// What a gateway said about a machine besides its id: a JSON batch's `sensor_type` and
/// `location`, a line's `sensor_type`, `location` and `factory_id` tags (its first line's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimedTags {
    pub sensor_type: Option<String>,
    pub location: Option<String>,
    pub factory_id: Option<String>,
}

/// A validated request: the good readings grouped by machine, and every violation.
#[derive(Debug, Clone)]
pub struct ParsedBatch {
    /// The sending gateway, as it names itself.
    pub gateway_id: Option<String>,
    /// Machines in request order.
    pub machines: Vec<MachineBatch>,
    /// Every problem found, with paths.
    pub violations: Vec<Violation>,
}

impl ParsedBatch {
    pub fn valid_readings(&self) -> usize {
        self.machines.iter().map(|m| m.readings.len()).sum()
    }

    /// Readings refused so far.
    pub fn rejected_readings(&self) -> usize {
        self.machines.iter().map(|m| m.rejected).sum()
    }

    /// Rejects readings of machine `index` that the store refused, by their position among
    /// its valid readings, each with the store's reason (named by its timestamp: the
    /// request's own position of a valid reading is not kept).
    pub fn reject_refused(&mut self, index: usize, mut refused: Vec<(usize, String)>) {
        let Some(machine) = self.machines.get_mut(index) else {
            return;
        };
        refused.sort_unstable_by_key(|(position, _)| *position);
        refused.dedup_by_key(|(position, _)| *position);
        for (removed, (position, reason)) in refused.into_iter().enumerate() {
            let Some(position) = position
                .checked_sub(removed)
                .filter(|p| *p < machine.readings.len())
            else {
                continue;
            };
            let reading = machine.readings.remove(position);
            machine.rejected += 1;
            self.violations.push(Violation::new(
                format!("{}.readings", machine.path),
                format!("the time-series store refused this reading: {reason}"),
                Some(Value::from(
                    reading
                        .timestamp()
                        .to_datetime()
                        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                )),
            ));
        }
    }

    /// Rejects every reading of machine `index` (unknown or inactive machine).
    pub fn reject_machine(&mut self, index: usize, message: &str) {
        if let Some(machine) = self.machines.get_mut(index) {
            machine.rejected += machine.readings.len();
            machine.readings.clear();
            self.violations.push(Violation::new(
                format!("{}.machine_id", machine.path),
                message,
                Some(Value::from(machine.raw_machine_id.clone())),
            ));
        }
    }
}

fn number(
    value: Option<&Lenient<'_>>,
    path: impl Fn() -> String,
    violations: &mut Vec<Violation>,
) -> Option<f64> {
    match value {
        None | Some(Lenient::Other(Value::Null)) => None,
        Some(Lenient::Number(n)) => Some(*n),
        Some(other) => {
            violations.push(Violation::new(
                path(),
                "must be a number",
                Some(other.echo()),
            ));
            None
        }
    }
}

/// Checks one raw reading (types, timestamp, bounds); every problem goes to `violations`
/// under `prefix`. Shared by the HTTP batch and the MQTT payloads.
pub(crate) fn validate_reading(
    reading: &RawReading<'_>,
    prefix: impl Fn() -> String,
    rules: &ReadingRules,
    violations: &mut Vec<Violation>,
) -> Option<Reading> {
    let timestamp = match &reading.timestamp {
        Some(Lenient::Text(text)) => Timestamp::parse_rfc3339(text).map_err(|m| {
            Violation::new(
                format!("{}.timestamp", prefix()),
                m,
                Some(Value::from(text.as_ref())),
            )
        }),
        None | Some(Lenient::Other(Value::Null)) => Err(Violation::new(
            format!("{}.timestamp", prefix()),
            "is required",
            None,
        )),
        Some(other) => Err(Violation::new(
            format!("{}.timestamp", prefix()),
            "must be an RFC 3339 string",
            Some(other.echo()),
        )),
    };
    let count = violations.len();
    let values = [
        number(
            reading.temperature.as_ref(),
            || format!("{}.temperature", prefix()),
            violations,
        ),
        number(
            reading.pressure.as_ref(),
            || format!("{}.pressure", prefix()),
            violations,
        ),
        number(
            reading.speed.as_ref(),
            || format!("{}.speed", prefix()),
            violations,
        ),
    ];
    let typed_ok = violations.len() == count;
    rules
        .reading(prefix, timestamp, values, violations)
        .filter(|_| typed_ok)
}

/// Deserialises the document; only when that fails is it parsed again with path tracking,
/// so the error names where (`batch[0].readings[3].humidity`) without slowing valid bodies.
fn deserialize(body: &[u8]) -> Result<RawIngest<'_>, BatchError> {
    serde_json::from_slice(body).map_err(|_| {
        let deserializer = &mut serde_json::Deserializer::from_slice(body);
        let err = match serde_path_to_error::deserialize::<_, RawIngest<'_>>(deserializer) {
            Err(err) => err,
            Ok(_) => {
                return BatchError::Malformed(Violation::new("body", "invalid document", None));
            }
        };
        let path = err.path().to_string();
        BatchError::Malformed(Violation::new(
            if path == "." { "body".to_owned() } else { path },
            err.into_inner().to_string(),
            None,
        ))
    })
}

/// Parses and validates the seed's JSON batch.
pub fn parse_json(
    body: &[u8],
    rules: &ReadingRules,
    limits: &BatchLimits,
) -> Result<ParsedBatch, BatchError> {
    let raw = deserialize(body)?;
    check_envelope(&raw)?;
    check_batch_size(&raw.batch, limits)?;
    let mut violations = Vec::new();
    let machines = raw
        .batch
        .into_iter()
        .enumerate()
        .map(|(i, item)| parse_machine(i, item, rules, &mut violations))
        .collect();
    Ok(ParsedBatch {
        gateway_id: Some(raw.gateway_id),
        machines,
        violations,
    })
}

/// The request-level fields: a bad one refuses the whole batch, the first problem named.
fn check_envelope(raw: &RawIngest<'_>) -> Result<(), BatchError> {
    let malformed = |key: &str, message: String, value: &str| {
        Err(BatchError::Malformed(Violation::new(
            key,
            message,
            Some(Value::from(value)),
        )))
    };
    if let Err(err) = crate::text::check(&raw.gateway_id, 128) {
        return malformed("gateway_id", err.to_string(), &raw.gateway_id);
    }
    if raw.gateway_id.trim().is_empty() {
        let message = "must be 1 to 128 characters".to_owned();
        return malformed("gateway_id", message, &raw.gateway_id);
    }
    if let Err(message) = Timestamp::parse_rfc3339(&raw.timestamp) {
        return malformed("timestamp", message.into(), &raw.timestamp);
    }
    Ok(())
}

fn check_batch_size(batch: &[RawMachineBatch<'_>], limits: &BatchLimits) -> Result<(), BatchError> {
    if batch.is_empty() {
        return Err(BatchError::Malformed(Violation::new(
            "batch",
            "must hold at least one machine",
            None,
        )));
    }
    if batch.len() > limits.max_machines {
        return Err(BatchError::TooLarge(Violation::new(
            "batch",
            format!(
                "holds {} machines; at most {} per request",
                batch.len(),
                limits.max_machines
            ),
            None,
        )));
    }
    let total: usize = batch.iter().map(|m| m.readings.len()).sum();
    if total > limits.max_readings {
        return Err(BatchError::TooLarge(Violation::new(
            "batch",
            format!(
                "holds {total} readings; at most {} per request",
                limits.max_readings
            ),
            None,
        )));
    }
    Ok(())
}

/// Validates `batch[i]`: a machine-level problem rejects all its readings, a reading-level
/// one only that reading.
fn parse_machine(
    i: usize,
    item: RawMachineBatch<'_>,
    rules: &ReadingRules,
    violations: &mut Vec<Violation>,
) -> MachineBatch {
    let path = format!("batch[{i}]");
    let before = violations.len();
    let (raw_machine_id, machine_id) = match &item.machine_id {
        Lenient::Text(text) => (text.to_string(), text.parse::<MachineId>().ok()),
        other => (other.echo().to_string(), None),
    };
    if machine_id.is_none() {
        violations.push(Violation::new(
            format!("{path}.machine_id"),
            "must be a UUID",
            Some(item.machine_id.echo()),
        ));
    }
    let claimed = ClaimedTags {
        sensor_type: claimed_sensor_type(item.sensor_type.as_ref(), &path, violations),
        location: claimed_location(item.location.as_ref(), &path, violations),
        factory_id: None,
    };
    if item.readings.is_empty() {
        violations.push(Violation::new(
            format!("{path}.readings"),
            "must hold at least one reading",
            None,
        ));
    }
    let machine_ok = violations.len() == before;
    let mut readings = Vec::with_capacity(item.readings.len());
    let mut rejected = 0;
    for (j, reading) in item.readings.iter().enumerate() {
        let prefix = || format!("{path}.readings[{j}]");
        match validate_reading(reading, prefix, rules, violations) {
            Some(reading) if machine_ok => readings.push(reading),
            _ => rejected += 1,
        }
    }
    MachineBatch {
        index: i,
        raw_machine_id,
        machine_id: if machine_ok { machine_id } else { None },
        readings,
        rejected,
        path,
        claimed,
    }
}

fn claimed_sensor_type(
    value: Option<&Lenient<'_>>,
    path: &str,
    violations: &mut Vec<Violation>,
) -> Option<String> {
    match value {
        None | Some(Lenient::Other(Value::Null)) => None,
        Some(Lenient::Text(label)) => match crate::text::check(label, 255) {
            Ok(()) => Some(label.to_string()),
            Err(err) => {
                violations.push(Violation::new(
                    format!("{path}.sensor_type"),
                    err.to_string(),
                    Some(Value::from(label.as_ref())),
                ));
                None
            }
        },
        Some(other) => {
            violations.push(Violation::new(
                format!("{path}.sensor_type"),
                "must be a string",
                Some(other.echo()),
            ));
            None
        }
    }
}

fn claimed_location(
    value: Option<&Lenient<'_>>,
    path: &str,
    violations: &mut Vec<Violation>,
) -> Option<String> {
    match value {
        None | Some(Lenient::Other(Value::Null)) => None,
        Some(Lenient::Text(l)) if !l.trim().is_empty() && crate::text::check(l, 255).is_ok() => {
            Some(l.to_string())
        }
        Some(other) => {
            violations.push(Violation::new(
                format!("{path}.location"),
                "must be 1 to 255 characters without control characters",
                Some(other.echo()),
            ));
            None
        }
    }
}

/// An MQTT telemetry payload: one reading, or `{"readings": [...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPayload<'a> {
    #[serde(default, borrow)]
    readings: Option<Vec<RawPayloadReading<'a>>>,
    #[serde(default, borrow, flatten)]
    single: RawPayloadReading<'a>,
}

#[derive(Deserialize, Default)]
struct RawPayloadReading<'a> {
    #[serde(default, borrow)]
    timestamp: Option<Lenient<'a>>,
    #[serde(default, borrow)]
    temperature: Option<Lenient<'a>>,
    #[serde(default, borrow)]
    pressure: Option<Lenient<'a>>,
    #[serde(default, borrow)]
    speed: Option<Lenient<'a>>,
    #[serde(default, borrow)]
    sensor_type: Option<Lenient<'a>>,
}

impl<'a> RawPayloadReading<'a> {
    fn is_empty(&self) -> bool {
        self.timestamp.is_none()
            && self.temperature.is_none()
            && self.pressure.is_none()
            && self.speed.is_none()
            && self.sensor_type.is_none()
    }

    fn into_raw(self) -> (RawReading<'a>, Option<Lenient<'a>>) {
        (
            RawReading {
                timestamp: self.timestamp,
                temperature: self.temperature,
                pressure: self.pressure,
                speed: self.speed,
            },
            self.sensor_type,
        )
    }
}

/// The valid readings of one MQTT message and the problems of the others.
#[derive(Debug, Clone)]
pub struct ParsedPayload {
    pub readings: Vec<Reading>,
    /// Every problem, with paths such as `readings[2].temperature`.
    pub violations: Vec<Violation>,
}

/// Why a whole MQTT message was refused before looking at its readings.
#[derive(Debug, Clone, PartialEq)]
pub enum PayloadError {
    NotJson(Violation),
    /// JSON, but not one reading or `{"readings": [...]}`.
    Shape(Violation),
    /// More readings than one message may carry.
    TooLarge(Violation),
}

impl PayloadError {
    /// The dead-letter reason: `not_json`, `bad_shape` or `too_large`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotJson(_) => "not_json",
            Self::Shape(_) => "bad_shape",
            Self::TooLarge(_) => "too_large",
        }
    }

    /// What is wrong, with its path.
    pub fn violation(&self) -> &Violation {
        match self {
            Self::NotJson(v) | Self::Shape(v) | Self::TooLarge(v) => v,
        }
    }
}

/// Parses and validates an MQTT payload with the same rules as the HTTP batch.
pub fn parse_payload(
    body: &[u8],
    rules: &ReadingRules,
    max_readings: usize,
) -> Result<ParsedPayload, PayloadError> {
    let items = payload_items(deserialize_payload(body)?, max_readings)?;
    let mut violations = Vec::new();
    let mut readings = Vec::with_capacity(items.len());
    for (path, item) in items {
        let (reading, sensor_type) = item.into_raw();
        let before = violations.len();
        // Any label is accepted (the registry's wins); only a non-string or bad text is malformed.
        let _ = claimed_sensor_type(sensor_type.as_ref(), &path, &mut violations);
        let kind_ok = violations.len() == before;
        if let Some(valid) = validate_reading(&reading, || path.clone(), rules, &mut violations)
            && kind_ok
        {
            readings.push(valid);
        }
    }
    Ok(ParsedPayload {
        readings,
        violations,
    })
}

fn deserialize_payload(body: &[u8]) -> Result<RawPayload<'_>, PayloadError> {
    serde_json::from_slice(body).map_err(|err| {
        if err.is_syntax() || err.is_eof() {
            PayloadError::NotJson(Violation::new("payload", format!("not JSON: {err}"), None))
        } else {
            PayloadError::Shape(Violation::new(
                "payload",
                format!("not a telemetry payload: {err}"),
                None,
            ))
        }
    })
}

/// The readings of a payload with their paths (`reading`, or `readings[i]`), within bounds.
fn payload_items(
    raw: RawPayload<'_>,
    max_readings: usize,
) -> Result<Vec<(String, RawPayloadReading<'_>)>, PayloadError> {
    let items: Vec<(String, RawPayloadReading<'_>)> = match raw.readings {
        Some(list) if raw.single.is_empty() => list
            .into_iter()
            .enumerate()
            .map(|(i, r)| (format!("readings[{i}]"), r))
            .collect(),
        Some(_) => {
            return Err(PayloadError::Shape(Violation::new(
                "payload",
                "either one reading or {\"readings\": [...]}, not both",
                None,
            )));
        }
        None => vec![("reading".to_owned(), raw.single)],
    };
    if items.is_empty() {
        return Err(PayloadError::Shape(Violation::new(
            "readings",
            "must hold at least one reading",
            None,
        )));
    }
    if items.len() > max_readings {
        return Err(PayloadError::TooLarge(Violation::new(
            "readings",
            format!(
                "holds {} readings; at most {max_readings} per message",
                items.len()
            ),
            None,
        )));
    }
    Ok(items)
}

/// Values of one reading, in [`Field::ALL`] order, from field name/value pairs.
pub(crate) fn values_from(pairs: &[(Field, f64)]) -> [Option<f64>; 3] {
    let mut values = [None; 3];
    for (field, value) in pairs {
        values[*field as usize] = Some(*value);
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> ReadingRules {
        ReadingRules::defaults(Timestamp::parse_rfc3339("2025-01-15T12:00:00Z").unwrap())
    }

    const LIMITS: BatchLimits = BatchLimits {
        max_machines: 10,
        max_readings: 100,
    };
    const M1: &str = "550e8400-e29b-41d4-a716-446655440000";
    const M2: &str = "550e8400-e29b-41d4-a716-446655440001";

    fn parse(body: Value) -> Result<ParsedBatch, BatchError> {
        parse_json(body.to_string().as_bytes(), &rules(), &LIMITS)
    }

    #[test]
    fn the_seeds_documented_batch_is_accepted_with_any_sensor_label_and_integer_values() {
        let parsed = parse(json!({
            "gateway_id": "GW-TEST-01", "timestamp": "2025-01-15T10:00:00Z",
            "batch": [{
                "machine_id": M1, "sensor_type": "Vibration", "location": "Test Floor",
                "readings": [{"timestamp": "2025-01-15T10:00:00Z", "temperature": 60.5, "pressure": 102.0, "speed": 1400}]
            }]
        }))
        .unwrap();
        assert!(parsed.violations.is_empty(), "{:?}", parsed.violations);
        let machine = &parsed.machines[0];
        assert_eq!(machine.claimed.sensor_type.as_deref(), Some("Vibration"));
        assert_eq!(machine.claimed.location.as_deref(), Some("Test Floor"));
        assert_eq!(machine.readings[0].value(Field::Speed), Some(1400.0));
    }

    #[test]
    fn a_bad_reading_rejects_only_itself_and_a_bad_machine_only_its_readings() {
        let parsed = parse(json!({
            "gateway_id": "gw-1", "timestamp": "2025-01-15T10:30:00Z",
            "batch": [
                {"machine_id": M1, "sensor_type": "multi", "location": "Hall 1", "readings": [
                    {"timestamp": "2025-01-15T10:30:00Z", "temperature": 72.5, "pressure": 101.3, "speed": 1500},
                    {"timestamp": "2025-13-45T10:30:00Z", "temperature": 72.5}
                ]},
                {"machine_id": "machine-2", "readings": [{"timestamp": "2025-01-15T10:30:00Z", "speed": 10}]},
                {"machine_id": M2, "readings": [{"timestamp": "2025-01-15T10:30:00Z", "temperature": "hot"}]}
            ]
        }))
        .unwrap();
        assert_eq!(parsed.valid_readings(), 1);
        assert_eq!(parsed.rejected_readings(), 3);
        let paths: Vec<_> = parsed.violations.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "batch[0].readings[1].timestamp",
                "batch[1].machine_id",
                "batch[2].readings[0].temperature",
                "batch[2].readings[0]",
            ]
        );
        assert_eq!(
            parsed.violations[0].value,
            Some(json!("2025-13-45T10:30:00Z"))
        );
    }

    #[test]
    fn unknown_fields_duplicates_and_wrong_shapes_name_their_path() {
        let err = parse(json!({"gateway_id": "g", "timestamp": "2025-01-15T10:30:00Z",
            "batch": [{"machine_id": M1, "readings": [{"timestamp": "2025-01-15T10:30:00Z", "humidity": 3}]}]}))
        .unwrap_err();
        let BatchError::Malformed(v) = err else {
            panic!()
        };
        assert_eq!(v.path, "batch[0].readings[0].humidity");
        assert!(
            v.message.contains("unknown field `humidity`"),
            "{}",
            v.message
        );

        let body =
            br#"{"gateway_id":"g","gateway_id":"h","timestamp":"2025-01-15T10:30:00Z","batch":[]}"#;
        let BatchError::Malformed(v) = parse_json(body, &rules(), &LIMITS).unwrap_err() else {
            panic!()
        };
        assert!(v.message.contains("duplicate field"), "{}", v.message);

        let BatchError::Malformed(v) =
            parse_json(b"{\"batch\": NaN}", &rules(), &LIMITS).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(v.path, "batch");
    }

    #[test]
    fn mqtt_payloads_single_or_many_with_the_same_rules() {
        let one = parse_payload(
            br#"{"timestamp":"2025-01-15T10:30:00Z","temperature":70.5,"sensor_type":"multi"}"#,
            &rules(),
            100,
        )
        .unwrap();
        assert_eq!(one.readings.len(), 1);
        let many = parse_payload(
            br#"{"readings":[{"timestamp":"2025-01-15T10:30:00Z","speed":10},{"timestamp":"2025-01-15T10:31:00Z","speed":-5},{"speed":3}]}"#,
            &rules(),
            100,
        )
        .unwrap();
        assert_eq!(many.readings.len(), 1);
        let paths: Vec<_> = many.violations.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(paths, ["readings[1].speed", "readings[2].timestamp"]);
        assert!(
            matches!(parse_payload(b"hello", &rules(), 100), Err(PayloadError::NotJson(v)) if v.message.starts_with("not JSON"))
        );
        assert!(
            matches!(parse_payload(br#"{"humidity":3}"#, &rules(), 100), Err(PayloadError::Shape(v)) if v.message.starts_with("not a telemetry payload"))
        );
        assert!(matches!(
            parse_payload(br#"{"readings":[{"speed":1},{"speed":2}]}"#, &rules(), 1),
            Err(PayloadError::TooLarge(_))
        ));
    }

    #[test]
    fn limits_are_enforced_before_validation() {
        let readings: Vec<Value> = (0..101)
            .map(|_| json!({"timestamp": "2025-01-15T10:30:00Z", "speed": 1}))
            .collect();
        let err = parse(
            json!({"gateway_id": "g", "timestamp": "2025-01-15T10:30:00Z",
            "batch": [{"machine_id": M1, "readings": readings}]}),
        )
        .unwrap_err();
        assert!(matches!(err, BatchError::TooLarge(_)));
        let err =
            parse(json!({"gateway_id": "g", "timestamp": "2025-01-15T10:30:00Z", "batch": []}))
                .unwrap_err();
        assert!(matches!(err, BatchError::Malformed(_)));
    }
}
