//! Alerts after a write: judge the stored readings (`domain::alerts`), keep one open alert per
//! machine and metric in Postgres (repeats update it, a normal reading closes it), and announce
//! every change on the Redis channel `alerts` — query-api's live stream and mqtt-bridge's MQTT
//! relay listen there. Both write paths call [`AlertEngine::after_store`]; query-api runs the
//! inactivity sweep.
//!
//! The hot path stays cheap: Postgres is only asked when a reading is out of range or the
//! machine has an open alert, which Redis (`alert:open:{machine}`) says in one `MGET` per batch.

pub mod queries;

use crate::registry::MachineInfo;
use crate::schema::alerts;
use crate::settings::LiveSettings;
use chrono::{DateTime, Utc};
use deadpool_redis::redis;
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Double, Integer, Timestamptz, Uuid as SqlUuid, Varchar};
use diesel_async::RunQueryDsl;
use domain::alerts::{Metric, Observation, Severity, Thresholds, observe};
use domain::reading::Reading;
use platform::postgres::{DbError, PgPool};
use platform::redis::RedisClient;
use platform::redis_keys;
use serde::Serialize;
use std::collections::HashMap;
use uuid::Uuid;

/// One alert as stored and served.
#[derive(
    Debug, Clone, PartialEq, Serialize, serde::Deserialize, Queryable, Selectable, QueryableByName,
)]
#[diesel(table_name = alerts)]
pub struct Alert {
    pub id: Uuid,
    pub machine_id: Uuid,
    pub factory_id: String,
    pub metric: Metric,
    /// The worst seen while open.
    pub severity: Severity,
    /// The newest offending value (seconds of silence for inactivity).
    pub value: f64,
    /// The threshold it crossed.
    pub threshold: f64,
    /// First offending reading.
    pub first_seen: DateTime<Utc>,
    /// Latest offending reading.
    pub last_seen: DateTime<Utc>,
    /// Offending readings (or inactivity checks) while open.
    pub count: i32,
    /// When a normal reading closed it.
    pub closed_at: Option<DateTime<Utc>>,
    /// Who acknowledged it.
    pub acknowledged_by: Option<Uuid>,
    pub acknowledged_at: Option<DateTime<Utc>>,
}

#[derive(QueryableByName)]
struct Upserted {
    #[diesel(embed)]
    alert: Alert,
    #[diesel(sql_type = Bool)]
    inserted: bool,
}

/// What happened to an alert (published on [`redis_keys::ALERTS_CHANNEL`] by whoever changed it, read by
/// query-api's streams and mqtt-bridge's relay: one type for both).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct AlertEvent {
    pub event: AlertChange,
    /// The alert after the change.
    pub alert: Alert,
    /// Where the machine stands, when whoever changed the alert knew (the write paths and
    /// the inactivity sweep do): live streams filter on it without a registry lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// The kinds of [`AlertEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertChange {
    /// A first offending reading.
    Opened,
    /// Another offending reading while open.
    Updated,
    /// A normal reading ended it.
    Closed,
    /// Someone with ack:alerts took note.
    Acknowledged,
}

impl AlertChange {
    /// As on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Updated => "updated",
            Self::Closed => "closed",
            Self::Acknowledged => "acknowledged",
        }
    }
}

/// Tries to write one batch's alert changes before giving up on them (the message of the
/// final ERROR names the number).
pub const PERSIST_ATTEMPTS: u32 = 3;

/// The key telling the write paths which metrics of a machine have an open alert.
pub fn open_key(redis: &RedisClient, machine: &Uuid) -> String {
    redis.key(&redis_keys::open_alerts(machine))
}

fn time(ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(ns)
}

/// Judges stored readings and keeps the alerts table and its announcements current.
#[derive(Clone)]
pub struct AlertEngine {
    pg: PgPool,
    redis: RedisClient,
    settings: LiveSettings,
}

