//! InfluxDB's own write API (`/write`, `/api/v2/write`, `/ping`) through nginx, spoken by
//! InfluxDB's Python clients (`influxdb` 1.x and `influxdb-client` 2.x, unchanged) and by a
//! Telegraf-shaped request (gzip, `precision=s`).

use domain::MachineStatus;
use plantline_e2e::TestContext;
use plantline_e2e::front::{Front, Upstreams};
use platform::ServiceName;
use serde_json::Value;
use std::io::Write;

/// The stack behind nginx: auth (for the token), ingest-api and query-api.
struct Rig {
    ctx: TestContext,
    front: Front,
    token: String,
    _services: Vec<plantline_e2e::TestApp>,
}

async fn rig() -> Rig {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let gateway = ctx.create_gateway().await;
    let token = auth.gateway_token(&gateway).await;
    let ingest = ctx.spawn(ServiceName::IngestApi).await;
    let query = ctx.spawn(ServiceName::QueryApi).await;
    let address = |app: &plantline_e2e::TestApp| format!("127.0.0.1:{}", app.port);
    let front = Front::start(Upstreams {
        auth: &address(&auth),
        ingest: &address(&ingest),
        query: &address(&query),
    })
    .await;
    Rig {
        ctx,
        front,
        token,
        _services: vec![auth, ingest, query],
    }
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
    assert_eq!(v2["written"], true, "{seen}");
    assert_eq!(v2["mixed"]["code"], 400, "{seen}");
    assert!(
        v2["mixed"]["body"]
            .as_str()
            .is_some_and(|b| b.contains("line[1]")),
        "the bad line is named: {seen}"
    );
    assert_eq!(v2["bad_token"]["code"], 401, "{seen}");

    // What landed: three readings, with the registry's tags, not the client's `location`.
    // Rows: time, factory_id, location, machine_id, sensor_type, temperature, pressure, speed.
    let points = rig.ctx.influx_points().await;
    let mine: Vec<&Value> = points
        .iter()
        .filter(|p| p[3] == machine.to_string())
        .collect();
    assert_eq!(mine.len(), 3, "{points:?}");
    assert!(mine.iter().all(|p| p[2] == "Hall 1"), "{mine:?}");
    assert!(mine.iter().any(|p| p[7] == 1200.0), "{mine:?}");
    assert!(
        mine.iter().any(|p| p[6] == 102.5),
        "the good line of the mixed write: {mine:?}"
    );
}

#[tokio::test]
async fn a_telegraf_shaped_request_gzip_precision_s_answers_204_like_influxdb() {
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
        .header("Authorization", format!("Bearer {}", rig.token))
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
