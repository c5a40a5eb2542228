//! Query figures on a generated plant: 100 machines × 30 days at 10-second resolution.
//! Each query through nginx, cold (a new window each time) and warm (the same again), beside
//! the equivalent InfluxQL sent straight to InfluxDB.

use crate::Target;
use crate::report::{Curve, Plot, Report, Row, progress};
use crate::stats::Samples;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const MACHINES: usize = 100;
const DAYS: i64 = 30;
const STEP_SECS: i64 = 10;
const FACTORY: &str = "bench";
const SAMPLES: usize = 20;

pub(crate) async fn login(
    target: &Target,
    http: &reqwest::Client,
    user: &str,
    password: &str,
) -> Result<String, String> {
    let answer: Value = http
        .post(format!("{}/api/v1/auth/login", target.base_url))
        .json(&json!({"username": target.env(user)?, "password": target.env(password)?}))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    answer["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("login as {user} failed"))
}

/// The bench machines' ids, registering the missing ones.
pub(crate) async fn machines(
    target: &Target,
    http: &reqwest::Client,
    manager: &str,
) -> Result<Vec<String>, String> {
    for i in 0..MACHINES {
        let response = http
            .post(format!("{}/api/v1/machines", target.base_url))
            .bearer_auth(manager)
            .json(&json!({"name": format!("bench-{i:03}"), "location": format!("Bench hall {}", i % 5), "sensor_type": "multi", "factory_id": FACTORY}))
            .send().await.map_err(|e| e.to_string())?;
        if !(response.status().is_success() || response.status().as_u16() == 409) {
            return Err(format!(
                "registering a bench machine answered {}",
                response.status()
            ));
        }
    }
    let listed = crate::json_of(
        http.get(format!(
            "{}/api/v1/machines?factory_id={FACTORY}&limit=500",
            target.base_url
        ))
        .bearer_auth(manager),
    )
    .await?;
    Ok(listed["machines"]
        .as_array()
        .ok_or("machine list")?
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_owned))
        .collect())
}

pub(crate) async fn influx(http: &reqwest::Client, url: &str, q: &str) -> Result<Value, String> {
    crate::json_of(
        http.post(format!("{url}/query?db=telemetry&epoch=ns"))
            .form(&[("q", q)]),
    )
    .await
}

