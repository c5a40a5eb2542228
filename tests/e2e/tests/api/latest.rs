//! Latest values for one machine and for the fleet, from Redis and from InfluxDB.

use domain::{MachineStatus, Role};
use plantline_e2e::{TestContext, closed_port};
use platform::ServiceName;
use reqwest::Method;
use serde_json::{Value, json};

fn ts(seconds_ago: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::seconds(seconds_ago))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[tokio::test]
async fn latest_values_come_from_redis_and_fall_back_to_influxdb() {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let ingest = ctx.spawn(ServiceName::IngestApi).await;
    let query = ctx.spawn(ServiceName::QueryApi).await;
    let hot = ctx.create_machine(MachineStatus::Active).await;
    let quiet = ctx.create_machine(MachineStatus::Maintenance).await;
    let gateway = auth.gateway_token(&ctx.create_gateway().await).await;
    let operator = auth.token_for(&ctx.create_user(Role::Operator).await).await;

    let newest = ts(5);
    let body = json!({"gateway_id": "g", "timestamp": newest, "batch": [{"machine_id": hot, "readings": [
        {"timestamp": ts(60), "temperature": 60.0, "pressure": 120.0},
        {"timestamp": newest, "temperature": 66.5}
    ]}]});
    let stored = ingest
        .request(Method::POST, "/api/v1/data/ingest")
        .bearer_auth(&gateway)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 201);

    let answer: Value = query
        .get_json(&format!("/api/v1/data/machine/{hot}/latest"), &operator)
        .await;
    assert_eq!(answer["source"], "cache");
    assert_eq!(answer["latest"]["temperature"]["value"], 66.5);
    assert_eq!(
        answer["latest"]["pressure"]["value"], 120.0,
        "each field's own newest value"
    );
    assert_eq!(answer["latest"]["speed"], Value::Null);
    assert_eq!(answer["machine"]["id"], hot.to_string());

    let fleet: Value = query
        .get_json("/api/v1/data/latest?factory_id=A", &operator)
        .await;
    assert_eq!(fleet["count"], 2);
    let filtered: Value = query
        .get_json("/api/v1/data/latest?status=maintenance", &operator)
        .await;
    assert_eq!(filtered["count"], 1);
    assert_eq!(filtered["machines"][0]["machine"]["id"], quiet.to_string());
    assert_eq!(
        filtered["machines"][0]["latest"]["temperature"],
        Value::Null
    );
    let bad = query
        .request(Method::GET, "/api/v1/data/latest?status=on")
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let unknown = query
        .request(
            Method::GET,
            &format!("/api/v1/data/machine/{}/latest", uuid::Uuid::new_v4()),
        )
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // Without Redis the same answer comes from InfluxDB.
    let mut settings = ctx.settings.clone();
    settings.redis.url =
        secrecy::SecretString::from(format!("redis://127.0.0.1:{}", closed_port()));
    let without_redis = ctx.spawn_with(ServiceName::QueryApi, settings).await;
    let answer: Value = without_redis
        .get_json(&format!("/api/v1/data/machine/{hot}/latest"), &operator)
        .await;
    assert_eq!(answer["source"], "store");
    assert_eq!(answer["latest"]["temperature"]["value"], 66.5);
    assert_eq!(answer["latest"]["pressure"]["value"], 120.0);
    let expected = chrono::DateTime::parse_from_rfc3339(&newest)
        .unwrap()
        .with_timezone(&chrono::Utc);
    let got = chrono::DateTime::parse_from_rfc3339(
        answer["latest"]["temperature"]["timestamp"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(got, expected);
}
