//! After a write InfluxDB acknowledged: the latest value per machine and field in Redis, and
//! a live message for dashboards. Both are best effort; the readings are already stored.

use crate::registry::MachineInfo;
use deadpool_redis::redis;
use domain::reading::{Field, Reading};
use platform::redis::{RedisClient, RedisError};
use platform::redis_keys;
use serde::Serialize;

/// For each key, sets `field` and `field_ts` only when the new timestamp is newer, so a late
/// or backfilled batch never overwrites a newer value. `ARGV` holds, per key, a count `n` and
/// then `n` triples (field, value, timestamp). Timestamps are compared as decimal strings
/// (length first): Lua's doubles cannot hold nanoseconds exactly. One call per request, by
/// SHA: the script is not resent every time.
const KEEP_NEWEST: &str = r"
local at = 1
for k = 1, #KEYS do
  local n = tonumber(ARGV[at])
  at = at + 1
  for i = 1, n do
    local field, value, ts = ARGV[at], ARGV[at + 1], ARGV[at + 2]
    at = at + 3
    local current = redis.call('HGET', KEYS[k], field .. '_ts') or ''
    if #ts > #current or (#ts == #current and ts > current) then
      redis.call('HSET', KEYS[k], field, value, field .. '_ts', ts)
    end
  end
end
return 0
";

/// The script's SHA once Redis has it; until then the script text is sent (`EVAL`).
static KEEP_NEWEST_SHA: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Loads the script into Redis's cache: at start, and after a Redis restart made `EVALSHA`
/// answer NOSCRIPT.
pub async fn load_script(redis: &RedisClient) -> Result<(), RedisError> {
    let sha: String = redis
        .query(redis::cmd("SCRIPT").arg("LOAD").arg(KEEP_NEWEST))
        .await?;
    let _ = KEEP_NEWEST_SHA.set(sha);
    Ok(())
}

/// Whether a failed pipeline failed because Redis forgot the script.
fn is_missing_script(err: &RedisError) -> bool {
    matches!(err, RedisError::Command(e)
        if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript))
}

/// Runs a pipeline holding [`queue`]d commands; when Redis restarted and forgot the script,
/// loads it and tries once more.
#[tracing::instrument(name = "redis.latest", skip_all)]
pub async fn run_pipeline(redis: &RedisClient, pipe: &redis::Pipeline) -> Result<(), RedisError> {
    match redis.query_pipeline::<()>(pipe).await {
        Err(err) if is_missing_script(&err) => {
            load_script(redis).await?;
            redis.query_pipeline::<()>(pipe).await
        }
        outcome => outcome,
    }
}

/// What live subscribers receive for each machine of a stored batch (the write paths
/// publish it, query-api's streams read it: one type for both).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LiveReadings {
    pub machine_id: uuid::Uuid,
    /// Its factory (stream filter).
    pub factory_id: String,
    /// Where it stands (stream filter).
    pub location: String,
    /// What was stored.
    pub readings: Vec<LiveReading>,
}

/// One reading on the live channel; `time_ms` is milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LiveReading {
    /// Milliseconds since the epoch.
    pub time_ms: i64,
    /// °C.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// kPa.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pressure: Option<f64>,
    /// RPM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
}

impl From<&Reading> for LiveReading {
    fn from(reading: &Reading) -> Self {
        Self {
            time_ms: reading.timestamp().nanos() / 1_000_000,
            temperature: reading.value(Field::Temperature),
            pressure: reading.value(Field::Pressure),
            speed: reading.value(Field::Speed),
        }
    }
}

/// The Redis key holding a machine's latest values.
pub fn latest_key(redis: &RedisClient, machine: &uuid::Uuid) -> String {
    redis.key(&redis_keys::latest(machine))
}

/// How often the write paths check for live subscribers: a new subscriber starts getting
/// readings within this (query-api holds a first stream's answer back that long).
pub const AUDIENCE_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether anyone listens on the live channel, refreshed in the background: serialising every
/// reading for a channel nobody reads would be the write path's largest avoidable cost.
#[derive(Clone, Default)]
pub struct LiveAudience(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl LiveAudience {
    /// True when at least one subscriber was seen on the last check (or Redis is unknown).
    pub fn listening(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Polls `PUBSUB NUMSUB` every [`AUDIENCE_POLL`] until `shutdown`.
    pub async fn run(self, redis: RedisClient, shutdown: tokio_util::sync::CancellationToken) {
        let every = AUDIENCE_POLL;
        loop {
            let answer: Result<(String, i64), RedisError> = redis
                .query(
                    redis::cmd("PUBSUB")
                        .arg("NUMSUB")
                        .arg(redis.key(redis_keys::LIVE_READINGS_CHANNEL)),
                )
                .await;
            // Unknown (Redis away) counts as listening: publishing will fail and be logged.
            let listening = answer.map(|(_, count)| count > 0).unwrap_or(true);
            self.0
                .store(listening, std::sync::atomic::Ordering::Relaxed);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// Each field's newest (timestamp in ns, value), by [`Field`] index.
type NewestPerField = [Option<(i64, f64)>; 3];

/// Queues, on `pipe`, the newest value of each field per machine and (when `publish`) the
/// readings for live subscribers; the caller runs the pipeline (one round trip per request).
pub fn queue(
    pipe: &mut redis::Pipeline,
    redis: &RedisClient,
    batches: &[(&MachineInfo, &[Reading])],
    publish: bool,
) {
    let mut call = match KEEP_NEWEST_SHA.get() {
        Some(sha) => {
            let mut call = redis::cmd("EVALSHA");
            call.arg(sha);
            call
        }
        None => {
            let mut call = redis::cmd("EVAL");
            call.arg(KEEP_NEWEST);
            call
        }
    };
    // One entry per machine: the bridge's micro-batches name a machine once per message, and
    // only each field's newest value can win.
    let mut newest: Vec<(&uuid::Uuid, NewestPerField)> = Vec::new();
    let mut slot_of: std::collections::HashMap<&uuid::Uuid, usize> =
        std::collections::HashMap::with_capacity(batches.len());
    for (machine, readings) in batches {
        let slot = *slot_of.entry(&machine.id).or_insert_with(|| {
            newest.push((&machine.id, [None; 3]));
            newest.len() - 1
        });
        let fields = &mut newest[slot].1;
        for reading in readings.iter() {
            let ts = reading.timestamp().nanos();
            for (field, value) in reading.values() {
                let slot = &mut fields[field as usize];
                if slot.is_none_or(|(current, _)| ts > current) {
                    *slot = Some((ts, value));
                }
            }
        }
    }
    call.arg(newest.len());
    for (machine, _) in &newest {
        call.arg(latest_key(redis, machine));
    }
    for (_, fields) in &newest {
        call.arg(fields.iter().flatten().count());
        for field in Field::ALL {
            if let Some((ts, value)) = fields[field as usize] {
                call.arg(field.as_str()).arg(value).arg(ts.to_string());
            }
        }
    }
    if !batches.is_empty() {
        pipe.add_command(call).ignore();
    }
    if !publish {
        return;
    }
    for (machine, readings) in batches {
        let message = LiveReadings {
            machine_id: machine.id,
            factory_id: machine.factory_id.clone(),
            location: machine.location.clone(),
            readings: readings.iter().map(LiveReading::from).collect(),
        };
        pipe.cmd("PUBLISH")
            .arg(redis.key(redis_keys::LIVE_READINGS_CHANNEL))
            .arg(serde_json::to_string(&message).unwrap_or_default())
            .ignore();
    }
}