/// Loads 30 days for every machine unless a previous run did; returns the load time if it loaded.
async fn load(
    http: &reqwest::Client,
    url: &str,
    ids: &[String],
) -> Result<Option<Duration>, String> {
    let expected = DAYS * 86_400 / STEP_SECS;
    let check = influx(http, url, &format!("SELECT count(temperature) FROM sensor_readings WHERE machine_id = '{}' AND time > now() - {DAYS}d", ids[0])).await?;
    let have = check["results"][0]["series"][0]["values"][0][1]
        .as_i64()
        .unwrap_or(0);
    if have >= expected * 9 / 10 {
        return Ok(None);
    }
    let now = chrono::Utc::now().timestamp();
    let start = now - DAYS * 86_400;
    let started = Instant::now();
    let bar = progress((DAYS * 24) as u64, "loading 100 machines × 30 d");
    // One hour of every machine per request (36,000 points), 4 requests in flight.
    let hours: Vec<i64> = (0..DAYS * 24).map(|h| start + h * 3600).collect();
    let mut pending = Vec::new();
    for hour in hours {
        let (http, url, ids, bar) = (http.clone(), url.to_owned(), ids.to_vec(), bar.clone());
        pending.push(tokio::spawn(async move {
            let mut body = String::with_capacity(ids.len() * 360 * 150);
            for (m, id) in ids.iter().enumerate() {
                for step in 0..(3600 / STEP_SECS) {
                    let t = hour + step * STEP_SECS;
                    let phase = (t as f64 / 3600.0) + m as f64;
                    body.push_str(&format!(
                        "sensor_readings,factory_id={FACTORY},location=Bench\\ hall\\ {},machine_id={id},sensor_type=multi temperature={:.2},pressure={:.2},speed={:.1} {}\n",
                        m % 5, 60.0 + 8.0 * phase.sin(), 110.0 + 10.0 * phase.cos(), 1500.0 + 200.0 * (phase / 3.0).sin(), t * 1_000_000_000
                    ));
                }
            }
            let response = http.post(format!("{url}/write?db=telemetry&precision=ns")).body(body).send().await.map_err(|e| e.to_string())?;
            bar.inc(1);
            if response.status().as_u16() != 204 {
                return Err(format!("InfluxDB answered {}", response.status()));
            }
            Ok::<_, String>(())
        }));
        if pending.len() >= 4 {
            pending.remove(0).await.map_err(|e| e.to_string())??;
        }
    }
    for task in pending {
        task.await.map_err(|e| e.to_string())??;
    }
    bar.finish_and_clear();
    // Roll the history up a day at a time, as the continuous queries would have.
    let bar = progress(DAYS as u64 + 1, "rolling up hourly/daily");
    for day in 0..=DAYS {
        let from = start - start % 86_400 + day * 86_400;
        for statement in rollup_statements(from, from + 86_400) {
            let answer = influx(http, url, &statement).await?;
            if let Some(err) = answer["results"][0]["error"]
                .as_str()
                .or(answer["error"].as_str())
            {
                return Err(format!("rollup: {err}"));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(Some(started.elapsed()))
}

fn rollup_statements(from: i64, to: i64) -> Vec<String> {
    let fields = ["temperature", "pressure", "speed"];
    let hourly: Vec<String> = fields.iter().map(|f| format!("mean(\"{f}\") AS \"{f}\", min(\"{f}\") AS \"{f}_min\", max(\"{f}\") AS \"{f}_max\", count(\"{f}\") AS \"{f}_count\", sum(\"{f}\") AS \"{f}_sum\"")).collect();
    let daily: Vec<String> = fields.iter().map(|f| format!("sum(\"{f}_sum\") / sum(\"{f}_count\") AS \"{f}\", min(\"{f}_min\") AS \"{f}_min\", max(\"{f}_max\") AS \"{f}_max\", sum(\"{f}_count\") AS \"{f}_count\", sum(\"{f}_sum\") AS \"{f}_sum\"")).collect();
    let range = format!(
        "time >= {} AND time < {}",
        from * 1_000_000_000,
        to * 1_000_000_000
    );
    vec![
        format!(
            "SELECT {} INTO \"telemetry\".\"hourly\".\"sensor_readings\" FROM \"telemetry\".\"raw\".\"sensor_readings\" WHERE factory_id = '{FACTORY}' AND {range} GROUP BY time(1h), *",
            hourly.join(", ")
        ),
        format!(
            "SELECT {} INTO \"telemetry\".\"daily\".\"sensor_readings\" FROM \"telemetry\".\"hourly\".\"sensor_readings\" WHERE factory_id = '{FACTORY}' AND {range} GROUP BY time(1d), *",
            daily.join(", ")
        ),
    ]
}

/// One row per measured variant, each against the same baseline's median.
/// Adds the rows of one query, and its p50s (first read, repeated read, baseline) to `plot`.
fn add_rows(
    report: &mut Report,
    variants: [(String, Vec<Duration>, &str); 2],
    base: &Samples,
    plot: &mut Vec<[f64; 3]>,
) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p50 = |samples: &[Duration]| ms(Samples::new(samples.to_vec()).quantile(0.5));
    plot.push([
        p50(&variants[0].1),
        p50(&variants[1].1),
        ms(base.quantile(0.5)),
    ]);
    for (figure, samples, note) in variants {
        let samples = Samples::new(samples);
        report.add(Row {
            figure,
            value: format!(
                "{:.1}/{:.1} ms",
                ms(samples.quantile(0.5)),
                ms(samples.quantile(0.95))
            ),
            baseline: format!("{:.1} ms Influx direct p50", ms(base.quantile(0.5))),
            ratio: Some(ms(samples.quantile(0.5)) / ms(base.quantile(0.5))),
            note: note.to_owned(),
        });
    }
}

async fn timed(request: reqwest::RequestBuilder) -> Result<Duration, String> {
    let started = Instant::now();
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    response.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("query answered {status}"));
    }
    Ok(started.elapsed())
}

