//! Scenario 6: InfluxDB answers, but slowly.

use crate::support::{Route, Stack, Summary, within};
use domain::MachineStatus;
use plantline_e2e::backing::Kind;
use plantline_e2e::load::{self, Feeder};
use std::time::{Duration, Instant};

/// The ingest request deadline the scenario configures (`influx.timeout_ms`).
const DEADLINE: Duration = Duration::from_secs(2);
/// What the proxy holds each answer for: longer than the deadline.
const SLOWNESS: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread")]
async fn s6_slow_influxdb_is_bounded_by_the_request_deadline() {
    let stack = Stack::start(
        Kind::Influx,
        Route::Slow,
        &[("PLANTLINE_INFLUX__TIMEOUT_MS", "2000")],
    )
    .await;
    let mut summary = Summary::new(
        6,
        "slow InfluxDB (a latency proxy holding every answer 3 s)",
    );
    let proxy = stack.proxy.as_ref().expect("latency proxy");
    let machine = stack.ctx.create_machine(MachineStatus::Active).await;
    let mut feeder = Feeder::new(stack.gateway_client(), machine);
    // The token first, so every timed request is an ingest only.
    let token = feeder.token().await.expect("gateway token");
    let mut fast = Vec::new();
    for _ in 0..10 {
        fast.push(feeder.send(5, None).await.1);
    }

    proxy.set_delay(SLOWNESS);
    proxy.take_most_open();
    // 10 requests a second for 10 s, each on its own, as independent gateways would send.
    let mut flight = tokio::task::JoinSet::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let ingest_url = format!("{}/api/v1/data/ingest", stack.front.url);
    let client = reqwest::Client::new();
    for _ in 0..100 {
        ticker.tick().await;
        let samples = feeder.take(5);
        let request = client
            .post(&ingest_url)
            .bearer_auth(&token)
            .json(&load::batch_body(&machine, &samples));
        flight.spawn(async move {
            let started = Instant::now();
            let status = request.send().await.map_or(0, |r| r.status().as_u16());
            (status, started.elapsed(), samples)
        });
    }
    let mut slow = Vec::new();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    while let Some(Ok((status, took, samples))) = flight.join_next().await {
        *statuses.entry(status).or_default() += 1;
        if status == 201 {
            feeder.acked.extend(samples);
        }
        slow.push(took);
    }
    let most_open = proxy.take_most_open();
    proxy.set_delay(Duration::ZERO);
    let p = |times: &[Duration], q: f64| {
        let mut sorted = times.to_vec();
        sorted.sort_unstable();
        sorted[((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1)]
    };
    let (p50, p99) = (p(&slow, 0.5), p(&slow, 0.99));
    summary.note(format!(
        "fast InfluxDB: p50 {:.0} ms; slow: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (deadline {} ms)",
        p(&fast, 0.5).as_secs_f64() * 1000.0,
        p50.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0,
        p(&slow, 1.0).as_secs_f64() * 1000.0,
        DEADLINE.as_millis()
    ));
    let answers: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
    summary.check(
        statuses.keys().all(|s| *s == 201 || *s == 503),
        format!(
            "every slow request answered 201 or 503: {}",
            answers.join(", ")
        ),
    );
    summary.check(
        p99 <= DEADLINE + Duration::from_secs(1),
        format!(
            "p99 {:.0} ms is bounded by the {} ms deadline (+1 s allowance)",
            p99.as_secs_f64() * 1000.0,
            DEADLINE.as_millis()
        ),
    );
    // Work for abandoned writes must end with the requests: the connections to InfluxDB of
    // requests that gave up are closed, not left waiting.
    // 10 requests/s each holding a connection for at most the deadline need about 20; writes
    // that outlived their request (3 attempts of 3 s) would need about 90.
    summary.check(
        most_open <= 30,
        format!(
            "in-flight writes stay bounded by rate × deadline: at most {most_open} connections to InfluxDB at once (bound 30)"
        ),
    );
    let drained = within(Duration::from_secs(5), || async {
        proxy.open_connections() <= 4
    })
    .await;
    summary.check(
        drained,
        format!(
            "abandoned writes do not pile up: {} connections to InfluxDB open within 5 s of the load",
            proxy.open_connections()
        ),
    );
    let mut recovered = Vec::new();
    for _ in 0..5 {
        let (status, took) = feeder.send(5, None).await;
        if status == 201 {
            recovered.push(took);
        }
    }
    summary.check(
        recovered.len() == 5,
        "once InfluxDB is fast again, ingest answers 201 at once",
    );
    let result = load::reconcile(
        &stack.ctx.influx(),
        &machine,
        &feeder.acked,
        Duration::from_secs(30),
    )
    .await;
    // A write answered 503 at the deadline may still land when InfluxDB gets to it: no loss
    // is the promise here, not equality.
    summary.reconciled("HTTP", &result, false);
    summary.finish();
}
