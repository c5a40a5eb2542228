//! The reference answer's documented requests (`../shared/seeds/001_*.txt`, §1.2 "RESTful API
//! Design" and §2.2 B "Authorization Flow"), sent verbatim — same path, query string and JSON
//! body — through nginx to real auth, ingest-api and query-api, with the seed's machine ids.
//! Every field the seed documents in an answer must be there with its name and meaning; our
//! answers may carry more. Deliberate differences: `proto-docs/seed-conformance.md`.
//!
//! The seed's examples are dated December 2025, so the stack runs with a raw retention of
//! 520 weeks (`influx.raw_retention_weeks`): InfluxDB's `raw` policy and ingest's max age.

use chrono::{DateTime, FixedOffset, Utc};
use domain::Role;
use plantline_e2e::front::{Front, Upstreams};
use plantline_e2e::{TestApp, TestContext, TestUser, eventually};
use platform::ServiceName;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use std::time::Duration;

/// A machine row as the seed names it.
struct SeedMachine {
    id: &'static str,
    name: &'static str,
    location: &'static str,
    sensor_type: &'static str,
    status: &'static str,
}

/// The machine of the seed's ingest example (§1.2 A).
const TEST_MACHINE: SeedMachine = SeedMachine {
    id: "e21c1cfa-4af9-4ccc-a53c-78a967195439",
    name: "Test-Machine",
    location: "Test Floor",
    sensor_type: "Vibration",
    status: "active",
};

/// The machine of the seed's retrieval examples (§1.2 B) and list answer (§1.2 C.2).
const MACHINE_01: SeedMachine = SeedMachine {
    id: "d1c2084b-f16a-4eea-89d9-4402095d3af5",
    name: "Machine-01",
    location: "Factory Floor 1",
    sensor_type: "Temperature",
    status: "active",
};

/// A third machine, so the list filters have something to leave out.
const PRESS_07: SeedMachine = SeedMachine {
    id: "7f3c2a51-9d4e-4b8a-a1c2-3e4f5a6b7c8d",
    name: "Press-07",
    location: "Factory Floor 2",
    sensor_type: "Pressure",
    status: "maintenance",
};

/// §2.2 B Step 1's credentials.
const JOHN_DOE: &str = "john.doe";
const JOHN_DOE_PASSWORD: &str = "SecurePassword123!";
const JOHN_DOE_EMAIL: &str = "john.doe@factory.com";

/// §1.2 A "JSON Request Body Structure", character for character.
const SEED_INGEST_BODY: &str = r#"{
    "gateway_id": "GW-TEST-01",
    "timestamp": "2025-12-13T10:00:00Z",
    "batch": [
        {
            "machine_id": "e21c1cfa-4af9-4ccc-a53c-78a967195439",
            "sensor_type": "Vibration",
            "location": "Test Floor",
            "readings": [
                {
                    "timestamp": "2025-12-13T10:00:00Z",
                    "temperature": 60.5,
                    "pressure": 102.0,
                    "speed": 1400
                }
            ]
        }
    ]
}"#;

/// §1.2 B "Example Requests" 1–3, verbatim.
const RAW_24H: &str = "/api/v1/data/machine/d1c2084b-f16a-4eea-89d9-4402095d3af5?start_time=2025-12-12T03:38:52Z&end_time=2025-12-13T03:38:52Z&interval=raw";
const HOURLY_7D: &str = "/api/v1/data/machine/d1c2084b-f16a-4eea-89d9-4402095d3af5?start_time=2025-12-06T00:00:00Z&end_time=2025-12-13T00:00:00Z&interval=1h";
const DAILY_MONTH_TEMPERATURE: &str = "/api/v1/data/machine/d1c2084b-f16a-4eea-89d9-4402095d3af5?start_time=2025-11-13T00:00:00Z&end_time=2025-12-13T00:00:00Z&interval=1d&fields=temperature";

/// §2.2 B Step 1 "Request Body", verbatim.
const SEED_LOGIN_BODY: &str = r#"{
    "username": "john.doe",
    "password": "SecurePassword123!"
}"#;

/// §2.2 B Step 3 "Body", verbatim.
const SEED_CONFIG_BODY: &str = r#"{
    "setting_name": "max_temperature_threshold",
    "setting_value": 85.0
}"#;

/// §1.2 C.1 "Request Body", verbatim.
const SEED_CREATE_MACHINE_BODY: &str = r#"{
    "name": "Machine-01",
    "location": "Factory Floor 1",
    "sensor_type": "Temperature",
    "status": "active"
}"#;

/// auth, ingest-api and query-api behind nginx, the seed's machines registered, and the
/// seed's management user `john.doe`.
struct Seed {
    front: Front,
    _auth: TestApp,
    _ingest: TestApp,
    _query: TestApp,
    http: reqwest::Client,
    john: TestUser,
    ctx: TestContext,
}

