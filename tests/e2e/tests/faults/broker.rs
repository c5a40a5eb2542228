//! Scenario 5: the MQTT broker restarts.

use crate::influx::received;
use crate::support::{Route, Service, Stack, Summary, within};
use plantline_e2e::backing::Kind;
use plantline_e2e::load;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn s5_broker_restart_keeps_the_bridges_session() {
    // The bridge reaches the broker through a gate, so the scenario decides when it is back.
    let mut stack = Stack::start(Kind::Mosquitto, Route::Gate, &[]).await;
    let mut summary = Summary::new(5, "MQTT broker restart");
    let influx = stack.ctx.influx();
    let mut device = stack.device().await;
    device.publish(50).await;
    let stored_before = device.all_stored(&influx, Duration::from_secs(20)).await;
    summary.check(stored_before, "messages before the restart are stored");

    stack.backing.stop().await;
    if let Some(gate) = stack.gate.as_mut() {
        gate.close();
    }
    stack.backing.resume().await;
    summary.note("broker stopped (sessions saved) and started again; the bridge kept away");
    // QoS 1 while the bridge is away: the broker queues them in the bridge's session, which
    // it restored from its persistence file.
    device.publish(100).await;
    let bridge = stack.process(Service::Bridge).address.clone();
    let received_before = received(&bridge).await;
    if let Some(gate) = stack.gate.as_mut() {
        gate.open().await;
    }
    let reconnected = within(Duration::from_secs(30), || async {
        reqwest::get(format!("{bridge}/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    summary.check(
        reconnected,
        "the bridge reconnected by itself (ready again)",
    );
    let delivered = within(Duration::from_secs(30), || async {
        received(&bridge).await >= received_before + 100
    })
    .await;
    summary.check(
        delivered,
        "the 100 messages published while it was away were delivered to its session",
    );
    let result = load::reconcile(
        &influx,
        &device.machine,
        &device.acked,
        Duration::from_secs(60),
    )
    .await;
    summary.reconciled("MQTT", &result, true);
    summary.finish();
}
