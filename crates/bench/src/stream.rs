//! Stream fan-out: `CLIENTS` dashboards watch one machine's live stream through nginx while
//! readings for it arrive over HTTP at the simulator's default rate. Each reading is stamped
//! when it is sent; each client notes when it sees it. The baseline is the same load
//! watched by one client, in the same run.

use crate::query::{login, machines};
use crate::report::{Curve, Plot, Report, Row, cdf_ms, current_rss_kib, progress};
use crate::stats::Samples;
use crate::{Target, json_of};
use serde_json::{Value, json};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CLIENTS: usize = 200;
/// Streams each bench viewer opens: query-api's default `stream.max_per_user`.
const STREAMS_PER_VIEWER: usize = 10;

/// Operators made for the run (`bench-viewer-NN`, random passwords), deleted after it.
struct Viewers {
    ids: Vec<String>,
    tokens: Vec<String>,
}

impl Viewers {
    async fn create(
        target: &Target,
        http: &reqwest::Client,
        manager: &str,
        count: usize,
    ) -> Result<Self, String> {
        let users = format!("{}/api/v1/users", target.base_url);
        // Left by a run that stopped half-way: removed first.
        let listed = json_of(http.get(format!("{users}?limit=500")).bearer_auth(manager)).await?;
        let stale = listed["users"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|u| {
                u["username"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("bench-viewer-"))
            });
        for user in stale {
            let id = user["id"].as_str().unwrap_or_default();
            let _ = http
                .delete(format!("{users}/{id}"))
                .bearer_auth(manager)
                .send()
                .await;
        }
        let mut viewers = Self {
            ids: Vec::new(),
            tokens: Vec::new(),
        };
        for n in 0..count {
            let username = format!("bench-viewer-{n:02}");
            let password = format!("bench-{}", uuid::Uuid::new_v4().simple());
            let created =
                json_of(http.post(&users).bearer_auth(manager).json(
                    &json!({"username": username, "password": password, "role": "operator"}),
                ))
                .await?;
            let id = created["user"]["id"]
                .as_str()
                .ok_or_else(|| format!("creating {username}: {created}"))?;
            viewers.ids.push(id.to_owned());
            let login = json_of(
                http.post(format!("{}/api/v1/auth/login", target.base_url))
                    .json(&json!({"username": username, "password": password})),
            )
            .await?;
            let token = login["access_token"]
                .as_str()
                .ok_or_else(|| format!("{username} could not log in: {login}"))?;
            viewers.tokens.push(token.to_owned());
        }
        Ok(viewers)
    }

    /// Best effort: a viewer left behind is removed by the next run.
    async fn delete(self, target: &Target, http: &reqwest::Client, manager: &str) {
        for id in self.ids {
            let _ = http
                .delete(format!("{}/api/v1/users/{id}", target.base_url))
                .bearer_auth(manager)
                .send()
                .await;
        }
    }
}
/// The simulator's default rate (`make simulate`).
const RATE: f64 = 20.0;
const SECONDS: f64 = 15.0;

struct Round {
    /// Send-to-receive delay of every reading at every client.
    delays: Vec<Duration>,
    /// The fewest readings any client received.
    fewest: usize,
    sent: usize,
    /// query-api's resident memory with every client connected, after the load.
    rss_kib: Option<u64>,
}

pub async fn run(target: &Target, report: &mut Report) -> Result<(), String> {
    let http = reqwest::Client::new();
    let operator = login(target, &http, "OPERATOR_USER", "OPERATOR_PASSWORD").await?;
    let manager = login(target, &http, "MANAGEMENT_USER", "MANAGEMENT_PASSWORD").await?;
    let machine = machines(target, &http, &manager)
        .await?
        .into_iter()
        .next()
        .ok_or("no bench machine")?;
    let gateway = target.gateway_token().await?;
    let one = round(target, &http, &[operator], &gateway, &machine, 1).await?;
    // A person may hold `stream.max_per_user` (10) streams: the 200 dashboards are 20 people.
    let viewers = Viewers::create(
        target,
        &http,
        &manager,
        CLIENTS.div_ceil(STREAMS_PER_VIEWER),
    )
    .await?;
    let many = round(target, &http, &viewers.tokens, &gateway, &machine, CLIENTS).await;
    viewers.delete(target, &http, &manager).await;
    let many = many?;
    report.add_plot(Plot {
        file: "stream-delay.png",
        title: format!("Live stream delivery delay, {RATE} readings/s"),
        x_label: "delay from send to receipt, ms".to_owned(),
        y_label: "percent of deliveries".to_owned(),
        log_x: false,
        curves: vec![
            Curve {
                name: "1 client (baseline)".to_owned(),
                points: cdf_ms(&one.delays),
            },
            Curve {
                name: format!("{CLIENTS} clients"),
                points: cdf_ms(&many.delays),
            },
        ],
    });
    let (one_delays, many_delays) = (Samples::new(one.delays), Samples::new(many.delays));
    for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
        let (value, base) = (many_delays.quantile(q), one_delays.quantile(q));
        report.add(Row {
            figure: format!("stream fan-out {CLIENTS} clients, {label} delay"),
            value: format!("{:.1} ms", value.as_secs_f64() * 1e3),
            baseline: format!("1 client {:.1} ms", base.as_secs_f64() * 1e3),
            ratio: Some(value.as_secs_f64() / base.as_secs_f64().max(1e-6)),
            note: format!("ingest → Redis → query-api → nginx → client, {RATE} readings/s"),
        });
    }
    report.add(Row {
        figure: format!("stream fan-out {CLIENTS} clients, delivered"),
        value: format!("each ≥ {} of {}", many.fewest, many.sent),
        baseline: format!("1 client {} of {}", one.fewest, one.sent),
        ratio: Some(many.fewest as f64 / many.sent as f64),
        note: "1.00 = every reading reached every client".to_owned(),
    });
    if let Some(kib) = many.rss_kib {
        report.add(Row {
            figure: format!("query-api RSS with {CLIENTS} streams"),
            value: format!("{:.1} MiB", kib as f64 / 1024.0),
            baseline: format!(
                "1 stream {:.1} MiB",
                one.rss_kib.unwrap_or_default() as f64 / 1024.0
            ),
            ratio: Some(kib as f64 / 1024.0 / 64.0),
            note: "VmRSS under load; ratio against the 64 MiB budget".to_owned(),
        });
    }
    Ok(())
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or_default()
}

