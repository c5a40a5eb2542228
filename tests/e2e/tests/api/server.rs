use actix_web::{HttpResponse, web};
use plantline_e2e::{TestApp, TestContext};
use platform::health::Readiness;
use platform::metrics::Metrics;
use platform::{Application, ServiceName, ServiceParts};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let ctx = TestContext::new().await;
    let app = ctx.spawn(ServiceName::QueryApi).await;

    let response = app.get("/no/such/route").await;
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "error");
    assert_eq!(body["code"], "not_found");

    let response = app
        .http
        .delete(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "error");
}

#[tokio::test]
async fn request_ids_are_kept_when_sane_and_minted_otherwise() {
    let ctx = TestContext::new().await;
    let app = ctx.spawn(ServiceName::Auth).await;

    let response = app
        .http
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "gw-17.batch-0042")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "gw-17.batch-0042");

    let response = app
        .http
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "bad id with spaces\"{}")
        .send()
        .await
        .unwrap();
    let minted = response.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(minted).is_ok(), "{minted}");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let ctx = TestContext::new().await;
    let app = ctx.spawn(ServiceName::IngestApi).await;
    for _ in 0..3 {
        assert_eq!(app.get("/healthz").await.status(), 200);
    }
    app.get("/nothing-here").await;

    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(r#"plantline_http_requests_total{method="GET",route="/healthz",status="200",service="ingest-api"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"route="unmatched",status="404",service="ingest-api"} 1"#),
        "{text}"
    );
    assert!(text.contains("plantline_process_resident_memory_bytes"));
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_background_tasks() {
    let ctx = TestContext::new().await;
    let started = Arc::new(Notify::new());
    let handler_started = started.clone();
    let parts = ServiceParts {
        service: ServiceName::QueryApi,
        readiness: Readiness::new(Vec::new(), Duration::from_secs(1)),
        metrics: Metrics::new("drain-test").unwrap(),
        verification: None,
        routes: move |cfg: &mut web::ServiceConfig| {
            let started = handler_started.clone();
            cfg.route(
                "/slow",
                web::get().to(move || {
                    let started = started.clone();
                    async move {
                        started.notify_one();
                        tokio::time::sleep(Duration::from_millis(600)).await;
                        HttpResponse::Ok().body("finished")
                    }
                }),
            );
        },
    };
    let app = Application::build(&ctx.settings, parts).unwrap();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let token = app.shutdown_token();
    app.spawn_background(async move {
        token.cancelled().await;
        let _ = done_tx.send("background task finished its work");
    });
    let app = TestApp::start(app);

    let client = app.http.clone();
    let url = format!("{}/slow", app.address);
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    tokio::time::timeout(Duration::from_secs(5), started.notified())
        .await
        .expect("the slow request reaches its handler");
    let address = app.address.clone();
    app.stop().await.unwrap();

    let response = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "finished");
    assert_eq!(done_rx.await.unwrap(), "background task finished its work");
    // And nothing listens any more.
    assert!(reqwest::get(format!("{address}/healthz")).await.is_err());
}

#[tokio::test]
async fn a_panicking_essential_task_stops_the_service_with_an_error() {
    let ctx = TestContext::new().await;
    let parts = ServiceParts {
        service: ServiceName::MqttBridge,
        readiness: Readiness::new(Vec::new(), Duration::from_secs(1)),
        metrics: Metrics::new("essential-test").unwrap(),
        verification: None,
        routes: |_: &mut web::ServiceConfig| {},
    };
    let app = Application::build(&ctx.settings, parts).unwrap();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    app.spawn_essential("doomed", async move {
        let _ = go_rx.await;
        panic!("a bug in an essential task");
    });
    let running = tokio::spawn(app.run_until_stopped());
    go_tx.send(()).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the service stops by itself")
        .unwrap();
    assert!(outcome.is_err(), "the exit reports the failure");
}

#[tokio::test]
async fn the_healthcheck_subcommand_passes_against_the_running_service_and_fails_without_it() {
    use plantline_e2e::net::{ServiceProcess, binary};
    let ctx = plantline_e2e::TestContext::new().await;
    let service = ServiceProcess::start("query-api", &ctx.env);
    plantline_e2e::eventually(Duration::from_secs(20), "query-api answers", || {
        service.readiness()
    })
    .await;
    let check = |port: &str| {
        std::process::Command::new(binary("query-api"))
            .arg("healthcheck")
            .env_clear()
            .envs(ctx.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PLANTLINE_HTTP__PORT", port)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run healthcheck")
    };
    let port = service.address.rsplit(':').next().expect("port");
    assert!(check(port).success(), "healthy service: exit 0");
    let nobody = plantline_e2e::closed_port().to_string();
    assert_eq!(check(&nobody).code(), Some(1), "nothing listening: exit 1");
}
