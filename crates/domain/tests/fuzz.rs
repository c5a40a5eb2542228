//! Fuzzing the parsers with proptest: whatever bytes arrive, the ingest JSON parser, the MQTT
//! payload parser, the line-protocol parser, the MQTT topic parser and the history query
//! parser answer (accept or refuse) and never panic; valid input is accepted exactly, and the
//! line-protocol encoder round-trips every valid reading. The committed corpus
//! (`tests/corpus/`) runs first on every run; `PLANTLINE_FUZZ_CASES` sets the random cases per
//! property (default 2000; CI runs the default, a few seconds). A failure proptest finds is
//! saved under `tests/fuzz.proptest-regressions` and replayed first from then on: commit it.

use plantline_domain as domain;

use domain::MachineId;
use domain::history::{HistoryParams, HistoryQuery};
use domain::ingest::{BatchLimits, parse_json, parse_payload};
use domain::line_protocol::{self, Precision, SeriesTags};
use domain::mqtt::TelemetryTopic;
use domain::reading::{ReadingRules, Timestamp};
use proptest::prelude::*;

const NOW: i64 = 1_795_000_000_000_000_000;
const MACHINE: &str = "0b6f1c3e-8a51-4c7e-9a01-000000000001";

fn rules() -> ReadingRules {
    ReadingRules::defaults(Timestamp::from_nanos(NOW))
}

fn limits() -> BatchLimits {
    BatchLimits {
        max_machines: 100,
        max_readings: 10_000,
    }
}

fn cases() -> u32 {
    std::env::var("PLANTLINE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// Every parser, on one input: none may panic.
fn parse_everything(bytes: &[u8]) {
    let _ = parse_json(bytes, &rules(), &limits());
    let _ = parse_payload(bytes, &rules(), 1000);
    if let Ok(text) = std::str::from_utf8(bytes) {
        for precision in [
            Precision::Nanoseconds,
            Precision::Microseconds,
            Precision::Milliseconds,
            Precision::Seconds,
        ] {
            let _ = line_protocol::parse(
                text,
                &line_protocol::LineFormat::plain(precision),
                &rules(),
                &limits(),
            );
        }
        let _ = line_protocol::decode_reading(text);
        let _ = TelemetryTopic::parse(text, "");
        let _ = TelemetryTopic::parse(text, "plantline_test/x/");
        let params = HistoryParams {
            start_time: Some(text.to_owned()),
            end_time: Some(text.to_owned()),
            interval: Some(text.to_owned()),
            fields: Some(text.to_owned()),
            agg: Some(text.to_owned()),
            tz: Some(text.to_owned()),
            limit: Some(text.to_owned()),
            offset: Some(text.to_owned()),
            cursor: Some(text.to_owned()),
        };
        let _ = HistoryQuery::parse(&params, Timestamp::from_nanos(NOW), 10_000);
    }
}

#[test]
fn the_committed_corpus_is_answered_without_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus folder") {
        let bytes = std::fs::read(entry.expect("corpus entry").path()).expect("corpus file");
        parse_everything(&bytes);
        seen += 1;
    }
    assert!(seen >= 10, "the corpus holds {seen} inputs");
    // And the valid ones in it are accepted.
    let valid = std::fs::read(dir.join("valid-batch.json")).unwrap();
    let parsed = parse_json(&valid, &rules_at("2026-11-22T10:00:00Z"), &limits()).unwrap();
    assert_eq!(parsed.valid_readings(), 1);
}

fn rules_at(now: &str) -> ReadingRules {
    ReadingRules::defaults(Timestamp::parse_rfc3339(now).unwrap_or_else(|e| panic!("{now}: {e}")))
}

/// A reading that every rule accepts: a time inside the window, in-range values.
fn valid_reading() -> impl Strategy<Value = (i64, Option<f64>, Option<f64>, Option<f64>)> {
    let window = 50 * 7 * 24 * 3600 * 1_000_000_000_i64;
    (
        (NOW - window)..(NOW + 60_000_000_000),
        proptest::option::of(-273.15f64..2000.0),
        proptest::option::of(0.0f64..1_000_000.0),
        proptest::option::of(0.0f64..100_000.0),
    )
        .prop_filter("at least one value", |(_, t, p, s)| {
            t.is_some() || p.is_some() || s.is_some()
        })
}

