//! The property behind every write path: for any valid reading and any registry tags, the
//! line protocol we encode is accepted by the real InfluxDB and reads back equal — time,
//! tags and the exact float values.

use domain::MachineId;
use domain::ingest::parse_payload;
use domain::line_protocol::{SeriesTags, encode};
use domain::reading::{ReadingRules, Timestamp};
use plantline_e2e::TestContext;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

const CASES: usize = 300;

#[derive(Debug, Clone)]
struct Case {
    nanos: i64,
    values: [Option<f64>; 3],
    factory: String,
    location: String,
}

fn case(now: i64) -> impl Strategy<Value = Case> {
    let window = 50 * 7 * 24 * 3600 * 1_000_000_000_i64;
    (
        (now - window)..now,
        proptest::option::of(-273.15f64..2000.0),
        proptest::option::of(0.0f64..1_000_000.0),
        proptest::option::of(0.0f64..100_000.0),
        "[A-Za-z0-9_-]{1,16}",
        // Printable ASCII, including the characters line protocol escapes (`,` `=` space), `\`
        // and `"`; not starting or ending with a space, which InfluxDB's parser trims, nor
        // ending with a backslash, which the registry refuses (line protocol cannot carry it).
        "[!-~][ -~]{0,20}[!-\\[\\]-~]",
    )
        .prop_filter("one value at least", |c| {
            c.1.is_some() || c.2.is_some() || c.3.is_some()
        })
        .prop_map(|(nanos, t, p, s, factory, location)| Case {
            nanos,
            values: [t, p, s],
            factory,
            location,
        })
}

#[tokio::test]
async fn every_encoded_reading_is_accepted_by_influxdb_and_reads_back_equal() {
    let ctx = TestContext::new().await;
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let rules = ReadingRules::defaults(Timestamp::from_nanos(now));
    let mut runner = TestRunner::deterministic();
    let strategy = case(now);
    let mut cases = Vec::with_capacity(CASES);
    let mut body = String::new();
    for _ in 0..CASES {
        let case = strategy.new_tree(&mut runner).expect("a case").current();
        let mut reading = serde_json::json!({"timestamp": chrono::DateTime::from_timestamp_nanos(case.nanos)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)});
        for (name, value) in ["temperature", "pressure", "speed"].iter().zip(case.values) {
            if let Some(value) = value {
                reading[*name] = value.into();
            }
        }
        let parsed = parse_payload(reading.to_string().as_bytes(), &rules, 1).expect("valid");
        let machine: MachineId = uuid::Uuid::new_v4().to_string().parse().unwrap();
        let tags = SeriesTags {
            machine_id: &machine,
            factory_id: &case.factory,
            sensor_type: "multi",
            location: &case.location,
        };
        encode(&mut body, &tags, &parsed.readings[0]);
        cases.push((machine.to_string(), case));
    }
    ctx.influx()
        .write_lines(body, None)
        .await
        .expect("InfluxDB accepts every line");

    let points = ctx.influx_points().await;
    assert_eq!(points.len(), CASES, "one point per reading");
    let by_machine: std::collections::HashMap<String, &serde_json::Value> = points
        .iter()
        .map(|p| (p[3].as_str().unwrap_or_default().to_owned(), p))
        .collect();
    for (machine, case) in &cases {
        let row = by_machine
            .get(machine)
            .unwrap_or_else(|| panic!("{machine} stored"));
        assert_eq!(row[0].as_i64(), Some(case.nanos), "{case:?}");
        assert_eq!(row[1], case.factory.as_str(), "{case:?}");
        assert_eq!(row[2], case.location.as_str(), "location of {case:?}");
        assert_eq!(row[4], "multi");
        for (column, expected) in (5..8).zip(case.values) {
            assert_eq!(row[column].as_f64(), expected, "{case:?}");
        }
    }
}
