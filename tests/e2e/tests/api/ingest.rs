//! POST /api/v1/data/ingest against real InfluxDB, Postgres and Redis.

use domain::{MachineStatus, Role};
use plantline_e2e::{TestApp, TestContext, assert_point, closed_port};
use platform::ServiceName;
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Write;

struct Rig {
    ctx: TestContext,
    ingest: TestApp,
    token: String,
}

async fn rig() -> Rig {
    rig_with(|_| {}).await
}

async fn rig_with(adjust: impl FnOnce(&mut platform::Settings)) -> Rig {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let gateway = ctx.create_gateway().await;
    let token = auth.gateway_token(&gateway).await;
    let mut settings = ctx.settings.clone();
    adjust(&mut settings);
    let ingest = ctx.spawn_with(ServiceName::IngestApi, settings).await;
    Rig { ctx, ingest, token }
}

impl Rig {
    async fn post(&self, body: &Value) -> (u16, Value) {
        let response = self
            .ingest
            .request(Method::POST, "/api/v1/data/ingest")
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn post_raw(&self, body: Vec<u8>, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self
            .ingest
            .request(Method::POST, "/api/v1/data/ingest")
            .bearer_auth(&self.token)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }
}

fn now_minus(seconds: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::seconds(seconds))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn seed_body(machine: &uuid::Uuid, ts: &str) -> Value {
    json!({
        "gateway_id": "gateway-hall-1",
        "timestamp": ts,
        "batch": [{
            "machine_id": machine,
            "sensor_type": "multi",
            "location": "Hall 1",
            "readings": [
                {"timestamp": ts, "temperature": 72.5, "pressure": 101.3, "speed": 1500},
            ]
        }]
    })
}

#[tokio::test]
async fn the_seed_example_is_stored_exactly() {
    let rig = rig().await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    let ts = now_minus(60);
    let (status, body) = rig.post(&seed_body(&machine, &ts)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "success");
    assert_eq!(body["stored"], 1);
    assert_eq!(body["details"][0]["stored"], 1);
    assert_eq!(body["gateway_id"], "gateway-hall-1");

    let points = rig.ctx.influx_points().await;
    assert_eq!(points.len(), 1);
    let expected_ns = chrono::DateTime::parse_from_rfc3339(&ts)
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap();
    assert_point(&points[0], expected_ns, &machine, [72.5, 101.3, 1500.0]);
    // Stored as floats (a later 1500.5 must not hit a field-type conflict).
    let types = rig
        .ctx
        .influx()
        .query("SHOW FIELD KEYS FROM sensor_readings")
        .await
        .unwrap();
    assert!(
        types[0][0].values.iter().all(|row| row[1] == "float"),
        "{types:?}"
    );

    // A gateway retrying the same batch overwrites, never duplicates.
    assert_eq!(rig.post(&seed_body(&machine, &ts)).await.0, 201);
    assert_eq!(rig.ctx.influx_points().await.len(), 1);
}

#[tokio::test]
async fn the_seed_invalid_examples_answer_the_error_shapes() {
    let rig = rig().await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    let unknown = uuid::Uuid::new_v4();
    let (status, body) = rig.post(&seed_body(&unknown, &now_minus(10))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["status"], "error");
    assert_eq!(body["errors"][0]["field"], "batch[0].machine_id");
    assert_eq!(body["errors"][0]["value"], unknown.to_string());
    assert!(
        body["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("unknown machine")
    );

    let mut bad_date = seed_body(&machine, &now_minus(10));
    bad_date["batch"][0]["readings"][0]["timestamp"] = json!("2025-13-45T10:30:00Z");
    let (status, body) = rig.post(&bad_date).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "batch[0].readings[0].timestamp");
    assert_eq!(body["errors"][0]["value"], "2025-13-45T10:30:00Z");
    assert!(rig.ctx.influx_points().await.is_empty(), "nothing stored");
}

#[tokio::test]
async fn a_mixed_batch_is_207_with_paths_and_stores_only_the_good_readings() {
    let rig = rig().await;
    let good = rig.ctx.create_machine(MachineStatus::Active).await;
    let inactive = rig.ctx.create_machine(MachineStatus::Inactive).await;
    let maintenance = rig.ctx.create_machine(MachineStatus::Maintenance).await;
    let ts = now_minus(30);
    let body = json!({
        "gateway_id": "gw", "timestamp": ts,
        "batch": [
            {"machine_id": good, "sensor_type": "multi", "location": "Hall 1", "readings": [
                {"timestamp": ts, "temperature": 70.0},
                {"timestamp": now_minus(29), "temperature": 2500.0},
                {"timestamp": now_minus(28), "pressure": 99.5}
            ]},
            {"machine_id": inactive, "readings": [{"timestamp": ts, "speed": 10}]},
            {"machine_id": maintenance, "readings": [{"timestamp": ts, "speed": 20}]},
            // Any label is accepted (the registry's wins); only a non-string is malformed.
            {"machine_id": good, "sensor_type": 42, "readings": [{"timestamp": ts, "speed": 30}]}
        ]
    });
    let (status, body) = rig.post(&body).await;
    assert_eq!(status, 207, "{body}");
    assert_eq!(body["status"], "partial");
    assert_eq!(body["stored"], 3);
    assert_eq!(body["rejected"], 3);
    let details: Vec<(u64, u64)> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["stored"].as_u64().unwrap(),
                d["rejected"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(details, [(2, 1), (0, 1), (1, 0), (0, 1)]);
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "batch[0].readings[1].temperature",
            "batch[3].sensor_type",
            "batch[1].machine_id"
        ]
    );
    assert_eq!(rig.ctx.influx_points().await.len(), 3);
}

