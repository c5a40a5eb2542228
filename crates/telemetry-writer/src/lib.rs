//! The telemetry write path: every entry point (the JSON batch and line protocol of
//! ingest-api, the MQTT bridge, and the InfluxDB-compatible and Sparkplug entry points to
//! come) parses its protocol into [`domain`] readings and hands them here. This crate owns
//! what happens next, once: **admit** (the registry says whether a machine may send, and
//! supplies its tags), **encode** (one line-protocol body), **write** (InfluxDB, within a
//! deadline or until it answers), then **after the store** (latest values, late rollup hours,
//! live updates, alerts).
//!
//! It must not know any protocol (HTTP status codes, MQTT acknowledgements, dead letters):
//! the entry points translate its outcomes into their own answers.

mod admission;
pub mod group;
pub mod jobs;
pub mod refusals;
mod start;

pub use admission::{Refusal, admit};
pub use refusals::Refused;
pub use start::WritePathParts;

use domain::MachineId;
use domain::line_protocol::{self, SeriesTags};
use domain::reading::Reading;
use platform::influx::{InfluxClient, InfluxError};
use platform::redis::RedisClient;
use std::collections::HashMap;
use std::time::Instant;
use storage::latest::LiveAudience;
use storage::registry::{Found, MachineInfo, MachineRegistry, RegistryError};
use uuid::Uuid;

/// Machines with their readings, as written (registry entry first: its tags are stored).
pub type Written<'a> = [(&'a MachineInfo, &'a [Reading])];

/// One process's (or one actix worker's) handle on the write path.
#[derive(Clone)]
pub struct TelemetryWriter {
    registry: MachineRegistry,
    /// For presence (Sparkplug births and deaths).
    pg: platform::postgres::PgPool,
    influx: InfluxClient,
    /// Concurrent callers' writes, shared (see [`group`]).
    group: group::WriteGroup,
    redis: RedisClient,
    audience: LiveAudience,
    alerts: storage::alerts::AlertEngine,
}

impl TelemetryWriter {
    /// The same writer, observing how many callers each shared InfluxDB write carried.
    pub fn observing_shared_writes(self, histogram: prometheus::Histogram) -> Self {
        Self {
            group: self.group.observed_by(histogram),
            ..self
        }
    }

    /// The Redis client the writer uses (its key prefix names every key).
    pub fn redis(&self) -> &RedisClient {
        &self.redis
    }

    /// Records that `machine` came online or went offline and, when that changed what was
    /// recorded, tells the live streams. Best effort: logged when PostgreSQL is away.
    pub async fn record_presence(&self, machine: MachineId, presence: storage::presence::Presence) {
        let recorded = async {
            let mut conn = platform::postgres::connection(&self.pg).await?;
            storage::presence::record(&mut conn, *machine.as_uuid(), presence)
                .await
                .map_err(platform::postgres::DbError::Query)
        };
        match recorded.await {
            Ok(false) => {}
            Ok(true) => {
                let info = self
                    .registry
                    .lookup(&[machine])
                    .await
                    .ok()
                    .and_then(|found| found.get(&machine).cloned().flatten());
                let event = storage::presence::PresenceEvent {
                    machine_id: *machine.as_uuid(),
                    factory_id: info
                        .as_ref()
                        .map(|i| i.factory_id.clone())
                        .unwrap_or_default(),
                    location: info.map(|i| i.location).unwrap_or_default(),
                    online: presence.online,
                    since: presence.since,
                };
                storage::presence::announce(&self.redis, &event).await;
            }
            Err(err) => {
                tracing::warn!(error = %err, machine_id = %machine, online = presence.online, "presence not recorded");
            }
        }
    }

    /// Looks the machines up (Redis cache, then PostgreSQL), reading the extra full `keys`
    /// in the same Redis round trip (a caller's rate counter, the machines' open alerts).
    pub async fn lookup(
        &self,
        machines: &[MachineId],
        keys: &[String],
    ) -> Result<(Found, Vec<Option<String>>), RegistryError> {
        self.registry.lookup_with(machines, keys).await
    }

