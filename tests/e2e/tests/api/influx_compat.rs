//! InfluxDB's own write API (`/write`, `/api/v2/write`, `/ping`) through nginx, spoken by
//! InfluxDB's Python clients (`influxdb` 1.x and `influxdb-client` 2.x, unchanged) and by a
//! Telegraf-shaped request (gzip, Basic auth, `precision=s`), with a gateway's client id and
//! secret as the credentials those tools hold.

use base64::Engine;
use domain::MachineStatus;
use futures_util::StreamExt;
use plantline_e2e::front::{Front, Upstreams};
use plantline_e2e::{TestApp, TestContext, TestGateway, eventually};
use platform::ServiceName;
use serde_json::{Value, json};
use std::io::Write;
use std::time::Duration;

/// The stack behind nginx: auth (for tokens and gateway administration), ingest-api and
/// query-api.
struct Rig {
    ctx: TestContext,
    front: Front,
    gateway: TestGateway,
    token: String,
    auth: TestApp,
    ingest: TestApp,
    _query: TestApp,
}

async fn rig() -> Rig {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let gateway = ctx.create_gateway().await;
    let token = auth.gateway_token(&gateway).await;
    let ingest = ctx.spawn(ServiceName::IngestApi).await;
    let query = ctx.spawn(ServiceName::QueryApi).await;
    let address = |app: &TestApp| format!("127.0.0.1:{}", app.port);
    let front = Front::start(Upstreams {
        auth: &address(&auth),
        ingest: &address(&ingest),
        query: &address(&query),
    })
    .await;
    Rig {
        ctx,
        front,
        gateway,
        token,
        auth,
        ingest,
        _query: query,
    }
}

fn basic(client_id: &str, secret: &str) -> String {
    let pair = format!("{client_id}:{secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// `POST {base}/write?db=<telemetry>&precision=s{extra}` with `authorization`.
async fn write_v1(
    base: &str,
    database: &str,
    extra_query: &str,
    authorization: Option<&str>,
    body: String,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!(
            "{base}/write?db={database}&precision=s{extra_query}"
        ))
        .body(body);
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    request.send().await.expect("answer")
}

#[tokio::test]
async fn influxdb_python_clients_write_through_nginx_unchanged() {
    let rig = rig().await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    let python = std::env::var("PLANTLINE_TEST_PYTHON").expect(
        "PLANTLINE_TEST_PYTHON names the test venv's Python (with influxdb and influxdb-client); run the tests through `make test`",
    );
    let script = plantline_e2e::workspace_root().join("tests/interop/influx_clients.py");
    let args = [
        rig.front.url.clone(),
        rig.ctx.settings.influx.database.clone(),
        rig.gateway.client_id.clone(),
        rig.gateway.secret.clone(),
        rig.token.clone(),
        machine.to_string(),
    ];
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .args(args)
            .output()
    })
    .await
    .expect("the Python clients' thread")
    .expect("run the Python clients");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).expect("the script's JSON");
    let (v1, v2) = (&seen["v1"], &seen["v2"]);
    assert!(
        v1["ping"].as_str().is_some_and(|v| v.contains("plantline")),
        "{seen}"
    );
    assert_eq!(v1["written"], true, "{seen}");
    assert_eq!(v1["bad"]["code"], 400, "{seen}");
    assert!(
        v1["bad"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("line[0].temperature")),
        "the refused reading is named: {seen}"
    );
    assert_eq!(v1["other_database"]["code"], 404, "{seen}");
    assert_eq!(v1["wrong_password"]["code"], 401, "{seen}");
    assert_eq!(v2["written"], true, "{seen}");
    assert_eq!(v2["mixed"]["code"], 400, "{seen}");
    assert!(
        v2["mixed"]["body"]
            .as_str()
            .is_some_and(|b| b.contains("line[1]") && b.contains("humidity")),
        "the bad line is named: {seen}"
    );
    assert_eq!(v2["access_token"], true, "{seen}");
    assert_eq!(v2["wrong_secret"]["code"], 401, "{seen}");
    assert_eq!(v2["bad_token"]["code"], 401, "{seen}");

    // What landed: four readings, with the registry's tags, not the client's `location`;
    // nothing the refused credentials sent (11.25).
    // Rows: time, factory_id, location, machine_id, sensor_type, temperature, pressure, speed.
    let points = rig.ctx.influx_points().await;
    let mine: Vec<&Value> = points
        .iter()
        .filter(|p| p[3] == machine.to_string())
        .collect();
    assert_eq!(mine.len(), 4, "{points:?}");
    assert!(mine.iter().all(|p| p[2] == "Hall 1"), "{mine:?}");
    assert!(mine.iter().any(|p| p[7] == 1200.0), "{mine:?}");
    assert!(
        mine.iter().any(|p| p[6] == 102.5),
        "the good line of the mixed write: {mine:?}"
    );
    assert!(
        mine.iter().any(|p| p[6] == 103.75),
        "the access token's write: {mine:?}"
    );
    assert!(
        !mine.iter().any(|p| p[5] == 11.25 || p[6] == 11.25),
        "a refused credential stored nothing: {mine:?}"
    );
}

