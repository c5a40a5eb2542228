//! InfluxDB 1.x HTTP API client (`/ping`, `/query`, `/write`) and the idempotent schema setup.
//!
//! The same API is served by InfluxDB 2.x and 3.x through their v1 compatibility endpoints.
//! Statements are only ever built from validated identifiers and typed values.

use crate::config::InfluxSettings;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;

/// The measurement every reading is written to.
pub const MEASUREMENT: &str = "sensor_readings";

/// The numeric fields of a reading, in the order they are written.
pub const FIELDS: [&str; 3] = ["temperature", "pressure", "speed"];

/// A retention policy Plantline relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub name: &'static str,
    /// How long data is kept, in weeks.
    pub weeks: u32,
    /// Whether writes without `rp=` land here.
    pub default: bool,
}

/// Raw readings (the default policy, kept `raw_weeks`: 52 unless configured), then the two
/// rollups the continuous queries fill.
pub fn retention_policies(raw_weeks: u32) -> [RetentionPolicy; 3] {
    [
        RetentionPolicy {
            name: "raw",
            weeks: raw_weeks,
            default: true,
        },
        RetentionPolicy {
            name: "hourly",
            weeks: 104,
            default: false,
        },
        RetentionPolicy {
            name: "daily",
            weeks: 260,
            default: false,
        },
    ]
}

/// Continuous queries are versioned by name: a changed definition gets a new name, and setup
/// drops the stale ones, because InfluxDB cannot alter a continuous query in place.
const CQ_PREFIX: &str = "cq_sensor_readings_";
const CQ_HOURLY: &str = "cq_sensor_readings_hourly_v1";
const CQ_DAILY: &str = "cq_sensor_readings_daily_v1";

/// Why an InfluxDB call failed.
#[derive(Debug, thiserror::Error)]
pub enum InfluxError {
    /// No HTTP answer (refused, reset, timed out).
    #[error("InfluxDB unreachable: {0}")]
    Unreachable(#[source] reqwest::Error),
    /// InfluxDB answered with an HTTP error status.
    #[error("InfluxDB answered {status}: {body}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// Error text from InfluxDB.
        body: String,
    },
    /// InfluxDB answered 200 but a statement failed.
    #[error("InfluxDB statement failed: {0}")]
    Statement(String),
    /// The answer was not the JSON we expect.
    #[error("unexpected InfluxDB answer: {0}")]
    Decode(String),
    /// A name that would need escaping in InfluxQL.
    #[error("invalid InfluxDB identifier {0:?}")]
    Identifier(String),
}

/// 400 answers that name a limit of the server, not a fault of the points.
const STORE_LIMITS: [&str; 2] = ["max-series-per-database", "max-values-per-tag"];

impl InfluxError {
    /// InfluxDB's reason when it refused a write for the points' own sake (a bad point, a
    /// field type conflict, a point outside retention, a body too large): writing the same
    /// points again cannot succeed, but other points can. InfluxDB 1.x answers 400 (a
    /// partial write stores the rest), 2.x also 413 and 422.
    pub fn refusal(&self) -> Option<&str> {
        match self {
            // InfluxDB's own limits answer 400 too, but are the store's configuration: the
            // same points go in once an operator raises them.
            Self::Status { body, .. } if STORE_LIMITS.iter().any(|l| body.contains(l)) => None,
            Self::Status {
                status: 400 | 413 | 422,
                body,
            } => Some(body),
            _ => None,
        }
    }

    /// Failures of the store itself, not of the points: no answer, 5xx, overload, and also
    /// 401/403 (credentials rotated) and 404 (database missing). The points are fine: hold
    /// them and retry; never turn them into dead letters.
    pub fn is_outage(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Status { .. } => self.refusal().is_none(),
            _ => false,
        }
    }
}

/// One series of a query answer.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Series {
    /// Measurement (or database, for SHOW statements).
    #[serde(default)]
    pub name: String,
    /// Tags the series is grouped by.
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
    pub columns: Vec<String>,
    /// Rows of values, aligned with `columns`.
    #[serde(default)]
    pub values: Vec<Vec<serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