impl Seed {
    async fn start(machines: &[&SeedMachine]) -> Self {
        let ctx = TestContext::new().await;
        let mut settings = ctx.settings.clone();
        settings.influx.raw_retention_weeks = 520;
        platform::influx::InfluxClient::new(&settings.influx)
            .expect("influx client")
            .ensure_schema()
            .await
            .expect("a 520-week raw retention policy");
        for machine in machines {
            register(&ctx, machine).await;
        }
        let john = create_john_doe(&ctx).await;
        let auth = ctx.spawn_with(ServiceName::Auth, settings.clone()).await;
        let ingest = ctx
            .spawn_with(ServiceName::IngestApi, settings.clone())
            .await;
        let query = ctx
            .spawn_with(ServiceName::QueryApi, settings.clone())
            .await;
        let host = |app: &TestApp| format!("127.0.0.1:{}", app.port);
        let (auth_host, ingest_host, query_host) = (host(&auth), host(&ingest), host(&query));
        let front = Front::start(Upstreams {
            auth: &auth_host,
            ingest: &ingest_host,
            query: &query_host,
        })
        .await;
        Self {
            front,
            _auth: auth,
            _ingest: ingest,
            _query: query,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
            john,
            ctx,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.front.url)
    }

    /// `method path` through nginx with an optional bearer token and JSON body text (sent
    /// as-is); the status and the JSON answer.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method.clone(), self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await.expect("request through nginx");
        let status = response.status().as_u16();
        let text = response.text().await.expect("an answer body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path} answered {status} with non-JSON: {text}"));
        (status, body)
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// §2.2 B Step 1 through nginx; the whole answer.
    async fn login_john(&self) -> Value {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(SEED_LOGIN_BODY),
            )
            .await;
        assert_eq!(status, 200, "john.doe logs in: {body}");
        body
    }

    async fn john_token(&self) -> String {
        self.login_john().await["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// An access token for `user` (another role than john.doe's).
    async fn token_for(&self, user: &TestUser) -> String {
        let body = json!({"username": user.username, "password": user.password}).to_string();
        let (status, answer) = self
            .call(Method::POST, "/api/v1/auth/login", None, Some(&body))
            .await;
        assert_eq!(status, 200, "{} logs in: {answer}", user.username);
        answer["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// A gateway's token through client credentials, via nginx.
    async fn gateway_token(&self) -> String {
        let gateway = self.ctx.create_gateway().await;
        let response = self
            .http
            .post(self.url("/api/v1/auth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", gateway.client_id.as_str()),
                ("client_secret", gateway.secret.as_str()),
            ])
            .send()
            .await
            .expect("token request through nginx");
        assert_eq!(response.status(), 200, "gateway token");
        let body: Value = response.json().await.expect("token JSON");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// Polls `GET path` (asserting 200 every time) until `done` holds for the answer.
    async fn get_until(
        &self,
        path: &str,
        token: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let done = &done;
        eventually(Duration::from_secs(30), what, || async move {
            let (status, body) = self.get(path, token).await;
            assert_eq!(status, 200, "GET {path}: {body}");
            done(&body).then_some(body)
        })
        .await
    }
}

/// Inserts a registry row with the seed's id, in factory `A` (the seed's MQTT topic's).
async fn register(ctx: &TestContext, machine: &SeedMachine) {
    use diesel::ExpressionMethods;
    use diesel_async::RunQueryDsl;
    use storage::schema::machine_metadata;
    let pool = ctx.pg_pool();
    let mut conn = platform::postgres::connection(&pool)
        .await
        .expect("test connection");
    diesel::insert_into(machine_metadata::table)
        .values((
            machine_metadata::id.eq(uuid::Uuid::parse_str(machine.id).expect("a seed UUID")),
            machine_metadata::name.eq(machine.name),
            machine_metadata::location.eq(machine.location),
            machine_metadata::sensor_type.eq(machine.sensor_type),
            machine_metadata::status.eq(machine.status),
            machine_metadata::factory_id.eq("A"),
        ))
        .execute(&mut conn)
        .await
        .expect("insert a seed machine");
}

/// The seed's management user `john.doe` / `SecurePassword123!`.
async fn create_john_doe(ctx: &TestContext) -> TestUser {
    use diesel::ExpressionMethods;
    use diesel_async::RunQueryDsl;
    use storage::schema::users;
    let hash = storage::secrets::hash_secret(&SecretString::from(JOHN_DOE_PASSWORD.to_owned()))
        .expect("hash john.doe's password");
    let pool = ctx.pg_pool();
    let mut conn = platform::postgres::connection(&pool)
        .await
        .expect("test connection");
    let id = diesel::insert_into(users::table)
        .values((
            users::username.eq(JOHN_DOE),
            users::email.eq(JOHN_DOE_EMAIL),
            users::password_hash.eq(hash),
            users::role.eq(Role::Management.as_str()),
        ))
        .returning(users::id)
        .get_result(&mut conn)
        .await
        .expect("insert john.doe");
    TestUser {
        id,
        username: JOHN_DOE.to_owned(),
        password: JOHN_DOE_PASSWORD.to_owned(),
    }
}

/// An RFC 3339 instant (panics, naming the text, otherwise).
fn instant(text: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|_| panic!("{text:?} is RFC 3339"))
}

/// The RFC 3339 instant in a JSON string member.
fn instant_of(value: &Value) -> DateTime<FixedOffset> {
    instant(
        value
            .as_str()
            .unwrap_or_else(|| panic!("{value} is a string")),
    )
}

fn nanos(text: &str) -> i64 {
    instant(text).timestamp_nanos_opt().expect("in range")
}

fn non_empty_string(value: &Value) -> bool {
    value.as_str().is_some_and(|s| !s.is_empty())
}

/// One expected `data[]` row: its bucket or reading time and field values.
type Row<'a> = (&'a str, &'a [(&'a str, f64)]);