#[tokio::test]
async fn a_telegraf_shaped_request_gzip_basic_auth_precision_s_answers_204_like_influxdb() {
    let rig = rig().await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    let now_s = chrono::Utc::now().timestamp() - 10;
    let lines = format!(
        "sensor_readings,host=edge-1,machine_id={machine} temperature=68.5,speed=900i {now_s}\n"
    );
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(lines.as_bytes()).expect("gzip");
    let body = gzip.finish().expect("gzip");
    let database = &rig.ctx.settings.influx.database;
    let answer = reqwest::Client::new()
        .post(format!(
            "{}/write?db={database}&rp=autogen&precision=s",
            rig.front.url
        ))
        .header(
            "Authorization",
            basic(&rig.gateway.client_id, &rig.gateway.secret),
        )
        .header("User-Agent", "Telegraf/1.32.0 Go/1.23.0")
        .header("Content-Encoding", "gzip")
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(body)
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), 204);
    assert!(answer.headers().contains_key("x-influxdb-version"));
    let points = rig.ctx.influx_points().await;
    assert!(
        points
            .iter()
            .any(|p| p[3] == machine.to_string() && p[7] == 900.0 && p[0] == now_s * 1_000_000_000),
        "{points:?}"
    );

    let refused = reqwest::Client::new()
        .post(format!("{}/write?db={database}", rig.front.url))
        .body(lines.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(refused.status(), 401);
    let header = refused
        .headers()
        .get("x-influxdb-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = refused.json().await.expect("InfluxDB's error shape");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty() && e == header),
        "{body} / {header}"
    );

    let head = reqwest::Client::new()
        .head(format!("{}/ping", rig.front.url))
        .send()
        .await
        .expect("answer");
    assert_eq!(head.status(), 204);
}

#[tokio::test]
async fn u_and_p_in_the_query_write_and_the_secret_never_reaches_the_access_log() {
    let rig = rig().await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    let now_s = chrono::Utc::now().timestamp() - 10;
    let database = &rig.ctx.settings.influx.database;
    let line = format!("sensor_readings,machine_id={machine} speed=640 {now_s}");
    let query = format!("&u={}&p={}", rig.gateway.client_id, rig.gateway.secret);
    let answer = write_v1(&rig.front.url, database, &query, None, line).await;
    assert_eq!(answer.status(), 204, "{:?}", answer.text().await);
    let points = rig.ctx.influx_points().await;
    assert!(
        points
            .iter()
            .any(|p| p[3] == machine.to_string() && p[7] == 640.0),
        "{points:?}"
    );

    // People write with their access token only: a password is not a credential here.
    let operator = rig.ctx.create_user(domain::Role::Operator).await;
    let query = format!("&u={}&p={}", operator.username, operator.password);
    let line = format!("sensor_readings,machine_id={machine} speed=641 {now_s}");
    let answer = write_v1(&rig.front.url, database, &query, None, line).await;
    assert_eq!(answer.status(), 401);

    let log = rig.front.access_log();
    assert!(log.contains("[query not logged: it holds p=]"), "{log}");
    assert!(!log.contains(&rig.gateway.secret), "{log}");
    assert!(!log.contains(&operator.password), "{log}");
}

