//! Ingest figures: (a) the same readings written straight to InfluxDB as line protocol, same
//! batch size, same concurrency — the baseline; (b) Plantline end to end through nginx with
//! JSON batches; (c) latency at half of (b)'s rate; (d) ingest-api's peak RSS.

use crate::Target;
use crate::report::{Curve, Plot, Report, Row, cdf_ms, progress};
use crate::stats::Samples;
use domain::ingest::BatchLimits;
use domain::line_protocol::{SeriesTags, encode};
use domain::reading::{ReadingRules, Timestamp};
use serde_json::json;
use simulator::{SimMachine, batch};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const BATCH: usize = 500;
const BATCHES: usize = 800;
const CONCURRENCY: usize = 32;
const ROUNDS: usize = 3;
const LATENCY_SECONDS: f64 = 6.0;

/// Request bodies, one per batch.
type Bodies = Vec<Vec<u8>>;
/// `(x, y)` points of a plotted curve.
type Points = Vec<(f64, f64)>;

/// Batch sizes of the throughput sweep, and the readings each side sends at each size.
const SWEEP: [usize; 5] = [10, 50, 200, 500, 2000];
const SWEEP_READINGS: usize = 100_000;

/// The same readings as JSON batches and as line-protocol bodies.
fn bodies() -> Result<(Bodies, Bodies), String> {
    bodies_of(BATCH, BATCHES, 0)
}

/// `batches` batches of `size` readings, ending `offset_min` minutes further back: as JSON
/// batches and as line protocol with the registry's tags.
pub(crate) fn bodies_of(
    size: usize,
    batches: usize,
    offset_min: i64,
) -> Result<(Bodies, Bodies), String> {
    let mut machines = SimMachine::demo_fleet();
    let tags: std::collections::HashMap<&str, (&str, &str, &str)> = admin::demo::MACHINES
        .iter()
        .map(|(id, _, location, sensor_type, _, factory)| {
            (*id, (*factory, *sensor_type, *location))
        })
        .collect();
    let now = chrono::Utc::now();
    let rules = ReadingRules::defaults(Timestamp::from_nanos(
        now.timestamp_nanos_opt().unwrap_or_default(),
    ));
    let limits = BatchLimits {
        max_machines: 1000,
        max_readings: 100_000,
    };
    let mut json_bodies = Vec::with_capacity(batches);
    let mut line_bodies = Vec::with_capacity(batches);
    // Distinct timestamps an hour apart per batch, readings 1 ms apart within it, so every
    // reading is a new point (no overwrites flattering either side).
    for i in 0..batches {
        let end = now
            - chrono::Duration::minutes(10 + offset_min)
            - chrono::Duration::seconds(i as i64 * 5);
        let body = batch(
            &mut machines,
            size,
            end,
            Duration::from_millis(1),
            "bench-gateway",
        );
        let bytes = body.to_string().into_bytes();
        let parsed =
            domain::ingest::parse_json(&bytes, &rules, &limits).map_err(|e| format!("{e:?}"))?;
        let mut lines = String::with_capacity(size * 160);
        for machine in &parsed.machines {
            let id = machine.machine_id.ok_or("machine id")?;
            let (factory, sensor_type, location) = tags
                .get(machine.raw_machine_id.as_str())
                .copied()
                .ok_or("demo machine")?;
            let series = SeriesTags {
                machine_id: &id,
                factory_id: factory,
                sensor_type,
                location,
            };
            for reading in &machine.readings {
                encode(&mut lines, &series, reading);
            }
        }
        json_bodies.push(bytes);
        line_bodies.push(lines.into_bytes());
    }
    Ok((json_bodies, line_bodies))
}

/// Where bodies go: line protocol straight to InfluxDB (the baseline), JSON batches to
/// Plantline through nginx, or line protocol to Plantline's InfluxDB-compatible `/write`.
#[derive(Clone)]
pub(crate) enum Sink {
    Influx {
        client: reqwest::Client,
        url: String,
    },
    Plantline {
        client: reqwest::Client,
        url: String,
        bearer: String,
    },
    /// `/write` as Telegraf sends it: the gateway's id and secret as HTTP Basic.
    WriteApi {
        client: reqwest::Client,
        url: String,
        client_id: String,
        secret: String,
    },
}