/// Whether `data` is exactly these rows, in order (values to 1e-9).
fn rows_are(data: &Value, expected: &[Row<'_>]) -> bool {
    let Some(rows) = data.as_array() else {
        return false;
    };
    rows.len() == expected.len()
        && rows.iter().zip(expected).all(|(row, (at, fields))| {
            row["timestamp"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t == instant(at))
                && fields
                    .iter()
                    .all(|(f, v)| row[*f].as_f64().is_some_and(|x| (x - v).abs() < 1e-9))
        })
}

/// The readings ingested for MACHINE_01: (timestamp, temperature, pressure, speed). Three in
/// the raw 24 h window, four in the 7-day window, five in the month, one after all three.
const HISTORY: [(&str, f64, f64, f64); 6] = [
    ("2025-11-20T09:00:00Z", 50.0, 99.0, 1300.0),
    ("2025-12-10T08:15:00Z", 60.0, 100.0, 1400.0),
    ("2025-12-12T12:00:00Z", 69.0, 101.0, 1500.0),
    ("2025-12-12T12:30:00Z", 72.0, 103.0, 1520.0),
    ("2025-12-12T18:00:00Z", 75.0, 105.0, 1600.0),
    ("2025-12-13T05:00:00Z", 78.0, 107.0, 1700.0),
];

/// Stores [`HISTORY`] through `POST /api/v1/data/ingest` (one batch, asserting 201).
async fn ingest_history(seed: &Seed) {
    let readings: Vec<Value> = HISTORY
        .iter()
        .map(|(t, temperature, pressure, speed)| {
            json!({"timestamp": t, "temperature": temperature, "pressure": pressure, "speed": speed})
        })
        .collect();
    let body = json!({
        "gateway_id": "GW-TEST-01",
        "timestamp": "2025-12-13T10:00:00Z",
        "batch": [{
            "machine_id": MACHINE_01.id,
            "sensor_type": MACHINE_01.sensor_type,
            "location": MACHINE_01.location,
            "readings": readings,
        }]
    })
    .to_string();
    let token = seed.gateway_token().await;
    let (status, answer) = seed
        .call(
            Method::POST,
            "/api/v1/data/ingest",
            Some(&token),
            Some(&body),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["summary"]["total_readings"], HISTORY.len());
}

/// Asserts the seed's `machine` block for MACHINE_01.
fn assert_machine_01(body: &Value) {
    let machine = &body["machine"];
    assert_eq!(machine["machine_id"], MACHINE_01.id, "{body}");
    assert_eq!(machine["name"], MACHINE_01.name);
    assert_eq!(machine["location"], MACHINE_01.location);
    assert_eq!(machine["sensor_type"], MACHINE_01.sensor_type);
}

/// Asserts the seed's `query` block.
fn assert_query_echo(body: &Value, start: &str, end: &str, interval: &str, fields: &[&str]) {
    let query = &body["query"];
    assert_eq!(instant_of(&query["start_time"]), instant(start), "{body}");
    assert_eq!(instant_of(&query["end_time"]), instant(end), "{body}");
    assert_eq!(query["interval"], interval, "{body}");
    assert_eq!(query["fields"], json!(fields), "{body}");
}

/// Asserts the seed's `pagination` block of a first page holding every record.
fn assert_whole_page(body: &Value) {
    let data = body["data"].as_array().expect("data is an array");
    let page = &body["pagination"];
    assert_eq!(page["limit"], 1000, "the seed's default limit: {body}");
    assert_eq!(page["offset"], 0, "the seed's default offset: {body}");
    assert_eq!(page["has_more"], false, "{body}");
    assert_eq!(page["returned_records"], data.len(), "{body}");
    if let Some(total) = page.get("total_records") {
        assert_eq!(
            *total,
            data.len(),
            "total_records, when given, is exact: {body}"
        );
    }
}

/// Seed §1.2 A — Ingestion Endpoint: "JSON Request Body Structure" sent verbatim with a
/// gateway's token answers the documented "Success Response (201 Created)", and the reading
/// lands in InfluxDB tagged with the registry's sensor label.
#[tokio::test(flavor = "multi_thread")]
async fn seed_1_2_a_the_documented_ingest_body_is_stored_and_answered_201() {
    let seed = Seed::start(&[&TEST_MACHINE]).await;
    let token = seed.gateway_token().await;
    let (status, body) = seed
        .call(
            Method::POST,
            "/api/v1/data/ingest",
            Some(&token),
            Some(SEED_INGEST_BODY),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "success");
    assert!(non_empty_string(&body["message"]), "{body}");
    let summary = &body["summary"];
    assert_eq!(summary["gateway_id"], "GW-TEST-01");
    let processed_at = instant_of(&summary["processed_at"]);
    assert!(
        (Utc::now() - processed_at.with_timezone(&Utc))
            .num_seconds()
            .abs()
            < 60,
        "processed_at is when the batch was processed: {body}"
    );
    assert_eq!(summary["total_machines"], 1, "machines in the batch");
    assert_eq!(summary["total_readings"], 1, "readings stored");
    let details = body["details"].as_array().expect("details");
    assert_eq!(details.len(), 1, "{body}");
    assert_eq!(details[0]["machine_id"], TEST_MACHINE.id);
    assert_eq!(details[0]["readings_count"], 1);
    assert_eq!(details[0]["status"], "success");

    // (time, factory_id, location, machine_id, sensor_type, temperature, pressure, speed)
    let points = seed.ctx.influx_points().await;
    assert_eq!(points.len(), 1, "{points:?}");
    let row = points[0].as_array().expect("a point row");
    assert_eq!(
        row[..5],
        json!([
            nanos("2025-12-13T10:00:00Z"),
            "A",
            "Test Floor",
            TEST_MACHINE.id,
            "Vibration"
        ])
        .as_array()
        .expect("expected tags")[..],
        "stored at the reading's time with the registry's tags: {row:?}"
    );
    let values: Vec<Option<f64>> = row[5..8].iter().map(Value::as_f64).collect();
    assert_eq!(values, [Some(60.5), Some(102.0), Some(1400.0)], "{row:?}");
    // The seed's integer `"speed": 1400` is stored as a float like every value.
    let types = seed
        .ctx
        .influx()
        .query("SHOW FIELD KEYS FROM sensor_readings")
        .await
        .expect("field keys");
    let speed = types
        .iter()
        .flatten()
        .flat_map(|series| series.values.iter())
        .find(|row| row[0] == "speed")
        .unwrap_or_else(|| panic!("a speed field: {types:?}"));
    assert_eq!(speed[1], "float", "{types:?}");
}

/// Seed §1.2 A — Ingestion Endpoint: "Error Response (400 Bad Request)" — a batch whose
/// first machine id is "invalid-uuid" and whose second machine's reading is dated
/// "2025-13-45" is refused as a whole, naming both problems with the seed's paths.
#[tokio::test(flavor = "multi_thread")]
async fn seed_1_2_a_the_documented_400_names_the_bad_machine_id_and_the_bad_timestamp() {
    let seed = Seed::start(&[&TEST_MACHINE]).await;
    let token = seed.gateway_token().await;
    let body = json!({
        "gateway_id": "GW-TEST-01",
        "timestamp": "2025-12-13T10:00:00Z",
        "batch": [
            {
                "machine_id": "invalid-uuid",
                "sensor_type": "Vibration",
                "location": "Test Floor",
                "readings": [{"timestamp": "2025-12-13T10:00:00Z", "temperature": 60.5, "pressure": 102.0, "speed": 1400}]
            },
            {
                "machine_id": TEST_MACHINE.id,
                "sensor_type": "Vibration",
                "location": "Test Floor",
                "readings": [{"timestamp": "2025-13-45", "temperature": 60.5, "pressure": 102.0, "speed": 1400}]
            }
        ]
    })
    .to_string();
    let (status, answer) = seed
        .call(
            Method::POST,
            "/api/v1/data/ingest",
            Some(&token),
            Some(&body),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["status"], "error");
    assert!(non_empty_string(&answer["message"]), "{answer}");
    assert_eq!(answer["code"], "validation_failed");
    let errors = answer["errors"].as_array().expect("errors");
    let named: Vec<(&Value, &Value)> = errors.iter().map(|e| (&e["field"], &e["value"])).collect();
    assert_eq!(
        named,
        [
            (&json!("batch[0].machine_id"), &json!("invalid-uuid")),
            (
                &json!("batch[1].readings[0].timestamp"),
                &json!("2025-13-45")
            ),
        ],
        "{answer}"
    );
    assert!(
        errors.iter().all(|e| non_empty_string(&e["error"])),
        "each problem is explained: {answer}"
    );
    assert!(seed.ctx.influx_points().await.is_empty(), "nothing stored");
}

/// Seed §1.2 B — Retrieval Endpoint: "Example Requests" 1 (raw, last 24 hours), 2 (hourly
/// aggregates, last 7 days) and 3 (daily aggregates, last month, temperature only), verbatim,
/// answer the documented "Success Response (200 OK)": `machine`, `query`, `data`,
/// `pagination`. Aggregated rows carry the bucket's `timestamp` and the mean per field.
#[tokio::test(flavor = "multi_thread")]
async fn seed_1_2_b_the_three_documented_retrievals_answer_machine_query_data_pagination() {
    let seed = Seed::start(&[&MACHINE_01]).await;
    ingest_history(&seed).await;
    let token = seed.john_token().await;

    let all = ["temperature", "pressure", "speed"];
    let raw: [Row<'_>; 3] = [
        (
            "2025-12-12T12:00:00Z",
            &[
                ("temperature", 69.0),
                ("pressure", 101.0),
                ("speed", 1500.0),
            ],
        ),
        (
            "2025-12-12T12:30:00Z",
            &[
                ("temperature", 72.0),
                ("pressure", 103.0),
                ("speed", 1520.0),
            ],
        ),
        (
            "2025-12-12T18:00:00Z",
            &[
                ("temperature", 75.0),
                ("pressure", 105.0),
                ("speed", 1600.0),
            ],
        ),
    ];
    let body = seed
        .get_until(
            RAW_24H,
            &token,
            "the three raw readings of 2025-12-12",
            |b| rows_are(&b["data"], &raw),
        )
        .await;
    assert_eq!(body["status"], "success");
    assert_machine_01(&body);
    assert_query_echo(
        &body,
        "2025-12-12T03:38:52Z",
        "2025-12-13T03:38:52Z",
        "raw",
        &all,
    );
    assert_whole_page(&body);

    let hourly: [Row<'_>; 3] = [
        (
            "2025-12-10T08:00:00Z",
            &[
                ("temperature", 60.0),
                ("pressure", 100.0),
                ("speed", 1400.0),
            ],
        ),
        (
            "2025-12-12T12:00:00Z",
            &[
                ("temperature", 70.5),
                ("pressure", 102.0),
                ("speed", 1510.0),
            ],
        ),
        (
            "2025-12-12T18:00:00Z",
            &[
                ("temperature", 75.0),
                ("pressure", 105.0),
                ("speed", 1600.0),
            ],
        ),
    ];
    let body = seed
        .get_until(
            HOURLY_7D,
            &token,
            "hourly means for 2025-12-10 08:00 and 2025-12-12 12:00 and 18:00",
            |b| rows_are(&b["data"], &hourly),
        )
        .await;
    assert_eq!(body["status"], "success");
    assert_machine_01(&body);
    assert_query_echo(
        &body,
        "2025-12-06T00:00:00Z",
        "2025-12-13T00:00:00Z",
        "1h",
        &all,
    );
    assert_whole_page(&body);

    let daily: [Row<'_>; 3] = [
        ("2025-11-20T00:00:00Z", &[("temperature", 50.0)]),
        ("2025-12-10T00:00:00Z", &[("temperature", 60.0)]),
        ("2025-12-12T00:00:00Z", &[("temperature", 72.0)]),
    ];
    let body = seed
        .get_until(
            DAILY_MONTH_TEMPERATURE,
            &token,
            "daily temperature means for 2025-11-20, 2025-12-10 and 2025-12-12",
            |b| rows_are(&b["data"], &daily),
        )
        .await;
    assert_eq!(body["status"], "success");
    assert_machine_01(&body);
    assert_query_echo(
        &body,
        "2025-11-13T00:00:00Z",
        "2025-12-13T00:00:00Z",
        "1d",
        &["temperature"],
    );
    assert_whole_page(&body);
    for row in body["data"].as_array().expect("data") {
        assert!(
            row.get("pressure").is_none() && row.get("speed").is_none(),
            "fields=temperature answers temperature only: {row}"
        );
    }
}

/// Seed §1.2 B — Retrieval Endpoint, "Query Parameters": `limit` and `offset` page the
/// records (the 2nd of three with `limit=1&offset=1`, `has_more` telling whether more
/// follow), an offset past the data is an empty 200 page, and `fields=all` is the default.
#[tokio::test(flavor = "multi_thread")]
async fn seed_1_2_b_limit_offset_and_fields_all_follow_the_parameter_table() {
    let seed = Seed::start(&[&MACHINE_01]).await;
    ingest_history(&seed).await;
    let token = seed.john_token().await;
    seed.get_until(RAW_24H, &token, "the three raw readings", |b| {
        b["data"].as_array().is_some_and(|d| d.len() == 3)
    })
    .await;

    let page = |limit: u32, offset: u32| format!("{RAW_24H}&limit={limit}&offset={offset}");
    let (status, body) = seed.get(&page(1, 1), &token).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        rows_are(
            &body["data"],
            &[(
                "2025-12-12T12:30:00Z",
                &[
                    ("temperature", 72.0),
                    ("pressure", 103.0),
                    ("speed", 1520.0)
                ]
            )]
        ),
        "the second record: {body}"
    );
    let pagination = &body["pagination"];
    assert_eq!(pagination["limit"], 1, "{body}");
    assert_eq!(pagination["offset"], 1, "{body}");
    assert_eq!(
        pagination["has_more"], true,
        "a third record follows: {body}"
    );
    assert_eq!(pagination["returned_records"], 1, "{body}");

    let (status, body) = seed.get(&page(1, 2), &token).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        rows_are(
            &body["data"],
            &[(
                "2025-12-12T18:00:00Z",
                &[
                    ("temperature", 75.0),
                    ("pressure", 105.0),
                    ("speed", 1600.0)
                ]
            )]
        ),
        "the third record: {body}"
    );
    assert_eq!(
        body["pagination"]["has_more"], false,
        "the last one: {body}"
    );

    let (status, body) = seed.get(&format!("{RAW_24H}&offset=10"), &token).await;
    assert_eq!(status, 200, "an offset past the data is no error: {body}");
    assert_eq!(body["data"], json!([]), "{body}");
    assert_eq!(body["pagination"]["has_more"], false, "{body}");
    assert_eq!(body["pagination"]["returned_records"], 0, "{body}");
    assert_eq!(body["pagination"]["offset"], 10, "{body}");

    let (status, body) = seed.get(&format!("{RAW_24H}&fields=all"), &token).await;
    assert_eq!(status, 200, "the seed's fields=all: {body}");
    assert_eq!(
        body["query"]["fields"],
        json!(["temperature", "pressure", "speed"]),
        "{body}"
    );
    assert_eq!(body["data"].as_array().map(Vec::len), Some(3), "{body}");
}

