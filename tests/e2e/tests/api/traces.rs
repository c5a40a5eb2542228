//! OpenTelemetry: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, a request through nginx becomes one
//! trace — nginx's request id as the trace id, ingest-api's request span, the InfluxDB write
//! as its child — and an MQTT 5 publisher's `traceparent` runs on into the bridge's batch and
//! its write; received by an OTLP/HTTP receiver running in this test.

use actix_web::{App, HttpResponse, HttpServer, web};
use domain::MachineStatus;
use plantline_e2e::front::{Front, Upstreams};
use plantline_e2e::net::ServiceProcess;
use plantline_e2e::{TestContext, closed_port, eventually};
use platform::ServiceName;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One exported span.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

/// An OTLP/HTTP (JSON) receiver on loopback that keeps what it is sent.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    server: actix_web::dev::ServerHandle,
}

impl Receiver {
    fn start() -> Self {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        let server = HttpServer::new(move || {
            let kept = kept.clone();
            App::new()
                .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                .route(
                    "/v1/traces",
                    web::post().to(move |body: web::Bytes| {
                        let kept = kept.clone();
                        async move {
                            if let Ok(value) = serde_json::from_slice::<Value>(&body) {
                                kept.lock().expect("receiver lock").push(value);
                            }
                            HttpResponse::Ok()
                                .content_type("application/json")
                                .body("{}")
                        }
                    }),
                )
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .expect("bind the OTLP receiver");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url: format!("http://127.0.0.1:{port}"),
            bodies,
            server: handle,
        }
    }

    fn spans(&self) -> Vec<Span> {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let mut spans = Vec::new();
        for body in self.bodies.lock().expect("receiver lock").iter() {
            for resource in body["resourceSpans"].as_array().into_iter().flatten() {
                let service = resource["resource"]["attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["key"] == "service.name")
                    .map(|a| text(&a["value"]["stringValue"]))
                    .unwrap_or_default();
                for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                    for span in scope["spans"].as_array().into_iter().flatten() {
                        spans.push(Span {
                            service: service.clone(),
                            name: text(&span["name"]),
                            trace_id: text(&span["traceId"]).to_lowercase(),
                            span_id: text(&span["spanId"]).to_lowercase(),
                            parent_span_id: text(&span["parentSpanId"]).to_lowercase(),
                        });
                    }
                }
            }
        }
        spans
    }

    /// The ingest request span of `trace` and the InfluxDB write under it, once both arrived.
    async fn request_and_write(&self, trace: &str) -> (Span, Span) {
        eventually(Duration::from_secs(15), "the trace's spans", || {
            let spans = self.spans();
            let found = spans
                .iter()
                .find(|s| s.trace_id == trace && s.name == "request" && s.service == "ingest-api")
                .and_then(|request| {
                    spans
                        .iter()
                        .find(|s| s.trace_id == trace && s.name == "influx.write")
                        .map(|write| (request.clone(), write.clone()))
                });
            std::future::ready(found)
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_through_nginx_is_one_trace_from_request_id_to_the_influx_write() {
    let ctx = TestContext::new().await;
    let receiver = Receiver::start();
    let auth = ctx.spawn(ServiceName::Auth).await;
    let mut env = ctx.env.clone();
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.url.clone()));
    env.push(("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()));
    let ingest = ServiceProcess::start("ingest-api", &env);
    eventually(Duration::from_secs(20), "ingest-api ready", || {
        ingest.readiness()
    })
    .await;
    let host = |address: &str| address.trim_start_matches("http://").to_owned();
    let (auth_address, ingest_address, unused) = (
        format!("127.0.0.1:{}", auth.port),
        host(&ingest.address),
        format!("127.0.0.1:{}", closed_port()),
    );
    let front = Front::start(Upstreams {
        auth: &auth_address,
        ingest: &ingest_address,
        query: &unused,
    })
    .await;
    let machine = ctx.create_machine(MachineStatus::Active).await;
    let token = auth.gateway_token(&ctx.create_gateway().await).await;
    let http = reqwest::Client::new();
    let post = |traceparent: Option<String>| {
        let now = chrono::Utc::now().to_rfc3339();
        let mut request = http
            .post(format!("{}/api/v1/data/ingest", front.url))
            .bearer_auth(&token)
            .json(&json!({"gateway_id": "gw", "timestamp": now,
                "batch": [{"machine_id": machine, "readings": [{"timestamp": now, "temperature": 61.5}]}]}));
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        request.send()
    };

    // No trace context from the caller: nginx's request id becomes the trace id.
    let response = post(None).await.expect("ingest through nginx");
    assert_eq!(response.status(), 201);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(request_id.len(), 32, "nginx's own request id: {request_id}");
    let (request, write) = receiver.request_and_write(&request_id).await;
    assert_eq!(
        request.parent_span_id,
        request_id[..16],
        "the request span hangs under nginx's (synthesised) span"
    );
    assert_eq!(
        write.parent_span_id, request.span_id,
        "the InfluxDB write is a child of the request"
    );
    assert_eq!(write.service, "ingest-api");

    // A caller's traceparent passes through nginx unchanged.
    let (trace, parent) = (
        uuid::Uuid::new_v4().simple().to_string(),
        format!("{:016x}", rand_span()),
    );
    let response = post(Some(format!("00-{trace}-{parent}-01")))
        .await
        .expect("ingest with a traceparent");
    assert_eq!(response.status(), 201);
    let (request, write) = receiver.request_and_write(&trace).await;
    assert_eq!(request.parent_span_id, parent);
    assert_eq!(write.parent_span_id, request.span_id);
    receiver.server.stop(false).await;
}

fn rand_span() -> u64 {
    (uuid::Uuid::new_v4().as_u128() as u64) | 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt5_publishers_traceparent_runs_on_into_the_bridges_write() {
    use paho_mqtt as mqtt;
    let ctx = TestContext::new().await;
    let receiver = Receiver::start();
    let mut env = ctx.env.clone();
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.url.clone()));
    env.push(("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()));
    env.push(("PLANTLINE_MQTT__PROTOCOL".into(), "5".into()));
    let bridge = ServiceProcess::start("mqtt-bridge", &env);
    eventually(Duration::from_secs(20), "mqtt-bridge ready", || {
        bridge.readiness()
    })
    .await;
    let machine = ctx.create_machine(MachineStatus::Active).await;
    let url = plantline_e2e::Backends::from_env().mqtt_url;
    let device = mqtt::AsyncClient::new(
        mqtt::CreateOptionsBuilder::new()
            .server_uri(&url)
            .client_id(format!("device-{}", uuid::Uuid::new_v4().simple()))
            .mqtt_version(mqtt::MQTT_VERSION_5)
            .persistence(None)
            .finalize(),
    )
    .expect("MQTT 5 device");
    let connecting = device.connect(mqtt::ConnectOptionsBuilder::new_v5().finalize());
    connecting.await.expect("device connects");
    let (trace, parent) = (
        uuid::Uuid::new_v4().simple().to_string(),
        format!("{:016x}", rand_span()),
    );
    let mut properties = mqtt::Properties::new();
    properties
        .push_string_pair(
            mqtt::PropertyCode::UserProperty,
            "traceparent",
            &format!("00-{trace}-{parent}-01"),
        )
        .expect("user property");
    let now = chrono::Utc::now().to_rfc3339();
    let message = mqtt::MessageBuilder::new()
        .topic(ctx.telemetry_topic("A", &machine))
        .payload(json!({"readings": [{"timestamp": now, "temperature": 62.5}]}).to_string())
        .qos(1)
        .properties(properties)
        .finalize();
    device.publish(message).await.expect("published");
    let (batch, write) = eventually(Duration::from_secs(20), "the bridge's spans", || {
        let spans = receiver.spans();
        let found = spans
            .iter()
            .find(|s| s.trace_id == trace && s.name == "bridge.batch")
            .and_then(|batch| {
                spans
                    .iter()
                    .find(|s| s.trace_id == trace && s.name == "influx.write")
                    .map(|write| (batch.clone(), write.clone()))
            });
        std::future::ready(found)
    })
    .await;
    assert_eq!(batch.service, "mqtt-bridge");
    assert_eq!(
        batch.parent_span_id, parent,
        "the batch continues the publisher's trace"
    );
    assert_eq!(
        write.parent_span_id, batch.span_id,
        "the InfluxDB write is a child of the batch"
    );
    let _ = device.disconnect(None).await;
    receiver.server.stop(false).await;
}
