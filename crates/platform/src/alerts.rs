//! Alerts after a write: judge the stored readings (`domain::alerts`), keep one open alert per
//! machine and metric in Postgres (repeats update it, a normal reading closes it), and announce
//! every change on the Redis channel `alerts` — query-api's live stream and mqtt-bridge's MQTT
//! relay listen there. Both write paths call [`AlertEngine::after_store`]; query-api runs the
//! inactivity sweep.
//!
//! The hot path stays cheap: Postgres is only asked when a reading is out of range or the
//! machine has an open alert, which Redis (`alert:open:{machine}`) says in one `MGET` per batch.

use crate::postgres::{DbError, PgPool};
use crate::redis::RedisClient;
use crate::registry::MachineInfo;
use crate::schema::alerts;
use crate::settings_store::LiveSettings;
use chrono::{DateTime, Utc};
use deadpool_redis::redis;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Double, Integer, Timestamptz, Uuid as SqlUuid, Varchar};
use diesel_async::RunQueryDsl;
use domain::alerts::{Metric, Observation, Severity, Thresholds, observe};
use domain::reading::Reading;
use serde::Serialize;
use std::collections::HashMap;
use uuid::Uuid;

/// The Redis channel (under the deployment prefix) carrying [`AlertEvent`]s.
pub const ALERTS_CHANNEL: &str = "alerts";

/// One alert as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = alerts)]
pub struct Alert {
    /// Id.
    pub id: Uuid,
    /// The machine.
    pub machine_id: Uuid,
    /// Its factory.
    pub factory_id: String,
    /// `temperature`, `pressure` or `inactivity`.
    pub metric: String,
    /// `warning` or `critical` (the worst seen while open).
    pub severity: String,
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
    /// When.
    pub acknowledged_at: Option<DateTime<Utc>>,
}

#[derive(QueryableByName)]
struct Upserted {
    #[diesel(embed)]
    alert: Alert,
    #[diesel(sql_type = Bool)]
    inserted: bool,
}

/// What happened to an alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    /// `opened`, `updated`, `closed` or `acknowledged`.
    pub event: &'static str,
    /// The alert after the change.
    pub alert: Alert,
}