/// Seed §1.2 B — Retrieval Endpoint, "Error Response (400 Bad Request)": `interval=2h` is
/// refused naming the parameter and echoing the value.
#[tokio::test(flavor = "multi_thread")]
async fn seed_1_2_b_an_unknown_interval_is_the_documented_400() {
    let seed = Seed::start(&[&MACHINE_01]).await;
    let token = seed.john_token().await;
    let path = "/api/v1/data/machine/d1c2084b-f16a-4eea-89d9-4402095d3af5?start_time=2025-12-12T03:38:52Z&end_time=2025-12-13T03:38:52Z&interval=2h";
    let (status, body) = seed.get(path, &token).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["status"], "error");
    assert!(non_empty_string(&body["message"]), "{body}");
    assert_eq!(body["code"], "validation_failed");
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "only the interval is wrong: {body}");
    assert_eq!(errors[0]["parameter"], "interval");
    assert_eq!(errors[0]["value"], "2h");
    assert!(non_empty_string(&errors[0]["error"]), "{body}");
}

/// Seed §1.2 B — Retrieval Endpoint, "Error Response (404 Not Found)": a machine that is
/// not registered — a random UUID, and the seed's literal `invalid-uuid` — is a 404 echoing
/// the `machine_id` as sent.
#[tokio::test(flavor = "multi_thread")]
async fn seed_1_2_b_an_unknown_machine_is_the_documented_404() {
    let seed = Seed::start(&[&MACHINE_01]).await;
    let token = seed.john_token().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for machine_id in [unknown.as_str(), "invalid-uuid"] {
        let path = format!("/api/v1/data/machine/{machine_id}?start_time=2025-12-12T03:38:52Z");
        let (status, body) = seed.get(&path, &token).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["status"], "error");
        assert!(non_empty_string(&body["message"]), "{body}");
        assert_eq!(body["machine_id"], machine_id, "{body}");
        assert_eq!(body["code"], "not_found");
    }
}

