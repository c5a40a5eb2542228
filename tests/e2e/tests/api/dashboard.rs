//! The dashboard in Debian's headless Chromium, driven by `tests/browser/dashboard.test.mjs`
//! (playwright-core) through nginx in front of real auth, ingest-api and query-api.

use domain::MachineStatus;
use plantline_e2e::front::{Front, Upstreams};
use plantline_e2e::plant::Plant;
use plantline_e2e::workspace_root;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCREENSHOTS: [&str; 4] = [
    "operator-machine.png",
    "operator-fleet.png",
    "supervisor-machine.png",
    "management-settings.png",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_a_posted_reading_and_its_alert_arrive_in_a_real_browser() {
    let plant = Plant::start().await;
    let machine = plant.ctx.create_machine(MachineStatus::Active).await;
    // As the bridge records a Sparkplug DDEATH: the fleet must show the machine offline.
    let mut conn = platform::postgres::connection(&plant.ctx.pg_pool())
        .await
        .expect("test connection");
    let dead = storage::presence::Presence {
        online: false,
        since: chrono::Utc::now(),
    };
    storage::presence::record(&mut conn, machine, dead)
        .await
        .expect("presence recorded");
    drop(conn);
    let address = |port: u16| format!("127.0.0.1:{port}");
    let (auth, ingest, query) = (
        address(plant.auth.port),
        address(plant.ingest.port),
        address(plant.query.port),
    );
    let front = Front::start(Upstreams {
        auth: &auth,
        ingest: &ingest,
        query: &query,
    })
    .await;
    let output = workspace_root().join("target/test-output/dashboard");
    let _ = std::fs::remove_dir_all(&output);
    std::fs::create_dir_all(&output).expect("screenshot folder");
    let log_path = output.join("browser.log");
    let log = std::fs::File::create(&log_path).expect("browser log");

    let born_again = tokio::spawn(born_again_when_the_fleet_is_open(
        plant.ctx.pg_pool(),
        plant.ctx.redis(),
        machine,
        output.join("fleet-open"),
    ));
    let [operator, supervisor, manager] = &plant.people;
    let mut browser = Command::new("node")
        .arg(workspace_root().join("tests/browser/dashboard.test.mjs"))
        .env("PLANTLINE_URL", &front.url)
        .env("MACHINE_ID", machine.to_string())
        .env("GATEWAY_TOKEN", &plant.gateway_token)
        .env("SCREENSHOT_DIR", &output)
        .env("OPERATOR_USER", &operator.username)
        .env("OPERATOR_PASSWORD", &operator.password)
        .env("SUPERVISOR_USER", &supervisor.username)
        .env("SUPERVISOR_PASSWORD", &supervisor.password)
        .env("MANAGEMENT_USER", &manager.username)
        .env("MANAGEMENT_PASSWORD", &manager.password)
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("node runs (`make test` installs the browser test's packages)");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = browser.try_wait().expect("browser test status") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = browser.kill();
            let _ = browser.wait();
            panic!(
                "the browser test did not finish within 2 minutes:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    born_again.abort();
    let transcript = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.success(),
        "the browser test failed (screenshots in {}):\n{transcript}",
        output.display()
    );
    for shot in SCREENSHOTS {
        let png = std::fs::read(output.join(shot)).unwrap_or_default();
        assert!(png.starts_with(b"\x89PNG"), "{shot} is a PNG screenshot");
    }

    // What the page showed is what the API holds: one critical temperature alert, which
    // the supervisor acknowledged from the page.
    let alerts = plant
        .query
        .get_json(
            &format!("/api/v1/alerts?machine_id={machine}&state=all"),
            &plant.operator,
        )
        .await;
    let alerts = alerts["alerts"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["metric"], "temperature");
    assert_eq!(alerts[0]["severity"], "critical");
    assert_eq!(alerts[0]["acknowledged_by"], supervisor.id.to_string());
}

/// As the bridge does at a Sparkplug rebirth, once the browser has the fleet page open (it
/// says so with the file `signal`): the machine recorded online and the change announced,
/// which the page must show without a reload (it says so with `fleet-online-seen`).
async fn born_again_when_the_fleet_is_open(
    pg: platform::postgres::PgPool,
    redis: platform::redis::RedisClient,
    machine: uuid::Uuid,
    signal: std::path::PathBuf,
) {
    while !signal.exists() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let born = storage::presence::Presence {
        online: true,
        since: chrono::Utc::now(),
    };
    let mut conn = platform::postgres::connection(&pg)
        .await
        .expect("test connection");
    let changed = storage::presence::record(&mut conn, machine, born)
        .await
        .expect("presence recorded");
    assert!(changed, "online after offline is a change");
    let event = storage::presence::PresenceEvent {
        machine_id: machine,
        // Where `create_machine` registers it.
        factory_id: "A".to_owned(),
        location: "Hall 1".to_owned(),
        online: born.online,
        since: born.since,
    };
    // Announced until the page has shown it: the fleet page's stream may still be connecting
    // when the first announcement goes out (a repeat changes nothing on the page).
    let seen = signal.with_file_name("fleet-online-seen");
    while !seen.exists() {
        storage::presence::announce(&redis, &event).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_dashboard_is_served_from_memory_with_revalidation_and_a_strict_policy() {
    let ctx = plantline_e2e::TestContext::new().await;
    let query = ctx.spawn(platform::ServiceName::QueryApi).await;
    let page = query.get("/").await;
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("default-src 'self'"), "{policy}");
    assert!(page.text().await.unwrap().contains("/ui/app.js"));

    let script = query.get("/ui/vendor/uPlot.iife.min.js").await;
    assert_eq!(script.status(), 200);
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let etag = script.headers()["etag"].to_str().unwrap().to_owned();
    let again = query
        .request(reqwest::Method::GET, "/ui/vendor/uPlot.iife.min.js")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304, "an unchanged file is not sent again");

    let docs = query.get("/docs").await;
    assert_eq!(docs.status(), 200);
    assert!(
        docs.text()
            .await
            .unwrap()
            .contains("/ui/vendor/swagger-ui-bundle.js")
    );

    for outside in ["/ui/../Cargo.toml", "/ui/%2e%2e/Cargo.toml", "/ui/nope.js"] {
        assert_eq!(query.get(outside).await.status(), 404, "{outside}");
    }
}