/// The end of a measured window.
type End = chrono::DateTime<chrono::Utc>;
/// A query given the end of its window: a Plantline query string or direct InfluxQL.
type Query = Box<dyn Fn(End) -> String>;
/// (name, Plantline query, the equivalent direct InfluxQL)
type Case = (&'static str, Query, Query);
/// Cold, warm and baseline durations of one query.
type Timings = (Vec<Duration>, Vec<Duration>, Vec<Duration>);

fn iso(t: End) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn nanos(t: End) -> i64 {
    t.timestamp_nanos_opt().unwrap_or_default()
}

/// Plantline's aggregates of every field over the `days` before the end.
fn window(days: i64, interval: &'static str) -> Query {
    Box::new(move |end| {
        format!(
            "start_time={}&end_time={}&interval={interval}&agg=mean,min,max,count",
            iso(end - chrono::Duration::days(days)),
            iso(end)
        )
        .replace('+', "%2B")
    })
}

/// The same aggregates asked of InfluxDB directly.
fn direct(days: i64, interval: &'static str, id: String) -> Query {
    Box::new(move |end| {
        let sel = ["temperature", "pressure", "speed"]
            .iter()
            .map(|f| format!("mean(\"{f}\"), min(\"{f}\"), max(\"{f}\"), count(\"{f}\")"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT {sel} FROM sensor_readings WHERE machine_id = '{id}' AND time >= {} AND time < {} GROUP BY time({interval}) fill(none)",
            nanos(end - chrono::Duration::days(days)),
            nanos(end)
        )
    })
}

/// Queries (a) to (d), all of one machine.
fn cases(machine: &str) -> Vec<Case> {
    let m = machine.to_owned();
    vec![
        (
            "(a) one machine raw, last hour",
            Box::new(move |end| {
                format!(
                    "start_time={}&end_time={}&limit=1000",
                    iso(end - chrono::Duration::hours(1)),
                    iso(end)
                )
                .replace('+', "%2B")
            }),
            Box::new(move |end| {
                format!(
                    "SELECT temperature, pressure, speed FROM sensor_readings WHERE machine_id = '{m}' AND time >= {} AND time < {} LIMIT 1001",
                    nanos(end - chrono::Duration::hours(1)),
                    nanos(end)
                )
            }),
        ),
        (
            "(b) one machine 1h over 7 days",
            window(7, "1h"),
            direct(7, "1h", machine.to_owned()),
        ),
        (
            "(c) one machine 1h over 30 days",
            window(30, "1h"),
            direct(30, "1h", machine.to_owned()),
        ),
        (
            "(d) one machine 1d over 30 days",
            window(30, "1d"),
            direct(30, "1d", machine.to_owned()),
        ),
    ]
}

/// The clients and tokens every measured request uses.
struct Session<'a> {
    target: &'a Target,
    http: reqwest::Client,
    influx_url: String,
    manager: String,
    operator: String,
}

impl Session<'_> {
    fn as_operator(&self, url: &str) -> reqwest::RequestBuilder {
        self.http.get(url).bearer_auth(&self.operator)
    }

    fn influx_query(&self, q: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/query?db=telemetry&epoch=ns", self.influx_url))
            .form(&[("q", q)])
    }

    /// One machine query: `SAMPLES` cold reads beside the baseline, then `SAMPLES` warm ones.
    async fn machine_query(
        &self,
        machine: &str,
        now: End,
        (plantline, baseline): (&Query, &Query),
        bar: &indicatif::ProgressBar,
    ) -> Result<Timings, String> {
        let url = |q: String| format!("{}/api/v1/data/machine/{machine}?{q}", self.target.base_url);
        let (mut cold, mut warm, mut base) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..SAMPLES {
            // A window ending at a new second is a new cache key: cold.
            let end = now - chrono::Duration::seconds(300 + i as i64);
            cold.push(timed(self.as_operator(&url(plantline(end)))).await?);
            bar.inc(1);
            base.push(timed(self.influx_query(&baseline(end))).await?);
            bar.inc(1);
        }
        let end = now - chrono::Duration::seconds(299);
        timed(self.as_operator(&url(plantline(end)))).await?;
        for _ in 0..SAMPLES {
            warm.push(timed(self.as_operator(&url(plantline(end)))).await?);
            bar.inc(1);
        }
        Ok((cold, warm, base))
    }

    /// (e) fleet latest: first reads, then reads after every bench machine reported through
    /// ingest (so Redis knows each one's newest reading).
    async fn fleet_latest(
        &self,
        ids: &[String],
        bar: &indicatif::ProgressBar,
    ) -> Result<Timings, String> {
        let fleet_url = format!(
            "{}/api/v1/data/latest?factory_id={FACTORY}",
            self.target.base_url
        );
        let direct_latest = format!(
            "SELECT last(temperature), last(pressure), last(speed) FROM sensor_readings WHERE factory_id = '{FACTORY}' AND time > now() - 1d GROUP BY machine_id"
        );
        let (mut cold, mut warm, mut base) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..SAMPLES {
            cold.push(timed(self.as_operator(&fleet_url)).await?);
            bar.inc(1);
            base.push(timed(self.influx_query(&direct_latest)).await?);
            bar.inc(1);
        }
        // Sent as the manager: the demo gateway's rate window may be spent by the ingest figures.
        let ts = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
        let batch = json!({"gateway_id": "bench", "timestamp": ts, "batch": ids.iter().map(|id| json!({"machine_id": id, "readings": [{"timestamp": ts, "temperature": 61.0, "pressure": 111.0, "speed": 1501.0}]})).collect::<Vec<_>>()});
        timed(
            self.http
                .post(format!("{}/api/v1/data/ingest", self.target.base_url))
                .bearer_auth(&self.manager)
                .json(&batch),
        )
        .await?;
        for _ in 0..SAMPLES {
            warm.push(timed(self.as_operator(&fleet_url)).await?);
            bar.inc(1);
        }
        Ok((cold, warm, base))
    }
}