struct QueryAnswer {
    #[serde(default)]
    results: Vec<StatementAnswer>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StatementAnswer {
    #[serde(default)]
    series: Vec<Series>,
    error: Option<String>,
}

/// Client for one InfluxDB server. Cheap to clone; keeps connections alive between calls.
#[derive(Clone)]
pub struct InfluxClient {
    http: reqwest::Client,
    base_url: String,
    database: String,
    credentials: Option<(String, SecretString)>,
    raw_retention_weeks: u32,
}

impl InfluxClient {
    /// Builds the client for the configured server and database.
    pub fn new(settings: &InfluxSettings) -> Result<Self, InfluxError> {
        validate_identifier(&settings.database)?;
        let http = reqwest::Client::builder()
            .timeout(settings.timeout())
            .connect_timeout(Duration::from_millis(settings.timeout_ms.min(2000)))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(InfluxError::Unreachable)?;
        Ok(Self {
            http,
            base_url: settings.url.trim_end_matches('/').to_owned(),
            database: settings.database.clone(),
            credentials: settings.username.clone().zip(settings.password.clone()),
            raw_retention_weeks: settings.raw_retention_weeks,
        })
    }

    /// The database this client writes to.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The same server, another database (tests give each case its own).
    pub fn with_database(&self, database: &str) -> Result<Self, InfluxError> {
        validate_identifier(database)?;
        Ok(Self {
            database: database.to_owned(),
            ..self.clone()
        })
    }

    /// Credentials, and the caller's trace for InfluxDB's side (when tracing is on).
    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let request = match crate::telemetry::traceparent() {
            Some((name, value)) => request.header(name, value),
            None => request,
        };
        match &self.credentials {
            Some((user, password)) => request.basic_auth(user, Some(password.expose_secret())),
            None => request,
        }
    }

    /// `GET /ping`: InfluxDB answers 204 when it serves requests.
    pub async fn ping(&self) -> Result<(), InfluxError> {
        let response = self
            .authorize(self.http.get(format!("{}/ping", self.base_url)))
            .send()
            .await
            .map_err(InfluxError::Unreachable)?;
        check_status(response).await.map(|_| ())
    }

    /// Runs InfluxQL statements (`;`-separated) and returns each statement's series.
    ///
    /// Only pass statements built from validated identifiers and typed values.
    #[tracing::instrument(name = "influx.query", skip_all, fields(db = %self.database))]
    pub async fn query(&self, statements: &str) -> Result<Vec<Vec<Series>>, InfluxError> {
        let response = self
            .authorize(self.http.post(format!("{}/query", self.base_url)))
            .query(&[("db", self.database.as_str()), ("epoch", "ns")])
            .form(&[("q", statements)])
            .send()
            .await
            .map_err(InfluxError::Unreachable)?;
        let body = check_status(response).await?;
        let answer: QueryAnswer =
            serde_json::from_str(&body).map_err(|e| InfluxError::Decode(e.to_string()))?;
        if let Some(err) = answer.error {
            return Err(InfluxError::Statement(err));
        }
        answer
            .results
            .into_iter()
            .map(|statement| match statement.error {
                Some(err) => Err(InfluxError::Statement(err)),
                None => Ok(statement.series),
            })
            .collect()
    }

    /// `POST /write` of line protocol with nanosecond timestamps into `rp` (default policy
    /// when `None`). InfluxDB answers 204 only once the points are durable in its WAL.
    #[tracing::instrument(name = "influx.write", skip_all, fields(db = %self.database, rp = rp.unwrap_or("default")))]
    pub async fn write_lines(
        &self,
        lines: impl Into<bytes::Bytes>,
        rp: Option<&str>,
    ) -> Result<(), InfluxError> {
        let lines: bytes::Bytes = lines.into();
        let mut params = vec![("db", self.database.as_str()), ("precision", "ns")];
        if let Some(rp) = rp {
            validate_identifier(rp)?;
            params.push(("rp", rp));
        }
        let response = self
            .authorize(self.http.post(format!("{}/write", self.base_url)))
            .query(&params)
            .body(lines)
            .send()
            .await
            .map_err(InfluxError::Unreachable)?;
        check_status(response).await.map(|_| ())
    }