/// Seed §1.2 C — Machine Management: "1. Create Machine Endpoint" (`POST
/// /api/v1/data/machine`, the documented body verbatim, by Management) answers 201 with the
/// new `machine_id`, and "2. List Machines Endpoint" (`GET /api/v1/data/machines`) answers
/// `count` and `machines[]` with the documented members, filtered by `location`, `status`
/// and `sensor_type` (the label matched in any case, returned as given). Like every
/// endpoint, the list needs a token.
#[tokio::test(flavor = "multi_thread")]
async fn seed_1_2_c_machines_are_created_and_listed_at_the_seed_paths() {
    let seed = Seed::start(&[&TEST_MACHINE, &PRESS_07]).await;
    let token = seed.john_token().await;
    let (status, body) = seed
        .call(
            Method::POST,
            "/api/v1/data/machine",
            Some(&token),
            Some(SEED_CREATE_MACHINE_BODY),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "success");
    assert!(non_empty_string(&body["message"]), "{body}");
    let created = body["machine_id"]
        .as_str()
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .unwrap_or_else(|| panic!("machine_id is a UUID: {body}"))
        .to_string();
    let machine = &body["machine"];
    assert_eq!(machine["machine_id"], created.as_str(), "{body}");
    assert_eq!(machine["id"], created.as_str(), "{body}");
    assert_eq!(machine["name"], "Machine-01");
    assert_eq!(machine["location"], "Factory Floor 1");
    assert_eq!(machine["sensor_type"], "Temperature", "kept as given");
    assert_eq!(machine["status"], "active");

    let list = |query: &'static str| {
        let seed = &seed;
        let token = token.as_str();
        async move {
            let path = format!("/api/v1/data/machines{query}");
            let (status, body) = seed.get(&path, token).await;
            assert_eq!(status, 200, "{path}: {body}");
            assert_eq!(body["status"], "success", "{body}");
            let machines = body["machines"].as_array().expect("machines").clone();
            assert_eq!(
                body["count"],
                machines.len(),
                "count is the machines listed: {body}"
            );
            for machine in &machines {
                assert_eq!(machine["machine_id"], machine["id"], "{machine}");
                for member in ["name", "location", "sensor_type", "status"] {
                    assert!(non_empty_string(&machine[member]), "{member} in {machine}");
                }
            }
            let mut names: Vec<String> = machines
                .iter()
                .map(|m| m["name"].as_str().unwrap_or_default().to_owned())
                .collect();
            names.sort();
            (names, machines)
        }
    };

    let (names, machines) = list("").await;
    assert_eq!(names, ["Machine-01", "Press-07", "Test-Machine"]);
    let listed = machines
        .iter()
        .find(|m| m["machine_id"] == created.as_str())
        .expect("the created machine is listed");
    assert_eq!(listed["location"], "Factory Floor 1");
    assert_eq!(listed["sensor_type"], "Temperature");

    assert_eq!(
        list("?location=Factory%20Floor%201").await.0,
        ["Machine-01"]
    );
    assert_eq!(list("?status=maintenance").await.0, ["Press-07"]);
    assert_eq!(
        list("?status=active").await.0,
        ["Machine-01", "Test-Machine"]
    );
    let (names, machines) = list("?sensor_type=temperature").await;
    assert_eq!(names, ["Machine-01"], "the label matches in any case");
    assert_eq!(
        machines[0]["sensor_type"], "Temperature",
        "and is returned as given"
    );
    assert_eq!(list("?sensor_type=VIBRATION").await.0, ["Test-Machine"]);
    assert_eq!(
        list("?location=Test%20Floor&status=active&sensor_type=vibration")
            .await
            .0,
        ["Test-Machine"]
    );

    let (status, body) = seed
        .call(Method::GET, "/api/v1/data/machines", None, None)
        .await;
    assert_eq!(status, 401, "no token, no registry: {body}");
    assert_eq!(body["status"], "error");
}

