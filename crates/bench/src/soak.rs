//! `make soak MINUTES=N`: a steady load over both write paths (HTTP batches through nginx and
//! QoS 1 MQTT messages) with a dashboard's reads on the side (fleet latest every 2 s, one
//! live stream), sampling every service's resident memory every 10 s. At the end it counts
//! what InfluxDB holds against what was acknowledged (HTTP `stored`) or published (MQTT
//! PUBACK) and judges memory: after a one-minute warm-up, the median of the last fifth of
//! samples may exceed the median of the first fifth by at most 10% or 5 MiB.

use crate::query::{influx, login, machines};
use crate::report::current_rss_kib;
use crate::{Target, json_of};
use paho_mqtt as mqtt;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SERVICES: [&str; 4] = ["auth", "ingest-api", "query-api", "mqtt-bridge"];
/// Readings per second over HTTP (batches of `HTTP_BATCH` every `1 / (rate / batch)` s).
const HTTP_RATE: u64 = 200;
const HTTP_BATCH: u64 = 20;
/// MQTT messages (one reading each) per second.
const MQTT_RATE: u64 = 100;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const WARM_UP: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Counters {
    http_sent: AtomicU64,
    http_stored: AtomicU64,
    http_errors: AtomicU64,
    mqtt_acked: AtomicU64,
    mqtt_errors: AtomicU64,
    read_errors: AtomicU64,
    stream_events: AtomicU64,
    /// Unique timestamps: every reading gets the next one.
    next_reading: AtomicU64,
}

/// A memory sample: time since the start, and each service's RSS in KiB.
type Sample = (Duration, [u64; 4]);

pub async fn run(target: &Target, minutes: u64) -> Result<bool, String> {
    let http = reqwest::Client::new();
    let manager = login(target, &http, "MANAGEMENT_USER", "MANAGEMENT_PASSWORD").await?;
    let operator = login(target, &http, "OPERATOR_USER", "OPERATOR_PASSWORD").await?;
    let ids = machines(target, &http, &manager).await?;
    let gateway = target.gateway_token().await?;
    // Four hours back, 7 ns off any 10-second grid: never collides with the query data set.
    let base_ns = (chrono::Utc::now().timestamp_nanos_opt().ok_or("clock")? / 1_000_000_000
        - 4 * 3600)
        * 1_000_000_000
        + 7;
    let counters = Arc::new(Counters::default());
    let duration = Duration::from_secs(minutes * 60);
    let started = Instant::now();
    let until = started + duration;
    println!(
        "soak: {minutes} min, HTTP {HTTP_RATE} readings/s in batches of {HTTP_BATCH}, MQTT {MQTT_RATE} msg/s, \
         fleet reads every 2 s, one live stream; memory every {}s",
        SAMPLE_EVERY.as_secs()
    );
    let http_load = tokio::spawn(http_writer(
        target.base_url.clone(),
        gateway,
        ids.clone(),
        base_ns,
        until,
        counters.clone(),
    ));
    let mqtt_load = tokio::spawn(mqtt_writer(ids.clone(), base_ns, until, counters.clone()));
    let reads = tokio::spawn(reader(
        target.base_url.clone(),
        operator,
        ids[0].clone(),
        until,
        counters.clone(),
    ));
    let samples = sample_memory(started, until, &counters).await;
    http_load.await.map_err(|e| e.to_string())??;
    mqtt_load.await.map_err(|e| e.to_string())??;
    reads.await.map_err(|e| e.to_string())?;

    // Loss: everything acknowledged or published must be in InfluxDB.
    let expected =
        counters.http_stored.load(Ordering::Relaxed) + counters.mqtt_acked.load(Ordering::Relaxed);
    let stored = stored_readings(&http, base_ns, &counters, expected).await?;
    let loss = expected.saturating_sub(stored);
    print_counts(minutes, &counters, stored, loss);
    let memory_ok = memory_is_flat(&samples);
    let passed = loss == 0 && memory_ok && expected > 0;
    println!("  verdict: {}", if passed { "PASS" } else { "FAIL" });
    Ok(passed)
}