    /// Writes with bounded retries (exponential backoff with jitter) while InfluxDB is out,
    /// never past `deadline`. Returns how many attempts it took.
    pub async fn write_with_retry(
        &self,
        lines: bytes::Bytes,
        deadline: std::time::Instant,
        max_attempts: u32,
    ) -> Result<u32, InfluxError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            let outcome = match tokio::time::timeout(
                remaining,
                self.write_lines(lines.clone(), None),
            )
            .await
            {
                Ok(outcome) => outcome,
                Err(_) => Err(InfluxError::Status {
                    status: 504,
                    body: "no answer before the request deadline".to_owned(),
                }),
            };
            let err = match outcome {
                Ok(()) => return Ok(attempt),
                Err(err) if !err.is_outage() || attempt >= max_attempts => return Err(err),
                Err(err) => err,
            };
            let base = Duration::from_millis(50 * (1 << (attempt - 1).min(6)));
            let jitter = base.mul_f64(rand::random::<f64>() * 0.5);
            let pause = base + jitter;
            if std::time::Instant::now() + pause >= deadline {
                return Err(err);
            }
            tracing::warn!(attempt, error = %err, retry_in_ms = pause.as_millis() as u64, "InfluxDB write failed; retrying");
            tokio::time::sleep(pause).await;
        }
    }

    /// Creates the database, retention policies and continuous queries, or brings existing
    /// ones to the wanted definition. Safe to run any number of times, by several migrators.
    pub async fn ensure_schema(&self) -> Result<SchemaReport, InfluxError> {
        let db = quote_identifier(&self.database);
        let mut report = SchemaReport::default();
        self.query(&format!("CREATE DATABASE {db}")).await?;

        let existing = self.retention_policies().await?;
        for wanted in retention_policies(self.raw_retention_weeks) {
            let name = quote_identifier(wanted.name);
            let duration = format!("{}w", wanted.weeks);
            let default = if wanted.default { " DEFAULT" } else { "" };
            match existing.iter().find(|rp| rp.name == wanted.name) {
                None => {
                    self.query(&format!(
                        "CREATE RETENTION POLICY {name} ON {db} DURATION {duration} REPLICATION 1{default}"
                    ))
                    .await?;
                    report
                        .created
                        .push(format!("retention policy {}", wanted.name));
                }
                Some(found)
                    if found.duration_hours != u64::from(wanted.weeks) * 7 * 24
                        || (wanted.default && !found.default) =>
                {
                    self.query(&format!(
                        "ALTER RETENTION POLICY {name} ON {db} DURATION {duration}{default}"
                    ))
                    .await?;
                    report
                        .altered
                        .push(format!("retention policy {}", wanted.name));
                }
                Some(_) => {}
            }
        }

        let wanted_cqs = [
            (
                CQ_HOURLY,
                ROLLUPS[0].continuous_query(CQ_HOURLY, &self.database),
            ),
            (
                CQ_DAILY,
                ROLLUPS[1].continuous_query(CQ_DAILY, &self.database),
            ),
        ];
        for name in self.continuous_query_names().await? {
            let ours = name.starts_with(CQ_PREFIX);
            if ours && !wanted_cqs.iter().any(|(wanted, _)| *wanted == name) {
                self.query(&format!(
                    "DROP CONTINUOUS QUERY {} ON {db}",
                    quote_identifier(&name)
                ))
                .await?;
                report.dropped.push(format!("continuous query {name}"));
            }
        }
        let present = self.continuous_query_names().await?;
        for (name, statement) in wanted_cqs {
            if !present.iter().any(|p| p == name) {
                self.query(&statement).await?;
                report.created.push(format!("continuous query {name}"));
            }
        }
        Ok(report)
    }

    /// The retention policies of this client's database.
    pub async fn retention_policies(&self) -> Result<Vec<ExistingRetentionPolicy>, InfluxError> {
        let answer = self
            .query(&format!(
                "SHOW RETENTION POLICIES ON {}",
                quote_identifier(&self.database)
            ))
            .await?;
        let Some(series) = answer.into_iter().flatten().next() else {
            return Ok(Vec::new());
        };
        let column = |name: &str| series.columns.iter().position(|c| c == name);
        let (Some(name_at), Some(duration_at), Some(default_at)) =
            (column("name"), column("duration"), column("default"))
        else {
            return Err(InfluxError::Decode(
                "SHOW RETENTION POLICIES columns".to_owned(),
            ));
        };
        Ok(series
            .values
            .iter()
            .map(|row| ExistingRetentionPolicy {
                name: row[name_at].as_str().unwrap_or_default().to_owned(),
                duration_hours: parse_duration_hours(row[duration_at].as_str().unwrap_or("")),
                default: row[default_at].as_bool().unwrap_or(false),
            })
            .collect())
    }

    /// Names of the continuous queries defined on this client's database.
    pub async fn continuous_query_names(&self) -> Result<Vec<String>, InfluxError> {
        let answer = self.query("SHOW CONTINUOUS QUERIES").await?;
        Ok(answer
            .into_iter()
            .flatten()
            .filter(|series| series.name == self.database)
            .flat_map(|series| series.values)
            .filter_map(|row| row.first().and_then(|v| v.as_str()).map(str::to_owned))
            .collect())
    }

    /// Drops this client's database (tests clean up with it).
    pub async fn drop_database(&self) -> Result<(), InfluxError> {
        self.query(&format!(
            "DROP DATABASE {}",
            quote_identifier(&self.database)
        ))
        .await
        .map(|_| ())
    }
}

