//! Hostile and careless clients: control characters in every text field of every documented
//! endpoint, bodies built to cost memory, login bursts, made-up methods, internals through
//! the public entry, and streams whose clients left or lost their rights.

use futures_util::StreamExt;
use plantline_e2e::front::{Front, Upstreams};
use plantline_e2e::plant::Plant;
use plantline_e2e::{TestContext, eventually, workspace_root};
use platform::ServiceName;
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Write;
use std::time::{Duration, Instant};

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

async fn front_of(plant: &Plant) -> Front {
    let address = |port: u16| format!("127.0.0.1:{port}");
    Front::start(Upstreams {
        auth: &address(plant.auth.port),
        ingest: &address(plant.ingest.port),
        query: &address(plant.query.port),
    })
    .await
}

/// Every `(path, string)` leaf of a JSON schema, as the error paths name them
/// (`batch[0].readings[0].timestamp`), resolving `$ref` and every `oneOf`/`anyOf` branch.
fn string_leaves(schema: &Value, components: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return string_leaves(&components[name], components, path, out);
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        for branch in schema[key].as_array().into_iter().flatten() {
            string_leaves(branch, components, path, out);
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if types.contains(&"string") && !path.is_empty() && !out.iter().any(|p| p == path) {
        out.push(path.to_owned());
    }
    if types.contains(&"array") {
        string_leaves(&schema["items"], components, &format!("{path}[0]"), out);
    }
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        let here = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        string_leaves(property, components, &here, out);
    }
}

/// A minimal body holding `text` at `path` (`a.b[0].c`), nothing else.
fn body_at(path: &str, text: &str) -> Value {
    let mut segments: Vec<(&str, bool)> = Vec::new();
    for part in path.split('.') {
        match part.strip_suffix("[0]") {
            Some(name) => segments.push((name, true)),
            None => segments.push((part, false)),
        }
    }
    let mut value = Value::from(text);
    for (name, is_array) in segments.into_iter().rev() {
        if is_array {
            value = json!([value]);
        }
        value = json!({ name: value });
    }
    value
}