#[tokio::test]
async fn malformed_bodies_get_clear_4xx() {
    let rig = rig().await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    let json_type = [("content-type", "application/json")];
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("NaN", format!(r#"{{"gateway_id":"g","timestamp":"{}","batch":[{{"machine_id":"{machine}","readings":[{{"timestamp":"{}","temperature":NaN}}]}}]}}"#, now_minus(1), now_minus(1)).into_bytes(), 400),
        ("Infinity", format!(r#"{{"gateway_id":"g","timestamp":"{}","batch":[{{"machine_id":"{machine}","readings":[{{"timestamp":"{}","speed":Infinity}}]}}]}}"#, now_minus(1), now_minus(1)).into_bytes(), 400),
        ("1e999", format!(r#"{{"gateway_id":"g","timestamp":"{}","batch":[{{"machine_id":"{machine}","readings":[{{"timestamp":"{}","speed":1e999}}]}}]}}"#, now_minus(1), now_minus(1)).into_bytes(), 400),
        ("duplicate keys", format!(r#"{{"gateway_id":"g","gateway_id":"h","timestamp":"{}","batch":[]}}"#, now_minus(1)).into_bytes(), 400),
        ("deep nesting", format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(), 400),
        ("empty batch", format!(r#"{{"gateway_id":"g","timestamp":"{}","batch":[]}}"#, now_minus(1)).into_bytes(), 400),
        ("not JSON", b"gateway=1".to_vec(), 400),
        ("empty body", Vec::new(), 400),
    ];
    for (what, body, expected) in cases {
        let response = rig.post_raw(body, &json_type).await;
        assert_eq!(response.status().as_u16(), expected, "{what}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{what}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "error", "{what}");
    }

    let response = rig
        .post_raw(b"<batch/>".to_vec(), &[("content-type", "application/xml")])
        .await;
    assert_eq!(response.status(), 415);
    let response = rig.post_raw(b"{}".to_vec(), &[]).await;
    assert_eq!(response.status(), 415, "missing content type");
    let response = rig
        .post_raw(
            b"{}".to_vec(),
            &[
                ("content-type", "application/json"),
                ("content-encoding", "br"),
            ],
        )
        .await;
    assert_eq!(response.status(), 415);

    // 10 MB of JSON: over the default 8 MiB body limit.
    let huge = format!(r#"{{"gateway_id":"{}"}}"#, "x".repeat(10 * 1024 * 1024)).into_bytes();
    let response = rig.post_raw(huge, &json_type).await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "payload_too_large");

    // gzip: a good body works, a truncated one is a 400.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(seed_body(&machine, &now_minus(5)).to_string().as_bytes())
        .unwrap();
    let gz = encoder.finish().unwrap();
    let gzip_headers = [
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ];
    assert_eq!(rig.post_raw(gz.clone(), &gzip_headers).await.status(), 201);
    let response = rig
        .post_raw(gz[..gz.len() / 2].to_vec(), &gzip_headers)
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("gzip"), "{body}");
    // A gzip bomb: 9 MiB of zeros compress to a few KB and still exceed the limit.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![b' '; 9 * 1024 * 1024]).unwrap();
    let bomb = encoder.finish().unwrap();
    assert!(bomb.len() < 100_000);
    assert_eq!(rig.post_raw(bomb, &gzip_headers).await.status(), 413);
}

#[tokio::test]
async fn limits_hold_at_the_edge_and_refuse_just_past_it() {
    let first = rig().await;
    first
        .ctx
        .set_setting("ingest_max_machines_per_batch", json!(2))
        .await;
    first
        .ctx
        .set_setting("ingest_max_readings_per_batch", json!(3))
        .await;
    first
        .ctx
        .set_setting("ingest_max_future_skew_secs", json!(60))
        .await;
    first
        .ctx
        .set_setting("ingest_max_body_bytes", json!(2048))
        .await;
    // A fresh ingest-api starts from the stored settings.
    let Rig { ctx, token, .. } = first;
    let ingest = ctx.spawn(ServiceName::IngestApi).await;
    let rig = Rig { ctx, ingest, token };
    let a = rig.ctx.create_machine(MachineStatus::Active).await;
    let b = rig.ctx.create_machine(MachineStatus::Active).await;
    let c = rig.ctx.create_machine(MachineStatus::Active).await;
    let reading = |s: i64| json!({"timestamp": now_minus(s), "speed": 1});
    let batch =
        |items: Vec<Value>| json!({"gateway_id": "g", "timestamp": now_minus(0), "batch": items});

    // Body size: exactly the limit passes (whitespace pads valid JSON), one byte more is 413.
    let padded = |size: usize| {
        let mut body = batch(vec![json!({"machine_id": a, "readings": [reading(1)]})])
            .to_string()
            .into_bytes();
        body.resize(size, b' ');
        body
    };
    let json_type = [("content-type", "application/json")];
    assert_eq!(rig.post_raw(padded(2048), &json_type).await.status(), 201);
    assert_eq!(rig.post_raw(padded(2049), &json_type).await.status(), 413);

    let at_edge = batch(vec![
        json!({"machine_id": a, "readings": [reading(1), reading(2)]}),
        json!({"machine_id": b, "readings": [reading(3)]}),
    ]);
    assert_eq!(rig.post(&at_edge).await.0, 201);
    let too_many_machines = batch(vec![
        json!({"machine_id": a, "readings": [reading(1)]}),
        json!({"machine_id": b, "readings": [reading(1)]}),
        json!({"machine_id": c, "readings": [reading(1)]}),
    ]);
    let (status, body) = rig.post(&too_many_machines).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["message"].as_str().unwrap().contains("at most 2"));
    let too_many_readings = batch(vec![
        json!({"machine_id": a, "readings": [reading(1), reading(2), reading(3), reading(4)]}),
    ]);
    assert_eq!(rig.post(&too_many_readings).await.0, 413);

    // Future skew: 60 s ahead is fine, 61 s is not (with a margin for the request's own time).
    let ahead = |s: i64| (chrono::Utc::now() + chrono::Duration::seconds(s)).to_rfc3339();
    let skew_ok = batch(vec![
        json!({"machine_id": a, "readings": [{"timestamp": ahead(55), "speed": 1}]}),
    ]);
    assert_eq!(rig.post(&skew_ok).await.0, 201);
    let skew_bad = batch(vec![
        json!({"machine_id": a, "readings": [{"timestamp": ahead(66), "speed": 1}]}),
    ]);
    let (status, body) = rig.post(&skew_bad).await;
    assert_eq!(status, 400);
    assert!(
        body["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("future")
    );
    // Older than the raw retention: refused (InfluxDB would silently drop it).
    let ancient = batch(vec![
        json!({"machine_id": a, "readings": [{"timestamp": "2020-01-01T00:00:00Z", "speed": 1}]}),
    ]);
    assert_eq!(rig.post(&ancient).await.0, 400);
    // Physical bounds at the edge pass, just past them fail (all three fields).
    let edges = batch(vec![json!({"machine_id": a, "readings": [
        {"timestamp": now_minus(5), "temperature": -273.15, "pressure": 0, "speed": 100000}
    ]})]);
    assert_eq!(rig.post(&edges).await.0, 201);
    let past = batch(vec![json!({"machine_id": a, "readings": [
        {"timestamp": now_minus(6), "temperature": -273.16},
        {"timestamp": now_minus(7), "pressure": 1000000.5},
        {"timestamp": now_minus(8), "speed": -1}
    ]})]);
    let (status, body) = rig.post(&past).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn influxdb_unreachable_is_503_with_retry_after_and_nothing_is_reported_stored() {
    let rig = rig_with(|s| {
        s.influx.url = format!("http://127.0.0.1:{}", closed_port());
        s.influx.timeout_ms = 1500;
    })
    .await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    let response = rig
        .ingest
        .request(Method::POST, "/api/v1/data/ingest")
        .bearer_auth(&rig.token)
        .json(&seed_body(&machine, &now_minus(3)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(
        response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "unavailable");
    assert!(body.get("stored").is_none());
    assert!(rig.ctx.influx_points().await.is_empty());
}

#[tokio::test]
async fn ingest_keeps_working_without_redis() {
    let rig = rig_with(|s| {
        s.redis.url = secrecy::SecretString::from(format!("redis://127.0.0.1:{}", closed_port()));
    })
    .await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    let (status, body) = rig.post(&seed_body(&machine, &now_minus(2))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(rig.ctx.influx_points().await.len(), 1);
}

#[tokio::test]
async fn latest_values_follow_the_readings_own_time_not_arrival() {
    use deadpool_redis::redis;
    let rig = rig().await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    let newer = now_minus(10);
    let older = now_minus(3600);
    let mut body = seed_body(&machine, &newer);
    body["batch"][0]["readings"] = json!([{"timestamp": newer, "temperature": 75.0}]);
    assert_eq!(rig.post(&body).await.0, 201);
    // A backfill arrives later with an older reading, and a pressure the newer one lacked.
    body["batch"][0]["readings"] =
        json!([{"timestamp": older, "temperature": 60.0, "pressure": 110.0}]);
    assert_eq!(rig.post(&body).await.0, 201);

    let redis_client = rig.ctx.redis();
    let key = storage::latest::latest_key(&redis_client, &machine);
    let latest: std::collections::HashMap<String, String> = redis_client
        .query(redis::cmd("HGETALL").arg(key))
        .await
        .unwrap();
    assert_eq!(latest["temperature"].parse::<f64>().unwrap(), 75.0);
    assert_eq!(
        latest["pressure"].parse::<f64>().unwrap(),
        110.0,
        "per field: the only pressure there is"
    );
    let newer_ns = chrono::DateTime::parse_from_rfc3339(&newer)
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap();
    assert_eq!(latest["temperature_ts"], newer_ns.to_string());
}

#[tokio::test]
async fn line_protocol_is_accepted_with_the_same_rules() {
    let rig = rig().await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    let now_s = chrono::Utc::now().timestamp() - 5;
    let body = format!(
        "sensor_readings,machine_id={machine},host=telegraf temperature=71.25,pressure=100 {now_s}\n\
         sensor_readings,machine_id={machine} speed=1e9 {now_s}\n"
    );
    let response = rig
        .post_raw(
            body.into_bytes(),
            &[("content-type", "text/plain; charset=utf-8")],
        )
        .await;
    assert_eq!(
        response.status(),
        400,
        "precision defaults to ns: seconds are 1970"
    );
    let body = format!(
        "sensor_readings,machine_id={machine},host=telegraf temperature=71.25,pressure=100 {now_s}\n\
         sensor_readings,machine_id={machine} speed=1e9 {}\n",
        now_s - 1
    );
    let response = rig
        .ingest
        .request(Method::POST, "/api/v1/data/ingest?precision=s")
        .bearer_auth(&rig.token)
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 207);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["errors"][0]["field"], "line[1].speed");
    let points = rig.ctx.influx_points().await;
    assert_eq!(points.len(), 1);
    assert_eq!(points[0][0], json!(now_s * 1_000_000_000));
    assert_eq!(points[0][5], json!(71.25));
    assert_eq!(points[0][1], "A", "tags come from the registry");
}

#[tokio::test]
async fn a_gateway_over_its_rate_gets_429() {
    let ctx = TestContext::new().await;
    ctx.set_setting("gateway_rate_limit_per_minute", json!(2))
        .await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let ingest = ctx.spawn(ServiceName::IngestApi).await;
    let machine = ctx.create_machine(MachineStatus::Active).await;
    // The window is a calendar minute; if one rolls over mid-sequence, try again with a new
    // gateway (its own counter) — at most three times.
    for _ in 0..3 {
        let token = auth.gateway_token(&ctx.create_gateway().await).await;
        let minute = chrono::Utc::now().timestamp() / 60;
        let mut answers = Vec::new();
        for i in 0..3 {
            let response = ingest
                .request(Method::POST, "/api/v1/data/ingest")
                .bearer_auth(&token)
                .json(&seed_body(&machine, &now_minus(i)))
                .send()
                .await
                .unwrap();
            answers.push((
                response.status().as_u16(),
                response.headers().get("retry-after").is_some(),
            ));
        }
        if chrono::Utc::now().timestamp() / 60 != minute {
            continue;
        }
        assert_eq!(answers, [(201, false), (201, false), (429, true)]);
        return;
    }
    panic!("three minute rollovers in a row");
}

#[tokio::test]
async fn people_with_write_sensor_data_may_ingest_and_anonymous_may_not() {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let ingest = ctx.spawn(ServiceName::IngestApi).await;
    let machine = ctx.create_machine(MachineStatus::Active).await;
    let operator = auth.token_for(&ctx.create_user(Role::Operator).await).await;
    let send = |token: Option<&str>| {
        let mut request = ingest
            .request(Method::POST, "/api/v1/data/ingest")
            .json(&seed_body(&machine, &now_minus(1)));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(send(Some(&operator)).await.unwrap().status(), 201);
    assert_eq!(send(None).await.unwrap().status(), 401);
}

#[tokio::test]
async fn latest_values_survive_redis_forgetting_its_scripts() {
    use deadpool_redis::redis;
    let rig = rig().await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    let redis_client = rig.ctx.redis();
    // What a Redis restart does to the script cache (other tests recover the same way).
    let _: () = redis_client
        .query(redis::cmd("SCRIPT").arg("FLUSH"))
        .await
        .unwrap();
    assert_eq!(rig.post(&seed_body(&machine, &now_minus(4))).await.0, 201);
    let key = storage::latest::latest_key(&redis_client, &machine);
    let latest: std::collections::HashMap<String, String> = redis_client
        .query(redis::cmd("HGETALL").arg(key))
        .await
        .unwrap();
    assert_eq!(latest["speed"].parse::<f64>().unwrap(), 1500.0);
}

/// Another writer made `temperature` a string in the shard of three weeks ago, so InfluxDB
/// refuses our floats there (a partial write, naming no point) and only there.
/// Makes `temperature` a string in the shard of three weeks ago (the refusal of the tests
/// below); returns a time a day into that shard: readings minutes later fall in it too.
async fn a_shard_refusing_float_temperatures(rig: &Rig) -> chrono::DateTime<chrono::Utc> {
    // A day into the shard group (7 days, aligned to the epoch) of three weeks ago: the
    // refused readings, minutes later, fall in the same shard at any hour of any day.
    let week = 7 * 86_400;
    let shard_start = (chrono::Utc::now().timestamp() - 21 * 86_400) / week * week;
    let weeks_ago = chrono::DateTime::from_timestamp(shard_start + 86_400, 0).unwrap_or_default();
    rig.ctx
        .influx()
        .write_lines(
            format!(
                "sensor_readings,machine_id=elsewhere temperature=\"text\" {}\n",
                weeks_ago.timestamp_nanos_opt().unwrap()
            ),
            None,
        )
        .await
        .unwrap();
    weeks_ago
}

/// Every `speed` InfluxDB holds for `machine`, in time order.
async fn stored_speeds(rig: &Rig, machine: &uuid::Uuid) -> Vec<f64> {
    let stored = rig
        .ctx
        .influx()
        .query(&format!(
            "SELECT speed FROM sensor_readings WHERE machine_id = '{machine}'"
        ))
        .await
        .unwrap();
    stored
        .into_iter()
        .flatten()
        .flat_map(|series| series.values)
        .map(|row| row[1].as_f64().unwrap())
        .collect()
}

#[tokio::test]
async fn readings_influxdb_refuses_are_named_and_the_rest_are_stored() {
    let rig = rig().await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    let weeks_ago = a_shard_refusing_float_temperatures(&rig).await;
    let at = |offset: i64| {
        (weeks_ago + chrono::Duration::seconds(offset))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let batch = |readings: Value| {
        json!({"gateway_id": "gateway-hall-1", "timestamp": now_minus(0),
               "batch": [{"machine_id": machine, "sensor_type": "multi", "location": "Hall 1", "readings": readings}]})
    };
    let (status, body) = rig
        .post(&batch(json!([
            {"timestamp": at(60), "temperature": 70.0, "speed": 1.0},
            {"timestamp": now_minus(60), "temperature": 71.0, "speed": 2.0},
            {"timestamp": at(120), "temperature": 72.0, "speed": 3.0},
            {"timestamp": now_minus(30), "speed": 4.0},
        ])))
        .await;
    assert_eq!(status, 207, "{body}");
    assert_eq!(
        (body["stored"].as_u64(), body["rejected"].as_u64()),
        (Some(2), Some(2))
    );
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{body}");
    for (error, offset) in errors.iter().zip([60, 120]) {
        assert_eq!(error["field"], "batch[0].readings");
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .contains("field type conflict"),
            "{error}"
        );
        assert_eq!(
            chrono::DateTime::parse_from_rfc3339(error["value"].as_str().unwrap()).unwrap(),
            chrono::DateTime::parse_from_rfc3339(&at(offset)).unwrap()
        );
    }
    assert_eq!(stored_speeds(&rig, &machine).await, [2.0, 4.0]);

    // Refused whole for the data's sake: no retry can help, so it is no 503.
    let (status, body) = rig
        .post(&batch(json!([{"timestamp": at(180), "temperature": 73.0}])))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("store_refused")),
        "{body}"
    );
    assert_eq!(body["errors"].as_array().unwrap().len(), 1);
}

/// Concurrent requests share InfluxDB writes (and their Redis bookkeeping); one request with
/// a point InfluxDB refuses must cost the others nothing: each is answered for its own
/// readings, every acknowledged reading is stored once and the latest values are the newest.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_batches_share_writes_and_one_refused_point_costs_the_others_nothing() {
    use deadpool_redis::redis;
    const REQUESTS: usize = 40;
    let rig = rig().await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    let weeks_ago = a_shard_refusing_float_temperatures(&rig).await;
    let base = chrono::Utc::now() - chrono::Duration::minutes(30);
    let stamp =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let bodies: Vec<Value> = (0..REQUESTS)
        .map(|i| {
            let good = |k: i64| json!({"timestamp": stamp(base + chrono::Duration::milliseconds(i as i64 * 10 + k)),
                                     "temperature": 60.0, "speed": (i * 10) as f64 + k as f64});
            // The last request also carries a reading InfluxDB refuses.
            let readings = if i == REQUESTS - 1 {
                json!([good(0), {"timestamp": stamp(weeks_ago + chrono::Duration::seconds(60)), "temperature": 70.0}])
            } else {
                json!([good(0), good(1)])
            };
            json!({"gateway_id": "gateway-hall-1", "timestamp": stamp(base),
                   "batch": [{"machine_id": machine, "readings": readings}]})
        })
        .collect();
    let rig = &rig;
    let answers = futures_util::future::join_all(bodies.iter().map(|body| rig.post(body))).await;
    for (i, (status, body)) in answers.iter().enumerate() {
        let expected = if i == REQUESTS - 1 {
            (207, 2 - 1, 1)
        } else {
            (201, 2, 0)
        };
        assert_eq!(
            (
                *status,
                body["stored"].as_u64().unwrap_or(99),
                body["rejected"].as_u64().unwrap_or(99)
            ),
            expected,
            "request {i}: {body}"
        );
    }
    let mut speeds = stored_speeds(rig, &machine).await;
    speeds.sort_by(f64::total_cmp);
    let mut expected: Vec<f64> = (0..REQUESTS - 1)
        .flat_map(|i| [(i * 10) as f64, (i * 10) as f64 + 1.0])
        .chain([((REQUESTS - 1) * 10) as f64])
        .collect();
    expected.sort_by(f64::total_cmp);
    assert_eq!(speeds, expected);
    let redis_client = rig.ctx.redis();
    let latest: String = redis_client
        .query(
            redis::cmd("HGET")
                .arg(storage::latest::latest_key(&redis_client, &machine))
                .arg("speed"),
        )
        .await
        .unwrap();
    let latest = json!(latest.parse::<f64>().unwrap());
    assert_eq!(
        latest,
        json!(((REQUESTS - 1) * 10) as f64),
        "the newest reading's speed"
    );
    // Every request went through the shared writes (a refused group's members again alone).
    let carried = rig
        .ingest
        .metric(
            "plantline_ingest_influx_requests_per_write_sum",
            "ingest-api",
        )
        .await;
    assert!(carried >= REQUESTS as f64, "{carried}");
}