impl Sink {
    async fn send(self, body: Vec<u8>) -> Result<(), String> {
        match self {
            Self::Influx { client, url } => {
                let response = client
                    .post(url)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if response.status().as_u16() != 204 {
                    return Err(format!("InfluxDB answered {}", response.status()));
                }
                Ok(())
            }
            Self::WriteApi {
                client,
                url,
                client_id,
                secret,
            } => {
                let response = client
                    .post(url)
                    .basic_auth(client_id, Some(secret))
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status().as_u16();
                let answer = response.text().await.unwrap_or_default();
                if status != 204 {
                    return Err(format!("/write answered {status}: {answer}"));
                }
                Ok(())
            }
            Self::Plantline {
                client,
                url,
                bearer,
            } => {
                let response = client
                    .post(url)
                    .bearer_auth(bearer)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status().as_u16();
                let _ = response.bytes().await;
                if status != 201 {
                    return Err(format!("ingest answered {status}"));
                }
                Ok(())
            }
        }
    }
}

/// Sends every body with `CONCURRENCY` workers; returns elapsed time and per-request latencies.
async fn blast(
    bodies: Vec<Vec<u8>>,
    what: &str,
    sink: &Sink,
) -> Result<(Duration, Vec<Duration>), String> {
    blast_with(bodies, what, sink, CONCURRENCY).await
}