/// Table-driven from the committed OpenAPI document: every query parameter and every string
/// in every JSON body of every operation gets a NUL, and another control character; each
/// must be a 400 naming exactly that parameter or field, never a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_text_field_of_any_endpoint_takes_a_control_character() {
    let plant = Plant::start().await;
    let front = front_of(&plant).await;
    let document: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("proto-docs/openapi.json")).unwrap(),
    )
    .unwrap();
    let components = &document["components"]["schemas"];
    let http = reqwest::Client::new();
    let (mut cases, mut failures) = (0, Vec::new());
    for (template, operations) in document["paths"].as_object().unwrap() {
        if template.contains("{path}") {
            continue;
        }
        let path = template.replace("{id}", &uuid::Uuid::new_v4().to_string());
        for (method, operation) in operations.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let send = |query: String, body: Option<Value>| {
                let mut request = http
                    .request(method.clone(), format!("{}{path}{query}", front.url))
                    .bearer_auth(&plant.manager)
                    .header("if-match", "\"v1\"");
                if let Some(body) = body {
                    request = request.json(&body);
                }
                request.send()
            };
            let mut expect = |what: String, name: &str, key: &str, answer: (u16, Value)| {
                cases += 1;
                let named = answer.1["errors"]
                    .as_array()
                    .is_some_and(|errors| errors.iter().any(|e| e[key] == name));
                if answer.0 != 400 || !named {
                    failures.push(format!("{what}: {} {}", answer.0, answer.1));
                }
            };
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if parameter["in"] != "query" {
                    continue;
                }
                let name = parameter["name"].as_str().unwrap();
                for bad in ["a%00b", "a%1Bb"] {
                    let response = send(format!("?{name}={bad}"), None).await.unwrap();
                    let answer = (
                        response.status().as_u16(),
                        response.json().await.unwrap_or_default(),
                    );
                    expect(
                        format!("{method} {template}?{name}={bad}"),
                        name,
                        "parameter",
                        answer,
                    );
                }
            }
            let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
            let mut leaves = Vec::new();
            string_leaves(schema, components, "", &mut leaves);
            for leaf in leaves {
                for bad in ["a\u{0}b", "a\u{1b}b"] {
                    let response = send(String::new(), Some(body_at(&leaf, bad)))
                        .await
                        .unwrap();
                    let answer = (
                        response.status().as_u16(),
                        response.json().await.unwrap_or_default(),
                    );
                    expect(
                        format!("{method} {template} body {leaf} = {bad:?}"),
                        &leaf,
                        "field",
                        answer,
                    );
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        cases >= 100,
        "only {cases} cases were generated: is the document complete?"
    );

    // Text after the document must not smuggle a NUL past the rule (found in review: the
    // rule skipped bodies that were not one JSON document, and serde read the first one).
    let smuggled = http
        .post(format!("{}/api/v1/auth/login", front.url))
        .header("content-type", "application/json")
        .body("{\"username\":\"a\\u0000\",\"password\":\"x\"} trailing")
        .send()
        .await
        .unwrap();
    assert_eq!(smuggled.status(), 400);
    let body: Value = smuggled.json().await.unwrap();
    assert_eq!(body["code"], "malformed_body", "{body}");

    // Line protocol is text too: a control character in a line refuses that line.
    let machine = plant
        .ctx
        .create_machine(domain::MachineStatus::Active)
        .await;
    let response = http
        .post(format!("{}/api/v1/data/ingest", front.url))
        .bearer_auth(&plant.gateway_token)
        .header("content-type", "text/plain")
        .body(format!(
            "sensor_readings,machine_id={machine},host=a\u{0}b temperature=20"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "line[0]", "{body}");
}

/// A few kilobytes of gzip that inflate to one line of two million empty fields: a short
/// 400 naming the cap, quickly, without the memory one error per field would take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_million_empty_line_protocol_fields_get_a_short_400() {
    let plant = Plant::start().await;
    let machine = plant
        .ctx
        .create_machine(domain::MachineStatus::Active)
        .await;
    let mut line = format!("sensor_readings,machine_id={machine} temperature=1");
    line.push_str(&",".repeat(2_000_000));
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gzip.write_all(line.as_bytes()).unwrap();
    let body = gzip.finish().unwrap();
    assert!(body.len() < 8 * 1024, "{} bytes on the wire", body.len());
    drop(line);

    let before = rss_mib();
    let started = Instant::now();
    let response = plant
        .ingest
        .request(Method::POST, "/api/v1/data/ingest")
        .bearer_auth(&plant.gateway_token)
        .header("content-type", "text/plain")
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let answer = response.bytes().await.unwrap();
    let took = started.elapsed();
    let grown = rss_mib() - before;
    println!(
        "2M empty fields: {status} in {took:?}, {} bytes answered, process grew {grown:.1} MiB",
        answer.len()
    );
    assert_eq!(status, 400);
    assert!(answer.len() < 64 * 1024, "{} bytes answered", answer.len());
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    // The line-length cap (64 KiB) is met first; the field cap (16) would be next.
    assert_eq!(answer["errors"][0]["field"], "line[0]", "{answer}");
    assert!(
        answer["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("65536 bytes"),
        "{answer}"
    );
    // Generous: what this guards against took 255 MiB and a 144 MB answer.
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    assert!(grown < 64.0, "the process grew by {grown:.1} MiB");
}

/// 128 wrong logins at once, each from its own address for an account that does not exist
/// (so no throttle stops them): every answer is 401, 429 or 503, memory stays bounded by the
/// hashing threads, and auth still logs people in afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_wrong_logins_is_answered_within_bounded_memory() {
    let ctx = TestContext::new().await;
    let auth = ctx.spawn(ServiceName::Auth).await;
    let person = ctx.create_user(domain::Role::Operator).await;
    let before = rss_mib();
    // Queued checks wait their turn: in a debug build on a busy machine that takes a while.
    let patient = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let url = format!("{}/api/v1/auth/login", auth.address);
    let burst = (0..128).map(|i| {
        patient
            .post(&url)
            .header("x-real-ip", format!("10.1.{}.{}", i / 250, i % 250 + 1))
            .json(&json!({"username": format!("nobody-{i}"), "password": "wrong"}))
            .send()
    });
    let answers = futures_util::future::join_all(burst).await;
    let peak = rss_mib();
    let mut statuses = std::collections::BTreeMap::new();
    for answer in answers {
        *statuses
            .entry(answer.unwrap().status().as_u16())
            .or_insert(0) += 1;
    }
    println!("128 wrong logins: {statuses:?}; RSS {before:.1} → {peak:.1} MiB");
    assert!(
        statuses.keys().all(|s| [401, 429, 503].contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains_key(&503),
        "the queue bound was never reached: {statuses:?}"
    );
    // Without the bound: 19 MiB of argon2 memory per concurrent login, 2.4 GiB.
    assert!(
        peak - before < 64.0,
        "grew by {:.1} MiB: {statuses:?}",
        peak - before
    );
    let token = auth.token_for(&person).await;
    assert!(!token.is_empty(), "auth still logs people in");
}

/// Unknown methods are 405 and never become a metric label.
#[tokio::test]
async fn made_up_methods_are_405_and_mint_no_metric_series() {
    let ctx = TestContext::new().await;
    let query = ctx.spawn(ServiceName::QueryApi).await;
    for i in 0..300 {
        let method = Method::from_bytes(format!("BREW{i}").as_bytes()).unwrap();
        let response = query
            .request(method, "/api/v1/machines")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "BREW{i}");
    }
    let metrics = query.get("/metrics").await.text().await.unwrap();
    let methods: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("plantline_http_requests_total{"))
        .filter_map(|l| l.split("method=\"").nth(1)?.split('"').next())
        .collect();
    assert!(methods.contains("OTHER"), "{methods:?}");
    let closed = [
        "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "OTHER",
    ];
    assert!(methods.iter().all(|m| closed.contains(m)), "{methods:?}");
}