#[tokio::test]
async fn a_thousand_writes_with_one_secret_cost_one_argon2_verification() {
    let rig = rig().await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    let database = rig.ctx.settings.influx.database.clone();
    let authorization = basic(&rig.gateway.client_id, &rig.gateway.secret);
    let start_s = chrono::Utc::now().timestamp() - 1_000;
    // Eight at a time, as a gateway with a few outputs does after a restart: the first
    // requests all arrive before any verification has finished.
    let statuses: Vec<u16> = futures_util::stream::iter(0..1_000)
        .map(|n| {
            let (url, database, authorization) = (&rig.front.url, &database, &authorization);
            let line = format!(
                "sensor_readings,machine_id={machine} speed={n} {}",
                start_s + n
            );
            async move {
                write_v1(url, database, "", Some(authorization), line)
                    .await
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 204), "{statuses:?}");
    assert_eq!(
        rig.ingest
            .metric("plantline_password_checks_total", r#"service="ingest-api""#)
            .await,
        1.0
    );
    assert_eq!(
        rig.ingest
            .metric(
                "plantline_ingest_readings_total",
                r#"endpoint="/write",outcome="stored""#
            )
            .await,
        1_000.0,
        "readings are counted under the endpoint they came through"
    );
}

/// A management user's token, through auth.
async fn manager(rig: &Rig) -> String {
    let user = rig.ctx.create_user(domain::Role::Management).await;
    rig.auth.token_for(&user).await
}

/// Waits until ingest-api answers `want` to a write with `secret` (the revocation reaches its
/// mirror within a poll).
async fn until_write_answers(rig: &Rig, machine: uuid::Uuid, secret: &str, want: u16) {
    let database = &rig.ctx.settings.influx.database;
    let authorization = format!("Token {}:{secret}", rig.gateway.client_id);
    eventually(
        Duration::from_secs(10),
        &format!("a write answers {want}"),
        || {
            let line = format!(
                "sensor_readings,machine_id={machine} pressure=99 {}",
                chrono::Utc::now().timestamp_nanos_opt().expect("now")
            );
            let authorization = authorization.clone();
            async move {
                let answer = reqwest::Client::new()
                    .post(format!("{}/api/v2/write?bucket={database}", rig.front.url))
                    .header("Authorization", authorization)
                    .body(line)
                    .send()
                    .await
                    .expect("answer");
                (answer.status().as_u16() == want).then_some(())
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_rotated_disabled_or_deleted_gateway_loses_its_remembered_secret_in_ingest() {
    let rig = rig().await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    let admin = manager(&rig).await;
    let gateway = format!("/api/v1/gateways/{}", rig.gateway.id);
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", rig.front.url))
            .bearer_auth(&admin);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    // Remembered by ingest-api (auth, a separate service, does the rotating).
    until_write_answers(&rig, machine, &rig.gateway.secret, 204).await;

    let rotated = call(reqwest::Method::POST, format!("{gateway}/secret"), None)
        .await
        .expect("rotate");
    assert_eq!(rotated.status(), 200);
    let new_secret = rotated.json::<Value>().await.expect("JSON")["client_secret"]
        .as_str()
        .expect("the new secret, once")
        .to_owned();
    until_write_answers(&rig, machine, &rig.gateway.secret, 401).await;
    // A client left on the old secret keeps sending it: refused, never locked out (429),
    // and the new secret is not locked out either.
    for _ in 0..12 {
        until_write_answers(&rig, machine, &rig.gateway.secret, 401).await;
    }
    until_write_answers(&rig, machine, &new_secret, 204).await;

    let disabled = call(
        reqwest::Method::PATCH,
        gateway.clone(),
        Some(json!({"is_active": false})),
    )
    .await
    .expect("disable");
    assert_eq!(disabled.status(), 200);
    until_write_answers(&rig, machine, &new_secret, 401).await;

    let enabled = call(
        reqwest::Method::PATCH,
        gateway.clone(),
        Some(json!({"is_active": true})),
    )
    .await
    .expect("enable");
    assert_eq!(enabled.status(), 200);
    until_write_answers(&rig, machine, &new_secret, 204).await;

    let deleted = call(reqwest::Method::DELETE, gateway, None)
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 204);
    until_write_answers(&rig, machine, &new_secret, 401).await;
}

#[tokio::test]
async fn allowed_measurements_are_stored_and_lines_without_time_share_one_receive_time() {
    let ctx = TestContext::new().await;
    let gateway = ctx.create_gateway().await;
    let machine = ctx.create_machine(MachineStatus::Active).await;
    let mut settings = ctx.settings.clone();
    settings.influx.measurement_aliases = "modbus, plc".to_owned();
    let ingest = ctx.spawn_with(ServiceName::IngestApi, settings).await;
    let database = &ctx.settings.influx.database;
    let authorization = basic(&gateway.client_id, &gateway.secret);
    let now_s = chrono::Utc::now().timestamp() - 60;

    let body = format!(
        "modbus,machine_id={machine} temperature=61.5 {now_s}\n\
         cpu,machine_id={machine} temperature=62.5 {}\n",
        now_s + 1
    );
    let answer = write_v1(&ingest.address, database, "", Some(&authorization), body).await;
    assert_eq!(answer.status(), 400);
    let error = answer
        .json::<Value>()
        .await
        .expect("InfluxDB's error shape")["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("line[1].measurement") && error.contains("\"cpu\""),
        "the refused measurement is named: {error}"
    );

    // Two lines without a timestamp: one receive time, so one point with both fields.
    let body = format!(
        "sensor_readings,machine_id={machine} pressure=140.5\n\
         plc,machine_id={machine} speed=77\n"
    );
    let answer = write_v1(&ingest.address, database, "", Some(&authorization), body).await;
    assert_eq!(answer.status(), 204);

    let points = ctx.influx_points().await;
    let mine: Vec<&Value> = points
        .iter()
        .filter(|p| p[3] == machine.to_string())
        .collect();
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert!(
        mine.iter().any(|p| p[5] == 61.5),
        "the alias is stored: {mine:?}"
    );
    assert!(
        mine.iter().any(|p| p[6] == 140.5 && p[7] == 77.0),
        "one point for both lines: {mine:?}"
    );
}
