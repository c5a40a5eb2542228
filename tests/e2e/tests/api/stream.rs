//! The live stream (SSE) from query-api: tickets, readings and alerts as they are stored,
//! filters, resumption and refusal.

use domain::MachineStatus;
use futures_util::StreamExt;
use plantline_e2e::plant::Plant;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

type Rig = Plant;

/// The machine id of the flood test's marker message.
const MARKER: &str = "00000000-0000-4000-8000-00000000beef";

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

/// Posts one reading right after the stream answered and expects it on the stream within a
/// second: a stream's answer means readings stored from then on reach it, even for the first
/// stream after a quiet spell (query-api holds that answer until the write paths noticed
/// the new audience). Returns the event and when its reading was posted.
async fn first_reading_seen(
    rig: &Rig,
    rx: &mut mpsc::UnboundedReceiver<Event>,
    machine: &uuid::Uuid,
    also: Option<&uuid::Uuid>,
) -> (Event, Instant) {
    let value = 60.5;
    if let Some(other) = also {
        rig.post(other, 61.0).await;
    }
    let sent = rig.post(machine, value).await;
    let event = next_matching(rx, "reading", Duration::from_secs(1), |d| {
        d["readings"][0]["temperature"] == value
    })
    .await
    .expect("the first reading posted after the stream answered arrives within a second");
    (event, sent)
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
    let bad_resume = rig
        .open(
            &format!("ticket={}&last_event_id=yesterday", rig.ticket().await),
            None,
        )
        .await;
    assert_eq!(bad_resume.status(), 400);
    let body: Value = bad_resume.json().await.unwrap();
    assert_eq!(body["errors"][0]["parameter"], "last_event_id");
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

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_does_not_grow_the_servers_memory() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let plant = rig().await;
    // query-api as its own process, so its memory is measured alone.
    let query = plantline_e2e::net::ServiceProcess::start("query-api", &plant.ctx.env);
    let ticket_url = format!("{}/api/v1/stream/ticket", query.address);
    let http = reqwest::Client::new();
    let ticket = || async {
        let answer = http
            .post(&ticket_url)
            .bearer_auth(&plant.operator)
            .send()
            .await
            .ok()?;
        let body: Value = answer.json().await.ok()?;
        body["ticket"].as_str().map(str::to_owned)
    };
    let slow_ticket =
        plantline_e2e::eventually(Duration::from_secs(20), "query-api up", ticket).await;
    // A raw socket that sends its request and then reads nothing for a while.
    let address = query.address.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    socket
        .write_all(
            format!("GET /api/v1/stream?ticket={slow_ticket} HTTP/1.1\r\nHost: x\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    // A second client keeps reading: once it has the marker, the server has handled it all.
    let watcher_ticket = ticket().await.expect("a second ticket");
    let watcher = http
        .get(format!(
            "{}/api/v1/stream?ticket={watcher_ticket}",
            query.address
        ))
        .send()
        .await
        .unwrap();
    let mut watched = events(watcher);
    let redis = plant.ctx.redis();
    let channel = redis.key(platform::redis_keys::LIVE_READINGS_CHANNEL);
    plantline_e2e::eventually(Duration::from_secs(10), "the hub subscribed", || async {
        (plant.ctx.readings_subscribers().await? > 0).then_some(())
    })
    .await;
    // 24 MiB of live readings for a client that reads none of them (in bursts Redis lets
    // through: it drops a subscriber more than 32 MiB behind), three times. The first rounds let
    // the allocator settle (glibc keeps freed arenas, so its size varies from run to run);
    // the third must cost little more: a server that queued events for the slow client
    // would grow by another 24 MiB.
    let reading =
        json!({"machine_id": uuid::Uuid::new_v4(), "factory_id": "A", "location": "Hall 1",
        "readings": [{"time_ms": 0, "temperature": 60.0, "padding": "x".repeat(1500)}]})
        .to_string();
    let mut flood = async || {
        for _ in 0..16 {
            let mut pipe = deadpool_redis::redis::pipe();
            for _ in 0..1024 {
                pipe.cmd("PUBLISH").arg(&channel).arg(&reading).ignore();
            }
            redis.query_pipeline::<()>(&pipe).await.unwrap();
        }
        // Once the reading client has the marker, the server has handled the whole flood.
        // A well-formed message (query-api skips any other shape), told apart by its id.
        let marker =
            json!({"machine_id": MARKER, "factory_id": "A", "location": "", "readings": []});
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                Instant::now() < deadline,
                "the reading client never got the marker"
            );
            redis
                .query::<()>(
                    deadpool_redis::redis::cmd("PUBLISH")
                        .arg(&channel)
                        .arg(marker.to_string()),
                )
                .await
                .unwrap();
            if next_matching(&mut watched, "reading", Duration::from_millis(500), |d| {
                d["machine_id"] == MARKER
            })
            .await
            .is_some()
            {
                break;
            }
        }
    };
    // Two rounds to settle: on a loaded machine one round's peak (how much waited in
    // buffers before the server caught up) can fall short of a later round's, and glibc may
    // hand some back in between: the larger of the two is what the allocator settled at.
    flood().await;
    let first = query.rss_kib();
    flood().await;
    let settled = first.max(query.rss_kib());
    flood().await;
    let grown_mib = query.rss_kib().saturating_sub(settled) as f64 / 1024.0;
    // A server that queued the events would grow by the flood's 24 MiB; between rounds
    // glibc's arenas alone moved RSS by up to 7 MiB either way (measured): half a flood.
    assert!(
        grown_mib < 12.0,
        "query-api grew by {grown_mib:.1} MiB for a second 24 MiB of events to a client that \
         reads none"
    );
    // When the slow client reads again, it learns it fell behind.
    let mut seen = String::new();
    let mut buffer = vec![0u8; 1 << 16];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains("event: reset") {
        assert!(Instant::now() < deadline, "no reset event");
        let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buffer))
            .await
            .expect("the stream answers")
            .unwrap();
        assert!(n > 0, "the stream closed");
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
        if seen.len() > 1 << 20 {
            seen.drain(..seen.len() - 1024);
        }
    }
}
