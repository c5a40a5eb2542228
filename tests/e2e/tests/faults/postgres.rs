//! Scenario 4: PostgreSQL goes away.

use crate::support::{Route, Service, Stack, Summary, outage, tally, within};
use domain::MachineStatus;
use plantline_e2e::backing::Kind;
use plantline_e2e::load::Feeder;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn s4_postgres_stopped() {
    let stack = Stack::start(Kind::Postgres, Route::Direct, &[]).await;
    let mut summary = Summary::new(4, "PostgreSQL stopped");
    let machine = stack.ctx.create_machine(MachineStatus::Active).await;
    let (_, manager) = stack.login(&stack.manager).await;
    let manager = manager.expect("manager token");
    let register = async || {
        let name = format!("Fault press {}", uuid::Uuid::new_v4().simple());
        stack
            .call(
                Method::POST,
                "/api/v1/machines",
                &manager,
                Some(json!({"name": name, "location": "Hall 7", "sensor_type": "multi"})),
            )
            .await
    };
    let mut feeder = Feeder::new(stack.gateway_client(), machine);
    // The first batch puts the machine in the registry cache (Redis).
    let warm = feeder.send(5, None).await.0;
    let (login_before, _) = stack.login(&stack.operator).await;
    summary.check(
        warm == 201 && login_before == StatusCode::OK && register().await == StatusCode::CREATED,
        "before the fault: ingest, login and a registry write work",
    );

    stack.backing.stop().await;
    let down_since = Instant::now();
    let (mut ingests, mut logins, mut writes) = (Vec::new(), Vec::new(), Vec::new());
    // A reading above the threshold: stored, but its alert cannot be persisted.
    let breach = feeder.send(1, Some(95.0)).await.0;
    while down_since.elapsed() < outage() {
        ingests.push(feeder.send(5, None).await.0);
        logins.push(stack.login(&stack.operator).await.0);
        writes.push(register().await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stack.backing.resume().await;
    summary.check(
        breach == 201 && ingests.iter().all(|s| *s == 201) && !ingests.is_empty(),
        format!(
            "while down: ingest for a cached machine answered 201 to {} of {} batches (and to the over-threshold one: {breach})",
            ingests.iter().filter(|s| **s == 201).count(),
            ingests.len()
        ),
    );
    summary.check(
        logins.iter().all(|s| *s == StatusCode::SERVICE_UNAVAILABLE),
        format!(
            "while down: logins answered {}",
            tally(logins.iter().map(StatusCode::as_u16))
        ),
    );
    summary.check(
        writes.iter().all(|s| *s == StatusCode::SERVICE_UNAVAILABLE),
        format!(
            "while down: registry writes answered {}",
            tally(writes.iter().map(StatusCode::as_u16))
        ),
    );
    let persist_errors = stack
        .process(Service::Ingest)
        .logged("ERROR", "persist failed after 3 attempts");
    summary.check(
        persist_errors > 0,
        format!("ingest-api logged ERROR \"persist failed after 3 attempts\" ({persist_errors}×)"),
    );

    // Recovery needs nobody: the pools reconnect on their own.
    let healed = within(Duration::from_secs(30), async || {
        stack.login(&stack.operator).await.0 == StatusCode::OK
            && register().await == StatusCode::CREATED
    })
    .await;
    summary.check(
        healed,
        "after PostgreSQL returns: login and registry writes work again",
    );
    let (_, operator) = stack.login(&stack.operator).await;
    let operator = operator.unwrap_or_default();
    let alerts_url = format!(
        "{}/api/v1/alerts?machine_id={machine}&state=open",
        stack.front.url
    );
    let alerting = within(Duration::from_secs(30), async || {
        feeder.send(1, Some(96.0)).await;
        let Ok(answer) = crate::support::http()
            .get(&alerts_url)
            .bearer_auth(&operator)
            .send()
            .await
        else {
            return false;
        };
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        body["alerts"]
            .as_array()
            .is_some_and(|alerts| !alerts.is_empty())
    })
    .await;
    summary.check(
        alerting,
        "alerts open again for readings over the threshold",
    );
    stack
        .check_stored(&mut summary, "HTTP", &machine, &feeder.acked, true)
        .await;
    summary.finish();
}

/// `registry_stale_served_age_seconds` of a service.
async fn stale_age(service: &str) -> u64 {
    crate::support::metric(service, "registry_stale_served_age_seconds", "").await
}

/// The registry cache's TTL in this scenario: the outage outlasts it many times over.
const CACHE_TTL_SECS: &str = "2";

#[tokio::test(flavor = "multi_thread")]
async fn s9_postgres_down_longer_than_the_registry_cache() {
    let stack = Stack::start(
        Kind::Postgres,
        Route::Direct,
        &[("PLANTLINE_REGISTRY__CACHE_TTL_SECS", CACHE_TTL_SECS)],
    )
    .await;
    let mut summary = Summary::new(
        9,
        "PostgreSQL down far longer than the registry cache's TTL (2 s)",
    );
    let machine = stack.ctx.create_machine(MachineStatus::Active).await;
    let mut feeder = Feeder::new(stack.gateway_client(), machine);
    let mut device = stack.device().await;
    let warm = feeder.send(5, None).await.0;
    device.publish(5).await;
    let influx = stack.ctx.influx();
    let flowing = device.all_stored(&influx, Duration::from_secs(20)).await;
    summary.check(
        warm == 201 && flowing,
        "before the fault: both paths store (each machine seen once)",
    );

    stack.backing.stop().await;
    let down_since = Instant::now();
    let (mut ingests, mut tokens) = (Vec::new(), Vec::new());
    while down_since.elapsed() < outage() {
        ingests.push(feeder.send(5, None).await.0);
        device.publish(2).await;
        tokens.push(stack.gateway_client().token().await.is_ok());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ingest = stack.process(Service::Ingest).address.clone();
    let age = stale_age(&ingest).await;
    stack.backing.resume().await;
    summary.note(format!(
        "PostgreSQL down {} s; the oldest entry served from memory was {age} s old",
        outage().as_secs()
    ));
    summary.check(
        !ingests.is_empty() && ingests.iter().all(|s| *s == 201),
        format!("HTTP ingest went on: {}", tally(ingests.iter().copied())),
    );
    summary.check(
        tokens.iter().all(|ok| *ok),
        format!(
            "the gateway got a new token each time: {} of {}",
            tokens.iter().filter(|ok| **ok).count(),
            tokens.len()
        ),
    );
    summary.check(
        age >= CACHE_TTL_SECS.parse::<u64>().unwrap_or_default(),
        format!("ingest-api reported the stale entry's age: {age} s"),
    );
    let current = within(Duration::from_secs(30), async || {
        feeder.send(1, None).await;
        stale_age(&ingest).await == 0
    })
    .await;
    summary.check(current, "once PostgreSQL is back, no entry is served stale");
    stack
        .check_both_stored(&mut summary, (&machine, &feeder.acked), &device)
        .await;
    summary.finish();
}
