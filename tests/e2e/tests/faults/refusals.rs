//! Scenarios 8 and 10: InfluxDB answers, but refuses: everything (401, as after a credential
//! change), or some points for their own sake (a partial write).

use crate::support::{Route, Service, Stack, Summary, http, outage, tally, within};
use domain::MachineStatus;
use plantline_e2e::backing::Kind;
use plantline_e2e::load::{self, Feeder};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Dead letters the bridge counted for `reason` (all reasons when `None`).
async fn dead_letters(bridge: &str, reason: Option<&str>) -> u64 {
    let labels = reason
        .map(|r| format!("reason=\"{r}\""))
        .unwrap_or_default();
    crate::support::metric(bridge, "bridge_dead_letters_total", &labels).await
}

/// The bridge's `/readyz` entry for `dependency`.
async fn readiness_of(stack: &Stack, dependency: &str) -> Value {
    let report = stack
        .process(Service::Bridge)
        .readiness()
        .await
        .unwrap_or_default();
    report["dependencies"][dependency].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn s8_influxdb_answering_401_holds_every_reading() {
    let mut stack = Stack::start(Kind::Influx, Route::Gate, &[]).await;
    let mut summary = Summary::new(8, "InfluxDB answering 401 (credentials changed under us)");
    let machine = stack.ctx.create_machine(MachineStatus::Active).await;
    let mut feeder = Feeder::new(stack.gateway_client(), machine);
    let mut device = stack.device().await;
    let warm = feeder.send(5, None).await.0;
    device.publish(10).await;
    let flowing = device
        .all_stored(&stack.ctx.influx(), Duration::from_secs(20))
        .await;
    summary.check(warm == 201 && flowing, "both paths store before the fault");

    let gate = stack.gate.as_mut().expect("gate");
    gate.answer_with(401, r#"{"error":"authorization failed"}"#)
        .await;
    let bridge = stack.process(Service::Bridge).address.clone();
    let refused_since = Instant::now();
    let (mut statuses, mut alive, mut degraded) = (Vec::new(), true, String::new());
    while refused_since.elapsed() < outage() {
        statuses.push(feeder.send(5, None).await.0);
        device.publish(5).await;
        alive &= http()
            .get(format!("{bridge}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        let writes = readiness_of(&stack, "influxdb_writes").await;
        if writes["status"] == "down" {
            degraded = writes.to_string();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    summary.note(format!(
        "InfluxDB (behind a proxy) answered 401 to every request for {} s; {} messages published meanwhile",
        outage().as_secs(),
        device.acked.len() / 5 - 10
    ));
    summary.check(
        !statuses.is_empty() && statuses.iter().all(|s| *s == 503),
        format!(
            "HTTP answered 503 (retry), never a data error: {}",
            tally(statuses.iter().copied())
        ),
    );
    summary.check(
        alive && degraded.contains("401"),
        format!("the bridge stayed alive and /readyz said why: {degraded}"),
    );
    let gate = stack.gate.as_mut().expect("gate");
    gate.open().await;
    let influx = stack.ctx.influx();
    let drained = device.all_stored(&influx, Duration::from_secs(60)).await;
    summary.check(
        drained,
        "once InfluxDB takes writes again, the spool drains",
    );
    let letters = dead_letters(&bridge, None).await;
    summary.check(
        letters == 0,
        format!("no message became a dead letter ({letters})"),
    );
    let writing = readiness_of(&stack, "influxdb_writes").await;
    summary.check(
        writing["status"] == "up",
        format!("/readyz no longer reports the writes failing: {writing}"),
    );
    stack
        .check_both_stored(&mut summary, (&machine, &feeder.acked), &device)
        .await;
    summary.finish();
}

#[tokio::test(flavor = "multi_thread")]
async fn s10_a_partial_write_stores_the_good_points_and_names_the_bad() {
    let stack = Stack::start(Kind::Influx, Route::Direct, &[]).await;
    let mut summary = Summary::new(10, "a partial write (a field type InfluxDB refuses)");
    let influx = stack.ctx.influx();
    // Another writer made `temperature` a string in the shard of three weeks ago: InfluxDB
    // refuses our floats there and only there.
    // A day into the shard group (7 days, aligned to the epoch) of three weeks ago: the
    // refused readings, minutes later, fall in the same shard at any hour of any day.
    let week = 7 * 86_400;
    let shard_start = (chrono::Utc::now().timestamp() - 21 * 86_400) / week * week;
    let weeks_ago = chrono::DateTime::from_timestamp(shard_start + 86_400, 0).unwrap_or_default();
    influx
        .write_lines(
            format!(
                "sensor_readings,machine_id=elsewhere temperature=\"text\" {}\n",
                weeks_ago.timestamp_nanos_opt().unwrap_or_default()
            ),
            None,
        )
        .await
        .expect("conflicting point");
    let refused_at = |n: i64| {
        (weeks_ago + chrono::Duration::seconds(60 + n))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };

    let machine = stack.ctx.create_machine(MachineStatus::Active).await;
    let mut feeder = Feeder::new(stack.gateway_client(), machine);
    let token = feeder.token().await.expect("gateway token");
    let (mut statuses, mut named) = (Vec::new(), 0);
    for n in 0..10 {
        let good = feeder.take(4);
        let mut readings = load::readings_json(&good);
        readings.insert(2, json!({"timestamp": refused_at(n), "temperature": 60.0}));
        let mut body = load::batch_body(&machine, &[]);
        body["batch"][0]["readings"] = Value::from(readings);
        let Ok(answer) = http()
            .post(format!("{}/api/v1/data/ingest", stack.front.url))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
        else {
            statuses.push(0);
            continue;
        };
        statuses.push(answer.status().as_u16());
        let answer: Value = answer.json().await.unwrap_or_default();
        if answer["stored"] == 4 && answer["rejected"] == 1 {
            feeder.acked.extend(good);
            let errors = answer["errors"].as_array().cloned().unwrap_or_default();
            named += usize::from(
                errors.len() == 1
                    && errors[0]["value"]
                        .as_str()
                        .is_some_and(|t| t.starts_with(&refused_at(n)[..19]))
                    && errors[0]["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("field type conflict")),
            );
        }
    }
    summary.check(
        statuses.iter().all(|s| *s == 207) && named == 10,
        format!(
            "HTTP: 10 batches of 4 good readings and 1 refused: {}, the refused reading named with InfluxDB's reason in {named}",
            tally(statuses.iter().copied())
        ),
    );

    let mut device = stack.device().await;
    let client = plantline_e2e::mqtt::MqttTestClient::connect(&stack.mqtt_url, &[]).await;
    for n in 0..7 {
        device.publish(3).await;
        let refused = json!({"timestamp": refused_at(100 + n), "temperature": 60.0});
        client
            .publish(&stack.topic(&device.machine), refused.to_string())
            .await;
    }
    client.disconnect().await;
    let bridge = stack.process(Service::Bridge).address.clone();
    let settled = within(Duration::from_secs(30), || async {
        dead_letters(&bridge, Some("store_rejected")).await >= 7
            && device.all_stored(&influx, Duration::ZERO).await
    })
    .await;
    let letters = dead_letters(&bridge, None).await;
    summary.check(
        settled && letters == 7,
        format!(
            "MQTT: 21 good messages stored, 7 refused: exactly those dead-lettered ({letters} dead letters)"
        ),
    );
    stack
        .check_both_stored(&mut summary, (&machine, &feeder.acked), &device)
        .await;
    summary.finish();
}
