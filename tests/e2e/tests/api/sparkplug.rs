//! Sparkplug B through the bridge, with a third-party edge node: `pysparkplug` (its client,
//! topics and protobuf encoding, unchanged) driven by `tests/interop/sparkplug_edge.py`,
//! against a real Mosquitto and InfluxDB. pysparkplug cannot put its topics under a prefix,
//! so each test has a Mosquitto of its own: a developer's running stack (subscribed to
//! every group) never sees the tests' edge nodes, and no retained STATE is left behind.

use domain::MachineStatus;
use futures_util::StreamExt;
use plantline_e2e::mqtt::PrivateBroker;
use plantline_e2e::net::{Gate, ServiceProcess};
use plantline_e2e::plant::Plant;
use plantline_e2e::{TestContext, eventually};
use platform::{ServiceName, Settings};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Opens a live stream of `factory` as the operator; its text so far is in the answer.
async fn stream_of(plant: &Plant, factory: &str) -> Arc<Mutex<String>> {
    let ticket: Value = plant
        .query
        .http
        .post(format!("{}/api/v1/stream/ticket", plant.query.address))
        .bearer_auth(&plant.operator)
        .send()
        .await
        .expect("ticket")
        .json()
        .await
        .expect("ticket JSON");
    let ticket = ticket["ticket"].as_str().expect("a ticket").to_owned();
    let response = plant
        .query
        .http
        .get(format!(
            "{}/api/v1/stream?ticket={ticket}&factory_id={factory}",
            plant.query.address
        ))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status(), 200);
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    tokio::spawn(async move {
        let mut body = response.bytes_stream();
        while let Some(Ok(chunk)) = body.next().await {
            if let Ok(mut text) = sink.lock() {
                text.push_str(&String::from_utf8_lossy(&chunk));
            }
        }
    });
    text
}

/// A bridge on the test's own `broker`, the Sparkplug host for `group` only, as `host_id`.
fn host_settings(
    ctx: &TestContext,
    broker: &PrivateBroker,
    group: &str,
    host_id: &str,
) -> Settings {
    let mut settings = ctx.bridge_settings(1);
    settings.mqtt.url = broker.url();
    settings.mqtt.topic_prefix = String::new();
    settings.mqtt.sparkplug_groups = group.to_owned();
    settings.mqtt.sparkplug_host_id = host_id.to_owned();
    settings
}

fn run_edge(args: Vec<String>) -> Value {
    let python = std::env::var("PLANTLINE_TEST_PYTHON").expect(
        "PLANTLINE_TEST_PYTHON names the test venv's Python (with pysparkplug); run the tests through `make test`",
    );
    let script = plantline_e2e::workspace_root().join("tests/interop/sparkplug_edge.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("run the Sparkplug edge node");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the edge node's JSON")
}

