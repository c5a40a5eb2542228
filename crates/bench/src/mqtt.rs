//! MQTT figures: the same QoS 1 publisher load received by (a) a plain subscriber that only
//! counts messages — the most the broker delivers to one session here — and (b) the running
//! mqtt-bridge, measured end to end until InfluxDB holds every reading.

use crate::Target;
use crate::report::{Report, Row, progress};
use paho_mqtt as mqtt;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(crate) const MESSAGES: usize = 40_000;
pub(crate) const ROUNDS: usize = 2;
/// QoS 1 publishes in flight: enough to keep the broker busy, within paho's window.
const WINDOW: usize = 500;

fn broker_url() -> String {
    std::env::var("PLANTLINE_MQTT__URL").unwrap_or_else(|_| "tcp://127.0.0.1:1884".to_owned())
}

pub(crate) async fn connect(name: &str, clean: bool) -> Result<mqtt::AsyncClient, String> {
    let client = mqtt::AsyncClient::new(
        mqtt::CreateOptionsBuilder::new()
            .server_uri(broker_url())
            .client_id(format!(
                "plantline-bench-{name}-{}",
                uuid::Uuid::new_v4().simple()
            ))
            .persistence(None)
            // paho counts queued publishes against this even while connected.
            .max_buffered_messages(2 * WINDOW as i32)
            .finalize(),
    )
    .map_err(|e| e.to_string())?;
    let options = mqtt::ConnectOptionsBuilder::new()
        .clean_session(clean)
        .max_inflight(WINDOW as i32)
        .finalize();
    let connecting = client.connect(options);
    connecting.await.map_err(|e| format!("MQTT connect: {e}"))?;
    Ok(client)
}

