//! Scenario 11: a record in the middle of the spool is damaged on disk while the bridge is
//! down (a bad sector, a torn write below the filesystem).

use crate::influx::received;
use crate::support::{Route, Service, Stack, Summary, within};
use plantline_e2e::backing::Kind;
use plantline_e2e::load;
use serde_json::json;
use std::time::Duration;

/// A temperature no other reading of the scenario has: it finds the record to damage.
const MARK: &str = "77.125";

/// Flips one byte of the spooled record that holds [`MARK`]; whether one was found.
fn damage_marked_record(spool: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(spool) else {
        return false;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "seg") {
            continue;
        }
        let Ok(mut bytes) = std::fs::read(&path) else {
            continue;
        };
        if let Some(at) = bytes.windows(MARK.len()).position(|w| w == MARK.as_bytes()) {
            bytes[at] = b'8';
            return std::fs::write(&path, bytes).is_ok();
        }
    }
    false
}

/// `bridge_spool_damaged_bytes_skipped`.
async fn damaged_bytes(bridge: &str) -> u64 {
    crate::support::metric(bridge, "bridge_spool_damaged_bytes_skipped", "").await
}

#[tokio::test(flavor = "multi_thread")]
async fn s11_a_damaged_record_mid_spool_costs_only_itself() {
    let mut stack = Stack::start(Kind::Influx, Route::Direct, &[]).await;
    let mut summary = Summary::new(
        11,
        "a damaged record in the middle of the spool, across a restart",
    );
    let influx = stack.ctx.influx();
    let mut device = stack.device().await;
    device.publish(10).await;
    let flowing = device.all_stored(&influx, Duration::from_secs(20)).await;
    summary.check(flowing, "messages before the fault are stored");

    // InfluxDB away: what follows waits in the spool.
    stack.backing.stop().await;
    device.publish(30).await;
    let marked_at = chrono::Utc::now() - chrono::Duration::minutes(30);
    let marked = json!({
        "timestamp": marked_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "temperature": MARK.parse::<f64>().unwrap_or_default(),
    });
    let client = plantline_e2e::mqtt::MqttTestClient::connect(&stack.mqtt_url, &[]).await;
    client
        .publish(&stack.topic(&device.machine), marked.to_string())
        .await;
    client.disconnect().await;
    device.publish(30).await;
    let bridge = stack.process(Service::Bridge).address.clone();
    let spooled = within(Duration::from_secs(20), || async {
        received(&bridge).await >= 71
    })
    .await;
    stack.kill(Service::Bridge);
    let spool = stack.ctx.spool_dir.join("1");
    let damaged = damage_marked_record(&spool);
    summary.check(
        spooled && damaged,
        "61 messages spooled while InfluxDB was away; the bridge killed; one byte of the 31st flipped on disk",
    );

    stack.backing.resume().await;
    stack.launch(Service::Bridge);
    stack
        .process(Service::Bridge)
        .until_ready(Duration::from_secs(30))
        .await;
    let replayed = device.all_stored(&influx, Duration::from_secs(60)).await;
    // The gauge follows the spool's counters once a second.
    within(Duration::from_secs(5), || async {
        damaged_bytes(&bridge).await > 0
    })
    .await;
    let skipped = damaged_bytes(&bridge).await;
    summary.check(
        replayed && skipped > 0,
        format!(
            "every intact record after the damaged one was replayed; {skipped} damaged bytes skipped and counted"
        ),
    );
    let result = load::reconcile(
        &influx,
        &device.machine,
        &device.acked,
        Duration::from_secs(30),
    )
    .await;
    summary.reconciled("MQTT (all but the damaged message)", &result, true);
    summary.finish();
}