/// Why alerts could not be updated (the readings are stored regardless).
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Db(#[from] DbError),
    /// A query failed.
    #[error("alert query: {0}")]
    Query(#[from] diesel::result::Error),
    #[error(transparent)]
    Redis(#[from] platform::redis::RedisError),
}

impl AlertEngine {
    /// An engine reading thresholds from `settings` (so a change applies to the next reading).
    pub fn new(pg: PgPool, redis: RedisClient, settings: LiveSettings) -> Self {
        Self {
            pg,
            redis,
            settings,
        }
    }

    fn thresholds(&self) -> Thresholds {
        Thresholds {
            max_temperature: self
                .settings
                .get(domain::settings::key::MAX_TEMPERATURE_THRESHOLD),
            min_temperature: self
                .settings
                .get(domain::settings::key::MIN_TEMPERATURE_THRESHOLD),
            max_pressure: self
                .settings
                .get(domain::settings::key::MAX_PRESSURE_THRESHOLD),
        }
    }

    /// After a batch was stored: opens, updates and closes alerts and announces the changes.
    pub async fn after_store(
        &self,
        batches: &[(&MachineInfo, &[Reading])],
    ) -> Result<Vec<AlertEvent>, AlertError> {
        self.after_store_knowing(batches, None).await
    }

    /// [`after_store`](Self::after_store) for a caller that already read the machines'
    /// [`open_key`]s (ingest-api reads them with its registry lookup: no extra round trip).
    #[tracing::instrument(name = "alerts.judge", skip_all, fields(machines = batches.len()))]
    pub async fn after_store_knowing(
        &self,
        batches: &[(&MachineInfo, &[Reading])],
        known_open: Option<&HashMap<Uuid, Option<String>>>,
    ) -> Result<Vec<AlertEvent>, AlertError> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let merged = merge_per_machine(batches);
        let open = self.open_metrics(&merged, known_open).await;
        let work = relevant_observations(&merged, open, &self.thresholds());
        if work.is_empty() {
            return Ok(Vec::new());
        }
        let (breaches, closing) = changes_of(&work);
        let mut events = self.persist(breaches, &closing).await?;
        locate(&mut events, work.iter().map(|(machine, _, _)| *machine));
        let mut pipe = redis::pipe();
        self.queue_open_metrics(&mut pipe, &work);
        self.queue_announcements(&mut pipe, &events);
        if pipe.cmd_iter().next().is_none() {
            return Ok(events);
        }
        if let Err(err) = self.redis.query_pipeline::<()>(&pipe).await {
            tracing::warn!(error = %err, events = events.len(), "Redis lost: alert changes not announced");
        }
        Ok(events)
    }

    /// Each machine's open metrics (comma-separated) as known before this batch.
    async fn open_metrics(
        &self,
        merged: &[(&MachineInfo, Vec<Reading>)],
        known_open: Option<&HashMap<Uuid, Option<String>>>,
    ) -> Vec<Option<String>> {
        if let Some(known) = known_open {
            return merged
                .iter()
                .map(|(m, _)| known.get(&m.id).cloned().flatten())
                .collect();
        }
        let keys: Vec<String> = merged
            .iter()
            .map(|(m, _)| open_key(&self.redis, &m.id))
            .collect();
        // Unknown (Redis away) counts as "nothing open": closing waits for Redis, opening
        // does not.
        self.redis
            .query(redis::cmd("MGET").arg(&keys))
            .await
            .unwrap_or_else(|_| vec![None; keys.len()])
    }

    /// The open metrics after this batch follow from before and the batch's own verdicts: a
    /// metric that ended normal is closed (whether or not this request's statement found it
    /// open: a concurrent request may have closed it first), one that breached and did not end
    /// normal is open. Written only when that differs from before: a stale key would otherwise
    /// be written back and make every later batch try to close what is not open.
    fn queue_open_metrics(&self, pipe: &mut redis::Pipeline, work: &[Work<'_>]) {
        for (machine, before, observations) in work {
            let mut was: Vec<&str> = before.split(',').filter(|m| !m.is_empty()).collect();
            let mut open = was.clone();
            for observation in observations {
                let metric = observation.metric.as_str();
                open.retain(|m| *m != metric);
                if observation.breaches > 0 && !observation.ends_normal {
                    open.push(metric);
                }
            }
            open.sort_unstable();
            open.dedup();
            was.sort_unstable();
            if open == was {
                continue;
            }
            let key = open_key(&self.redis, &machine.id);
            if open.is_empty() {
                pipe.cmd("DEL").arg(key).ignore();
            } else {
                pipe.cmd("SET").arg(key).arg(open.join(",")).ignore();
            }
        }
    }

    /// One statement for every breach of the batch, one for every close: at most two round
    /// trips to Postgres, however many machines the batch carries. Nothing is written until
    /// the upsert succeeds, so a failure up to there (Postgres restarting, a broken pooled
    /// connection) is retried, [`PERSIST_ATTEMPTS`] times in all.
    async fn persist(
        &self,
        breaches: Breaches,
        closing: &[(Uuid, &'static str)],
    ) -> Result<Vec<AlertEvent>, AlertError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let upserted = async {
                let mut conn = platform::postgres::connection(&self.pg).await?;
                let events = breaches.clone().upsert(&mut conn).await?;
                Ok::<_, AlertError>((conn, events))
            }
            .await;
            match upserted {
                Ok((mut conn, mut events)) => {
                    events.extend(close_all(&mut conn, closing).await?);
                    return Ok(events);
                }
                Err(err) if attempt < PERSIST_ATTEMPTS => {
                    tracing::warn!(attempt, error = %err, "alert changes not persisted; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(50 * u64::from(attempt)))
                        .await;
                }
                Err(err) => {
                    tracing::error!(
                        attempts = PERSIST_ATTEMPTS,
                        error = %err,
                        "alert changes: persist failed after 3 attempts; the readings are stored"
                    );
                    return Err(err);
                }
            }
        }
    }

    /// Opens (or refreshes) an inactivity alert for every active machine silent for longer than
    /// `inactivity_timeout`, judged by its latest values in Redis; re-writes the open-alert keys
    /// from Postgres so they heal after a Redis restart.
    pub async fn sweep_inactivity(&self) -> Result<Vec<AlertEvent>, AlertError> {
        use crate::schema::machine_metadata as mm;
        let timeout = self.settings.get(domain::settings::key::INACTIVITY_TIMEOUT);
        let mut conn = platform::postgres::connection(&self.pg).await?;
        let machines: Vec<MachineInfo> = mm::table
            .filter(mm::status.eq("active"))
            .select(MachineInfo::as_select())
            .load(&mut conn)
            .await?;
        let mut pipe = redis::pipe();
        for machine in &machines {
            pipe.cmd("HMGET")
                .arg(crate::latest::latest_key(&self.redis, &machine.id))
                .arg(&["temperature_ts", "pressure_ts", "speed_ts"][..]);
        }
        let latest: Vec<Vec<Option<i64>>> = self.redis.query_pipeline(&pipe).await?;
        let now = Utc::now();
        let mut silent_machines = Breaches::default();
        for (machine, stamps) in machines.iter().zip(latest) {
            // Never reported (or Redis forgot): nothing to judge yet.
            let Some(newest) = stamps.into_iter().flatten().max() else {
                continue;
            };
            let silent = (now - time(newest)).num_seconds();
            if silent > timeout {
                silent_machines.push(
                    machine,
                    Metric::Inactivity,
                    Severity::Warning,
                    (silent as f64, timeout as f64),
                    (now, now),
                    1,
                );
            }
        }
        let mut events = silent_machines.upsert(&mut conn).await?;
        locate(&mut events, machines.iter());
        let open: Vec<Uuid> = alerts::table
            .filter(alerts::closed_at.is_null())
            .select(alerts::machine_id)
            .distinct()
            .load(&mut conn)
            .await?;
        self.sync_open_keys(&mut conn, &open).await?;
        self.announce(&events).await;
        Ok(events)
    }

    /// Writes `alert:open:{machine}` for each machine from Postgres (deleted when none is open).
    async fn sync_open_keys(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
        machines: &[Uuid],
    ) -> Result<(), AlertError> {
        if machines.is_empty() {
            return Ok(());
        }
        let open: Vec<(Uuid, String)> = alerts::table
            .filter(alerts::machine_id.eq_any(machines))
            .filter(alerts::closed_at.is_null())
            .select((alerts::machine_id, alerts::metric))
            .load(conn)
            .await?;
        let mut by_machine: HashMap<Uuid, Vec<String>> = HashMap::new();
        for (machine, metric) in open {
            by_machine.entry(machine).or_default().push(metric);
        }
        let mut pipe = redis::pipe();
        for machine in machines {
            let key = open_key(&self.redis, machine);
            match by_machine.get(machine) {
                Some(metrics) => pipe.cmd("SET").arg(key).arg(metrics.join(",")).ignore(),
                None => pipe.cmd("DEL").arg(key).ignore(),
            };
        }
        self.redis.query_pipeline::<()>(&pipe).await?;
        Ok(())
    }

    fn queue_announcements(&self, pipe: &mut redis::Pipeline, events: &[AlertEvent]) {
        for event in events {
            pipe.cmd("PUBLISH")
                .arg(self.redis.key(redis_keys::ALERTS_CHANNEL))
                .arg(serde_json::to_string(event).unwrap_or_default())
                .ignore();
        }
    }

    /// Publishes `events` on the alerts channel (best effort: they are stored already).
    pub async fn announce(&self, events: &[AlertEvent]) {
        if events.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        self.queue_announcements(&mut pipe, events);
        if let Err(err) = self.redis.query_pipeline::<()>(&pipe).await {
            tracing::warn!(error = %err, events = events.len(), "Redis lost: alert changes not announced");
        }
    }
}

/// Gives each event its machine's location, from the entries the caller judged.
fn locate<'a>(events: &mut [AlertEvent], machines: impl Iterator<Item = &'a MachineInfo>) {
    let locations: HashMap<Uuid, &str> = machines.map(|m| (m.id, m.location.as_str())).collect();
    for event in events {
        event.location = locations
            .get(&event.alert.machine_id)
            .map(|l| (*l).to_owned());
    }
}

/// Breaches to record, one row per machine and metric, as column arrays for `UNNEST`.
#[derive(Default, Clone)]
struct Breaches {
    machine_id: Vec<Uuid>,
    factory_id: Vec<String>,
    metric: Vec<&'static str>,
    severity: Vec<&'static str>,
    value: Vec<f64>,
    threshold: Vec<f64>,
    first_seen: Vec<DateTime<Utc>>,
    last_seen: Vec<DateTime<Utc>>,
    count: Vec<i32>,
}

impl Breaches {
    fn push(
        &mut self,
        machine: &MachineInfo,
        metric: Metric,
        severity: Severity,
        (value, threshold): (f64, f64),
        (first_seen, last_seen): (DateTime<Utc>, DateTime<Utc>),
        count: i32,
    ) {
        self.machine_id.push(machine.id);
        self.factory_id.push(machine.factory_id.clone());
        self.metric.push(metric.as_str());
        self.severity.push(severity.as_str());
        self.value.push(value);
        self.threshold.push(threshold);
        self.first_seen.push(first_seen);
        self.last_seen.push(last_seen);
        self.count.push(count);
    }

    /// Opens or updates one alert per row, in one statement.
    async fn upsert(
        self,
        conn: &mut diesel_async::AsyncPgConnection,
    ) -> Result<Vec<AlertEvent>, AlertError> {
        if self.machine_id.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<Upserted> = diesel::sql_query(
            "INSERT INTO alerts (machine_id, factory_id, metric, severity, value, threshold, first_seen, last_seen, count)
             SELECT * FROM UNNEST($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (machine_id, metric) WHERE closed_at IS NULL DO UPDATE SET
               severity = CASE WHEN alerts.severity = 'critical' OR EXCLUDED.severity = 'critical'
                               THEN 'critical' ELSE 'warning' END,
               value = EXCLUDED.value,
               threshold = EXCLUDED.threshold,
               last_seen = GREATEST(alerts.last_seen, EXCLUDED.last_seen),
               count = alerts.count + EXCLUDED.count
             RETURNING *, (xmax = 0) AS inserted",
        )
        .bind::<Array<SqlUuid>, _>(self.machine_id)
        .bind::<Array<Varchar>, _>(self.factory_id)
        .bind::<Array<Varchar>, _>(self.metric)
        .bind::<Array<Varchar>, _>(self.severity)
        .bind::<Array<Double>, _>(self.value)
        .bind::<Array<Double>, _>(self.threshold)
        .bind::<Array<Timestamptz>, _>(self.first_seen)
        .bind::<Array<Timestamptz>, _>(self.last_seen)
        .bind::<Array<Integer>, _>(self.count)
        .load(conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| AlertEvent {
                event: if row.inserted {
                    AlertChange::Opened
                } else {
                    AlertChange::Updated
                },
                alert: row.alert,
                location: None,
            })
            .collect())
    }
}

/// Closes the open alerts of these (machine, metric) pairs, in one statement.
async fn close_all(
    conn: &mut diesel_async::AsyncPgConnection,
    pairs: &[(Uuid, &'static str)],
) -> Result<Vec<AlertEvent>, AlertError> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let (machines, metrics): (Vec<Uuid>, Vec<&str>) = pairs.iter().copied().unzip();
    let closed: Vec<Alert> = diesel::sql_query(
        "UPDATE alerts SET closed_at = now()
         FROM UNNEST($1, $2) AS normal(machine_id, metric)
         WHERE alerts.machine_id = normal.machine_id AND alerts.metric = normal.metric
           AND alerts.closed_at IS NULL
         RETURNING alerts.*",
    )
    .bind::<Array<SqlUuid>, _>(machines)
    .bind::<Array<Varchar>, _>(metrics)
    .load(conn)
    .await?;
    Ok(closed
        .into_iter()
        .map(|alert| AlertEvent {
            event: AlertChange::Closed,
            alert,
            location: None,
        })
        .collect())
}

/// A machine, its open metrics before the batch, and the observations that change something.
type Work<'a> = (&'a MachineInfo, String, Vec<Observation>);

/// One entry per machine: the bridge's micro-batches hold a machine once per message, and one
/// statement may touch each alert only once.
fn merge_per_machine<'a>(
    batches: &[(&'a MachineInfo, &[Reading])],
) -> Vec<(&'a MachineInfo, Vec<Reading>)> {
    let mut merged: Vec<(&MachineInfo, Vec<Reading>)> = Vec::new();
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    for (machine, readings) in batches {
        match index.get(&machine.id) {
            Some(&at) => merged[at].1.extend_from_slice(readings),
            None => {
                index.insert(machine.id, merged.len());
                merged.push((machine, readings.to_vec()));
            }
        }
    }
    merged
}

/// Breaches, and normal readings of a metric that is open; everything else changes nothing.
fn relevant_observations<'a>(
    merged: &[(&'a MachineInfo, Vec<Reading>)],
    open: Vec<Option<String>>,
    thresholds: &Thresholds,
) -> Vec<Work<'a>> {
    let mut work = Vec::new();
    for ((machine, readings), open) in merged.iter().zip(open) {
        let open = open.unwrap_or_default();
        let relevant: Vec<Observation> = observe(readings, thresholds)
            .into_iter()
            .filter(|o| {
                o.breaches > 0 || (o.ends_normal && open.split(',').any(|m| m == o.metric.as_str()))
            })
            .collect();
        if !relevant.is_empty() {
            work.push((*machine, open, relevant));
        }
    }
    work
}

/// The upserts and closes the observations ask for.
fn changes_of(work: &[Work<'_>]) -> (Breaches, Vec<(Uuid, &'static str)>) {
    let mut breaches = Breaches::default();
    let mut closing = Vec::new();
    for (machine, _, observations) in work {
        for observation in observations {
            if let (Some(first), Some(last), Some(worst)) = (
                observation.first_breach,
                observation.latest_breach,
                observation.worst,
            ) {
                breaches.push(
                    machine,
                    observation.metric,
                    worst,
                    (last.value, last.threshold),
                    (time(first.at_ns), time(last.at_ns)),
                    observation.breaches as i32,
                );
            }
            if observation.ends_normal {
                closing.push((machine.id, observation.metric.as_str()));
            }
        }
    }
    (breaches, closing)
}