/// Seed §2.2 B — Authorization Flow, "STEP 1: User Login": `john.doe` logs in with the
/// documented body and gets the documented answer (Bearer access token, `expires_in`,
/// refresh token, the user with role, permissions, `is_active`, `last_login`,
/// `created_at`); and §2.2 A — JWT Design: the access token carries the RBAC claims
/// `sub`, `username`, `role`, `permissions`, `iat`, `exp`, `iss`, `aud`.
#[tokio::test(flavor = "multi_thread")]
async fn seed_2_2_b_step_1_john_doe_logs_in_and_gets_the_documented_answer() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let seed = Seed::start(&[]).await;
    let before = Utc::now();
    let body = seed.login_john().await;
    assert_eq!(body["status"], "success");
    assert_eq!(body["token_type"], "Bearer");
    let expires_in = body["expires_in"]
        .as_i64()
        .unwrap_or_else(|| panic!("expires_in is whole seconds: {body}"));
    assert!(expires_in > 0, "{body}");
    assert!(non_empty_string(&body["refresh_token"]), "{body}");
    let user = &body["user"];
    assert_eq!(user["id"], seed.john.id.to_string(), "{body}");
    assert_eq!(user["username"], JOHN_DOE);
    assert_eq!(user["email"], JOHN_DOE_EMAIL);
    assert_eq!(user["role"], "management");
    assert_eq!(user["is_active"], true);
    let permissions: Vec<&str> = user["permissions"]
        .as_array()
        .expect("permissions")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for documented in [
        "read:machines",
        "write:machines",
        "read:sensor_data",
        "write:sensor_data",
        "read:config",
        "write:config",
        "read:users",
        "write:users",
    ] {
        assert!(permissions.contains(&documented), "{documented} in {body}");
    }
    let last_login = instant_of(&user["last_login"]).with_timezone(&Utc);
    assert!(
        last_login >= before - chrono::Duration::seconds(5),
        "last_login is this login: {body}"
    );
    let created_at = instant_of(&user["created_at"]).with_timezone(&Utc);
    assert!(created_at <= last_login, "{body}");

    let token = body["access_token"].as_str().expect("access_token");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT: {token}");
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
    };
    let header = decode(parts[0]);
    assert_eq!(header["alg"], "EdDSA", "{header}");
    assert!(non_empty_string(&header["kid"]), "{header}");
    let claims = decode(parts[1]);
    assert_eq!(claims["sub"], seed.john.id.to_string(), "{claims}");
    assert_eq!(claims["username"], JOHN_DOE);
    assert_eq!(claims["role"], "management");
    assert!(
        claims["permissions"]
            .as_array()
            .is_some_and(|p| p.contains(&json!("write:config"))),
        "{claims}"
    );
    assert!(non_empty_string(&claims["iss"]), "{claims}");
    assert!(non_empty_string(&claims["aud"]), "{claims}");
    let (iat, exp) = (
        claims["iat"].as_i64().expect("iat"),
        claims["exp"].as_i64().expect("exp"),
    );
    assert_eq!(
        exp - iat,
        expires_in,
        "expires_in is the token's lifetime: {claims}"
    );
}