    /// Writes `lines` (one point per line) within `deadline`: with other callers' lines when
    /// they write at the same time, then `then` (see [`bookkeeping`](Self::bookkeeping)) with
    /// theirs in one Redis round trip. Else (or when that shared write failed) alone,
    /// attempted up to `attempts` times while InfluxDB is out (an HTTP caller is waiting), and
    /// `then` is left to the caller ([`WriteOutcome::bookkept`] is false). When InfluxDB refuses
    /// points for their own sake, the rest are stored and the refused ones named by line
    /// index. `Err` is an outage: nothing is acknowledged.
    pub async fn write_within(
        &self,
        lines: String,
        deadline: Instant,
        attempts: u32,
        then: Option<deadpool_redis::redis::Pipeline>,
    ) -> Result<WriteOutcome, InfluxError> {
        let body = bytes::Bytes::from(lines);
        // With the other callers' bodies first: the path every healthy write takes.
        if let Ok(books) = self.group.write(body.clone(), then, deadline).await {
            return Ok(WriteOutcome {
                refused: Vec::new(),
                bookkept: books == group::Bookkeeping::Done,
            });
        }
        let write = |body: bytes::Bytes| async move {
            self.influx
                .write_with_retry(body, deadline, attempts)
                .await
                .map(|_| ())
        };
        // Alone (a cheap clone), retried while InfluxDB is out.
        let alone = WriteOutcome {
            refused: Vec::new(),
            bookkept: false,
        };
        match write(body.clone()).await {
            Ok(()) => return Ok(alone),
            Err(err) if err.refusal().is_none() => return Err(err),
            Err(err) => {
                tracing::warn!(error = %err, "InfluxDB refused part of a write; finding which points");
            }
        }
        let text = std::str::from_utf8(&body).unwrap_or_default();
        let points: Vec<&str> = text.split_inclusive('\n').collect();
        let refused = refusals::narrow(
            &points,
            |part: String| write(bytes::Bytes::from(part)),
            |err: &InfluxError| err.refusal().map(str::to_owned),
        )
        .await?;
        Ok(WriteOutcome { refused, ..alone })
    }

    /// One InfluxDB write, once: the caller (a spool) decides about retrying.
    pub async fn write_once(&self, lines: bytes::Bytes) -> Result<(), InfluxError> {
        self.influx.write_lines(lines, None).await
    }

    /// The Redis side of what follows a store, for [`write_within`](Self::write_within) to
    /// send with the write's group: latest values, late rollup hours and live updates, with
    /// the caller's own commands from `also`.
    pub fn bookkeeping(
        &self,
        written: &Written<'_>,
        also: impl FnOnce(&mut deadpool_redis::redis::Pipeline),
    ) -> deadpool_redis::redis::Pipeline {
        let mut pipe = deadpool_redis::redis::pipe();
        also(&mut pipe);
        if !written.is_empty() {
            storage::latest::queue(&mut pipe, &self.redis, written, self.audience.listening());
            storage::rollups::queue_late_hours(&mut pipe, &self.redis, written);
        }
        pipe
    }

    /// What follows a store InfluxDB acknowledged, best effort (the readings are stored):
    /// the [`bookkeeping`](Self::bookkeeping) in one Redis round trip, then alerts.
    /// `open_alerts` are the machines' open-alert keys when the caller read them with its
    /// lookup (saves a round trip).
    pub async fn after_store(
        &self,
        written: &Written<'_>,
        also: impl FnOnce(&mut deadpool_redis::redis::Pipeline),
        open_alerts: Option<&HashMap<Uuid, Option<String>>>,
    ) {
        if written.is_empty() {
            return;
        }
        let pipe = self.bookkeeping(written, also);
        if let Err(err) = storage::latest::run_pipeline(&self.redis, &pipe).await {
            tracing::warn!(error = %err, "Redis lost: latest values and live updates skipped; retrying on the next batch");
        }
        self.judge_alerts(written, open_alerts).await;
    }

    /// Alerts after a store whose bookkeeping went with its write's group.
    pub async fn judge_alerts(
        &self,
        written: &Written<'_>,
        open_alerts: Option<&HashMap<Uuid, Option<String>>>,
    ) {
        if written.is_empty() {
            return;
        }
        if let Err(err) = self.alerts.after_store_knowing(written, open_alerts).await {
            tracing::warn!(error = %err, "alerts not updated for this batch; the readings are stored");
        }
    }
}

/// What became of a [`TelemetryWriter::write_within`].
#[derive(Debug, Default)]
pub struct WriteOutcome {
    /// Points InfluxDB refused for their own sake (the rest are stored).
    pub refused: Vec<Refused>,
    /// Whether the bookkeeping given with the write was sent (else the caller sends it).
    pub bookkept: bool,
}

/// The line-protocol body of these machines' readings, tagged from their registry entries:
/// a retried write lands on the same series and overwrites itself.
pub fn encode<'a>(machines: impl IntoIterator<Item = (&'a MachineInfo, &'a [Reading])>) -> String {
    let mut lines = String::new();
    for (info, readings) in machines {
        let series = line_protocol::series_key(&SeriesTags {
            machine_id: &MachineId::from(info.id),
            factory_id: &info.factory_id,
            sensor_type: &info.sensor_type,
            location: &info.location,
        });
        lines.reserve(readings.len() * (series.len() + 48));
        for reading in readings {
            line_protocol::encode_line(&mut lines, &series, reading);
        }
    }
    lines
}