#[tokio::test]
async fn a_pysparkplug_edge_node_reports_by_name_and_alias_and_gets_rebirths_when_needed() {
    let plant = Plant::start().await;
    let ctx = &plant.ctx;
    let broker = PrivateBroker::start().await;
    let group = format!("sp{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let host_id = format!("plantline-{group}");
    let press = ctx
        .create_named_machine(&group, "press-7", MachineStatus::Active)
        .await;
    let pump = ctx
        .create_named_machine(&group, "pump-2", MachineStatus::Active)
        .await;
    let bridge = ctx
        .spawn_with(
            ServiceName::MqttBridge,
            host_settings(ctx, &broker, &group, &host_id),
        )
        .await;
    let stream = stream_of(&plant, &group).await;
    let (host, port) = ("127.0.0.1".to_owned(), broker.port.to_string());
    let t0 = (chrono::Utc::now().timestamp() - 120) * 1000;
    let args = vec![
        host,
        port,
        group.clone(),
        host_id.clone(),
        "press-7".to_owned(),
        pump.to_string(),
        t0.to_string(),
    ];
    let seen = tokio::task::spawn_blocking(move || run_edge(args))
        .await
        .expect("edge node thread");

    assert_eq!(seen["state_seen"], true, "{seen}");
    assert_eq!(seen["state"]["online"], true, "{seen}");
    assert_eq!(seen["state_later"]["online"], true, "{seen}");
    assert_eq!(
        seen["state_later"]["retain"], true,
        "STATE is retained: {seen}"
    );
    assert_eq!(seen["rebirth_after_gap"], true, "{seen}");
    assert_eq!(seen["rebirth_after_unknown_alias"], true, "{seen}");

    // Rows: time, factory_id, location, machine_id, sensor_type, temperature, pressure, speed.
    let ns = |ms: i64| Value::from(ms * 1_000_000);
    let expected = 7;
    let points = eventually(
        Duration::from_secs(20),
        "the Sparkplug readings",
        || async move {
            let points = ctx.influx_points().await;
            let ours = points
                .iter()
                .filter(|p| p[3] == press.to_string() || p[3] == pump.to_string())
                .count();
            (ours >= expected).then_some(points)
        },
    )
    .await;
    let of = |machine: uuid::Uuid| -> Vec<&Value> {
        points
            .iter()
            .filter(|p| p[3] == machine.to_string())
            .collect()
    };
    let press_points = of(press);
    let pump_points = of(pump);
    assert_eq!(press_points.len(), 5, "{press_points:?}");
    assert_eq!(pump_points.len(), 2, "{pump_points:?}");
    let at = |rows: &[&Value], ms: i64| -> Value {
        rows.iter()
            .find(|p| p[0] == ns(ms))
            .map(|p| (*p).clone())
            .unwrap_or(Value::Null)
    };
    // The birth's values, by name; then by name; then by alias; after the gap; at the end.
    assert_eq!(at(&press_points, t0)[5], 61.5);
    assert_eq!(at(&press_points, t0)[7], 1200.0);
    assert_eq!(at(&press_points, t0 + 1000)[5], 62.25);
    assert_eq!(at(&press_points, t0 + 2000)[5], 63.5);
    assert_eq!(at(&press_points, t0 + 2000)[7], 1250.0);
    assert_eq!(at(&press_points, t0 + 3000)[5], 64.0);
    assert_eq!(at(&press_points, t0 + 5000)[5], 65.0);
    assert_eq!(at(&pump_points, t0)[6], 101.5);
    assert_eq!(at(&pump_points, t0 + 2000)[6], 102.75);
    assert!(
        press_points
            .iter()
            .all(|p| p[1] == group.as_str() && p[2] == "Hall 1"),
        "the registry's tags: {press_points:?}"
    );
    assert!(
        !points.iter().any(|p| p[5] == 11.25),
        "what could not be named, or belongs to no machine, is not stored"
    );
    // The unknown device is a dead letter; the bridge went on.
    assert!(
        bridge
            .metric(
                "plantline_bridge_dead_letters_total",
                r#"reason="unknown_machine""#
            )
            .await
            >= 1.0
    );
    assert!(
        bridge
            .metric(
                "plantline_bridge_sparkplug_total",
                r#"what="rebirth_requested""#
            )
            .await
            >= 2.0
    );

    // Births made both machines online; the pump's DDEATH took it offline, on the stream too.
    let online = |machine: uuid::Uuid| {
        let query = &plant.query;
        let token = &plant.operator;
        async move {
            let answer: Value = query
                .http
                .get(format!(
                    "{}/api/v1/data/machine/{machine}/latest",
                    query.address
                ))
                .bearer_auth(token)
                .send()
                .await
                .expect("latest")
                .json()
                .await
                .expect("latest JSON");
            (answer["online"].clone(), answer["online_since"].is_string())
        }
    };
    eventually(Duration::from_secs(10), "the pump offline", || async {
        (online(pump).await == (Value::from(false), true)).then_some(())
    })
    .await;
    assert_eq!(online(press).await, (Value::from(true), true));
    let pump_id = pump.to_string();
    eventually(
        Duration::from_secs(10),
        "the pump's death on the stream",
        || {
            let stream = stream.clone();
            let pump_id = pump_id.clone();
            async move {
                let text = stream.lock().ok()?.clone();
                text.split("\n\n")
                    .any(|event| {
                        event.contains("event: presence")
                            && event.contains(&pump_id)
                            && event.contains("\"online\":false")
                    })
                    .then_some(())
            }
        },
    )
    .await;

    bridge.stop().await.expect("bridge stops");
}

/// Runs one phase of the edge node (`births` or `data`) on `broker`, returning what it
/// printed.
fn edge_phase(broker: &PrivateBroker, args: &[String]) -> Value {
    let mut all = vec![
        args[0].clone(),
        "127.0.0.1".to_owned(),
        broker.port.to_string(),
    ];
    all.extend(args[1..].iter().cloned());
    run_edge(all)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bridge_killed_in_the_middle_of_aliased_data_loses_nothing_acknowledged() {
    let ctx = TestContext::new().await;
    let group = format!("sk{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let machine = ctx
        .create_named_machine(&group, "lathe-3", MachineStatus::Active)
        .await;
    let mut gate = Gate::closed(ctx.settings.influx.url.trim_start_matches("http://"));
    gate.open().await;
    let broker = PrivateBroker::start().await;
    let mut env = ctx.env.clone();
    env.extend([
        ("PLANTLINE_MQTT__URL".to_owned(), broker.url()),
        ("PLANTLINE_INFLUX__URL".to_owned(), gate.http_url()),
        ("PLANTLINE_MQTT__TOPIC_PREFIX".to_owned(), String::new()),
        ("PLANTLINE_MQTT__SPARKPLUG_GROUPS".to_owned(), group.clone()),
        (
            "PLANTLINE_MQTT__SPARKPLUG_HOST_ID".to_owned(),
            format!("plantline-{group}"),
        ),
    ]);
    let first = ServiceProcess::start("mqtt-bridge", &env);
    eventually(Duration::from_secs(20), "bridge subscribed", || async {
        let ready = first.readiness().await?;
        (ready["dependencies"]["mqtt"]["status"] == "up").then_some(())
    })
    .await;
    let stored = |count: usize| {
        let ctx = &ctx;
        async move {
            let points = ctx.influx_points().await;
            let mine: Vec<Value> = points
                .into_iter()
                .filter(|p| p[3] == machine.to_string())
                .collect();
            (mine.len() >= count).then_some(mine)
        }
    };

    // Births while InfluxDB answers: stored, so the spool commits past them.
    let t0 = (chrono::Utc::now().timestamp() - 300) * 1000;
    let born = edge_phase(
        &broker,
        &[
            "births".into(),
            group.clone(),
            "lathe-3".into(),
            t0.to_string(),
        ],
    );
    eventually(Duration::from_secs(20), "the birth's value", || stored(1)).await;

    // InfluxDB away: alias-only data spools; the bridge is killed; it comes back.
    gate.close();
    const COUNT: usize = 300;
    let args = vec![
        "data".to_owned(),
        group.clone(),
        "lathe-3".to_owned(),
        t0.to_string(),
        born["next_seq"].to_string(),
        COUNT.to_string(),
    ];
    let sent = edge_phase(&broker, &args);
    assert_eq!(sent["sent"], COUNT);
    eventually(Duration::from_secs(30), "a hundred spooled", || async {
        let ready = first.readiness().await?;
        (ready["dependencies"]["spool"]["detail"]["pending_messages"].as_u64()? >= 100)
            .then_some(())
    })
    .await;
    first.kill();
    gate.open().await;
    let second = ServiceProcess::start("mqtt-bridge", &env);
    let points = eventually(Duration::from_secs(60), "every aliased reading", || {
        stored(COUNT + 1)
    })
    .await;
    assert_eq!(points.len(), COUNT + 1, "nothing twice");
    for i in 0..COUNT {
        let at = Value::from((t0 + 1000 + i as i64) * 1_000_000);
        let value = points
            .iter()
            .find(|p| p[0] == at)
            .and_then(|p| p[5].as_f64());
        assert_eq!(value, Some(20.0 + i as f64 / 100.0), "reading {i}");
    }
    drop(second);
}