/// Seed §2.2 B — Authorization Flow, "STEP 3" to "STEP 6": with the token from Step 1,
/// Management's `POST /api/v1/config/update` (documented body verbatim) answers the
/// documented `updated_setting` and leaves the audit trail of Step 6; a role without
/// `write:config` is refused 403 (Step 5) and a request without a token 401 (Step 4).
#[tokio::test(flavor = "multi_thread")]
async fn seed_2_2_b_steps_3_to_6_management_updates_the_threshold_and_others_are_refused() {
    let seed = Seed::start(&[]).await;
    let token = seed.john_token().await;
    let before = Utc::now();
    let (status, body) = seed
        .call(
            Method::POST,
            "/api/v1/config/update",
            Some(&token),
            Some(SEED_CONFIG_BODY),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "success");
    assert!(non_empty_string(&body["message"]), "{body}");
    let updated = &body["updated_setting"];
    assert_eq!(updated["name"], "max_temperature_threshold", "{body}");
    assert_eq!(updated["value"].as_f64(), Some(85.0), "{body}");
    let updated_at = instant_of(&updated["updated_at"]).with_timezone(&Utc);
    assert!(
        updated_at >= before - chrono::Duration::seconds(5)
            && updated_at <= Utc::now() + chrono::Duration::seconds(5),
        "updated_at is this change: {body}"
    );
    assert_eq!(updated["updated_by"], JOHN_DOE, "{body}");

    // Step 6: the change is audited with who, what, before and after.
    let (status, audit) = seed.get("/api/v1/audit?resource_type=config", &token).await;
    assert_eq!(status, 200, "{audit}");
    let entry = audit["entries"]
        .as_array()
        .and_then(|entries| {
            entries
                .iter()
                .find(|e| e["resource_id"] == "max_temperature_threshold")
        })
        .unwrap_or_else(|| panic!("an audit entry for the threshold: {audit}"));
    assert_eq!(entry["actor_id"], seed.john.id.to_string(), "{entry}");
    assert_eq!(entry["actor_name"], JOHN_DOE, "{entry}");
    assert_eq!(
        entry["before"]["max_temperature_threshold"].as_f64(),
        Some(80.0),
        "the seed's old_value: {entry}"
    );
    assert_eq!(
        entry["after"]["max_temperature_threshold"].as_f64(),
        Some(85.0),
        "the seed's new_value: {entry}"
    );

    // Step 5: a valid token without write:config.
    let operator = seed.ctx.create_user(Role::Operator).await;
    let operator_token = seed.token_for(&operator).await;
    let (status, body) = seed
        .call(
            Method::POST,
            "/api/v1/config/update",
            Some(&operator_token),
            Some(SEED_CONFIG_BODY),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["status"], "error");
    // Step 4: no token.
    let (status, body) = seed
        .call(
            Method::POST,
            "/api/v1/config/update",
            None,
            Some(SEED_CONFIG_BODY),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["status"], "error");
}
