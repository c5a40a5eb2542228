//! The InfluxDB-compatible write API beside the JSON endpoint and InfluxDB itself: the same
//! readings, the same number of connections, small (10) and large (500) bodies, each as a
//! ratio against InfluxDB's own `/write`. `/write` is sent as Telegraf sends it, with the
//! gateway's id and secret as HTTP Basic (one argon2 verification, then the in-process cache).

use crate::Target;
use crate::ingest::{Sink, blast_with, bodies_of, set_rate_limit};
use crate::report::{Report, Row};
use std::time::Duration;

/// Body size, senders, requests per side and round: small bodies are where the per-request
/// cost shows, large ones where the per-reading cost does.
const SHAPES: [(usize, usize, usize); 2] = [(10, 8, 4_000), (500, 2, 200)];
const ROUNDS: usize = 3;

pub async fn run(target: &Target, report: &mut Report) -> Result<(), String> {
    let influx_url = std::env::var("PLANTLINE_INFLUX__URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8086".to_owned());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()
        .map_err(|e| e.to_string())?;
    let previous_limit = set_rate_limit(target, &http, 1_000_000).await?;
    let sinks = [
        Sink::Influx {
            client: http.clone(),
            url: format!("{influx_url}/write?db=telemetry&precision=ns"),
        },
        Sink::Plantline {
            client: http.clone(),
            url: format!("{}/api/v1/data/ingest", target.base_url),
            bearer: target.gateway_token().await?,
        },
        Sink::WriteApi {
            client: http.clone(),
            url: format!("{}/write?db=telemetry&precision=ns", target.base_url),
            client_id: target.env("GATEWAY_CLIENT_ID")?.to_owned(),
            secret: target.env("GATEWAY_CLIENT_SECRET")?.to_owned(),
        },
    ];
    for (i, (size, senders, requests)) in SHAPES.into_iter().enumerate() {
        let (json, lines) = bodies_of(size, requests, 400 + 100 * i as i64)?;
        let bodies = [&lines, &json, &lines];
        // Rounds alternate the three sides and sum each side's time: InfluxDB's background
        // work drifts during a run and would otherwise favour one side.
        let mut times = [Duration::ZERO; 3];
        for round in 1..=ROUNDS {
            for (side, (sink, bodies)) in sinks.iter().zip(bodies).enumerate() {
                let what = format!("{size}-line bodies, {round}/{ROUNDS}: side {}", side + 1);
                times[side] += blast_with(bodies.clone(), &what, sink, senders).await?.0;
            }
        }
        let readings = (ROUNDS * requests * size) as f64;
        let [influx, json, write] = times.map(|t| readings / t.as_secs_f64());
        let requests_per_s = |rate: f64| rate / size as f64;
        let baseline = format!(
            "{influx:.0}/s ({:.0} req/s) Influx direct",
            requests_per_s(influx)
        );
        for (path, rate, note) in [
            (
                "/write",
                write,
                "line protocol, Basic auth with the gateway's id and secret",
            ),
            ("/api/v1/data/ingest", json, "JSON batches, bearer token"),
        ] {
            report.add(Row {
                figure: format!("{path}, {size}-reading bodies, {senders} senders"),
                value: format!("{rate:.0} readings/s ({:.0} req/s)", requests_per_s(rate)),
                baseline: baseline.clone(),
                ratio: Some(rate / influx),
                note: note.to_owned(),
            });
        }
    }
    set_rate_limit(target, &http, previous_limit).await?;
    Ok(())
}