/// A retention policy as InfluxDB reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingRetentionPolicy {
    pub name: String,
    /// Duration in whole hours (0 = infinite).
    pub duration_hours: u64,
    /// Whether it is the database's default.
    pub default: bool,
}

/// What [`InfluxClient::ensure_schema`] changed; empty on a second run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SchemaReport {
    /// Things that did not exist.
    pub created: Vec<String>,
    /// Things whose definition was brought up to date.
    pub altered: Vec<String>,
    /// Stale continuous queries removed.
    pub dropped: Vec<String>,
}

impl SchemaReport {
    /// True when nothing had to change.
    pub fn is_unchanged(&self) -> bool {
        self.created.is_empty() && self.altered.is_empty() && self.dropped.is_empty()
    }
}

/// A rollup level: which policy it reads, which it fills, its bucket, and its aggregates.
#[derive(Debug, Clone, Copy)]
struct Rollup {
    from_rp: &'static str,
    into_rp: &'static str,
    bucket: &'static str,
}

/// Hourly from raw, then daily from hourly. The hourly level stores the sum beside
/// mean/min/max/count, so every coarser bucket is exact: sum(sum)/sum(count), never a mean
/// of means.
const ROLLUPS: [Rollup; 2] = [
    Rollup {
        from_rp: "raw",
        into_rp: "hourly",
        bucket: "1h",
    },
    Rollup {
        from_rp: "hourly",
        into_rp: "daily",
        bucket: "1d",
    },
];

impl Rollup {
    fn select_into(&self, database: &str) -> String {
        let db = quote_identifier(database);
        let from_raw = self.from_rp == "raw";
        let selections: Vec<String> = FIELDS
            .iter()
            .map(|f| {
                if from_raw {
                    format!(
                        "mean(\"{f}\") AS \"{f}\", min(\"{f}\") AS \"{f}_min\", max(\"{f}\") AS \"{f}_max\", \
                         count(\"{f}\") AS \"{f}_count\", sum(\"{f}\") AS \"{f}_sum\""
                    )
                } else {
                    format!(
                        "sum(\"{f}_sum\") / sum(\"{f}_count\") AS \"{f}\", min(\"{f}_min\") AS \"{f}_min\", \
                         max(\"{f}_max\") AS \"{f}_max\", sum(\"{f}_count\") AS \"{f}_count\", \
                         sum(\"{f}_sum\") AS \"{f}_sum\""
                    )
                }
            })
            .collect();
        format!(
            "SELECT {} INTO {db}.\"{}\".\"{MEASUREMENT}\" FROM {db}.\"{}\".\"{MEASUREMENT}\"",
            selections.join(", "),
            self.into_rp,
            self.from_rp,
        )
    }

    /// The continuous query. `RESAMPLE ... FOR` recomputes recent buckets, catching late
    /// readings; older backfills go through [`InfluxClient::backfill_rollups`].
    fn continuous_query(&self, name: &str, database: &str) -> String {
        let resample = if self.from_rp == "raw" {
            "RESAMPLE EVERY 10m FOR 2h"
        } else {
            "RESAMPLE EVERY 1h FOR 2d"
        };
        format!(
            "CREATE CONTINUOUS QUERY \"{name}\" ON {} {resample} BEGIN {} GROUP BY time({}), * END",
            quote_identifier(database),
            self.select_into(database),
            self.bucket,
        )
    }
}

