//! A third-party API fuzzer against the whole stack: schemathesis generates requests from the
//! committed OpenAPI document and sends them through nginx for a bounded time; any 5xx, or an
//! answer that does not match the documented schema, fails the test. It runs on this test's
//! own databases with its own manager, so it cannot lock out or demote anyone else.

use plantline_e2e::front::{Front, Upstreams};
use plantline_e2e::plant::Plant;
use plantline_e2e::workspace_root;
use std::process::Command;

/// Seconds of fuzzing (`PLANTLINE_FUZZ_API_SECS`, default 60).
fn budget_secs() -> u64 {
    std::env::var("PLANTLINE_FUZZ_API_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let python = std::env::var("PLANTLINE_TEST_PYTHON").expect(
        "PLANTLINE_TEST_PYTHON names the test venv's Python; run the tests through `make test`",
    );
    let schemathesis = std::path::Path::new(&python).with_file_name("schemathesis");
    let plant = Plant::start().await;
    let address = |port: u16| format!("127.0.0.1:{port}");
    let front = Front::start(Upstreams {
        auth: &address(plant.auth.port),
        ingest: &address(plant.ingest.port),
        query: &address(plant.query.port),
    })
    .await;
    let report = workspace_root().join("target/test-output/schemathesis");
    let _ = std::fs::remove_dir_all(&report);
    let run = tokio::task::spawn_blocking({
        let (url, manager) = (front.url.clone(), plant.manager.clone());
        let report = report.clone();
        move || {
            std::fs::create_dir_all(&report).expect("report folder");
            Command::new(schemathesis)
                // It keeps a folder of its own in the working directory.
                .current_dir(&report)
                .arg("run")
                .arg(workspace_root().join("proto-docs/openapi.json"))
                .args(["--url", &url])
                .args(["--header", &format!("Authorization: Bearer {manager}")])
                .args(["--checks", "not_a_server_error,response_schema_conformance"])
                // Logging out would end the run's own session; a stream never ends by itself.
                .args(["--exclude-path", "/api/v1/auth/logout"])
                .args(["--exclude-path", "/api/v1/stream"])
                .args(["--max-time", &budget_secs().to_string()])
                .args(["--request-timeout", "10"])
                // One worker: with two, CPython 3.11 sometimes fails inside schemathesis
                // compiling patterns in parallel threads ("AST constructor recursion depth
                // mismatch"), an error of the fuzzer's, not of the API.
                .args(["--workers", "1"])
                .args(["--seed", "20261124"])
                .args(["--generation-database", "none"])
                .args(["--generation-allow-x00", "true"])
                .args(["--report", "junit"])
                .args(["--report-dir", &report.display().to_string()])
                .args(["--no-color", "--warnings", "off"])
                .env("SCHEMATHESIS_HOOKS", "")
                .output()
                .expect("run schemathesis (`make test` installs it into .plantline/venv)")
        }
    })
    .await
    .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::create_dir_all(&report).ok();
    std::fs::write(report.join("output.txt"), &said).ok();
    let summary: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("generated") || l.contains("passed") || l.contains("failed"))
        .collect();
    println!("schemathesis: {}", summary.join(" | "));
    assert!(run.status.success(), "schemathesis found problems:\n{said}");
    assert!(
        said.contains("generated"),
        "schemathesis reported no generated cases:\n{said}"
    );
}
