//! Threshold and inactivity alerts on both write paths, served and acknowledged by query-api.

use domain::MachineStatus;
use plantline_e2e::eventually;
use plantline_e2e::mqtt::MqttTestClient;
use plantline_e2e::plant::Plant;
use platform::ServiceName;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

type Rig = Plant;

async fn rig() -> Rig {
    Plant::start().await
}

fn seconds_ago(seconds: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::seconds(seconds))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

trait AlertCalls {
    async fn alerts(&self, query: &str) -> Vec<Value>;
    async fn ack(&self, id: &str, token: &str) -> reqwest::Response;
}

impl AlertCalls for Rig {
    async fn alerts(&self, query: &str) -> Vec<Value> {
        self.query
            .get_json(&format!("/api/v1/alerts?{query}"), &self.operator)
            .await["alerts"]
            .as_array()
            .expect("alerts array")
            .clone()
    }

    async fn ack(&self, id: &str, token: &str) -> reqwest::Response {
        self.query
            .request(Method::POST, &format!("/api/v1/alerts/{id}/ack"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_reading_over_threshold_opens_one_alert_repeats_update_it_and_normal_closes_it() {
    let rig = rig().await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    let other = rig.ctx.create_machine(MachineStatus::Active).await;
    rig.post_temperature(&machine, 85.0, 30).await;
    let open = rig
        .alerts(&format!("state=open&machine_id={machine}"))
        .await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["metric"], "temperature");
    assert_eq!(open[0]["severity"], "warning");
    assert_eq!(open[0]["threshold"], 80.0);
    assert_eq!(open[0]["count"], 1);

    rig.post_temperature(&machine, 95.0, 20).await;
    rig.post_temperature(&machine, 84.0, 10).await;
    rig.post_temperature(&other, 60.0, 10).await;
    let open = rig.alerts("state=open").await;
    assert_eq!(open.len(), 1, "still one alert: {open:?}");
    assert_eq!(open[0]["count"], 3);
    assert_eq!(open[0]["severity"], "critical", "the worst seen while open");
    assert_eq!(open[0]["value"], 84.0);

    rig.post_temperature(&machine, 70.0, 5).await;
    assert!(rig.alerts("state=open").await.is_empty());
    let closed = rig.alerts("state=closed").await;
    assert_eq!(closed.len(), 1);
    assert!(closed[0]["closed_at"].is_string());

    // Below the minimum is a warning of its own, a new alert.
    rig.post_temperature(&machine, 40.0, 1).await;
    let open = rig.alerts("state=open&severity=warning").await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["threshold"], 50.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_mqtt_reading_over_threshold_opens_one_alert_announced_on_the_alerts_topic() {
    let rig = rig().await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    let bridge = rig.ctx.spawn(ServiceName::MqttBridge).await;
    eventually(WAIT, "bridge subscribed", || async {
        let ready: Value = bridge.get("/readyz").await.json().await.ok()?;
        (ready["dependencies"]["mqtt"]["status"] == "up").then_some(())
    })
    .await;
    let alerts_topic = format!("{}factory/A/machine/{machine}/alerts", rig.ctx.topic_prefix);
    let client = MqttTestClient::connect(&rig.ctx.settings.mqtt.url, &[&alerts_topic]).await;
    let topic = rig.ctx.telemetry_topic("A", &machine);
    for temperature in [170.0, 175.0] {
        let reading = json!({"timestamp": seconds_ago(5), "pressure": temperature});
        client.publish(&topic, reading.to_string()).await;
    }
    let open = eventually(WAIT, "an alert from MQTT", || async {
        let open = rig.alerts("state=open").await;
        (open.first().is_some_and(|a| a["count"] == 2)).then_some(open)
    })
    .await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["metric"], "pressure");
    assert_eq!(open[0]["severity"], "critical", "175 > 1.1 × 150");
    let message = client
        .next(WAIT)
        .await
        .expect("the alert on the machine's alerts topic");
    let event: Value = serde_json::from_slice(message.payload()).unwrap();
    assert_eq!(event["event"], "opened");
    assert_eq!(event["alert"]["machine_id"], machine.to_string());
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_machine_raises_an_inactivity_alert_that_its_next_reading_closes() {
    let rig = rig().await;
    rig.ctx.set_setting("inactivity_timeout", json!(60)).await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    rig.post_temperature(&machine, 65.0, 120).await;
    let open = eventually(WAIT, "an inactivity alert", || async {
        let open = rig.alerts("state=open&metric=inactivity").await;
        (!open.is_empty()).then_some(open)
    })
    .await;
    assert_eq!(open[0]["machine_id"], machine.to_string());
    assert_eq!(open[0]["threshold"], 60.0);
    assert!(open[0]["value"].as_f64().unwrap() >= 120.0);
    rig.post_temperature(&machine, 65.0, 0).await;
    assert!(
        rig.alerts("state=open&metric=inactivity").await.is_empty(),
        "a reading ends the silence"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn supervisors_acknowledge_alerts_and_operators_may_not() {
    let rig = rig().await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    rig.post_temperature(&machine, 90.0, 5).await;
    let id = rig.alerts("state=open").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(rig.ack(&id, &rig.operator).await.status(), 403);
    let response = rig.ack(&id, &rig.supervisor).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["alert"]["acknowledged_at"].is_string());
    let first_ack = body["alert"]["acknowledged_at"].clone();
    // Again, by management: the first acknowledgement stands.
    let again: Value = rig.ack(&id, &rig.manager).await.json().await.unwrap();
    assert_eq!(again["alert"]["acknowledged_at"], first_ack);
    assert_eq!(
        rig.ack(&uuid::Uuid::new_v4().to_string(), &rig.supervisor)
            .await
            .status(),
        404
    );
    let bad = rig.ack("not-an-id", &rig.supervisor).await;
    assert_eq!(bad.status(), 400);
    let audit = rig
        .query
        .get_json("/api/v1/audit?resource_type=alert", &rig.manager)
        .await;
    assert_eq!(audit["entries"].as_array().unwrap().len(), 1);
    let listed = rig
        .query
        .request(Method::GET, "/api/v1/alerts?state=maybe&since=yesterday")
        .bearer_auth(&rig.operator)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 400);
    let body: Value = listed.json().await.unwrap();
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["parameter"].as_str().or(e["field"].as_str()))
        .collect();
    assert_eq!(fields, ["state", "since"], "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_threshold_change_applies_to_the_next_reading_without_a_restart() {
    let rig = rig().await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    rig.post_temperature(&machine, 85.0, 30).await;
    assert_eq!(rig.alerts("state=open").await.len(), 1);
    let response = rig
        .query
        .request(Method::POST, "/api/v1/config/update")
        .bearer_auth(&rig.manager)
        .json(&json!({"setting_name": "max_temperature_threshold", "setting_value": 100.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // 85 °C is normal under the new threshold: the next reading closes the alert.
    let (rig, mut age) = (&rig, 20);
    eventually(WAIT, "the alert closed under the new threshold", || {
        age = (age - 1).max(0);
        async move {
            rig.post_temperature(&machine, 85.0, age).await;
            rig.alerts("state=open").await.is_empty().then_some(())
        }
    })
    .await;
}

/// A key saying a metric is open when PostgreSQL has no open alert for it (left by two
/// requests racing to close the same alert) is corrected by the next normal reading, not
/// written back: before, every later batch tried to close an alert that was not open.
#[tokio::test(flavor = "multi_thread")]
async fn a_stale_open_alert_key_is_corrected_by_the_next_normal_reading() {
    use deadpool_redis::redis;
    let rig = rig().await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    let redis_client = rig.ctx.redis();
    let key = storage::alerts::open_key(&redis_client, &machine);
    redis_client
        .query::<()>(redis::cmd("SET").arg(&key).arg("temperature"))
        .await
        .unwrap();
    rig.post_temperature(&machine, 60.0, 5).await;
    let left: Option<String> = redis_client
        .query(redis::cmd("GET").arg(&key))
        .await
        .unwrap();
    assert_eq!(left, None, "nothing is open");
    assert!(rig.alerts("state=open").await.is_empty());
}