/// Sends every body with `senders` workers; returns elapsed time and per-request latencies.
pub(crate) async fn blast_with(
    bodies: Vec<Vec<u8>>,
    what: &str,
    sink: &Sink,
    senders: usize,
) -> Result<(Duration, Vec<Duration>), String> {
    let progress = progress(bodies.len() as u64, what);
    let queue = Arc::new(Mutex::new(bodies));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..senders {
        let (queue, sink, progress) = (queue.clone(), sink.clone(), progress.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let Some(body) = queue.lock().await.pop() else {
                    break;
                };
                let t = Instant::now();
                sink.clone().send(body).await?;
                latencies.push(t.elapsed());
                progress.inc(1);
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    Ok((elapsed, latencies))
}

/// Sets `gateway_rate_limit_per_minute` as the demo manager; returns the previous value.
pub(crate) async fn set_rate_limit(
    target: &Target,
    http: &reqwest::Client,
    value: i64,
) -> Result<i64, String> {
    let login = http
        .post(format!("{}/api/v1/auth/login", target.base_url))
        .json(&json!({"username": target.env("MANAGEMENT_USER")?, "password": target.env("MANAGEMENT_PASSWORD")?}))
        .send().await.map_err(|e| e.to_string())?
        .json::<serde_json::Value>().await.map_err(|e| e.to_string())?;
    let token = login["access_token"]
        .as_str()
        .ok_or("manager login failed")?
        .to_owned();
    let config: serde_json::Value = http
        .get(format!("{}/api/v1/config", target.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let previous = config["settings"]
        .as_array()
        .and_then(|s| {
            s.iter()
                .find(|s| s["name"] == "gateway_rate_limit_per_minute")
        })
        .and_then(|s| s["value"].as_i64())
        .unwrap_or(1200);
    let response = http
        .post(format!("{}/api/v1/config/update", target.base_url))
        .bearer_auth(&token)
        .json(&json!({"setting_name": "gateway_rate_limit_per_minute", "setting_value": value}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!(
            "raising the rate limit answered {}",
            response.status()
        ));
    }
    // Services re-read settings every second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Ok(previous)
}

pub async fn run(target: &Target, report: &mut Report) -> Result<(), String> {
    let (json_bodies, line_bodies) = bodies()?;
    let influx_url = std::env::var("PLANTLINE_INFLUX__URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8086".to_owned());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY * 2)
        .build()
        .map_err(|e| e.to_string())?;
    let previous_limit = set_rate_limit(target, &http, 1_000_000).await?;
    let influx = Sink::Influx {
        client: http.clone(),
        url: format!("{influx_url}/write?db=telemetry&precision=ns"),
    };
    let plantline = Sink::Plantline {
        client: http.clone(),
        url: format!("{}/api/v1/data/ingest", target.base_url),
        bearer: target.gateway_token().await?,
    };
    let (baseline_rate, plantline_rate) =
        throughput(&line_bodies, &json_bodies, &influx, &plantline).await?;
    // (c) latency at half the measured maximum, paced open-loop.
    let pace = plantline_rate / 2.0 / BATCH as f64;
    let count = ((pace * LATENCY_SECONDS) as usize).clamp(10, json_bodies.len());
    let latencies = paced_latencies(json_bodies, count, pace, &plantline).await?;
    let sweep = sweep(&influx, &plantline).await?;
    add_plots(report, sweep, &latencies);
    let latencies = Samples::new(latencies);
    set_rate_limit(target, &http, previous_limit).await?;

    report.add(Row {
        figure: format!("ingest throughput, {BATCH}-reading batches, {CONCURRENCY} senders"),
        value: format!("{plantline_rate:.0} readings/s"),
        baseline: format!("{baseline_rate:.0}/s Influx direct"),
        ratio: Some(plantline_rate / baseline_rate),
        note: "JSON through nginx, auth, validation, registry, write, latest values".to_owned(),
    });
    for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
        report.add(Row {
            figure: format!("ingest latency at half max rate, {label}"),
            value: format!("{:.1} ms", latencies.quantile(q).as_secs_f64() * 1e3),
            baseline: format!("{pace:.1} batches/s"),
            ratio: None,
            note: format!("{count} batches of {BATCH}, open loop"),
        });
    }
    // A gateway-facing service's whole footprint under the heaviest load of the bench.
    report.add_peak_rss_within("ingest-api", 32);
    Ok(())
}

/// (a) the baseline against (b) Plantline end to end, in readings per second. Rounds
/// alternate and each side's time is summed: InfluxDB's own background work (compactions)
/// drifts during a run and would otherwise favour one side.
async fn throughput(
    line_bodies: &Bodies,
    json_bodies: &Bodies,
    influx: &Sink,
    plantline: &Sink,
) -> Result<(f64, f64), String> {
    let readings = (ROUNDS * BATCHES * BATCH) as f64;
    let (mut baseline_time, mut plantline_time) = (Duration::ZERO, Duration::ZERO);
    for round in 1..=ROUNDS {
        let what = format!("baseline {round}/{ROUNDS}: Influx");
        baseline_time += blast(line_bodies.clone(), &what, influx).await?.0;
        let what = format!("plantline {round}/{ROUNDS}: nginx");
        plantline_time += blast(json_bodies.clone(), &what, plantline).await?.0;
    }
    Ok((
        readings / baseline_time.as_secs_f64(),
        readings / plantline_time.as_secs_f64(),
    ))
}

/// Latencies of `count` bodies sent at `pace` batches per second, whatever the answers'
/// speed (open loop: a slow answer does not delay the next request).
async fn paced_latencies(
    json_bodies: Bodies,
    count: usize,
    pace: f64,
    plantline: &Sink,
) -> Result<Vec<Duration>, String> {
    let interval = Duration::from_secs_f64(1.0 / pace);
    let progress = progress(count as u64, "latency at half rate");
    let mut tasks = Vec::with_capacity(count);
    let mut ticker = tokio::time::interval(interval);
    for body in json_bodies.into_iter().take(count) {
        ticker.tick().await;
        let sink = plantline.clone();
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let outcome = sink.send(body).await;
            progress.inc(1);
            outcome.map(|()| t.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    for task in tasks {
        latencies.push(task.await.map_err(|e| e.to_string())??);
    }
    progress.finish_and_clear();
    Ok(latencies)
}

/// (d) throughput by batch size, both sides, same readings: (Plantline, baseline) points.
async fn sweep(influx: &Sink, plantline: &Sink) -> Result<(Points, Points), String> {
    let mut sweep = (Vec::new(), Vec::new());
    for (i, size) in SWEEP.into_iter().enumerate() {
        let (json_bodies, line_bodies) =
            bodies_of(size, SWEEP_READINGS / size, 60 * (i as i64 + 1))?;
        let readings = (SWEEP_READINGS / size * size) as f64;
        let base = blast(line_bodies, &format!("sweep {size}: Influx"), influx)
            .await?
            .0;
        let ours = blast(json_bodies, &format!("sweep {size}: nginx"), plantline)
            .await?
            .0;
        sweep.0.push((size as f64, readings / ours.as_secs_f64()));
        sweep.1.push((size as f64, readings / base.as_secs_f64()));
    }
    Ok(sweep)
}

fn add_plots(report: &mut Report, sweep: (Points, Points), latencies: &[Duration]) {
    report.add_plot(Plot {
        file: "ingest-throughput-by-batch.png",
        title: format!("Ingest throughput by batch size, {CONCURRENCY} senders"),
        x_label: "readings per request (log scale)".to_owned(),
        y_label: "readings per second".to_owned(),
        log_x: true,
        curves: vec![
            Curve {
                name: "Plantline: JSON through nginx".to_owned(),
                points: sweep.0,
            },
            Curve {
                name: "InfluxDB direct, line protocol (baseline)".to_owned(),
                points: sweep.1,
            },
        ],
    });
    report.add_plot(Plot {
        file: "ingest-latency.png",
        title: format!("Ingest latency at half the maximum rate, {BATCH}-reading batches"),
        x_label: "request latency through nginx, ms".to_owned(),
        y_label: "percent of requests".to_owned(),
        log_x: false,
        curves: vec![Curve {
            name: "Plantline".to_owned(),
            points: cdf_ms(latencies),
        }],
    });
}
