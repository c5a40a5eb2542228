//! Scenario 3: Redis goes away.

use crate::support::{Route, Service, Stack, Summary, http, outage, within};
use domain::MachineStatus;
use plantline_e2e::backing::Kind;
use plantline_e2e::load::Feeder;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};

/// What one round of a dashboard user's and a gateway's calls answered.
#[derive(Debug)]
struct Round {
    ingest: u16,
    history: StatusCode,
    login: StatusCode,
    dashboard: StatusCode,
    took: Duration,
}

impl Round {
    fn all_working(&self) -> bool {
        self.ingest == 201
            && self.history == StatusCode::OK
            && self.login == StatusCode::OK
            && self.dashboard == StatusCode::OK
    }
}

/// One batch in, the last ten minutes of history out, a login, the dashboard page.
async fn round(stack: &Stack, feeder: &mut Feeder, machine: &uuid::Uuid, token: &str) -> Round {
    let started = Instant::now();
    let (ingest, _) = feeder.send(5, None).await;
    let since = (chrono::Utc::now() - chrono::Duration::minutes(10))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let history = stack
        .call(
            Method::GET,
            &format!("/api/v1/data/machine/{machine}?start_time={since}&limit=5"),
            token,
            None,
        )
        .await;
    let (login, _) = stack.login(&stack.operator).await;
    let dashboard = match http().get(format!("{}/", stack.front.url)).send().await {
        Ok(answer) => answer.status(),
        Err(_) => StatusCode::BAD_GATEWAY,
    };
    Round {
        ingest,
        history,
        login,
        dashboard,
        took: started.elapsed(),
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_redis_stopped() {
    let stack = Stack::start(Kind::Redis, Route::Direct, &[]).await;
    let mut summary = Summary::new(3, "Redis stopped");
    let machine = stack.ctx.create_machine(MachineStatus::Active).await;
    let (_, operator) = stack.login(&stack.operator).await;
    let (_, manager) = stack.login(&stack.manager).await;
    let (operator, manager) = (
        operator.expect("operator token"),
        manager.expect("manager token"),
    );
    let change =
        json!({"setting_name": "inactivity_timeout", "setting_value": 3600 + rand_seconds()});
    let manage = || {
        stack.call(
            Method::POST,
            "/api/v1/config/update",
            &manager,
            Some(change.clone()),
        )
    };
    let mut feeder = Feeder::new(stack.gateway_client(), machine);
    let mut before = Vec::new();
    for _ in 0..3 {
        before.push(round(&stack, &mut feeder, &machine, &operator).await);
    }
    summary.check(
        before.iter().all(Round::all_working) && manage().await == StatusCode::OK,
        "before the fault: ingest, history, login, dashboard and a management call work",
    );

    stack.backing.stop().await;
    let down_since = Instant::now();
    let mut during = Vec::new();
    let mut management = Vec::new();
    while down_since.elapsed() < outage() {
        during.push(round(&stack, &mut feeder, &machine, &operator).await);
        // Past the revocation mirror's staleness bound (3 s), administration fails closed.
        if down_since.elapsed() > Duration::from_secs(5) {
            management.push(manage().await);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stack.backing.resume().await;
    let working = during.iter().filter(|r| r.all_working()).count();
    summary.check(
        working == during.len() && !during.is_empty(),
        format!(
            "while down: {working} of {} rounds of ingest + history + login + dashboard all worked",
            during.len()
        ),
    );
    if let Some(broken) = during.iter().find(|r| !r.all_working()) {
        summary.note(format!("first broken round: {broken:?}"));
    }
    summary.note(format!(
        "median round {:.0} ms before, {:.0} ms while Redis was down",
        median(before.iter().map(|r| r.took).collect()).as_secs_f64() * 1000.0,
        median(during.iter().map(|r| r.took).collect()).as_secs_f64() * 1000.0
    ));
    let closed = management
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    summary.check(
        closed == management.len() && !management.is_empty(),
        format!(
            "management calls fail closed: {closed} of {} answered 503",
            management.len()
        ),
    );
    let warned: Vec<String> = [Service::Auth, Service::Ingest, Service::Query]
        .into_iter()
        .map(|s| {
            format!(
                "{s:?} {}",
                stack.process(s).logged("WARN", "Redis") + stack.process(s).logged("WARN", "redis")
            )
        })
        .collect();
    summary.note(format!("WARN lines naming Redis: {}", warned.join(", ")));
    summary.check(
        stack.process(Service::Ingest).logged("WARN", "retrying") > 0,
        "ingest-api logged WARN with its self-healing retry",
    );

    // Back to normal by itself: nothing is restarted.
    let redis = stack.ctx.redis();
    let latest_key = storage::latest::latest_key(&redis, &machine);
    let mut last = String::new();
    let healed = within(Duration::from_secs(30), async || {
        let round = round(&stack, &mut feeder, &machine, &operator).await;
        let cached: bool = redis
            .query(deadpool_redis::redis::cmd("EXISTS").arg(&latest_key))
            .await
            .unwrap_or(false);
        let managed = manage().await;
        last = format!("{round:?}, latest cached: {cached}, management: {managed}");
        round.all_working() && cached && managed == StatusCode::OK
    })
    .await;
    if !healed {
        summary.note(format!("last try after Redis returned: {last}"));
    }
    summary.check(
        healed,
        "after Redis returns: latest values cached again and management calls work, without a restart",
    );
    let streaming = within(Duration::from_secs(30), async || {
        live_stream_delivers(&stack, &mut feeder, &machine, &operator).await
    })
    .await;
    summary.check(
        streaming,
        "after Redis returns: a new live stream gets a reading posted after it opened",
    );
    stack
        .check_stored(&mut summary, "HTTP", &machine, &feeder.acked, true)
        .await;
    summary.finish();
}

/// Opens a live stream of `machine` through nginx (ticket first, as the dashboard does),
/// posts one reading and says whether the stream carried it within 5 s. Needs Redis for the
/// ticket, query-api's subscription and ingest-api's audience poll: all self-healed.
async fn live_stream_delivers(
    stack: &Stack,
    feeder: &mut Feeder,
    machine: &uuid::Uuid,
    token: &str,
) -> bool {
    use futures_util::StreamExt;
    let Ok(ticket) = http()
        .post(format!("{}/api/v1/stream/ticket", stack.front.url))
        .bearer_auth(token)
        .send()
        .await
    else {
        return false;
    };
    let ticket: serde_json::Value = ticket.json().await.unwrap_or_default();
    let Some(ticket) = ticket["ticket"].as_str() else {
        return false;
    };
    // The stream answers once readings stored from then on will reach it.
    let Ok(stream) = http()
        .get(format!(
            "{}/api/v1/stream?ticket={ticket}&machine_id={machine}",
            stack.front.url
        ))
        .send()
        .await
    else {
        return false;
    };
    if !stream.status().is_success() {
        return false;
    }
    // Outside the load's 55.00-69.99, below every threshold: only this reading carries it.
    if feeder.send(1, Some(70.55)).await.0 != 201 {
        return false;
    }
    let mut body = stream.bytes_stream();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, body.next()).await {
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if seen.contains("70.55") {
            return true;
        }
    }
    false
}

/// A setting value that differs between runs, so the update is a real change.
fn rand_seconds() -> i64 {
    (uuid::Uuid::new_v4().as_u128() % 1000) as i64
}