async fn open_stream(
    target: &Target,
    http: &reqwest::Client,
    operator: &str,
    machine: &str,
) -> Result<reqwest::Response, String> {
    let ticket = json_of(
        http.post(format!("{}/api/v1/stream/ticket", target.base_url))
            .bearer_auth(operator),
    )
    .await?;
    let ticket = ticket["ticket"].as_str().ok_or("no stream ticket")?;
    let response = http
        .get(format!("{}/api/v1/stream", target.base_url))
        .query(&[("ticket", ticket), ("machine_id", machine)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("stream answered {}", response.status()));
    }
    Ok(response)
}

/// Reads reading events until `expected` arrived or `deadline`; returns their delays.
async fn watch(
    mut response: reqwest::Response,
    expected: usize,
    deadline: Instant,
) -> Vec<Duration> {
    let mut delays = Vec::with_capacity(expected);
    let mut buffer = String::new();
    while delays.len() < expected {
        let chunk = match tokio::time::timeout_at(deadline.into(), response.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            _ => break,
        };
        let seen = now_ms();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if !frame.contains("event: reading") {
                continue;
            }
            let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let Ok(message) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            for reading in message["readings"].as_array().into_iter().flatten() {
                if let Some(sent) = reading["time_ms"].as_f64() {
                    delays.push(Duration::from_secs_f64((seen - sent).max(0.0) / 1e3));
                }
            }
        }
    }
    delays
}

/// Opens `clients` streams, [`STREAMS_PER_VIEWER`] per token of `people`.
async fn round(
    target: &Target,
    http: &reqwest::Client,
    people: &[String],
    gateway: &str,
    machine: &str,
    clients: usize,
) -> Result<Round, String> {
    let sent = (RATE * SECONDS) as usize;
    let mut streams = Vec::with_capacity(clients);
    for i in 0..clients {
        let person = &people[i / STREAMS_PER_VIEWER % people.len()];
        streams.push(open_stream(target, http, person, machine).await?);
    }
    // Every stream is subscribed once its headers are back; the load starts now.
    let deadline = Instant::now() + Duration::from_secs_f64(SECONDS + 15.0);
    let watchers: Vec<_> = streams
        .into_iter()
        .map(|s| tokio::spawn(watch(s, sent, deadline)))
        .collect();
    let bar = progress(sent as u64, &format!("stream → {clients} clients"));
    let started = Instant::now();
    let url = format!("{}/api/v1/data/ingest", target.base_url);
    for i in 0..sent {
        tokio::time::sleep_until((started + Duration::from_secs_f64(i as f64 / RATE)).into()).await;
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        // Inside the thresholds: this measures the stream, not alert churn.
        let body = json!({"gateway_id": "bench-stream", "timestamp": at, "batch": [{"machine_id": machine,
            "readings": [{"timestamp": at, "temperature": 60.0 + (i % 100) as f64 / 10.0}]}]});
        let response = http
            .post(&url)
            .bearer_auth(gateway)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status() != 201 {
            return Err(format!("ingest answered {}", response.status()));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let rss_kib = current_rss_kib("query-api");
    let mut delays = Vec::with_capacity(sent * clients);
    let mut fewest = usize::MAX;
    for watcher in watchers {
        let seen = watcher.await.map_err(|e| e.to_string())?;
        fewest = fewest.min(seen.len());
        delays.extend(seen);
    }
    if delays.is_empty() {
        return Err("no stream client received anything".to_owned());
    }
    Ok(Round {
        delays,
        fewest,
        sent,
        rss_kib,
    })
}
