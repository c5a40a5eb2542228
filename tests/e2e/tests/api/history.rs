//! History: raw pagination, aggregates checked against an independent computation, time
//! zones, parameter errors, the point limit.

use domain::{MachineStatus, Role};
use plantline_e2e::{TestApp, TestContext};
use platform::ServiceName;
use reqwest::Method;
use serde_json::Value;

struct Rig {
    ctx: TestContext,
    query: TestApp,
    token: String,
    machine: uuid::Uuid,
}

async fn rig() -> Rig {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let query = ctx.spawn(ServiceName::QueryApi).await;
    let token = auth.token_for(&ctx.create_user(Role::Operator).await).await;
    let machine = ctx.create_machine(MachineStatus::Active).await;
    Rig {
        ctx,
        query,
        token,
        machine,
    }
}

/// ingest-api (which also runs the rollup job) and a gateway token for it.
struct Gateway {
    ingest: TestApp,
    token: String,
}

impl Gateway {
    async fn start(ctx: &TestContext) -> Self {
        let auth = ctx.spawn(ServiceName::Auth).await;
        let ingest = ctx.spawn(ServiceName::IngestApi).await;
        let token = auth.gateway_token(&ctx.create_gateway().await).await;
        Self { ingest, token }
    }

    /// Posts a seed-shaped batch; the answer's status.
    async fn post(&self, body: &Value) -> u16 {
        self.ingest
            .request(Method::POST, "/api/v1/data/ingest")
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

impl Rig {
    /// Writes (seconds since `base`, temperature, speed) points for the machine.
    async fn write(&self, base: chrono::DateTime<chrono::Utc>, points: &[(i64, f64, f64)]) {
        let lines: Vec<String> = points
            .iter()
            .map(|(s, t, v)| {
                let ns = (base + chrono::Duration::seconds(*s)).timestamp_nanos_opt().unwrap();
                format!("sensor_readings,factory_id=A,location=Hall\\ 1,machine_id={},sensor_type=multi temperature={t},speed={v} {ns}", self.machine)
            })
            .collect();
        self.ctx
            .influx()
            .write_lines(lines.join("\n"), None)
            .await
            .unwrap();
    }

    async fn get(&self, query: &str) -> (u16, Value) {
        let response = self
            .query
            .request(
                Method::GET,
                &format!("/api/v1/data/machine/{}?{query}", self.machine),
            )
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }
}

fn day_ago() -> chrono::DateTime<chrono::Utc> {
    // A whole hour a day ago, so buckets have known edges.
    let t = chrono::Utc::now() - chrono::Duration::days(1);
    t - chrono::Duration::seconds(t.timestamp() % 3600)
}

fn enc(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        .replace('+', "%2B")
}

#[tokio::test]
async fn raw_pages_walk_the_range_without_gaps_or_duplicates() {
    let rig = rig().await;
    let base = day_ago();
    let points: Vec<(i64, f64, f64)> = (0..25).map(|i| (i * 10, 50.0 + i as f64, 1000.0)).collect();
    rig.write(base, &points).await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut q = format!(
            "start_time={}&end_time={}&limit=10&fields=temperature",
            enc(base),
            enc(base + chrono::Duration::hours(1))
        );
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={c}"));
        }
        let (status, body) = rig.get(&q).await;
        assert_eq!(status, 200, "{body}");
        for row in body["data"].as_array().unwrap() {
            assert!(row.get("speed").is_none(), "only the requested field");
            seen.push(row["temperature"].as_f64().unwrap());
        }
        if body["pagination"]["has_more"] == true {
            cursor = Some(
                body["pagination"]["next_cursor"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        } else {
            assert!(body["pagination"]["next_cursor"].is_null());
            break;
        }
    }
    let expected: Vec<f64> = points.iter().map(|p| p.1).collect();
    assert_eq!(seen, expected, "every reading once, in order");
}

#[tokio::test]
async fn buckets_match_an_independent_computation_for_every_interval() {
    let rig = rig().await;
    let base = day_ago();
    // Irregular points over two hours, including both edges of a bucket.
    let points: Vec<(i64, f64, f64)> = (0..240)
        .map(|i| {
            let s = i * 30 + (i % 7) * 3;
            (
                s,
                40.0 + ((i * 37) % 23) as f64 * 1.5,
                900.0 + ((i * 11) % 17) as f64,
            )
        })
        .chain([(3599, 99.0, 2000.0), (3600, 1.0, 1.0)])
        .collect();
    rig.write(base, &points).await;
    // What the continuous queries (or the late-hour maintenance) would have done.
    rig.ctx
        .influx()
        .backfill_rollups(base, base + chrono::Duration::hours(2))
        .await
        .unwrap();
    // A start 30 s into the first hour: its bucket mixes raw (head) and nothing else, the
    // second hour comes from the rollup — the numbers must not change.
    let start = base + chrono::Duration::seconds(30);
    let points: Vec<(i64, f64, f64)> = points.into_iter().filter(|p| p.0 >= 30).collect();
    let end = base + chrono::Duration::hours(2);
    for (interval, width) in [
        ("1m", 60i64),
        ("5m", 300),
        ("15m", 900),
        ("1h", 3600),
        ("1d", 86_400),
    ] {
        let (status, body) = rig
            .get(&format!("start_time={}&end_time={}&interval={interval}&fields=temperature,speed&agg=mean,min,max,count", enc(start), enc(end)))
            .await;
        assert_eq!(status, 200, "{interval}: {body}");
        let expected_source = if interval == "1h" || interval == "1d" {
            "hourly rollup + raw"
        } else {
            "raw"
        };
        assert_eq!(body["query"]["source"], expected_source, "{interval}");
        // Independent: bucket by floor((time - epoch) / width), UTC.
        let mut expected: std::collections::BTreeMap<i64, Vec<(f64, f64)>> = Default::default();
        for (s, t, v) in &points {
            let ts = base.timestamp() + s;
            expected
                .entry(ts - ts.rem_euclid(width))
                .or_default()
                .push((*t, *v));
        }
        let rows = body["data"].as_array().unwrap();
        assert_eq!(rows.len(), expected.len(), "{interval}: bucket count");
        for (row, (bucket, values)) in rows.iter().zip(&expected) {
            let start = chrono::DateTime::parse_from_rfc3339(row["timestamp"].as_str().unwrap())
                .unwrap()
                .timestamp();
            assert_eq!(start, *bucket, "{interval}: bucket start");
            let temps: Vec<f64> = values.iter().map(|v| v.0).collect();
            let mean = temps.iter().sum::<f64>() / temps.len() as f64;
            assert!(
                (row["temperature"].as_f64().unwrap() - mean).abs() < 1e-9,
                "{interval} mean"
            );
            assert_eq!(
                row["temperature_min"].as_f64().unwrap(),
                temps.iter().cloned().fold(f64::MAX, f64::min)
            );
            assert_eq!(
                row["temperature_max"].as_f64().unwrap(),
                temps.iter().cloned().fold(f64::MIN, f64::max)
            );
            assert_eq!(
                row["temperature_count"].as_u64().unwrap(),
                temps.len() as u64
            );
            assert_eq!(row["speed_count"].as_u64().unwrap(), values.len() as u64);
        }
    }
}

#[tokio::test]
async fn day_buckets_start_at_local_midnight() {
    let rig = rig().await;
    // 22:30 and 23:30 UTC on a winter day are 23:30 and 00:30 in Berlin: two local days.
    let day = chrono::Utc::now().date_naive() - chrono::Duration::days(3);
    let base = day.and_hms_opt(22, 30, 0).unwrap().and_utc();
    rig.write(base, &[(0, 10.0, 1.0), (3600, 20.0, 1.0)]).await;
    rig.ctx
        .influx()
        .backfill_rollups(base, base + chrono::Duration::hours(2))
        .await
        .unwrap();
    let range = format!(
        "start_time={}&end_time={}&interval=1d&fields=temperature",
        enc(base - chrono::Duration::days(1)),
        enc(base + chrono::Duration::days(1))
    );
    let (_, utc) = rig.get(&range).await;
    assert_eq!(
        utc["data"].as_array().unwrap().len(),
        1,
        "one UTC day: {utc}"
    );
    let (status, berlin) = rig.get(&format!("{range}&tz=Europe/Berlin")).await;
    assert_eq!(status, 200, "{berlin}");
    let rows = berlin["data"].as_array().unwrap();
    let offset_hours = chrono::DateTime::parse_from_rfc3339(rows[0]["timestamp"].as_str().unwrap())
        .unwrap()
        .timestamp()
        % 86_400
        / 3600;
    assert!(
        offset_hours == 23 || offset_hours == 22,
        "local midnight in UTC: {rows:?}"
    );
    // Whether 23:30 UTC is already the next Berlin day depends on DST; both readings are counted.
    let total: f64 = rows
        .iter()
        .map(|r| r["temperature"].as_f64().unwrap())
        .sum::<f64>();
    assert!(total > 0.0);
    let (status, body) = rig.get(&format!("{range}&tz=Mars/Olympus")).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["parameter"], "tz");
}

#[tokio::test]
async fn bad_parameters_are_listed_and_unknown_machines_are_404() {
    let rig = rig().await;
    let (status, body) = rig
        .get("start_time=2025-13-45T00:00:00Z&interval=2h&fields=humidity&agg=median&limit=0")
        .await;
    assert_eq!(status, 400);
    let names: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["parameter"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["start_time", "interval", "fields", "agg", "limit"]);
    let (status, _) = rig.get("end_time=2026-01-01T00:00:00Z").await;
    assert_eq!(status, 400, "start_time is required");

    let (status, body) = rig.get("start_time=2025-01-01T00:00:00Z&interval=1m").await;
    assert_eq!(status, 400, "a year of minutes exceeds the point limit");
    assert!(
        body["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("or coarser"),
        "{body}"
    );

    let unknown = rig
        .query
        .request(
            Method::GET,
            &format!(
                "/api/v1/data/machine/{}?start_time=2026-01-01T00:00:00Z",
                uuid::Uuid::new_v4()
            ),
        )
        .bearer_auth(&rig.token)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn late_readings_are_rolled_up_by_the_maintenance() {
    let rig = rig().await;
    let gateway = Gateway::start(&rig.ctx).await;
    let base = day_ago();
    let ts = |s: i64| (base + chrono::Duration::seconds(s)).to_rfc3339();
    let body = serde_json::json!({"gateway_id": "g", "timestamp": ts(0), "batch": [{"machine_id": rig.machine, "readings": [
        {"timestamp": ts(60), "temperature": 10.0}, {"timestamp": ts(120), "temperature": 30.0}]}]});
    assert_eq!(gateway.post(&body).await, 201);

    // A day-old hour is beyond the continuous queries' look-back: only ingest's late-hour mark
    // gets it rolled up — by ingest-api's rollup job or by this call, whichever
    // pops it first.
    let influx = rig.ctx.influx();
    let window = format!(
        "start_time={}&end_time={}&interval=1h&agg=mean,count&fields=temperature",
        enc(base),
        enc(base + chrono::Duration::hours(1))
    );
    plantline_e2e::eventually(
        std::time::Duration::from_secs(15),
        "the late hour rolled up",
        || async {
            telemetry_writer::jobs::work_off_late_hours(&influx, &rig.ctx.redis())
                .await
                .ok()?;
            let (_, answer) = rig.get(&window).await;
            (answer["data"][0]["temperature_count"] == 2).then_some(())
        },
    )
    .await;
    let (status, answer) = rig
        .get(&format!(
            "start_time={}&end_time={}&interval=1h&agg=mean,count&fields=temperature",
            enc(base),
            enc(base + chrono::Duration::hours(1))
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["query"]["source"], "hourly rollup + raw");
    assert_eq!(answer["data"][0]["temperature"], 20.0);
    assert_eq!(answer["data"][0]["temperature_count"], 2);
}

#[tokio::test]
async fn past_windows_are_cached_until_late_readings_change_them() {
    let rig = rig().await;
    let base = day_ago();
    rig.write(base, &[(60, 10.0, 1.0), (120, 20.0, 1.0)]).await;
    rig.ctx
        .influx()
        .backfill_rollups(base, base + chrono::Duration::hours(1))
        .await
        .unwrap();
    let request = format!(
        "start_time={}&end_time={}&interval=1h&agg=mean,count&fields=temperature",
        enc(base),
        enc(base + chrono::Duration::hours(1))
    );
    let (_, first) = rig.get(&request).await;
    assert_eq!(first["query"]["cache"], "miss");
    let (_, second) = rig.get(&request).await;
    assert_eq!(second["query"]["cache"], "hit");
    assert_eq!(second["data"], first["data"]);

    // A late reading for that hour arrives through ingest; the maintenance rolls it up and
    // retires the cached answer.
    let gateway = Gateway::start(&rig.ctx).await;
    let late = (base + chrono::Duration::seconds(180)).to_rfc3339();
    let body = serde_json::json!({"gateway_id": "g", "timestamp": late, "batch": [{"machine_id": rig.machine, "readings": [{"timestamp": late, "temperature": 60.0}]}]});
    assert_eq!(gateway.post(&body).await, 201);
    telemetry_writer::jobs::work_off_late_hours(&rig.ctx.influx(), &rig.ctx.redis())
        .await
        .unwrap();
    let (_, third) = rig.get(&request).await;
    assert_eq!(third["query"]["cache"], "miss");
    assert_eq!(third["data"][0]["temperature_count"], 3);
    assert_eq!(third["data"][0]["temperature"], 30.0);
}

#[tokio::test]
async fn without_redis_history_is_answered_from_influxdb() {
    let rig = rig().await;
    let base = day_ago();
    rig.write(base, &[(60, 10.0, 1.0), (120, 20.0, 1.0)]).await;
    let mut settings = rig.ctx.settings.clone();
    settings.redis.url = secrecy::SecretString::from(format!(
        "redis://127.0.0.1:{}",
        plantline_e2e::closed_port()
    ));
    let query = rig.ctx.spawn_with(ServiceName::QueryApi, settings).await;
    let response = query
        .request(
            Method::GET,
            &format!(
                "/api/v1/data/machine/{}?start_time={}&end_time={}&interval=15m&agg=mean,count&fields=temperature",
                rig.machine,
                enc(base),
                enc(base + chrono::Duration::hours(1))
            ),
        )
        .bearer_auth(&rig.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "reads fail open without Redis");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"][0]["temperature"], 15.0);
    assert!(
        body["query"].get("cache").is_none(),
        "no cache without Redis"
    );
}

/// Issue 17: three ended hours backfilled through ingest, then queried at once. Before the
/// fix the hourly rollup of those hours (still empty) answered `"data": []`.
#[tokio::test]
async fn backfilled_hours_are_exact_right_after_the_write() {
    let rig = rig().await;
    let gateway = Gateway::start(&rig.ctx).await;
    let base = day_ago() - chrono::Duration::hours(3);
    // One reading a minute for three hours; hour h holds values h*100 + minute.
    let readings: Vec<Value> = (0..180)
        .map(|minute: i64| {
            let at = base + chrono::Duration::seconds(minute * 60 + 30);
            serde_json::json!({"timestamp": at.to_rfc3339(), "temperature": ((minute / 60) * 100 + minute % 60) as f64})
        })
        .collect();
    let body = serde_json::json!({"gateway_id": "g", "timestamp": base.to_rfc3339(),
        "batch": [{"machine_id": rig.machine, "readings": readings}]});
    assert_eq!(gateway.post(&body).await, 201);

    let (status, answer) = rig
        .get(&format!(
            "start_time={}&end_time={}&interval=1h&agg=mean,count,min,max&fields=temperature",
            enc(base),
            enc(base + chrono::Duration::hours(3))
        ))
        .await;
    assert_eq!(status, 200);
    let data = answer["data"].as_array().expect("data");
    assert_eq!(data.len(), 3, "{answer}");
    for (hour, bucket) in data.iter().enumerate() {
        let low = (hour * 100) as f64;
        assert_eq!(bucket["temperature_count"], 60, "{bucket}");
        assert_eq!(bucket["temperature_min"], low, "{bucket}");
        assert_eq!(bucket["temperature_max"], low + 59.0, "{bucket}");
        assert_eq!(bucket["temperature"], low + 29.5, "{bucket}");
    }
}