/// Samples every service's RSS every `SAMPLE_EVERY` until `until`, printing progress.
async fn sample_memory(started: Instant, until: Instant, counters: &Counters) -> Vec<Sample> {
    let mut samples = Vec::new();
    while Instant::now() < until {
        tokio::time::sleep(SAMPLE_EVERY.min(until.saturating_duration_since(Instant::now()))).await;
        let rss = SERVICES.map(|s| current_rss_kib(s).unwrap_or_default());
        let at = started.elapsed();
        println!(
            "  {:>5}s  {}  http stored {}  mqtt acked {}  errors {}",
            at.as_secs(),
            SERVICES
                .iter()
                .zip(rss)
                .map(|(s, kib)| format!("{s} {:.1} MiB", kib as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(", "),
            counters.http_stored.load(Ordering::Relaxed),
            counters.mqtt_acked.load(Ordering::Relaxed),
            counters.http_errors.load(Ordering::Relaxed)
                + counters.mqtt_errors.load(Ordering::Relaxed)
                + counters.read_errors.load(Ordering::Relaxed),
        );
        samples.push((at, rss));
    }
    samples
}

/// The soak's readings InfluxDB holds, polled for up to two minutes until it holds
/// `expected`: the bridge may still be draining its spool for a moment.
async fn stored_readings(
    http: &reqwest::Client,
    base_ns: i64,
    counters: &Counters,
    expected: u64,
) -> Result<u64, String> {
    let end_ns = base_ns + counters.next_reading.load(Ordering::Relaxed) as i64 * 1000 + 1;
    let influx_url = std::env::var("PLANTLINE_INFLUX__URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8086".to_owned());
    let q = format!(
        "SELECT count(speed) FROM sensor_readings WHERE factory_id = 'bench' AND time >= {base_ns} AND time < {end_ns}"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let answer = influx(http, &influx_url, &q).await?;
        let stored = answer["results"][0]["series"][0]["values"][0][1]
            .as_u64()
            .unwrap_or(0);
        if stored >= expected || Instant::now() > deadline {
            return Ok(stored);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn print_counts(minutes: u64, counters: &Counters, stored: u64, loss: u64) {
    println!("\nsoak result after {minutes} min");
    println!(
        "  readings: HTTP acknowledged {} of {} sent, MQTT acknowledged by the broker {}; InfluxDB holds {stored}; loss {loss}",
        counters.http_stored.load(Ordering::Relaxed),
        counters.http_sent.load(Ordering::Relaxed),
        counters.mqtt_acked.load(Ordering::Relaxed),
    );
    println!(
        "  errors: HTTP {} (retried), MQTT {}, reads {}; live events received {}",
        counters.http_errors.load(Ordering::Relaxed),
        counters.mqtt_errors.load(Ordering::Relaxed),
        counters.read_errors.load(Ordering::Relaxed),
        counters.stream_events.load(Ordering::Relaxed),
    );
}

/// Judges and prints each service's memory: after the warm-up, the median of the last fifth
/// of samples may exceed the median of the first fifth by at most 10% or 5 MiB.
fn memory_is_flat(samples: &[Sample]) -> bool {
    let mut memory_ok = true;
    let settled: Vec<&Sample> = samples.iter().filter(|(at, _)| *at >= WARM_UP).collect();
    let fifth = (settled.len() / 5).max(1);
    for (i, service) in SERVICES.iter().enumerate() {
        let median = |window: &[&Sample]| {
            let mut values: Vec<u64> = window.iter().map(|(_, rss)| rss[i]).collect();
            values.sort_unstable();
            values.get(values.len() / 2).copied().unwrap_or_default()
        };
        if settled.len() < 2 {
            println!("  {service}: too short to judge memory (needs > 1 min)");
            continue;
        }
        let first = median(&settled[..fifth]);
        let last = median(&settled[settled.len() - fifth..]);
        let growth = last as f64 - first as f64;
        let allowed = (first as f64 * 0.10).max(5.0 * 1024.0);
        let ok = growth <= allowed;
        memory_ok &= ok;
        println!(
            "  {service}: RSS {:.1} → {:.1} MiB (growth {:+.1} MiB, bound {:.1}) {}",
            first as f64 / 1024.0,
            last as f64 / 1024.0,
            growth / 1024.0,
            allowed / 1024.0,
            if ok { "ok" } else { "GROWING" }
        );
    }
    memory_ok
}

fn timestamp(base_ns: i64, counters: &Counters) -> String {
    let n = counters.next_reading.fetch_add(1, Ordering::Relaxed) as i64;
    chrono::DateTime::from_timestamp_nanos(base_ns + n * 1000)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

async fn http_writer(
    base_url: String,
    gateway: String,
    ids: Vec<String>,
    base_ns: i64,
    until: Instant,
    counters: Arc<Counters>,
) -> Result<(), String> {
    let http = reqwest::Client::new();
    let url = format!("{base_url}/api/v1/data/ingest");
    let every = Duration::from_secs_f64(HTTP_BATCH as f64 / HTTP_RATE as f64);
    let mut tick = tokio::time::interval(every);
    let mut round = 0usize;
    while Instant::now() < until {
        tick.tick().await;
        let machine = &ids[round % ids.len()];
        round += 1;
        let readings: Vec<_> = (0..HTTP_BATCH)
            .map(|i| json!({"timestamp": timestamp(base_ns, &counters), "temperature": 60.0 + (i % 10) as f64, "speed": 1500.0}))
            .collect();
        let body = json!({"gateway_id": "soak", "timestamp": chrono::Utc::now().to_rfc3339(),
            "batch": [{"machine_id": machine, "readings": readings}]});
        counters.http_sent.fetch_add(HTTP_BATCH, Ordering::Relaxed);
        // Retry what was refused for now (503/429), as a gateway does.
        for _ in 0..20 {
            match json_of(http.post(&url).bearer_auth(&gateway).json(&body)).await {
                Ok(answer) if answer["stored"].is_u64() => {
                    let stored = answer["stored"].as_u64().unwrap_or(0);
                    counters.http_stored.fetch_add(stored, Ordering::Relaxed);
                    break;
                }
                _ => {
                    counters.http_errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
    Ok(())
}

async fn mqtt_writer(
    ids: Vec<String>,
    base_ns: i64,
    until: Instant,
    counters: Arc<Counters>,
) -> Result<(), String> {
    let client = crate::mqtt::connect("soak", true).await?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / MQTT_RATE as f64));
    let mut n = 0usize;
    let mut in_flight = std::collections::VecDeque::new();
    while Instant::now() < until {
        tick.tick().await;
        let machine = &ids[n % ids.len()];
        n += 1;
        let payload = format!(
            r#"{{"timestamp":"{}","temperature":{},"speed":1500}}"#,
            timestamp(base_ns, &counters),
            60.0 + (n % 10) as f64
        );
        let topic = format!("factory/bench/machine/{machine}/telemetry");
        in_flight.push_back(client.publish(mqtt::Message::new(topic, payload, 1)));
        while in_flight.len() > 100 {
            settle(in_flight.pop_front(), &counters).await;
        }
    }
    while let Some(token) = in_flight.pop_front() {
        settle(Some(token), &counters).await;
    }
    let _ = client.disconnect(None).await;
    Ok(())
}

async fn settle(token: Option<mqtt::DeliveryToken>, counters: &Counters) {
    if let Some(token) = token {
        match token.await {
            Ok(()) => counters.mqtt_acked.fetch_add(1, Ordering::Relaxed),
            Err(_) => counters.mqtt_errors.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// A dashboard: the fleet's latest values every 2 s and one machine's live stream.
async fn reader(
    base_url: String,
    operator: String,
    machine: String,
    until: Instant,
    counters: Arc<Counters>,
) {
    let http = reqwest::Client::new();
    let stream = {
        let (http, base_url, operator, counters) = (
            http.clone(),
            base_url.clone(),
            operator.clone(),
            counters.clone(),
        );
        tokio::spawn(async move {
            while Instant::now() < until {
                let Ok(ticket) = json_of(
                    http.post(format!("{base_url}/api/v1/stream/ticket"))
                        .bearer_auth(&operator),
                )
                .await
                else {
                    counters.read_errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                };
                let ticket = ticket["ticket"].as_str().unwrap_or_default().to_owned();
                let Ok(mut response) = http
                    .get(format!("{base_url}/api/v1/stream"))
                    .query(&[
                        ("ticket", ticket.as_str()),
                        ("machine_id", machine.as_str()),
                    ])
                    .send()
                    .await
                else {
                    counters.read_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                while Instant::now() < until {
                    match tokio::time::timeout(Duration::from_secs(1), response.chunk()).await {
                        Ok(Ok(Some(chunk))) => {
                            let events =
                                chunk.windows(14).filter(|w| w == b"event: reading").count();
                            counters
                                .stream_events
                                .fetch_add(events as u64, Ordering::Relaxed);
                        }
                        Ok(_) => break,
                        Err(_) => {}
                    }
                }
            }
        })
    };
    while Instant::now() < until {
        let answer = http
            .get(format!("{base_url}/api/v1/data/latest"))
            .bearer_auth(&operator)
            .send()
            .await;
        if !answer.is_ok_and(|a| a.status().is_success()) {
            counters.read_errors.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let _ = stream.await;
}
