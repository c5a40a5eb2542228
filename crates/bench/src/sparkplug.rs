//! Sparkplug B DDATA through the bridge, end to end, against a subscriber that only counts
//! the same messages: one edge node (`bench-edge`) in group `bench` whose devices are the
//! bench machines (by id), births first, then one alias-only DDATA per reading.

use crate::mqtt::{MESSAGES, ROUNDS, connect, publish_all};
use crate::report::{Report, Row};
use domain::sparkplug::{Metric, Payload, Value, data_type};
use prost::Message;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const EDGE: &str = "bench-edge";

fn encode(seq: u64, timestamp: u64, metrics: Vec<Metric>) -> Vec<u8> {
    Payload {
        timestamp: Some(timestamp),
        metrics,
        seq: Some(seq),
        uuid: None,
    }
    .encode_to_vec()
}

/// NBIRTH, a DBIRTH per machine (Temperature), then `MESSAGES` DDATA; timestamps one
/// millisecond apart from `base_ms`, skipping the query data set's 10-second grid. Returns
/// the messages and the first and last reading times (ms).
fn load(prefix: &str, ids: &[String], base_ms: i64) -> (Vec<(String, Vec<u8>)>, i64, i64) {
    let topic = |kind: &str, device: Option<&str>| match device {
        Some(device) => format!("{prefix}spBv1.0/bench/{kind}/{EDGE}/{device}"),
        None => format!("{prefix}spBv1.0/bench/{kind}/{EDGE}"),
    };
    let now = chrono::Utc::now().timestamp_millis() as u64;
    let mut seq = 0u64;
    let mut next = || {
        let current = seq;
        seq = (seq + 1) % 256;
        current
    };
    let bd_seq = Metric {
        name: Some("bdSeq".into()),
        datatype: Some(data_type::INT64),
        value: Some(Value::Long(0)),
        ..Metric::default()
    };
    let mut messages = vec![(topic("NBIRTH", None), encode(next(), now, vec![bd_seq]))];
    // Aliases are unique within the edge node: device n's Temperature is n + 1.
    for (n, id) in ids.iter().enumerate() {
        let declared = Metric {
            name: Some("Temperature".into()),
            alias: Some(n as u64 + 1),
            datatype: Some(data_type::DOUBLE),
            is_null: Some(true),
            ..Metric::default()
        };
        messages.push((
            topic("DBIRTH", Some(id)),
            encode(next(), now, vec![declared]),
        ));
    }
    let mut ts = base_ms;
    let first = ts + 1;
    for i in 0..MESSAGES {
        ts += 1;
        if ts % 10_000 == 0 {
            ts += 1;
        }
        let value = Metric {
            alias: Some((i % ids.len()) as u64 + 1),
            timestamp: Some(ts as u64),
            value: Some(Value::Double(50.0 + (i % 400) as f64 / 10.0)),
            ..Metric::default()
        };
        let device = &ids[i % ids.len()];
        messages.push((
            topic("DDATA", Some(device)),
            encode(next(), now, vec![value]),
        ));
    }
    (messages, first, ts)
}

/// (a) A subscriber that only counts the DDATA.
async fn baseline(ids: &[String], base_ms: i64) -> Result<f64, String> {
    let prefix = format!("bench-baseline/{}/", uuid::Uuid::new_v4().simple());
    let subscriber = connect("sparkplug-counter", true).await?;
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    subscriber.set_message_callback(move |_, message| {
        if message.is_some_and(|m| m.topic().contains("/DDATA/")) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    subscriber
        .subscribe(format!("{prefix}spBv1.0/bench/#"), 1)
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    let publisher = connect("sparkplug-publisher", true).await?;
    let (load, _, _) = load(&prefix, ids, base_ms);
    let started = Instant::now();
    publish_all(&publisher, load, None, "Sparkplug baseline: subscriber").await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while received.load(Ordering::Relaxed) < MESSAGES as u64 {
        if Instant::now() > deadline {
            return Err("the counting subscriber did not receive every Sparkplug message".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = MESSAGES as f64 / started.elapsed().as_secs_f64();
    let _ = publisher.disconnect(None).await;
    let _ = subscriber.disconnect(None).await;
    Ok(rate)
}

/// (b) The bridge as the host of group `bench`, offered the baseline's rate, until InfluxDB
/// holds every reading.
async fn bridge(
    http: &reqwest::Client,
    influx: &str,
    ids: &[String],
    base_ms: i64,
    pace: f64,
) -> Result<f64, String> {
    let publisher = connect("sparkplug-publisher", true).await?;
    let (load, first, last) = load("", ids, base_ms);
    let started = Instant::now();
    publish_all(
        &publisher,
        load,
        Some(pace),
        "Sparkplug: bridge to InfluxDB",
    )
    .await?;
    let published = started.elapsed();
    let query = format!(
        "SELECT count(temperature) FROM sensor_readings WHERE factory_id = 'bench' AND time >= {first}ms AND time <= {last}ms"
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let answer = crate::query::influx(http, influx, &query).await?;
        let count = answer["results"][0]["series"][0]["values"][0][1]
            .as_u64()
            .unwrap_or(0);
        if count >= MESSAGES as u64 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the bridge stored {count} of {MESSAGES} Sparkplug readings within 5 minutes"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    eprintln!(
        "  Sparkplug bridge: published in {:.2} s, the last reading stored {:.0} ms later",
        published.as_secs_f64(),
        (elapsed - published).as_secs_f64() * 1e3
    );
    let rate = MESSAGES as f64 / elapsed.as_secs_f64();
    let _ = publisher.disconnect(None).await;
    Ok(rate)
}

/// Rounds of both; the bench machines exist (the query section registers them).
pub async fn run(
    http: &reqwest::Client,
    influx: &str,
    ids: &[String],
    start_s: i64,
    report: &mut Report,
) -> Result<(), String> {
    let (mut baseline_rate, mut bridge_rate) = (0.0, 0.0);
    for round in 1..=ROUNDS {
        let base_ms = (start_s + round as i64 * 60) * 1000;
        let plain = baseline(ids, base_ms).await?;
        let bridged = bridge(http, influx, ids, base_ms, plain).await?;
        eprintln!(
            "  Sparkplug round {round}: plain subscriber {plain:.0}/s, bridge {bridged:.0}/s"
        );
        baseline_rate += plain / ROUNDS as f64;
        bridge_rate += bridged / ROUNDS as f64;
    }
    report.add(Row {
        figure: format!("Sparkplug B DDATA, {MESSAGES} alias-only one-reading messages"),
        value: format!("{bridge_rate:.0} readings/s"),
        baseline: format!("{baseline_rate:.0}/s plain subscriber"),
        ratio: Some(bridge_rate / baseline_rate),
        note: "publisher paced at the baseline's rate; bridge end to end: spool, protobuf, aliases and sequence, registry, InfluxDB".to_owned(),
    });
    Ok(())
}