fn rfc3339(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn reading_json(r: &(i64, Option<f64>, Option<f64>, Option<f64>)) -> serde_json::Value {
    let mut reading = serde_json::json!({"timestamp": rfc3339(r.0)});
    for (name, value) in [("temperature", r.1), ("pressure", r.2), ("speed", r.3)] {
        if let Some(value) = value {
            reading[name] = value.into();
        }
    }
    reading
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_bytes_are_answered_without_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        parse_everything(&bytes);
    }

    #[test]
    fn arbitrary_text_is_answered_without_panics(text in ".{0,300}") {
        parse_everything(text.as_bytes());
    }

    #[test]
    fn mangled_valid_payloads_are_answered_without_panics(
        cut in 0usize..200, insert in any::<u8>(), at in 0usize..200,
    ) {
        let valid = format!(
            r#"{{"gateway_id":"g","timestamp":"2026-11-22T10:00:00Z","batch":[{{"machine_id":"{MACHINE}","readings":[{{"timestamp":"2026-11-22T10:00:00Z","temperature":72.5,"pressure":101.3}}]}}]}}"#
        );
        let mut bytes = valid.into_bytes();
        bytes.truncate(bytes.len().saturating_sub(cut % 40));
        let at = at.min(bytes.len());
        bytes.insert(at, insert);
        parse_everything(&bytes);
        let line = format!("sensor_readings,machine_id={MACHINE} temperature=72.5,pressure=101.3 {NOW}");
        let mut bytes = line.into_bytes();
        let at = at.min(bytes.len());
        bytes.insert(at, insert);
        parse_everything(&bytes);
    }

    #[test]
    fn valid_batches_are_accepted_exactly(readings in proptest::collection::vec(valid_reading(), 1..20)) {
        let body = serde_json::json!({"gateway_id": "fuzz", "timestamp": rfc3339(NOW),
            "batch": [{"machine_id": MACHINE, "readings": readings.iter().map(reading_json).collect::<Vec<_>>()}]});
        let parsed = parse_json(body.to_string().as_bytes(), &rules(), &limits()).expect("a valid batch");
        prop_assert!(parsed.violations.is_empty(), "{:?}", parsed.violations);
        let got = &parsed.machines[0].readings;
        prop_assert_eq!(got.len(), readings.len());
        for (reading, expected) in got.iter().zip(&readings) {
            prop_assert_eq!(reading.timestamp().nanos(), expected.0);
            prop_assert_eq!(reading.value(domain::reading::Field::Temperature), expected.1);
            prop_assert_eq!(reading.value(domain::reading::Field::Pressure), expected.2);
            prop_assert_eq!(reading.value(domain::reading::Field::Speed), expected.3);
        }
        // The same readings as one MQTT message.
        let payload = serde_json::json!({"readings": readings.iter().map(reading_json).collect::<Vec<_>>()});
        let parsed = parse_payload(payload.to_string().as_bytes(), &rules(), 1000).expect("a valid payload");
        prop_assert_eq!(parsed.readings.len(), readings.len());
    }

    #[test]
    fn the_encoder_round_trips_every_valid_reading(
        reading in valid_reading(),
        location in "[ -~]{1,30}", factory in "[A-Za-z0-9_-]{1,20}",
    ) {
        let body = serde_json::json!({"readings": [reading_json(&reading)]});
        let parsed = parse_payload(body.to_string().as_bytes(), &rules(), 10).expect("valid");
        let original = parsed.readings[0];
        let machine: MachineId = MACHINE.parse().unwrap();
        let tags = SeriesTags { machine_id: &machine, factory_id: &factory, sensor_type: "multi", location: &location };
        let mut line = String::new();
        line_protocol::encode(&mut line, &tags, &original);
        let (_, decoded) = line_protocol::decode_reading(&line).expect("our own line parses");
        prop_assert_eq!(decoded, original, "line: {}", line);
        // And the ingest parser accepts what the encoder wrote.
        let parsed = line_protocol::parse(&line, &line_protocol::LineFormat::plain(Precision::Nanoseconds), &rules(), &limits()).expect("accepted");
        prop_assert!(parsed.violations.is_empty(), "{:?} for {}", parsed.violations, line);
    }

    #[test]
    fn topics_either_parse_to_their_segments_or_are_refused(factory in "[A-Za-z0-9_-]{1,64}") {
        let topic = format!("factory/{factory}/machine/{MACHINE}/telemetry");
        let parsed = TelemetryTopic::parse(&topic, "").expect("a well-formed topic");
        prop_assert_eq!(parsed.factory_id.as_ref(), factory.as_str());
        let longer = format!("{topic}/extra");
        let refused = TelemetryTopic::parse(&longer, "").is_err();
        prop_assert!(refused);
    }

    #[test]
    fn the_text_rule_refuses_exactly_the_strings_with_control_characters(text in "\\PC{0,40}[\\x00-\\x1f\\x7f]?\\PC{0,40}") {
        let has_control = text.chars().any(char::is_control);
        prop_assert_eq!(domain::text::check(&text, 1000).is_err(), has_control);
        // Wherever such a string lands in a batch, the batch parser names it and stores nothing
        // for that machine.
        let body = serde_json::json!({"gateway_id": "gw", "timestamp": rfc3339(NOW), "batch": [
            {"machine_id": MACHINE, "location": format!("Hall {text}"), "sensor_type": text,
             "readings": [{"timestamp": rfc3339(NOW - 1_000_000_000), "temperature": 20.0}]}]});
        let parsed = parse_json(body.to_string().as_bytes(), &rules(), &limits()).expect("a document");
        let named: Vec<&str> = parsed.violations.iter().map(|v| v.path.as_str()).collect();
        if has_control {
            prop_assert!(named.contains(&"batch[0].location"), "{:?}", named);
            prop_assert_eq!(parsed.valid_readings(), 0);
        } else if text.trim().is_empty() {
            prop_assert!(!named.contains(&"batch[0].sensor_type"), "{:?}", named);
        } else {
            prop_assert!(named.is_empty(), "{:?}", named);
        }
    }
}
