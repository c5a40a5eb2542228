//! mqtt-bridge against a real Mosquitto and InfluxDB: storage with exact tags, dead letters,
//! an InfluxDB outage absorbed by the spool, `kill -9` during an outage, a shared subscription
//! split between two bridges, and a broker restart.

use domain::MachineStatus;
use plantline_e2e::mqtt::{MqttTestClient, PrivateBroker};
use plantline_e2e::net::{Gate, ServiceProcess};
use plantline_e2e::{TestApp, TestContext, assert_point, eventually};
use platform::{ServiceName, Settings};
use serde_json::{Value, json};
use std::time::Duration;

const STORE_WAIT: Duration = Duration::from_secs(30);

fn minutes_ago(minutes: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::Duration::minutes(minutes)
}

/// Reading `i` of a test stream: distinct timestamps, values that sum to a checkable total.
fn reading(i: usize, base: chrono::DateTime<chrono::Utc>) -> Value {
    json!({
        "timestamp": (base + chrono::Duration::milliseconds(i as i64))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "temperature": 20.0 + (i % 50) as f64 + 0.25,
    })
}

fn expected_sum(count: usize) -> f64 {
    (0..count).map(|i| 20.0 + (i % 50) as f64 + 0.25).sum()
}

/// Count and sum of the temperature readings stored in this test's database.
async fn stored(ctx: &TestContext) -> (usize, f64) {
    let answer = ctx
        .influx()
        .query("SELECT count(temperature), sum(temperature) FROM sensor_readings")
        .await
        .expect("query InfluxDB");
    answer
        .into_iter()
        .flatten()
        .flat_map(|series| series.values)
        .next()
        .map(|row| {
            (
                row[1].as_u64().unwrap_or(0) as usize,
                row[2].as_f64().unwrap_or(0.0),
            )
        })
        .unwrap_or((0, 0.0))
}

async fn wait_stored(ctx: &TestContext, count: usize) {
    eventually(STORE_WAIT, &format!("{count} readings stored"), || async {
        let (stored, _) = stored(ctx).await;
        assert!(
            stored <= count,
            "more readings stored ({stored}) than published ({count})"
        );
        (stored == count).then_some(())
    })
    .await;
    let (_, sum) = stored(ctx).await;
    assert!(
        (sum - expected_sum(count)).abs() < 1e-6,
        "stored values differ: sum {sum}, expected {}",
        expected_sum(count)
    );
}

/// A closed gate in front of this test's InfluxDB.
fn influx_gate(ctx: &TestContext) -> Gate {
    Gate::closed(ctx.settings.influx.url.trim_start_matches("http://"))
}

async fn readiness(app: &TestApp) -> Value {
    app.get("/readyz").await.json().await.expect("readyz JSON")
}

/// Starts a bridge in-process and waits until it has subscribed.
async fn bridge(ctx: &TestContext, settings: Settings) -> TestApp {
    let app = ctx.spawn_with(ServiceName::MqttBridge, settings).await;
    eventually(Duration::from_secs(15), "bridge subscribed", || async {
        (readiness(&app).await["dependencies"]["mqtt"]["status"] == "up").then_some(())
    })
    .await;
    app
}

