//! The live stream (SSE) from query-api: tickets, readings and alerts as they are stored,
//! filters, resumption and refusal.

use domain::MachineStatus;
use futures_util::StreamExt;
use plantline_e2e::plant::Plant;
use reqwest::Method;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

type Rig = Plant;

async fn rig() -> Rig {
    Plant::start().await
}

/// One server-sent event and when it arrived.
#[derive(Debug)]
struct Event {
    id: Option<String>,
    kind: String,
    data: Value,
    at: Instant,
}

trait StreamCalls {
    async fn ticket(&self) -> String;
    async fn open(&self, query: &str, last_event_id: Option<&str>) -> reqwest::Response;
    async fn post(&self, machine: &uuid::Uuid, temperature: f64) -> Instant;
}

impl StreamCalls for Rig {
    async fn ticket(&self) -> String {
        let response = self
            .query
            .request(Method::POST, "/api/v1/stream/ticket")
            .bearer_auth(&self.operator)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["ticket"].as_str().unwrap().to_owned()
    }

    async fn open(&self, query: &str, last_event_id: Option<&str>) -> reqwest::Response {
        let mut request = self
            .query
            .http
            .get(format!("{}/api/v1/stream?{query}", self.query.address))
            .timeout(Duration::from_secs(120));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        request.send().await.unwrap()
    }

    async fn post(&self, machine: &uuid::Uuid, temperature: f64) -> Instant {
        self.post_temperature(machine, temperature, 0).await
    }
}

/// Parses the SSE body into events on a channel, as they arrive.
fn events(response: reqwest::Response) -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        kind = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = v.to_owned();
                    }
                }
                if kind.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data).unwrap_or(Value::Null);
                if tx
                    .send(Event {
                        id,
                        kind,
                        data,
                        at: Instant::now(),
                    })
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    rx
}

/// Posts readings until one shows up on the stream (ingest-api publishes once it has seen a
/// live audience; it checks every second); returns the event and when its reading was posted.
async fn first_reading_seen(
    rig: &Rig,
    rx: &mut mpsc::UnboundedReceiver<Event>,
    machine: &uuid::Uuid,
    also: Option<&uuid::Uuid>,
) -> (Event, Instant) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut value = 60.0;
    loop {
        assert!(Instant::now() < deadline, "no reading reached the stream");
        value += 0.5;
        if let Some(other) = also {
            rig.post(other, 61.0).await;
        }
        let sent = rig.post(machine, value).await;
        if let Some(event) = next_matching(rx, "reading", Duration::from_millis(1500), |d| {
            d["readings"][0]["temperature"] == value
        })
        .await
        {
            return (event, sent);
        }
    }
}

/// Waits for the first event of `kind` matching `check`.
async fn next_matching(
    rx: &mut mpsc::UnboundedReceiver<Event>,
    kind: &str,
    within: Duration,
    check: impl Fn(&Value) -> bool,
) -> Option<Event> {
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if event.kind == kind && check(&event.data) {
            return Some(event);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn a_posted_reading_and_an_alert_reach_the_stream_within_a_second() {
    let rig = rig().await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    let other = rig.ctx.create_machine(MachineStatus::Active).await;
    let ticket = rig.ticket().await;
    let response = rig
        .open(&format!("ticket={ticket}&machine_id={machine}"), None)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut rx = events(response);

    let (event, sent) = first_reading_seen(&rig, &mut rx, &machine, Some(&other)).await;
    assert!(
        event.at.duration_since(sent) < Duration::from_secs(1),
        "a reading took {:?}",
        event.at.duration_since(sent)
    );
    assert_eq!(event.data["machine_id"], machine.to_string());
    assert!(event.id.is_some());

    let sent = rig.post(&machine, 95.0).await;
    let alert = next_matching(&mut rx, "alert", Duration::from_secs(2), |d| {
        d["event"] == "opened"
    })
    .await
    .expect("the alert on the stream");
    assert!(alert.at.duration_since(sent) < Duration::from_secs(1));
    assert_eq!(alert.data["alert"]["machine_id"], machine.to_string());
    assert_eq!(alert.data["alert"]["severity"], "critical");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_without_a_valid_ticket_is_refused_and_a_ticket_opens_one_stream_only() {
    let rig = rig().await;
    assert_eq!(rig.open("", None).await.status(), 401);
    assert_eq!(rig.open("ticket=forged", None).await.status(), 401);
    let anonymous = rig
        .query
        .request(Method::POST, "/api/v1/stream/ticket")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // The long-lived token itself is no ticket.
    assert_eq!(
        rig.open(&format!("ticket={}", rig.operator), None)
            .await
            .status(),
        401
    );
    let ticket = rig.ticket().await;
    let first = rig.open(&format!("ticket={ticket}"), None).await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        rig.open(&format!("ticket={ticket}"), None).await.status(),
        401
    );
    let bad = rig
        .open(
            &format!("ticket={}&machine_id=m-1", rig.ticket().await),
            None,
        )
        .await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reconnect_with_last_event_id_gets_what_it_missed() {
    let rig = rig().await;
    let machine = rig.ctx.create_machine(MachineStatus::Active).await;
    let ticket = rig.ticket().await;
    let mut rx = events(
        rig.open(&format!("ticket={ticket}&machine_id={machine}"), None)
            .await,
    );
    let (first, _) = first_reading_seen(&rig, &mut rx, &machine, None).await;
    // Another dashboard keeps watching (readings are only relayed while someone does).
    let _fleet = rig
        .open(&format!("ticket={}", rig.ticket().await), None)
        .await;
    drop(rx);
    // Missed while disconnected.
    rig.post(&machine, 42.25).await;
    rig.post(&machine, 43.25).await;
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let missed = rig
                .query
                .get_json(
                    &format!("/api/v1/data/machine/{machine}/latest"),
                    &rig.operator,
                )
                .await;
            if missed["latest"]["temperature"]["value"] == 43.25 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    let ticket = rig.ticket().await;
    let mut rx = events(
        rig.open(
            &format!("ticket={ticket}&machine_id={machine}"),
            first.id.as_deref(),
        )
        .await,
    );
    let mut replayed = Vec::new();
    while let Some(event) =
        next_matching(&mut rx, "reading", Duration::from_secs(2), |_| true).await
    {
        replayed.push(event.data["readings"][0]["temperature"].as_f64().unwrap());
        if replayed.len() == 2 {
            break;
        }
    }
    assert_eq!(replayed, [42.25, 43.25]);
}
