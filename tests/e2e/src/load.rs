//! Steady load for fault tests, and the ledger that proves it: what a gateway got
//! acknowledged over HTTP, or a device got PUBACKed over MQTT, must be what InfluxDB holds.

use serde_json::{Value, json};
use simulator::{Attempt, GatewayClient};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// One temperature reading: (time in ms since the epoch, value).
pub type Sample = (i64, f64);

/// What one load generator sent and what it was told.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Readings acknowledged (HTTP 201/207, or the broker's PUBACK).
    pub acked: Vec<Sample>,
    /// Every HTTP status seen, retries included.
    pub statuses: BTreeMap<u16, u64>,
    /// 429/503 answers without a `Retry-After`.
    pub without_retry_after: u64,
    /// Tries that got no answer at all.
    pub transport_errors: u64,
    /// Time of every try, answered or not.
    pub latencies: Vec<Duration>,
}

impl Ledger {
    /// Answers of `status` seen.
    pub fn seen(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    /// Answers outside `allowed`, as `status×count`.
    pub fn unexpected(&self, allowed: &[u16]) -> Vec<String> {
        self.statuses
            .iter()
            .filter(|(status, _)| !allowed.contains(status))
            .map(|(status, count)| format!("{status}×{count}"))
            .collect()
    }

    /// The `q`-quantile try time (0.99 → p99).
    pub fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1);
        sorted.get(index).copied().unwrap_or_default()
    }
}

/// Readings with unique, increasing timestamps (never before now) and values in the normal
/// range, so they neither collide in InfluxDB nor raise alerts.
#[derive(Debug, Default)]
pub struct SampleSource {
    last_ms: i64,
    sequence: u64,
}

impl SampleSource {
    /// The next `n` readings.
    pub fn take(&mut self, n: usize) -> Vec<Sample> {
        (0..n)
            .map(|_| {
                self.last_ms = chrono::Utc::now().timestamp_millis().max(self.last_ms + 1);
                self.sequence += 1;
                (self.last_ms, 55.0 + (self.sequence % 1500) as f64 / 100.0)
            })
            .collect()
    }
}

/// The readings as the ingest and MQTT payloads carry them.
pub fn readings_json(samples: &[Sample]) -> Vec<Value> {
    samples
        .iter()
        .map(|(ms, value)| {
            let at = chrono::DateTime::from_timestamp_millis(*ms).unwrap_or_default();
            json!({"timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "temperature": value})
        })
        .collect()
}

/// An ingest request body carrying `samples` for `machine`.
pub fn batch_body(machine: &uuid::Uuid, samples: &[Sample]) -> Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    json!({"gateway_id": "fault-test", "timestamp": now, "batch": [
        {"machine_id": machine, "readings": readings_json(samples)}
    ]})
}

/// A gateway: `per_batch` readings for `machine` every `every` until `stop`, buffered while
/// the server cannot take them and sent as the simulator does (each request retried until
/// accepted, waiting as `Retry-After` says; what piled up meanwhile goes in the next request,
/// up to 5,000 readings). Returns once everything generated is acknowledged.
pub async fn http_gateway(
    mut client: GatewayClient,
    machine: uuid::Uuid,
    every: Duration,
    per_batch: usize,
    stop: CancellationToken,
) -> Ledger {
    let (buffer, mut buffered) = tokio::sync::mpsc::unbounded_channel::<Vec<Sample>>();
    let generator = tokio::spawn(async move {
        let mut source = SampleSource::default();
        let mut ticker = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            if buffer.send(source.take(per_batch)).is_err() {
                break;
            }
        }
    });
    let mut ledger = Ledger::default();
    while let Some(mut samples) = buffered.recv().await {
        while samples.len() < 5000
            && let Ok(more) = buffered.try_recv()
        {
            samples.extend(more);
        }
        let status = deliver(&mut client, &batch_body(&machine, &samples), &mut ledger).await;
        if status == 201 || status == 207 {
            ledger.acked.extend(samples);
        }
    }
    let _ = generator.await;
    ledger
}

/// A gateway's single tries (no retry) for one machine, keeping every reading answered 201.
pub struct Feeder {
    client: GatewayClient,
    machine: uuid::Uuid,
    source: SampleSource,
    /// Readings acknowledged so far.
    pub acked: Vec<Sample>,
}

impl Feeder {
    /// Sends for `machine` through `client`.
    pub fn new(client: GatewayClient, machine: uuid::Uuid) -> Self {
        Self {
            client,
            machine,
            source: SampleSource::default(),
            acked: Vec::new(),
        }
    }

    /// One request of `n` readings (every value `value` when given): its status (0 without
    /// an answer) and how long it took.
    pub async fn send(&mut self, n: usize, value: Option<f64>) -> (u16, Duration) {
        let mut samples = self.source.take(n);
        if let Some(value) = value {
            samples.iter_mut().for_each(|sample| sample.1 = value);
        }
        let body = batch_body(&self.machine, &samples).to_string().into_bytes();
        let started = Instant::now();
        let status = self.client.send(body).await.map_or(0, |o| o.status);
        if status == 201 {
            self.acked.extend(samples);
        }
        (status, started.elapsed())
    }

    /// The next `n` readings, for requests sent some other way.
    pub fn take(&mut self, n: usize) -> Vec<Sample> {
        self.source.take(n)
    }