/// The key telling the write paths which metrics of a machine have an open alert.
pub fn open_key(redis: &RedisClient, machine: &Uuid) -> String {
    redis.key(&format!("alert:open:{machine}"))
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
    /// Postgres.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A query failed.
    #[error("alert query: {0}")]
    Query(#[from] diesel::result::Error),
    /// Redis.
    #[error(transparent)]
    Redis(#[from] crate::redis::RedisError),
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
            max_temperature: self.settings.f64("max_temperature_threshold"),
            min_temperature: self.settings.f64("min_temperature_threshold"),
            max_pressure: self.settings.f64("max_pressure_threshold"),
        }
    }

    /// After a batch was stored: opens, updates and closes alerts and announces the changes.
    pub async fn after_store(
        &self,
        batches: &[(&MachineInfo, &[Reading])],
    ) -> Result<Vec<AlertEvent>, AlertError> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = batches
            .iter()
            .map(|(m, _)| open_key(&self.redis, &m.id))
            .collect();
        // Unknown (Redis away) counts as "nothing open": closing waits for Redis, opening not.
        let open: Vec<Option<String>> = self
            .redis
            .query(redis::cmd("MGET").arg(&keys))
            .await
            .unwrap_or_else(|_| vec![None; keys.len()]);
        let thresholds = self.thresholds();
        let mut work: Vec<(&MachineInfo, Vec<Observation>)> = Vec::new();
        for ((machine, readings), open) in batches.iter().zip(open) {
            let open = open.unwrap_or_default();
            let relevant: Vec<Observation> = observe(readings, &thresholds)
                .into_iter()
                .filter(|o| {
                    o.breaches > 0
                        || (o.ends_normal && open.split(',').any(|m| m == o.metric.as_str()))
                })
                .collect();
            if !relevant.is_empty() {
                work.push((machine, relevant));
            }
        }
        if work.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = crate::postgres::connection(&self.pg).await?;
        let mut events = Vec::new();
        for (machine, observations) in &work {
            for observation in observations {
                if let (Some(breach), Some(worst)) = (observation.latest_breach, observation.worst)
                {
                    let first = observation.first_breach.map_or(breach.at_ns, |b| b.at_ns);
                    events.push(
                        upsert(
                            &mut conn,
                            machine,
                            observation.metric,
                            worst,
                            breach.value,
                            breach.threshold,
                            (time(first), time(breach.at_ns)),
                            observation.breaches as i32,
                        )
                        .await?,
                    );
                }
                if observation.ends_normal
                    && let Some(alert) = close(&mut conn, &machine.id, observation.metric).await?
                {
                    events.push(AlertEvent {
                        event: "closed",
                        alert,
                    });
                }
            }
        }
        let machines: Vec<Uuid> = work.iter().map(|(m, _)| m.id).collect();
        self.sync_open_keys(&mut conn, &machines).await?;
        self.announce(&events).await;
        Ok(events)
    }

    /// Opens (or refreshes) an inactivity alert for every active machine silent for longer than
    /// `inactivity_timeout`, judged by its latest values in Redis; re-writes the open-alert keys
    /// from Postgres so they heal after a Redis restart.
    pub async fn sweep_inactivity(&self) -> Result<Vec<AlertEvent>, AlertError> {
        use crate::schema::machine_metadata as mm;
        let timeout = self.settings.i64("inactivity_timeout");
        let mut conn = crate::postgres::connection(&self.pg).await?;
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
        let mut events = Vec::new();
        for (machine, stamps) in machines.iter().zip(latest) {
            // Never reported (or Redis forgot): nothing to judge yet.
            let Some(newest) = stamps.into_iter().flatten().max() else {
                continue;
            };
            let silent = (now - time(newest)).num_seconds();
            if silent > timeout {
                events.push(
                    upsert(
                        &mut conn,
                        machine,
                        Metric::Inactivity,
                        Severity::Warning,
                        silent as f64,
                        timeout as f64,
                        (now, now),
                        1,
                    )
                    .await?,
                );
            }
        }
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

    /// Publishes `events` on the alerts channel (best effort: they are stored already).
    pub async fn announce(&self, events: &[AlertEvent]) {
        if events.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for event in events {
            pipe.cmd("PUBLISH")
                .arg(self.redis.key(ALERTS_CHANNEL))
                .arg(serde_json::to_string(event).unwrap_or_default())
                .ignore();
        }
        if let Err(err) = self.redis.query_pipeline::<()>(&pipe).await {
            tracing::warn!(error = %err, events = events.len(), "Redis lost: alert changes not announced");
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn upsert(
    conn: &mut diesel_async::AsyncPgConnection,
    machine: &MachineInfo,
    metric: Metric,
    severity: Severity,
    value: f64,
    threshold: f64,
    (first_seen, last_seen): (DateTime<Utc>, DateTime<Utc>),
    count: i32,
) -> Result<AlertEvent, AlertError> {
    let row: Upserted = diesel::sql_query(
        "INSERT INTO alerts (machine_id, factory_id, metric, severity, value, threshold, first_seen, last_seen, count)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (machine_id, metric) WHERE closed_at IS NULL DO UPDATE SET
           severity = CASE WHEN alerts.severity = 'critical' OR EXCLUDED.severity = 'critical'
                           THEN 'critical' ELSE 'warning' END,
           value = EXCLUDED.value,
           threshold = EXCLUDED.threshold,
           last_seen = GREATEST(alerts.last_seen, EXCLUDED.last_seen),
           count = alerts.count + EXCLUDED.count
         RETURNING *, (xmax = 0) AS inserted",
    )
    .bind::<SqlUuid, _>(machine.id)
    .bind::<Varchar, _>(&machine.factory_id)
    .bind::<Varchar, _>(metric.as_str())
    .bind::<Varchar, _>(severity.as_str())
    .bind::<Double, _>(value)
    .bind::<Double, _>(threshold)
    .bind::<Timestamptz, _>(first_seen)
    .bind::<Timestamptz, _>(last_seen)
    .bind::<Integer, _>(count)
    .get_result(conn)
    .await?;
    Ok(AlertEvent {
        event: if row.inserted { "opened" } else { "updated" },
        alert: row.alert,
    })
}

async fn close(
    conn: &mut diesel_async::AsyncPgConnection,
    machine: &Uuid,
    metric: Metric,
) -> Result<Option<Alert>, AlertError> {
    Ok(diesel::update(
        alerts::table
            .filter(alerts::machine_id.eq(machine))
            .filter(alerts::metric.eq(metric.as_str()))
            .filter(alerts::closed_at.is_null()),
    )
    .set(alerts::closed_at.eq(Utc::now()))
    .returning(Alert::as_returning())
    .get_result(conn)
    .await
    .optional()?)
}
