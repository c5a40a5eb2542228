//! Persistence of system settings (`system_config`), and the running services' view of them,
//! re-read every 500 ms. Types, bounds and defaults live in `domain::settings`.

use crate::schema::system_config;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::ingest::BatchLimits;
use domain::reading::{ReadingRules, Timestamp};
use domain::settings::{Setting, SettingType, SettingValue, key, spec};
use serde_json::Value;
use std::collections::HashMap;
use uuid::Uuid;

/// How often every service reloads the settings: a change applies everywhere within this,
/// without a message between services.
pub const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// A stored (non-default) setting.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = system_config)]
pub struct StoredSetting {
    pub name: String,
    /// Value as JSON.
    pub value: Value,
    /// Grows by one with every change.
    pub version: i64,
    /// Who changed it last.
    pub updated_by: Option<Uuid>,
    pub updated_at: DateTime<Utc>,
}

/// Every stored setting by name.
pub async fn load_all(conn: &mut AsyncPgConnection) -> QueryResult<HashMap<String, StoredSetting>> {
    let rows = system_config::table
        .select(StoredSetting::as_select())
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.name.clone(), row))
        .collect())
}

/// The effective value of a setting: the stored one when valid, else the default.
/// A stored value that no longer fits the registry (bounds tightened) falls back loudly.
pub fn effective(stored: &HashMap<String, StoredSetting>, name: &str) -> Option<SettingValue> {
    let spec = spec(name)?;
    match stored.get(name) {
        Some(row) => match spec.parse(&row.value) {
            Ok(value) => Some(value),
            Err(err) => {
                tracing::warn!(setting = name, error = %err, "stored setting invalid; using the default");
                Some(spec.default)
            }
        },
        None => Some(spec.default),
    }
}

/// Stores a new value, bumping its version; returns the row.
pub async fn upsert(
    conn: &mut AsyncPgConnection,
    name: &str,
    value: &SettingValue,
    updated_by: Option<Uuid>,
) -> QueryResult<StoredSetting> {
    diesel::insert_into(system_config::table)
        .values((
            system_config::name.eq(name),
            system_config::value.eq(value.to_json()),
            system_config::updated_by.eq(updated_by),
        ))
        .on_conflict(system_config::name)
        .do_update()
        .set((
            system_config::value.eq(excluded(system_config::value)),
            system_config::version.eq(system_config::version + 1),
            system_config::updated_by.eq(excluded(system_config::updated_by)),
            system_config::updated_at.eq(diesel::dsl::now),
        ))
        .returning(StoredSetting::as_returning())
        .get_result(conn)
        .await
}

/// The current settings of a running service, refreshed from Postgres in the background so a
/// change made through query-api applies within about a second, without a restart.
#[derive(Clone)]
pub struct LiveSettings {
    stored: std::sync::Arc<std::sync::RwLock<HashMap<String, StoredSetting>>>,
    /// Readings older than this would be dropped by InfluxDB's raw policy, so they are refused.
    raw_retention_secs: i64,
}

impl LiveSettings {
    /// Starts from the defaults until the first refresh; `raw_retention_weeks` is the
    /// deployment's raw retention (`influx.raw_retention_weeks`).
    pub fn new(raw_retention_weeks: u32) -> Self {
        Self {
            stored: Default::default(),
            raw_retention_secs: i64::from(raw_retention_weeks) * 7 * 24 * 3600,
        }
    }

    /// A setting's value in force now (the default while unset).
    pub fn get<T: SettingType + Default>(&self, key: Setting<T>) -> T {
        let stored = self
            .stored
            .read()
            .map(|s| effective(&s, key.name))
            .ok()
            .flatten();
        key.read(stored)
    }

    /// The per-reading rules in force now: the same for HTTP batches and MQTT messages.
    pub fn reading_rules(&self) -> ReadingRules {
        let now = Timestamp::from_nanos(Utc::now().timestamp_nanos_opt().unwrap_or_default());
        ReadingRules {
            bounds: [
                (
                    self.get(key::TEMPERATURE_MIN_C),
                    self.get(key::TEMPERATURE_MAX_C),
                ),
                (0.0, self.get(key::PRESSURE_MAX_KPA)),
                (0.0, self.get(key::SPEED_MAX_RPM)),
            ],
            max_future_skew_secs: self.get(key::INGEST_MAX_FUTURE_SKEW_SECS),
            max_age_secs: self.raw_retention_secs,
            now,
        }
    }

    /// How many machines and readings one batch (HTTP request or MQTT message) may carry.
    pub fn batch_limits(&self) -> BatchLimits {
        BatchLimits {
            max_machines: self.get(key::INGEST_MAX_MACHINES_PER_BATCH) as usize,
            max_readings: self.get(key::INGEST_MAX_READINGS_PER_BATCH) as usize,
        }
    }

    /// Reloads every stored setting.
    pub async fn refresh(
        &self,
        pg: &platform::postgres::PgPool,
    ) -> Result<(), platform::postgres::DbError> {
        let mut conn = platform::postgres::connection(pg).await?;
        let rows = load_all(&mut conn).await?;
        if let Ok(mut stored) = self.stored.write() {
            *stored = rows;
        }
        Ok(())
    }

    /// The settings as stored now; the defaults (logged) while PostgreSQL does not answer,
    /// until [`keep_fresh`](Self::keep_fresh) reaches it.
    pub async fn load(raw_retention_weeks: u32, pg: &platform::postgres::PgPool) -> Self {
        let live = Self::new(raw_retention_weeks);
        if let Err(err) = live.refresh(pg).await {
            tracing::warn!(error = %err, "settings not loaded at start; using defaults until Postgres answers");
        }
        live
    }

    /// Reloads every [`REFRESH_EVERY`] while `app` runs.
    pub fn keep_fresh(&self, pg: platform::postgres::PgPool, app: &platform::Application) {
        app.spawn_background(
            self.clone()
                .run_refresh(pg, REFRESH_EVERY, app.shutdown_token()),
        );
    }

    /// Refreshes every `every` until `shutdown`; keeps the last known values while Postgres
    /// is away (logged once per outage).
    async fn run_refresh(
        self,
        pg: platform::postgres::PgPool,
        every: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut failing = false;
        loop {
            match self.refresh(&pg).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("settings refresh works again");
                }
                Ok(()) => {}
                Err(err) if !failing => {
                    failing = true;
                    tracing::warn!(error = %err, "settings not refreshed; keeping the last known values and retrying");
                }
                Err(_) => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}