/// Through the public entry only nginx's own health answers; the services' probes and
/// metrics are for private addresses under `/svc/<service>/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_entry_shows_no_internals() {
    let plant = Plant::start().await;
    let front = front_of(&plant).await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", front.url)).send();
    for path in ["/metrics", "/readyz"] {
        let response = get(path).await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("plantline_http_requests_total") && !body.contains("dependencies"),
            "{path}: {body}"
        );
    }
    let health: Value = get("/healthz").await.unwrap().json().await.unwrap();
    assert_eq!(health, json!({"status": "ok", "service": "nginx"}));
    // From a private address (the test's loopback), the scrape path works.
    let scraped = get("/svc/query-api/metrics").await.unwrap();
    assert_eq!(scraped.status(), 200);
    assert_eq!(get("/svc/ingest-api/readyz").await.unwrap().status(), 200);
}

async fn ticket(plant: &Plant, token: &str) -> String {
    let response = plant
        .query
        .request(Method::POST, "/api/v1/stream/ticket")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["ticket"].as_str().unwrap().to_owned()
}

async fn open_stream(plant: &Plant, token: &str, filter: &str) -> reqwest::Response {
    let ticket = ticket(plant, token).await;
    plant
        .query
        .http
        .get(format!(
            "{}/api/v1/stream?ticket={ticket}{filter}",
            plant.query.address
        ))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap()
}