/// Publishes `messages` with QoS 1 keeping `WINDOW` in flight, at most `pace` per second when
/// given; returns when the broker acknowledged the last one.
pub(crate) async fn publish_all(
    client: &mqtt::AsyncClient,
    messages: Vec<(String, Vec<u8>)>,
    pace: Option<f64>,
    what: &str,
) -> Result<(), String> {
    let bar = progress(messages.len() as u64, what);
    let mut in_flight = VecDeque::with_capacity(WINDOW);
    let started = Instant::now();
    for (i, (topic, payload)) in messages.into_iter().enumerate() {
        if let Some(rate) = pace
            && i % 100 == 0
        {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        if in_flight.len() == WINDOW
            && let Some(token) = in_flight.pop_front()
        {
            let token: mqtt::DeliveryToken = token;
            token.await.map_err(|e| format!("publish: {e}"))?;
            bar.inc(1);
        }
        in_flight.push_back(client.publish(mqtt::Message::new(topic, payload, 1)));
    }
    for token in in_flight {
        token.await.map_err(|e| format!("publish: {e}"))?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

/// The round's messages: one reading each, spread over the machines, timestamps 1 µs apart
/// from `base` (never on the query data set's 10-second grid).
fn messages(prefix: &str, ids: &[String], base_us: i64) -> Vec<(String, Vec<u8>)> {
    (0..MESSAGES)
        .map(|i| {
            let machine = &ids[i % ids.len()];
            let ts = chrono::DateTime::from_timestamp_micros(base_us + i as i64)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            let temperature = 50.0 + (i % 400) as f64 / 10.0;
            (
                format!("{prefix}factory/bench/machine/{machine}/telemetry"),
                format!(r#"{{"timestamp":"{ts}","temperature":{temperature}}}"#).into_bytes(),
            )
        })
        .collect()
}

/// (a) A subscriber that only counts: readings per second from first publish to last receipt.
async fn baseline(ids: &[String], base_us: i64, round: usize) -> Result<f64, String> {
    let prefix = format!("bench-baseline/{}/", uuid::Uuid::new_v4().simple());
    let subscriber = connect("counter", true).await?;
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    subscriber.set_message_callback(move |_, message| {
        if message.is_some() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    subscriber
        .subscribe(format!("{prefix}factory/+/machine/+/telemetry"), 1)
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    let publisher = connect("publisher", true).await?;
    let load = messages(&prefix, ids, base_us);
    let started = Instant::now();
    publish_all(
        &publisher,
        load,
        None,
        &format!("baseline {round}/{ROUNDS}: subscriber"),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while received.load(Ordering::Relaxed) < MESSAGES as u64 {
        if Instant::now() > deadline {
            return Err("the counting subscriber did not receive every message".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = MESSAGES as f64 / started.elapsed().as_secs_f64();
    let _ = publisher.disconnect(None).await;
    let _ = subscriber.disconnect(None).await;
    Ok(rate)
}

async fn stored(http: &reqwest::Client, influx: &str, from_us: i64) -> Result<u64, String> {
    let q = format!(
        "SELECT count(temperature) FROM sensor_readings WHERE factory_id = 'bench' AND time >= {}u AND time < {}u",
        from_us,
        from_us + MESSAGES as i64
    );
    let answer = crate::query::influx(http, influx, &q).await?;
    Ok(answer["results"][0]["series"][0]["values"][0][1]
        .as_u64()
        .unwrap_or(0))
}

/// (b) The bridge, offered the baseline's rate: readings per second from first publish until
/// InfluxDB holds them all.
async fn bridge(
    http: &reqwest::Client,
    influx: &str,
    ids: &[String],
    base_us: i64,
    pace: f64,
    round: usize,
) -> Result<f64, String> {
    let publisher = connect("publisher", true).await?;
    let load = messages("", ids, base_us);
    let started = Instant::now();
    publish_all(
        &publisher,
        load,
        Some(pace),
        &format!("bridge {round}/{ROUNDS}: to InfluxDB"),
    )
    .await?;
    let published = started.elapsed();
    let at_publish_end = stored(http, influx, base_us).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let count = stored(http, influx, base_us).await?;
        if count >= MESSAGES as u64 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the bridge stored {count} of {MESSAGES} readings within 5 minutes"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    eprintln!(
        "  bridge: published in {:.2} s, {at_publish_end} stored then, the rest {:.0} ms later",
        published.as_secs_f64(),
        (elapsed - published).as_secs_f64() * 1e3
    );
    let rate = MESSAGES as f64 / elapsed.as_secs_f64();
    let _ = publisher.disconnect(None).await;
    Ok(rate)
}

/// Runs the MQTT section (the bench machines must exist: the query section registers them).
pub async fn run(target: &Target, report: &mut Report) -> Result<(), String> {
    let http = reqwest::Client::new();
    let influx = std::env::var("PLANTLINE_INFLUX__URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8086".to_owned());
    let manager =
        crate::query::login(target, &http, "MANAGEMENT_USER", "MANAGEMENT_PASSWORD").await?;
    let ids = crate::query::machines(target, &http, &manager).await?;
    // Two hours back, one second past a 10-second mark: clear of the query data set's points.
    let now = chrono::Utc::now().timestamp();
    let start = (now - 7200) / 10 * 10 + 1;
    let (mut baseline_rate, mut bridge_rate) = (0.0, 0.0);
    for round in 1..=ROUNDS {
        let base_us = (start + round as i64 * 2) * 1_000_000;
        let plain = baseline(&ids, base_us, round).await?;
        let bridged = bridge(&http, &influx, &ids, base_us + 1_000_000, plain, round).await?;
        eprintln!("  MQTT round {round}: plain subscriber {plain:.0}/s, bridge {bridged:.0}/s");
        baseline_rate += plain / ROUNDS as f64;
        bridge_rate += bridged / ROUNDS as f64;
    }
    report.add(Row {
        figure: format!("MQTT QoS 1, {MESSAGES} one-reading messages"),
        value: format!("{bridge_rate:.0} readings/s"),
        baseline: format!("{baseline_rate:.0}/s plain subscriber"),
        ratio: Some(bridge_rate / baseline_rate),
        note: "publisher paced at the baseline's rate; bridge end to end: spool, validation, registry, InfluxDB, latest values".to_owned(),
    });
    crate::sparkplug::run(&http, &influx, &ids, start - 3600, report).await?;
    report.add_peak_rss("mqtt-bridge");
    Ok(())
}