impl InfluxClient {
    /// Recomputes the hourly and daily rollups for `[start, end)`, e.g. after loading
    /// historical data that the continuous queries (which only look back a little) never saw.
    pub async fn backfill_rollups(
        &self,
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), InfluxError> {
        use chrono::SecondsFormat::Secs;
        for rollup in ROLLUPS {
            // Whole buckets only: a rollup point computed from part of its bucket would be wrong.
            let width = if rollup.bucket == "1h" { 3600 } else { 86_400 };
            let (from, to) = (floor_to(start, width), ceil_to(end, width));
            self.query(&format!(
                "{} WHERE time >= '{}' AND time < '{}' GROUP BY time({}), *",
                rollup.select_into(&self.database),
                from.to_rfc3339_opts(Secs, true),
                to.to_rfc3339_opts(Secs, true),
                rollup.bucket,
            ))
            .await?;
        }
        Ok(())
    }
}

fn floor_to(t: chrono::DateTime<chrono::Utc>, width: i64) -> chrono::DateTime<chrono::Utc> {
    let secs = t.timestamp();
    chrono::DateTime::from_timestamp(secs - secs.rem_euclid(width), 0).unwrap_or(t)
}

fn ceil_to(t: chrono::DateTime<chrono::Utc>, width: i64) -> chrono::DateTime<chrono::Utc> {
    let floor = floor_to(t, width);
    if floor == t {
        t
    } else {
        floor + chrono::Duration::seconds(width)
    }
}

/// How far back the continuous queries recompute; readings older than this when written
/// must be rolled up by [`InfluxClient::backfill_rollups`].
pub const ROLLUP_LOOKBACK_SECS: i64 = 2 * 3600;

async fn check_status(response: reqwest::Response) -> Result<String, InfluxError> {
    let status = response.status();
    let body = response.text().await.map_err(InfluxError::Unreachable)?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(InfluxError::Status {
            status: status.as_u16(),
            body: body.chars().take(500).collect(),
        })
    }
}

/// Accepts only identifiers that never need escaping: letters, digits and `_`.
pub fn validate_identifier(name: &str) -> Result<(), InfluxError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(InfluxError::Identifier(name.to_owned()))
    }
}

/// Double-quotes an identifier already checked by [`validate_identifier`].
fn quote_identifier(name: &str) -> String {
    format!("\"{name}\"")
}

/// Parses InfluxDB's Go-style duration (`8736h0m0s`, `0s` for infinite) into whole hours.
fn parse_duration_hours(text: &str) -> u64 {
    text.split_once('h')
        .and_then(|(hours, _)| hours.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_influx_prints_them() {
        assert_eq!(parse_duration_hours("8736h0m0s"), 52 * 7 * 24);
        assert_eq!(parse_duration_hours("0s"), 0);
        assert_eq!(parse_duration_hours("168h0m0s"), 168);
    }

    #[test]
    fn identifiers_that_need_escaping_are_refused() {
        assert!(validate_identifier("telemetry_test_1").is_ok());
        for bad in ["", "tele metry", "a\"b", "x;DROP", "ü"] {
            assert!(validate_identifier(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_refusals_of_the_points_are_their_fault_everything_else_is_an_outage() {
        let answered = |status: u16| InfluxError::Status {
            status,
            body: format!("{status}"),
        };
        for status in [400, 413, 422] {
            assert_eq!(
                answered(status).refusal(),
                Some(status.to_string().as_str())
            );
            assert!(!answered(status).is_outage());
        }
        // Rotated credentials and a missing database must hold the points, not drop them.
        for status in [401, 403, 404, 429, 500, 503, 504] {
            assert!(answered(status).is_outage(), "{status}");
            assert_eq!(answered(status).refusal(), None);
        }
        assert!(!InfluxError::Identifier("x y".into()).is_outage());
        let limit = InfluxError::Status {
            status: 400,
            body: "partial write: max-series-per-database limit exceeded: (1000000) dropped=1"
                .into(),
        };
        assert!(limit.is_outage() && limit.refusal().is_none());
    }

    #[test]
    fn rollups_read_and_write_the_right_policies() {
        let hourly = ROLLUPS[0].continuous_query(CQ_HOURLY, "telemetry");
        assert!(hourly.contains(r#"INTO "telemetry"."hourly"."sensor_readings" FROM "telemetry"."raw"."sensor_readings""#));
        assert!(hourly.contains(r#"count("speed") AS "speed_count""#));
        let daily = ROLLUPS[1].continuous_query(CQ_DAILY, "telemetry");
        assert!(daily.contains(r#"sum("pressure_sum") / sum("pressure_count") AS "pressure""#));
        assert!(daily.contains("GROUP BY time(1d), *"));
    }
}
