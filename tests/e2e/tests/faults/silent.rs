//! Scenario 13: PostgreSQL and Redis accept connections and then say nothing (a hung
//! process, a firewall that drops instead of refusing): nothing may hang on them.

use crate::support::{Route, Stack, Summary, outage, tally};
use domain::MachineStatus;
use plantline_e2e::backing::Kind;
use plantline_e2e::load::Feeder;
use reqwest::Method;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The longest any answer may take: the request deadline (`http.request_deadline_ms`,
/// 10 s) and a second of slack.
const ANSWER_WITHIN: Duration = Duration::from_secs(11);
/// The ingest deadline the scenario sets (`influx.timeout_ms`), and the slack it allows.
const INGEST_DEADLINE: Duration = Duration::from_millis(4000);
/// The bookkeeping's own 500 ms floor, nginx and a busy machine.
const SLACK: Duration = Duration::from_millis(1500);

#[derive(Default)]
struct Seen {
    statuses: Vec<u16>,
    slowest: Duration,
}

#[tokio::test(flavor = "multi_thread")]
async fn s13_silent_postgres_and_redis_hang_nothing() {
    let mut stack = Stack::start_gating_redis(
        Kind::Postgres,
        Route::Gate,
        &[
            ("PLANTLINE_INFLUX__TIMEOUT_MS", "4000"),
            // A pool that waits long for a connection (a slow network): only our own
            // deadlines then stand between a silent PostgreSQL and a hung request.
            ("PLANTLINE_POSTGRES__CONNECT_TIMEOUT_MS", "30000"),
        ],
    )
    .await;
    let mut summary = Summary::new(
        13,
        "PostgreSQL and Redis accept connections and stay silent",
    );
    let machine = stack.ctx.create_machine(MachineStatus::Active).await;
    let mut feeder = Feeder::new(stack.gateway_client(), machine);
    let warm = feeder.send(5, None).await.0;
    let (_, operator) = stack.login(&stack.operator).await;
    let operator = operator.unwrap_or_default();
    summary.check(
        warm == 201 && !operator.is_empty(),
        "before the fault: ingest and login work",
    );

    for gate in [stack.gate.as_mut(), stack.redis_gate.as_mut()]
        .into_iter()
        .flatten()
    {
        gate.go_silent();
    }
    let since = Instant::now();
    let mut seen: BTreeMap<&str, Seen> = BTreeMap::new();
    let at = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (hour_ago, now) = (
        at(chrono::Utc::now() - chrono::Duration::hours(1)),
        at(chrono::Utc::now()),
    );
    let reads = [
        ("machines", "/api/v1/machines".to_owned()),
        ("latest", format!("/api/v1/data/machine/{machine}/latest")),
        (
            "history",
            format!(
                "/api/v1/data/machine/{machine}?start_time={hour_ago}&end_time={now}&interval=1m"
            ),
        ),
        ("alerts", "/api/v1/alerts".to_owned()),
    ];
    let client = || stack.gateway_client();
    while since.elapsed() < outage() {
        // One round: every kind of request at once, each timed on its own.
        let timed =
            async |name: &'static str, call: std::pin::Pin<Box<dyn Future<Output = u16> + '_>>| {
                let started = Instant::now();
                let status = call.await;
                (name, status, started.elapsed())
            };
        let mut round = vec![
            timed("ingest", Box::pin(async { feeder.send(5, None).await.0 })),
            timed(
                "gateway token",
                Box::pin(async {
                    match client().token().await {
                        Ok(_) => 200,
                        Err(err) => err
                            .split_whitespace()
                            .find_map(|w| w.parse().ok())
                            .unwrap_or(0),
                    }
                }),
            ),
            timed(
                "login",
                Box::pin(async { stack.login(&stack.operator).await.0.as_u16() }),
            ),
        ];
        for (name, path) in &reads {
            round.push(timed(
                name,
                Box::pin(async {
                    stack
                        .call(Method::GET, path, &operator, None)
                        .await
                        .as_u16()
                }),
            ));
        }
        for (name, status, took) in futures_util::future::join_all(round).await {
            let entry = seen.entry(name).or_default();
            entry.statuses.push(status);
            entry.slowest = entry.slowest.max(took);
        }
    }
    for (name, what) in &seen {
        summary.note(format!(
            "{name}: {}, slowest {} ms",
            tally(what.statuses.iter().copied()),
            what.slowest.as_millis()
        ));
    }
    let slowest = seen.values().map(|s| s.slowest).max().unwrap_or_default();
    summary.check(
        slowest <= ANSWER_WITHIN,
        format!(
            "every request answered within {} s (slowest {} ms)",
            ANSWER_WITHIN.as_secs(),
            slowest.as_millis()
        ),
    );
    let unanswered: usize = seen
        .values()
        .flat_map(|s| &s.statuses)
        .filter(|s| matches!(**s, 0 | 500 | 502 | 504))
        .count();
    summary.check(
        unanswered == 0,
        format!("no request went unanswered, timed out at nginx or failed with 500 ({unanswered})"),
    );
    let ingest_slowest = seen.get("ingest").map(|s| s.slowest).unwrap_or_default();
    summary.check(
        ingest_slowest <= INGEST_DEADLINE + SLACK,
        format!(
            "ingest answered within its {} ms deadline (+{} ms): slowest {} ms; latest values and alerts waited no longer",
            INGEST_DEADLINE.as_millis(),
            SLACK.as_millis(),
            ingest_slowest.as_millis()
        ),
    );
    let ingest = seen
        .get("ingest")
        .map(|s| s.statuses.clone())
        .unwrap_or_default();
    summary.check(
        !ingest.is_empty() && ingest.iter().all(|s| *s == 201),
        format!(
            "ingest for a known machine went on: {}",
            tally(ingest.iter().copied())
        ),
    );

    for gate in [stack.gate.as_mut(), stack.redis_gate.as_mut()]
        .into_iter()
        .flatten()
    {
        gate.open().await;
    }
    let healed = crate::support::within(Duration::from_secs(30), async || {
        stack.login(&stack.operator).await.0.is_success()
    })
    .await;
    summary.check(healed, "login works again once both answer");
    stack
        .check_stored(&mut summary, "HTTP", &machine, &feeder.acked, true)
        .await;
    summary.finish();
}
