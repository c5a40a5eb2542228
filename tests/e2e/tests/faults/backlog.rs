//! Scenario 7: the spool at its cap while invalid messages keep arriving and InfluxDB is away.
//! paho's receive thread waits for spool room inside our callback, holding paho's one lock;
//! anything that publishes (dead letters, the status topic) must not stand between the
//! pipeline and the commit that frees the room.

use crate::support::{Route, Service, Stack, Summary, http, within};
use plantline_e2e::backing::Kind;
use plantline_e2e::mqtt::MqttTestClient;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The smallest spool the bridge accepts: two 64 KiB segments, about 250 messages (and
/// payloads of at most 16 KiB, so that two fit in a segment).
pub const SMALL_SPOOL: [(&str, &str); 3] = [
    ("PLANTLINE_BRIDGE__SPOOL_MAX_BYTES", "131072"),
    ("PLANTLINE_BRIDGE__SPOOL_SEGMENT_BYTES", "65536"),
    ("PLANTLINE_MQTT__MAX_PAYLOAD_BYTES", "16384"),
];

/// Polls `/healthz` every 200 ms until `stop`: (answered, not answered).
async fn watch_health(bridge: String, stop: CancellationToken) -> (u32, u32) {
    let (mut answered, mut silent) = (0, 0);
    while !stop.is_cancelled() {
        let ok = http()
            .get(format!("{bridge}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            answered += 1;
        } else {
            silent += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (answered, silent)
}

/// The `n`th invalid message: alternately not JSON and a reading out of every range, each
/// one unique so its dead letter can be told apart.
fn invalid_message(n: usize) -> String {
    if n.is_multiple_of(2) {
        format!("not json, message {n}")
    } else {
        let at = chrono::Utc::now() - chrono::Duration::minutes(10);
        json!({
            "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "temperature": 9000.0 + n as f64,
        })
        .to_string()
    }
}

/// Collects dead letters from `watcher` until `expected` distinct payloads came or `limit`
/// passed; each payload with how often it came.
async fn collect_letters(
    watcher: &MqttTestClient,
    expected: usize,
    limit: Duration,
) -> BTreeMap<String, u32> {
    let deadline = std::time::Instant::now() + limit;
    let mut seen = BTreeMap::new();
    while seen.len() < expected && std::time::Instant::now() < deadline {
        if let Some(message) = watcher.next(Duration::from_millis(500)).await {
            let letter: Value = serde_json::from_slice(message.payload()).unwrap_or_default();
            if let Some(payload) = letter["payload"].as_str() {
                *seen.entry(payload.to_owned()).or_insert(0) += 1;
            }
        }
    }
    // Anything published twice arrives right behind the rest.
    while let Some(message) = watcher.next(Duration::from_secs(1)).await {
        let letter: Value = serde_json::from_slice(message.payload()).unwrap_or_default();
        if let Some(payload) = letter["payload"].as_str() {
            *seen.entry(payload.to_owned()).or_insert(0) += 1;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn s7_a_full_spool_while_invalid_messages_arrive_and_influxdb_is_away() {
    let stack = Stack::start(Kind::Influx, Route::Direct, &SMALL_SPOOL).await;
    let mut summary = Summary::new(
        7,
        "the spool at its cap while invalid messages arrive and InfluxDB is away",
    );
    let influx = stack.ctx.influx();
    let letters = format!("{}plantline/deadletter/#", stack.ctx.topic_prefix);
    let watcher = MqttTestClient::connect(&stack.mqtt_url, &[&letters]).await;
    let mut device = stack.device().await;
    device.publish(10).await;
    let flowing = device.all_stored(&influx, Duration::from_secs(20)).await;
    summary.check(flowing, "messages before the fault are stored");

    stack.backing.stop().await;
    let bridge = stack.process(Service::Bridge).address.clone();
    let watching = CancellationToken::new();
    let health = tokio::spawn(watch_health(bridge.clone(), watching.clone()));
    let sender = MqttTestClient::connect(&stack.mqtt_url, &[]).await;
    let topic = stack.topic(&device.machine);
    let mut invalid = Vec::new();
    let mut publish_rounds = async |rounds: std::ops::Range<usize>| {
        for round in rounds {
            device.publish(10).await;
            for k in 0..3 {
                let message = invalid_message(round * 3 + k);
                sender.publish(&topic, message.clone()).await;
                invalid.push(message);
            }
        }
    };
    publish_rounds(0..30).await;
    let full = within(Duration::from_secs(30), || async {
        crate::support::metric(&bridge, "bridge_spool_full", "").await == 1
    })
    .await;
    // More of both while the bridge acknowledges nothing: the broker keeps them.
    publish_rounds(30..40).await;
    summary.check(
        full,
        "the spool (128 KiB) filled up with InfluxDB away; 400 valid and 120 invalid messages published",
    );

    stack.backing.resume().await;
    let stored = device.all_stored(&influx, Duration::from_secs(90)).await;
    summary.check(stored, "InfluxDB back: every valid message stored");
    let seen = collect_letters(&watcher, invalid.len(), Duration::from_secs(60)).await;
    let once = invalid.iter().filter(|m| seen.get(*m) == Some(&1)).count();
    let pending = crate::support::metric(&bridge, "bridge_dead_letters_pending", "").await;
    summary.check(
        once == invalid.len() && seen.len() == invalid.len() && pending == 0,
        format!(
            "every invalid message dead-lettered exactly once: {once} of {} (dead letters seen: {}, waiting on disk: {pending})",
            invalid.len(),
            seen.values().sum::<u32>()
        ),
    );
    watching.cancel();
    let (answered, silent) = health.await.unwrap_or((0, u32::MAX));
    summary.check(
        silent == 0 && answered > 0,
        format!("/healthz answered all along: {answered} answered, {silent} not"),
    );
    stack
        .check_stored(&mut summary, "MQTT", &device.machine, &device.acked, true)
        .await;
    summary.finish();
}
