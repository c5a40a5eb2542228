//! Scenario 12: SIGTERM to every service at once under load, as a rolling update or a node
//! drain does, with requests in flight and the bridge's spool full.

use crate::backlog::SMALL_SPOOL;
use crate::support::{Route, Service, Stack, Summary, tally, within};
use domain::MachineStatus;
use plantline_e2e::backing::Kind;
use plantline_e2e::load::{self, Feeder};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What the promise gives each process: Kubernetes' default grace is 30 s.
const EXIT_WITHIN: Duration = Duration::from_secs(25);

#[tokio::test(flavor = "multi_thread")]
async fn s12_sigterm_to_every_service_under_load() {
    // The production budget (tests elsewhere stop in 5 s); logs at info show the drain.
    let mut env = SMALL_SPOOL.to_vec();
    env.extend([
        ("PLANTLINE_HTTP__SHUTDOWN_TIMEOUT_SECS", "20"),
        ("PLANTLINE_LOG__LEVEL", "info"),
    ]);
    let mut stack = Stack::start(Kind::Influx, Route::Slow, &env).await;
    let mut summary = Summary::new(12, "SIGTERM to every service under load");
    let influx = stack.ctx.influx();
    let machine = stack.ctx.create_machine(MachineStatus::Active).await;
    let stop = CancellationToken::new();
    let http = tokio::spawn(load::http_gateway(
        stack.gateway_client(),
        machine,
        Duration::from_millis(100),
        5,
        stop.clone(),
    ));
    let mut device = stack.device().await;
    device.publish(10).await;
    let flowing = device.all_stored(&influx, Duration::from_secs(20)).await
        && within(Duration::from_secs(20), || async {
            !load::stored(&influx, &machine).await.is_empty()
        })
        .await;
    summary.check(flowing, "both paths store before the stop");

    // ingest-api's InfluxDB answers after 2 s, so requests are in flight at any moment; the
    // bridge's cannot be reached at all, so a burst fills its spool (128 KiB) for good and
    // paho's callback waits for room, holding paho's lock, when the signal comes.
    stack.kill(Service::Bridge);
    let cut = format!("http://127.0.0.1:{}", plantline_e2e::closed_port());
    stack.launch_with(Service::Bridge, &[("PLANTLINE_INFLUX__URL", cut)]);
    let bridge = stack.process(Service::Bridge).address.clone();
    stack
        .process(Service::Bridge)
        .until_ready(Duration::from_secs(30))
        .await;
    stack
        .proxy
        .as_ref()
        .expect("latency proxy")
        .set_delay(Duration::from_secs(2));
    device.publish(500).await;
    let full = within(Duration::from_secs(30), || async {
        crate::support::metric(&bridge, "bridge_spool_full", "").await == 1
    })
    .await;
    summary.check(
        full,
        "the bridge's spool is full (paho's callback waits for room)",
    );

    let mut feeders = Vec::new();
    for _ in 0..5 {
        let other = stack.ctx.create_machine(MachineStatus::Active).await;
        let mut feeder = Feeder::new(stack.gateway_client(), other);
        let _ = feeder.token().await;
        feeders.push((other, feeder));
    }
    let in_flight: Vec<_> = feeders
        .into_iter()
        .map(|(other, mut feeder)| {
            tokio::spawn(async move {
                let (status, _) = feeder.send(5, None).await;
                (status, Instant::now(), other, feeder.acked)
            })
        })
        .collect();
    // Long enough for the requests to reach ingest-api, not for InfluxDB's 2 s to pass.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let stopped_at = Instant::now();
    let exits = stack.terminate_all(Duration::from_secs(30)).await;
    for (service, exit) in &exits {
        summary.check(
            exit.is_some_and(|(took, clean)| clean && took <= EXIT_WITHIN),
            format!(
                "{service:?} exited cleanly within {} s: {}",
                EXIT_WITHIN.as_secs(),
                match exit {
                    Some((took, clean)) => format!(
                        "{:.1} s, {}",
                        took.as_secs_f64(),
                        if *clean { "status 0" } else { "failure status" }
                    ),
                    None => "still running at 30 s".to_owned(),
                }
            ),
        );
    }
    let mut answered = Vec::new();
    let mut acked_in_flight = Vec::new();
    for request in in_flight {
        if let Ok((status, finished, other, acked)) = request.await {
            answered.push((status, finished > stopped_at));
            acked_in_flight.push((other, acked));
        }
    }
    summary.check(
        answered.len() == 5 && answered.iter().all(|(s, after)| *s == 201 && *after),
        format!(
            "5 requests in flight at the SIGTERM were answered after it: {}",
            tally(answered.iter().map(|(s, _)| *s))
        ),
    );

    stack
        .proxy
        .as_ref()
        .expect("latency proxy")
        .set_delay(Duration::ZERO);
    stack.launch_all().await;
    // Each log holds the run that was stopped, before the restart's lines.
    let overran: Vec<String> = Service::ALL
        .into_iter()
        .filter(|service| {
            // The drain's and the bridge's goodbye's words for running out of time.
            let process = stack.process(*service);
            process.logged("WARN", "did not finish in time")
                + process.logged("WARN", "did not finish;")
                > 0
        })
        .map(|service| format!("{service:?}"))
        .collect();
    summary.check(
        overran.is_empty(),
        format!("every drain finished its work inside the budget, none cut short: {overran:?}"),
    );
    // The gateway retried through the stop; a few more batches after the restart.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    let ledger = tokio::time::timeout(Duration::from_secs(90), http)
        .await
        .expect("the gateway delivers its backlog within 90 s")
        .expect("gateway task");
    summary.note(format!(
        "gateway answers through the stop: {}",
        tally(
            ledger
                .statuses
                .iter()
                .flat_map(|(status, count)| std::iter::repeat_n(*status, *count as usize))
        )
    ));
    let drained = device.all_stored(&influx, Duration::from_secs(90)).await;
    summary.check(
        drained,
        "after the restart the bridge replays its spool and the broker's backlog",
    );
    stack
        .check_stored(&mut summary, "HTTP", &machine, &ledger.acked, true)
        .await;
    let mut lost_in_flight = 0;
    for (other, acked) in &acked_in_flight {
        let result = load::reconcile(&influx, other, acked, Duration::from_secs(30)).await;
        lost_in_flight += result.lost + usize::from(!result.is_exact());
    }
    summary.check(
        lost_in_flight == 0,
        format!("the readings of the requests in flight are all stored ({lost_in_flight} missing)"),
    );
    stack
        .check_stored(&mut summary, "MQTT", &device.machine, &device.acked, true)
        .await;
    summary.finish();
}