async fn gauge(plant: &Plant, name: &str) -> f64 {
    let metrics = plant.query.get("/metrics").await.text().await.unwrap();
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// 30 streams filtered to a quiet machine, whose clients hang up while readings for another
/// machine keep flowing: the fixed keep-alive notices each within two intervals, every slot
/// is released and query-api drops its readings subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_whose_clients_left_are_released_under_load() {
    let plant = Plant::start_with(|s| {
        s.stream.heartbeat_secs = 2;
        s.stream.max_per_user = 40;
    })
    .await;
    let (quiet, busy) = (
        plant
            .ctx
            .create_machine(domain::MachineStatus::Active)
            .await,
        plant
            .ctx
            .create_machine(domain::MachineStatus::Active)
            .await,
    );
    let mut streams = Vec::new();
    for _ in 0..30 {
        let response = open_stream(&plant, &plant.operator, &format!("&machine_id={quiet}")).await;
        assert_eq!(response.status(), 200);
        streams.push(response);
    }
    assert_eq!(gauge(&plant, "plantline_streams_open").await, 30.0);
    let load = {
        let stop = tokio_util::sync::CancellationToken::new();
        let guard = stop.clone().drop_guard();
        let (ingest, token) = (plant.ingest.http.clone(), plant.gateway_token.clone());
        let url = format!("{}/api/v1/data/ingest", plant.ingest.address);
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                let body = json!({"gateway_id": "gw", "timestamp": at, "batch": [
                    {"machine_id": busy, "readings": [{"timestamp": at, "temperature": 20.0}]}]});
                let _ = ingest
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        guard
    };
    drop(streams);
    eventually(Duration::from_secs(30), "every stream released", || async {
        (gauge(&plant, "plantline_streams_open").await == 0.0).then_some(())
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "query-api unsubscribed from readings",
        || async { (plant.ctx.readings_subscribers().await? == 0).then_some(()) },
    )
    .await;
    drop(load);
}

/// One user may hold `stream.max_per_user` streams (10); the eleventh is 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eleventh_stream_of_one_user_is_refused() {
    let plant = Plant::start_with(|s| s.stream.heartbeat_secs = 1).await;
    let mut open = Vec::new();
    for _ in 0..10 {
        let response = open_stream(&plant, &plant.operator, "").await;
        assert_eq!(response.status(), 200);
        open.push(response);
    }
    let eleventh = open_stream(&plant, &plant.operator, "").await;
    assert_eq!(eleventh.status(), 429);
    assert!(eleventh.headers().contains_key("retry-after"));
    // Another user is not affected, and a closed stream frees its slot.
    assert_eq!(
        open_stream(&plant, &plant.supervisor, "").await.status(),
        200
    );
    drop(open.pop());
    eventually(Duration::from_secs(10), "a slot is free again", || async {
        let response = open_stream(&plant, &plant.operator, "").await;
        (response.status() == 200).then_some(response)
    })
    .await;
}

/// A stream ends when its token is revoked (logout here), at the next keep-alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_tokens_stream_ends() {
    let plant = Plant::start_with(|s| s.stream.heartbeat_secs = 1).await;
    let response = open_stream(&plant, &plant.operator, "").await;
    assert_eq!(response.status(), 200);
    let logout = plant
        .auth
        .request(Method::POST, "/api/v1/auth/logout")
        .bearer_auth(&plant.operator)
        .send()
        .await
        .unwrap();
    assert!(logout.status().is_success(), "{}", logout.status());
    let read = async {
        let mut body = response.bytes_stream();
        let mut seen = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        seen
    };
    let seen = tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the stream ended");
    assert!(seen.contains("event: end"), "{seen}");
    assert!(seen.contains("token revoked"), "{seen}");
}

/// Many short lines of too many fields each: the field cap, one error per line, and an
/// answer that lists a hundred errors and counts the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_lists_stop_at_a_hundred_and_count_the_rest() {
    let plant = Plant::start().await;
    let machine = plant
        .ctx
        .create_machine(domain::MachineStatus::Active)
        .await;
    let line = format!(
        "sensor_readings,machine_id={machine} temperature=1{}\n",
        ",x=1".repeat(20)
    );
    let response = plant
        .ingest
        .request(Method::POST, "/api/v1/data/ingest")
        .bearer_auth(&plant.gateway_token)
        .header("content-type", "text/plain")
        .body(line.repeat(500))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    let errors = answer["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 101, "{answer}");
    assert_eq!(errors[0]["field"], "line[0].fields");
    assert!(
        errors[0]["error"].as_str().unwrap().contains("at most 16"),
        "{answer}"
    );
    assert_eq!(errors[100]["error"], "…and 400 more");
}