#[tokio::test(flavor = "multi_thread")]
async fn a_qos1_message_lands_in_influxdb_with_exact_tags_and_fields() {
    let ctx = TestContext::new().await;
    let machine = ctx.create_machine(MachineStatus::Active).await;
    let status_topic = format!(
        "{}plantline/bridge/{}/status",
        ctx.topic_prefix, ctx.settings.mqtt.client_id
    );
    let app = bridge(&ctx, ctx.settings.clone()).await;
    let client = MqttTestClient::connect(&ctx.settings.mqtt.url, &[&status_topic]).await;
    let status = client
        .next(Duration::from_secs(5))
        .await
        .expect("retained status");
    assert_eq!(status.payload_str(), "online");
    assert!(status.retained());

    let ts = minutes_ago(5);
    let topic = ctx.telemetry_topic("A", &machine);
    let single = json!({
        "timestamp": ts.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "temperature": 71.5, "pressure": 101.25, "speed": 1450.0, "sensor_type": "multi",
    });
    client.publish(&topic, single.to_string()).await;
    let many = json!({"readings": [
        {"timestamp": (ts + chrono::Duration::seconds(1)).to_rfc3339(), "temperature": 72.0},
        {"timestamp": (ts + chrono::Duration::seconds(2)).to_rfc3339(), "speed": 1500},
    ]});
    client.publish(&topic, many.to_string()).await;

    let points = eventually(STORE_WAIT, "three points", || async {
        let points = ctx.influx_points().await;
        (points.len() == 3).then_some(points)
    })
    .await;
    let expected_ns = ts.timestamp_nanos_opt().unwrap();
    assert_point(&points[0], expected_ns, &machine, [71.5, 101.25, 1450.0]);
    assert_eq!(points[1][5], 72.0);
    assert_eq!(points[2][7], 1500.0);
    // The latest values reach Redis like HTTP ingest's do.
    let latest: std::collections::HashMap<String, String> = ctx
        .redis()
        .query(
            deadpool_redis::redis::cmd("HGETALL")
                .arg(storage::latest::latest_key(&ctx.redis(), &machine)),
        )
        .await
        .unwrap();
    assert_eq!(
        latest
            .get("temperature")
            .and_then(|v| v.parse::<f64>().ok()),
        Some(72.0)
    );
    assert_eq!(
        app.metric("plantline_bridge_messages_total", r#"outcome="stored""#)
            .await,
        2.0
    );
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_bad_message_is_dead_lettered_with_its_reason_and_the_good_ones_are_stored() {
    let ctx = TestContext::new().await;
    let machine = ctx.create_machine(MachineStatus::Active).await;
    let inactive = ctx.create_machine(MachineStatus::Inactive).await;
    let mut settings = ctx.settings.clone();
    settings.mqtt.max_payload_bytes = 4096;
    let app = bridge(&ctx, settings).await;
    let dead_letters = format!("{}plantline/deadletter/#", ctx.topic_prefix);
    let client = MqttTestClient::connect(&ctx.settings.mqtt.url, &[&dead_letters]).await;

    let base = minutes_ago(3);
    let good = |i| reading(i, base).to_string();
    let topic = ctx.telemetry_topic("A", &machine);
    let prefix = &ctx.topic_prefix;
    let cases: Vec<(String, Vec<u8>, &str)> = vec![
        (
            format!("{prefix}factory/A/machine/m-17/telemetry"),
            good(10).into(),
            "bad_topic",
        ),
        (topic.clone(), b"temperature=70".to_vec(), "not_json"),
        (topic.clone(), vec![0xff, 0xfe, 0x00, 0x80], "not_json"),
        (topic.clone(), br#"{"humidity": 40}"#.to_vec(), "bad_shape"),
        (
            topic.clone(),
            json!({"timestamp": base.to_rfc3339(), "temperature": 5000.0})
                .to_string()
                .into(),
            "invalid_reading",
        ),
        (
            ctx.telemetry_topic("A", &uuid::Uuid::new_v4()),
            good(11).into(),
            "unknown_machine",
        ),
        (
            ctx.telemetry_topic("A", &inactive),
            good(12).into(),
            "inactive_machine",
        ),
        (
            ctx.telemetry_topic("B", &machine),
            good(13).into(),
            "factory_mismatch",
        ),
        (topic.clone(), vec![b' '; 5000], "too_large"),
    ];
    client.publish(&topic, good(0)).await;
    for (topic, payload, _) in &cases {
        client.publish(topic, payload.clone()).await;
    }
    client.publish(&topic, good(1)).await;

    let mut letters = Vec::new();
    while letters.len() < cases.len() {
        let message = client
            .next(Duration::from_secs(15))
            .await
            .unwrap_or_else(|| panic!("only {} dead letters arrived: {letters:#?}", letters.len()));
        let doc: Value = serde_json::from_slice(message.payload()).expect("dead letter is JSON");
        assert_eq!(
            message.topic(),
            format!(
                "{prefix}plantline/deadletter/{}",
                doc["reason"].as_str().unwrap()
            )
        );
        letters.push(doc);
    }
    for (index, (topic, payload, reason)) in cases.iter().enumerate() {
        let letter = &letters[index];
        assert_eq!(letter["reason"], *reason, "case {index}: {letter}");
        assert_eq!(letter["topic"], *topic);
        assert_eq!(letter["bridge"], ctx.settings.mqtt.client_id.as_str());
        match std::str::from_utf8(payload) {
            Ok(_) if *reason == "too_large" => {
                assert_eq!(letter["payload_truncated_from_bytes"], 5000);
            }
            Ok(text) => assert_eq!(letter["payload"], text),
            Err(_) => assert_eq!(letter["payload_base64"], "//4AgA=="),
        }
    }
    assert_eq!(letters[4]["errors"][0]["field"], "reading.temperature");
    wait_stored(&ctx, 2).await;
    assert_eq!(
        app.metric(
            "plantline_bridge_dead_letters_total",
            r#"reason="not_json""#
        )
        .await,
        2.0
    );
    // The bridge is still healthy and storing.
    client.publish(&topic, good(2)).await;
    wait_stored(&ctx, 3).await;
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_influxdb_outage_is_absorbed_by_the_spool_and_replayed_in_full() {
    let ctx = TestContext::new().await;
    let machine = ctx.create_machine(MachineStatus::Active).await;
    let mut gate = influx_gate(&ctx);
    let mut settings = ctx.settings.clone();
    settings.influx.url = gate.http_url();
    let app = bridge(&ctx, settings).await;
    let client = MqttTestClient::connect(&ctx.settings.mqtt.url, &[]).await;
    let topic = ctx.telemetry_topic("A", &machine);
    let base = minutes_ago(4);
    const COUNT: usize = 300;
    for i in 0..COUNT {
        client.publish(&topic, reading(i, base).to_string()).await;
    }
    eventually(Duration::from_secs(15), "every message spooled", || async {
        let ready = readiness(&app).await;
        (ready["dependencies"]["spool"]["detail"]["pending_messages"] == COUNT
            && ready["dependencies"]["influxdb"]["status"] == "down")
            .then_some(())
    })
    .await;
    assert_eq!(stored(&ctx).await.0, 0);
    assert!(
        app.metric("plantline_bridge_messages_total", r#"outcome="spooled""#)
            .await
            >= 1.0
    );

    gate.open().await;
    wait_stored(&ctx, COUNT).await;
    eventually(Duration::from_secs(5), "spool drained", || async {
        (readiness(&app).await["dependencies"]["spool"]["detail"]["pending_messages"] == 0)
            .then_some(())
    })
    .await;
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bridge_killed_during_an_outage_and_restarted_loses_nothing() {
    let ctx = TestContext::new().await;
    let machine = ctx.create_machine(MachineStatus::Active).await;
    let mut gate = influx_gate(&ctx);
    let mut env = ctx.env.clone();
    env.push(("PLANTLINE_INFLUX__URL".into(), gate.http_url()));
    let first = ServiceProcess::start("mqtt-bridge", &env);
    eventually(
        Duration::from_secs(20),
        "bridge process subscribed",
        || async {
            let ready = first.readiness().await?;
            (ready["dependencies"]["mqtt"]["status"] == "up").then_some(())
        },
    )
    .await;

    // A publisher keeps going while the bridge is killed and restarted: every message the
    // broker acknowledged must end up in InfluxDB.
    const COUNT: usize = 1000;
    let topic = ctx.telemetry_topic("A", &machine);
    let url = ctx.settings.mqtt.url.clone();
    let base = minutes_ago(6);
    let published = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = published.clone();
    let publisher = tokio::spawn(async move {
        let client = MqttTestClient::connect(&url, &[]).await;
        for i in 0..COUNT {
            client.publish(&topic, reading(i, base).to_string()).await;
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        client.disconnect().await;
    });
    eventually(Duration::from_secs(30), "a hundred spooled", || async {
        let ready = first.readiness().await?;
        (ready["dependencies"]["spool"]["detail"]["pending_messages"].as_u64()? >= 100)
            .then_some(())
    })
    .await;
    first.kill();
    let at_kill = published.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        at_kill < COUNT,
        "the kill came while messages were still arriving"
    );

    // Restarted with the same spool folder and client id; InfluxDB is back.
    gate.open().await;
    let second = ServiceProcess::start("mqtt-bridge", &env);
    publisher.await.expect("publisher finished");
    wait_stored(&ctx, COUNT).await;
    drop(second);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_bridges_in_one_shared_group_each_store_a_share_and_together_everything_once() {
    let ctx = TestContext::new().await;
    let machine = ctx.create_machine(MachineStatus::Active).await;
    let group = format!("g{}", uuid::Uuid::new_v4().simple());
    let mut apps = Vec::new();
    for n in 1..=2 {
        let mut settings = ctx.bridge_settings(n);
        settings.mqtt.shared_group = Some(group.clone());
        apps.push(bridge(&ctx, settings).await);
    }
    let client = MqttTestClient::connect(&ctx.settings.mqtt.url, &[]).await;
    let topic = ctx.telemetry_topic("A", &machine);
    let base = minutes_ago(7);
    const COUNT: usize = 600;
    for i in 0..COUNT {
        client.publish(&topic, reading(i, base).to_string()).await;
    }
    wait_stored(&ctx, COUNT).await;
    let mut shares = Vec::new();
    for app in &apps {
        shares.push(
            app.metric("plantline_bridge_messages_total", r#"outcome="stored""#)
                .await,
        );
    }
    assert!(
        shares.iter().all(|s| *s > 0.0),
        "each bridge stored a share: {shares:?}"
    );
    assert_eq!(
        shares.iter().sum::<f64>(),
        COUNT as f64,
        "each message stored once: {shares:?}"
    );
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restart_is_survived_without_a_manual_step() {
    let ctx = TestContext::new().await;
    let machine = ctx.create_machine(MachineStatus::Active).await;
    let mut broker = PrivateBroker::start().await;
    let mut settings = ctx.settings.clone();
    settings.mqtt.url = broker.url();
    let app = bridge(&ctx, settings).await;
    let topic = ctx.telemetry_topic("A", &machine);
    let base = minutes_ago(8);
    let client = MqttTestClient::connect(&broker.url(), &[]).await;
    for i in 0..50 {
        client.publish(&topic, reading(i, base).to_string()).await;
    }
    wait_stored(&ctx, 50).await;
    client.disconnect().await;

    broker.stop();
    eventually(Duration::from_secs(10), "bridge notices", || async {
        (readiness(&app).await["dependencies"]["mqtt"]["status"] == "down").then_some(())
    })
    .await;
    broker.resume().await;
    eventually(Duration::from_secs(30), "bridge back", || async {
        (readiness(&app).await["dependencies"]["mqtt"]["status"] == "up").then_some(())
    })
    .await;
    let client = MqttTestClient::connect(&broker.url(), &[]).await;
    for i in 50..100 {
        client.publish(&topic, reading(i, base).to_string()).await;
    }
    wait_stored(&ctx, 100).await;
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_mqtt5_session_stores_the_same_way() {
    let ctx = TestContext::new().await;
    let machine = ctx.create_machine(MachineStatus::Active).await;
    let mut settings = ctx.settings.clone();
    settings.mqtt.protocol = "5".to_owned();
    let _app = bridge(&ctx, settings).await;
    let client = MqttTestClient::connect(&ctx.settings.mqtt.url, &[]).await;
    let topic = ctx.telemetry_topic("A", &machine);
    let base = minutes_ago(9);
    for i in 0..20 {
        client.publish(&topic, reading(i, base).to_string()).await;
    }
    wait_stored(&ctx, 20).await;
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_bridge_on_the_same_spool_folder_refuses_to_start() {
    let ctx = TestContext::new().await;
    let _first = bridge(&ctx, ctx.settings.clone()).await;
    let mut second = ctx.settings.clone();
    second.mqtt.client_id.push_str("-other");
    let err = match mqtt_bridge::build(&second).await {
        Ok(_) => panic!("a second bridge on the same spool started"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("in use by another bridge"), "{err}");
}