pub async fn run(target: &Target, report: &mut Report) -> Result<(), String> {
    let http = reqwest::Client::new();
    let influx_url = std::env::var("PLANTLINE_INFLUX__URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8086".to_owned());
    let manager = login(target, &http, "MANAGEMENT_USER", "MANAGEMENT_PASSWORD").await?;
    let operator = login(target, &http, "OPERATOR_USER", "OPERATOR_PASSWORD").await?;
    let ids = machines(target, &http, &manager).await?;
    if let Some(took) = load(&http, &influx_url, &ids).await? {
        report.add(Row {
            figure: "query data set load (25.9 M readings + rollups)".to_owned(),
            value: format!("{:.0} s", took.as_secs_f64()),
            baseline: String::new(),
            ratio: None,
            note: "100 machines × 30 days at 10 s, once; later runs reuse it".to_owned(),
        });
    }
    let session = Session {
        target,
        http,
        influx_url,
        manager,
        operator,
    };
    let machine = &ids[0];
    let now = chrono::Utc::now();
    let cases = cases(machine);
    let bar = progress((cases.len() * SAMPLES * 3 + SAMPLES * 3) as u64, "queries");
    let mut plot = Vec::new();
    for (name, plantline, baseline) in &cases {
        let (cold, warm, base) = session
            .machine_query(machine, now, (plantline, baseline), &bar)
            .await?;
        add_rows(
            report,
            [
                (
                    format!("{name}, cold p50/p95"),
                    cold,
                    "through nginx, a new window each time",
                ),
                (
                    format!("{name}, warm p50/p95"),
                    warm,
                    "the same request again",
                ),
            ],
            &Samples::new(base),
            &mut plot,
        );
    }
    let (cold, warm, base) = session.fleet_latest(&ids, &bar).await?;
    bar.finish_and_clear();
    add_rows(
        report,
        [
            (
                "(e) fleet latest, 100 machines, first reads p50/p95".to_owned(),
                cold,
                "from InfluxDB on a fresh data set; Redis once a run reported",
            ),
            (
                "(e) fleet latest, 100 machines, Redis p50/p95".to_owned(),
                warm,
                "after the machines reported through ingest",
            ),
        ],
        &Samples::new(base),
        &mut plot,
    );
    add_plot(report, &plot);
    Ok(())
}

/// The p50s by query (first read, repeated read, baseline), as [`add_rows`] collected them.
fn add_plot(report: &mut Report, plot: &[[f64; 3]]) {
    let curve = |name: &str, column: usize| Curve {
        name: name.to_owned(),
        points: plot
            .iter()
            .enumerate()
            .map(|(i, p50s)| ((i + 1) as f64, p50s[column]))
            .collect(),
    };
    report.add_plot(Plot {
        file: "query-latency.png",
        title: "Query latency by query, p50".to_owned(),
        x_label: "query: 1 raw hour, 2 hourly week, 3 hourly month, 4 daily month, 5 fleet latest"
            .to_owned(),
        y_label: "milliseconds".to_owned(),
        log_x: false,
        curves: vec![
            curve("Plantline, first read", 0),
            curve("Plantline, repeated (cache)", 1),
            curve("InfluxDB direct (baseline)", 2),
        ],
    });
}