    /// The gateway's access token.
    pub async fn token(&mut self) -> Result<String, String> {
        self.client.token().await
    }
}

/// Delivers one body, recording every try in `ledger`; the final status.
pub async fn deliver(client: &mut GatewayClient, body: &Value, ledger: &mut Ledger) -> u16 {
    let mut started = Instant::now();
    client
        .deliver(body.to_string().into_bytes(), |attempt| {
            ledger.latencies.push(started.elapsed());
            match attempt {
                Attempt::Answered(outcome) => {
                    *ledger.statuses.entry(outcome.status).or_default() += 1;
                    if matches!(outcome.status, 429 | 503) && outcome.retry_after.is_none() {
                        ledger.without_retry_after += 1;
                    }
                }
                Attempt::Failed(_) => ledger.transport_errors += 1,
            }
            // The next try starts after the wait.
            started = Instant::now() + simulator::retry_wait(attempt).unwrap_or_default();
        })
        .await
}

/// A device: one QoS 1 message of `per_message` readings on `topic` every `every` until
/// `stop`. A reading counts as acknowledged once the broker's PUBACK is in.
pub async fn mqtt_device(
    url: &str,
    topic: &str,
    every: Duration,
    per_message: usize,
    stop: CancellationToken,
) -> Ledger {
    let client = crate::mqtt::MqttTestClient::connect(url, &[]).await;
    let mut ledger = Ledger::default();
    let mut source = SampleSource::default();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        publish(&client, topic, source.take(per_message), &mut ledger).await;
    }
    client.disconnect().await;
    ledger
}

/// Publishes one message of `samples` (QoS 1); they count as acknowledged once it returns.
async fn publish(
    client: &crate::mqtt::MqttTestClient,
    topic: &str,
    samples: Vec<Sample>,
    ledger: &mut Ledger,
) {
    let payload = json!({"readings": readings_json(&samples)}).to_string();
    client.publish(topic, payload).await;
    ledger.acked.extend(samples);
}

/// Publishes `messages` QoS 1 messages of `per_message` readings from `source` at once; what
/// was PUBACKed. (One source per machine keeps timestamps unique across bursts.)
pub async fn mqtt_burst(
    url: &str,
    topic: &str,
    messages: usize,
    per_message: usize,
    source: &mut SampleSource,
) -> Ledger {
    let client = crate::mqtt::MqttTestClient::connect(url, &[]).await;
    let mut ledger = Ledger::default();
    for _ in 0..messages {
        publish(&client, topic, source.take(per_message), &mut ledger).await;
    }
    client.disconnect().await;
    ledger
}

/// Order-independent checksum of readings (time and value to the hundredth).
pub fn checksum(samples: &[Sample]) -> u64 {
    samples.iter().fold(0u64, |sum, (ms, value)| {
        let hundredths = (value * 100.0).round() as i64;
        let mut mixed = (*ms as u64) ^ (hundredths as u64).rotate_left(40);
        // splitmix64's finaliser: every bit of both inputs moves the result.
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        sum.wrapping_add(mixed ^ (mixed >> 31))
    })
}

/// The temperature readings InfluxDB holds for `machine`.
pub async fn stored(influx: &platform::influx::InfluxClient, machine: &uuid::Uuid) -> Vec<Sample> {
    let Ok(answer) = influx
        .query(&format!(
            "SELECT temperature FROM sensor_readings WHERE machine_id = '{machine}'"
        ))
        .await
    else {
        return Vec::new();
    };
    answer
        .into_iter()
        .flatten()
        .flat_map(|series| series.values)
        .filter_map(|row| {
            let ns = row.first()?.as_i64()?;
            let value = row.get(1)?.as_f64()?;
            Some((ns / 1_000_000, value))
        })
        .collect()
}

/// Acknowledged against stored, for one path.
#[derive(Debug)]
pub struct Reconciled {
    /// Readings acknowledged.
    pub acked: usize,
    /// Of those, how many InfluxDB holds.
    pub stored: usize,
    /// Acknowledged but not stored: must be 0.
    pub lost: usize,
    /// Checksums of the acknowledged and of the stored readings.
    pub checksums: (u64, u64),
}

impl Reconciled {
    /// No loss, and InfluxDB holds exactly what was acknowledged.
    pub fn is_exact(&self) -> bool {
        self.lost == 0 && self.checksums.0 == self.checksums.1
    }
}

/// Waits (at most `limit`) until InfluxDB holds every acknowledged reading of `machine` (same
/// time, same value), then compares count and checksum.
pub async fn reconcile(
    influx: &platform::influx::InfluxClient,
    machine: &uuid::Uuid,
    acked: &[Sample],
    limit: Duration,
) -> Reconciled {
    let key = |(ms, value): &Sample| (*ms, (value * 100.0).round() as i64);
    let wanted: HashSet<(i64, i64)> = acked.iter().map(key).collect();
    let deadline = Instant::now() + limit;
    let (held, present) = loop {
        let held = stored(influx, machine).await;
        let present = held.iter().filter(|s| wanted.contains(&key(s))).count();
        if present >= acked.len() || Instant::now() >= deadline {
            break (held, present);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    Reconciled {
        acked: acked.len(),
        stored: present,
        lost: acked.len().saturating_sub(present),
        checksums: (checksum(acked), checksum(&held)),
    }
}
