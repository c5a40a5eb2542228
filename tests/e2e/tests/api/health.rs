use plantline_e2e::{TestContext, closed_port, eventually};
use platform::ServiceName;
use serde_json::Value;
use std::time::Duration;

#[tokio::test]
async fn every_service_is_live_and_ready_when_its_dependencies_are_up() {
    let ctx = TestContext::new().await;
    for service in ServiceName::ALL {
        let app = ctx.spawn(service).await;
        let health: Value = app.get("/healthz").await.json().await.unwrap();
        assert_eq!(health["status"], "ok");
        assert_eq!(health["service"], service.as_str());

        // The bridge connects to the broker in the background: poll for readiness.
        let ready: Value = eventually(Duration::from_secs(15), "readyz 200", || async {
            let response = app.get("/readyz").await;
            (response.status() == 200).then_some(response)
        })
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(ready["status"], "ready", "{service:?}: {ready}");
        assert_eq!(ready["service"], service.as_str());
        for (name, state) in ready["dependencies"].as_object().unwrap() {
            assert_eq!(state["status"], "up", "{service:?} {name}: {state}");
        }
    }
}

#[tokio::test]
async fn readyz_is_503_and_names_a_required_dependency_that_is_unreachable() {
    let ctx = TestContext::new().await;
    let mut settings = ctx.settings.clone();
    settings.influx.url = format!("http://127.0.0.1:{}", closed_port());
    settings.influx.timeout_ms = 500;
    let app = ctx.spawn_with(ServiceName::QueryApi, settings).await;

    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["dependencies"]["influxdb"]["status"], "down");
    assert!(
        body["dependencies"]["influxdb"]["error"]
            .as_str()
            .unwrap()
            .contains("unreachable")
    );
    assert_eq!(body["dependencies"]["postgres"]["status"], "up");

    // The process itself is fine: liveness must not follow readiness.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn an_optional_dependency_down_degrades_but_stays_ready() {
    let ctx = TestContext::new().await;
    let mut settings = ctx.settings.clone();
    settings.redis.url =
        secrecy::SecretString::from(format!("redis://127.0.0.1:{}", closed_port()));
    let app = ctx.spawn_with(ServiceName::IngestApi, settings).await;

    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["dependencies"]["redis"]["status"], "down");
    assert_eq!(body["dependencies"]["redis"]["required"], false);
}

#[tokio::test]
/// Degraded, not unready: gateways still get tokens on credentials verified lately, so
/// auth must stay behind its Service while PostgreSQL is away.
async fn postgres_down_makes_auth_degraded_not_unready() {
    let ctx = TestContext::new().await;
    let mut settings = ctx.settings.clone();
    settings.postgres.url =
        secrecy::SecretString::from(format!("postgres://postgres@127.0.0.1:{}/x", closed_port()));
    settings.postgres.connect_timeout_ms = 500;
    let app = ctx.spawn_with(ServiceName::Auth, settings).await;

    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["dependencies"]["postgres"]["status"], "down");
}

#[tokio::test]
async fn the_bridge_is_not_ready_without_a_broker() {
    let ctx = TestContext::new().await;
    let mut settings = ctx.settings.clone();
    settings.mqtt.url = format!("tcp://127.0.0.1:{}", closed_port());
    let app = ctx.spawn_with(ServiceName::MqttBridge, settings).await;

    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["dependencies"]["mqtt"]["status"], "down");
}
