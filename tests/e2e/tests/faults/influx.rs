//! Scenarios 1 and 2: InfluxDB goes away.

use crate::support::{Route, Service, Stack, Summary, outage, tally, within};
use domain::MachineStatus;
use plantline_e2e::backing::Kind;
use plantline_e2e::load::{self, Ledger};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Every answer the gateway got, counted.
fn answers(ledger: &Ledger) -> String {
    tally(
        ledger
            .statuses
            .iter()
            .flat_map(|(status, count)| std::iter::repeat_n(*status, *count as usize)),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn s1_influxdb_stopped_under_http_and_mqtt_load() {
    let stack = Stack::start(Kind::Influx, Route::Direct, &[]).await;
    let mut summary = Summary::new(1, "InfluxDB stopped under steady HTTP and MQTT load");
    let influx = stack.ctx.influx();
    let http_machine = stack.ctx.create_machine(MachineStatus::Active).await;
    let mqtt_machine = stack.ctx.create_machine(MachineStatus::Active).await;
    let stop = CancellationToken::new();
    // 10 batches/s of 5 readings on each path.
    let http = tokio::spawn(load::http_gateway(
        stack.gateway_client(),
        http_machine,
        Duration::from_millis(100),
        5,
        stop.clone(),
    ));
    let (url, topic) = (stack.mqtt_url.clone(), stack.topic(&mqtt_machine));
    let mqtt_stop = stop.clone();
    let mqtt = tokio::spawn(async move {
        load::mqtt_device(&url, &topic, Duration::from_millis(100), 5, mqtt_stop).await
    });
    let flowing = within(Duration::from_secs(20), || async {
        !load::stored(&influx, &http_machine).await.is_empty()
            && !load::stored(&influx, &mqtt_machine).await.is_empty()
    })
    .await;
    summary.check(flowing, "both paths store before the fault");
    // Steady state for a while before the fault.
    tokio::time::sleep(Duration::from_secs(5)).await;

    stack.backing.stop().await;
    // The outage lasts as long as the promise says, under load all the while.
    tokio::time::sleep(outage()).await;
    stack.backing.resume().await;
    summary.note(format!("InfluxDB down for {} s", outage().as_secs()));
    // Load continues through the recovery, then the generators stop and finish delivering.
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.cancel();
    let http = tokio::time::timeout(Duration::from_secs(90), http)
        .await
        .expect("the gateway delivers its backlog within 90 s")
        .expect("gateway task");
    let mqtt = tokio::time::timeout(Duration::from_secs(30), mqtt)
        .await
        .expect("the device stops")
        .expect("device task");

    let unexpected = http.unexpected(&[201, 503]);
    summary.note(format!("HTTP answers: {}", answers(&http)));
    summary.check(
        unexpected.is_empty() && http.transport_errors == 0,
        format!(
            "HTTP answered only 201 or 503 (unexpected: [{}], no answer: {})",
            unexpected.join(", "),
            http.transport_errors
        ),
    );
    summary.check(
        http.seen(503) > 0 && http.without_retry_after == 0,
        format!(
            "the outage answered 503 with Retry-After ({} times, {} without) and the gateway retried",
            http.seen(503),
            http.without_retry_after
        ),
    );
    let http_result =
        load::reconcile(&influx, &http_machine, &http.acked, Duration::from_secs(30)).await;
    let mqtt_result =
        load::reconcile(&influx, &mqtt_machine, &mqtt.acked, Duration::from_secs(90)).await;
    summary.reconciled("HTTP", &http_result, true);
    summary.reconciled("MQTT", &mqtt_result, true);
    summary.finish();
}

#[tokio::test(flavor = "multi_thread")]
async fn s2_bridge_killed_during_an_influxdb_outage() {
    let mut stack = Stack::start(Kind::Influx, Route::Direct, &[]).await;
    let mut summary = Summary::new(2, "mqtt-bridge kill -9 during an InfluxDB outage");
    let influx = stack.ctx.influx();
    let mut device = stack.device().await;
    device.publish(20).await;
    let stored_before = device.all_stored(&influx, Duration::from_secs(20)).await;
    summary.check(stored_before, "messages before the fault are stored");

    stack.backing.stop().await;
    device.publish(200).await;
    // The bridge has taken every message from the broker into its spool (and PUBACKed it).
    let bridge_metrics = stack.process(Service::Bridge).address.clone();
    let spooled = within(Duration::from_secs(30), || async {
        received(&bridge_metrics).await >= 220
    })
    .await;
    summary.check(spooled, "the bridge took all 220 messages into its spool");
    stack.kill(Service::Bridge);
    summary.note("mqtt-bridge killed with SIGKILL, InfluxDB still down");
    // Published while the bridge is dead: its persistent session queues them at the broker.
    device.publish(100).await;
    stack.launch(Service::Bridge);
    let bridge_metrics = stack.process(Service::Bridge).address.clone();
    let queued = within(Duration::from_secs(30), || async {
        received(&bridge_metrics).await >= 100
    })
    .await;
    summary.check(
        queued,
        "the restarted bridge received the 100 messages queued in its session",
    );
    stack.backing.resume().await;
    summary.note("InfluxDB back");
    let result = load::reconcile(
        &influx,
        &device.machine,
        &device.acked,
        Duration::from_secs(90),
    )
    .await;
    summary.reconciled("MQTT", &result, true);
    summary.finish();
}

/// Messages the bridge at `bridge` took from the broker.
pub async fn received(bridge: &str) -> u64 {
    crate::support::metric(bridge, "bridge_messages_total", "outcome=\"received\"").await
}
