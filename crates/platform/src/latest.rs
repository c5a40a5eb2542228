//! After a write InfluxDB acknowledged: the latest value per machine and field in Redis, and
//! a live message for dashboards. Both are best effort; the readings are already stored.

use crate::redis::{RedisClient, RedisError};
use crate::registry::MachineInfo;
use deadpool_redis::redis;
use domain::reading::{Field, Reading};
use serde::Serialize;

/// Sets `field` and `field_ts` only when the new timestamp is newer, so a late or
/// backfilled batch never overwrites a newer value. Timestamps are compared as decimal
/// strings (length first): Lua's doubles cannot hold nanoseconds exactly.
const KEEP_NEWEST: &str = r"
local changed = 0
for i = 1, #ARGV, 3 do
  local field, value, ts = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local current = redis.call('HGET', KEYS[1], field .. '_ts') or ''
  if #ts > #current or (#ts == #current and ts > current) then
    redis.call('HSET', KEYS[1], field, value, field .. '_ts', ts)
    changed = 1
  end
end
return changed
";

/// The channel (under the deployment prefix) carrying stored readings to live streams.
pub const LIVE_CHANNEL: &str = "live:readings";

/// What live subscribers receive for each machine of a stored batch.
#[derive(Serialize)]
struct LiveMessage<'a> {
    machine_id: &'a uuid::Uuid,
    factory_id: &'a str,
    location: &'a str,
    readings: Vec<LiveReading>,
}

/// One reading on the live channel; `time_ms` is milliseconds since the epoch.
#[derive(Serialize)]
struct LiveReading {
    time_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pressure: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    speed: Option<f64>,
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
    redis.key(&format!("latest:{machine}"))
}

/// Whether anyone listens on the live channel, refreshed in the background: serialising every
/// reading for a channel nobody reads would be the write path's largest avoidable cost.
#[derive(Clone, Default)]
pub struct LiveAudience(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl LiveAudience {
    /// True when at least one subscriber was seen on the last check (or Redis is unknown).
    pub fn listening(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Polls `PUBSUB NUMSUB` every `every` until `shutdown`.
    pub async fn run(
        self,
        redis: RedisClient,
        every: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            let answer: Result<(String, i64), RedisError> = redis
                .query(
                    redis::cmd("PUBSUB")
                        .arg("NUMSUB")
                        .arg(redis.key(LIVE_CHANNEL)),
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

/// Queues, on `pipe`, the newest value of each field per machine and (when `publish`) the
/// readings for live subscribers; the caller runs the pipeline (one round trip per request).
pub fn queue(
    pipe: &mut redis::Pipeline,
    redis: &RedisClient,
    batches: &[(&MachineInfo, &[Reading])],
    publish: bool,
) {
    for (machine, readings) in batches {
        let mut newest: [Option<(i64, f64)>; 3] = [None; 3];
        for reading in readings.iter() {
            let ts = reading.timestamp().nanos();
            for (field, value) in reading.values() {
                let slot = &mut newest[field as usize];
                if slot.is_none_or(|(current, _)| ts > current) {
                    *slot = Some((ts, value));
                }
            }
        }
        let mut call = redis::cmd("EVAL");
        call.arg(KEEP_NEWEST)
            .arg(1)
            .arg(latest_key(redis, &machine.id));
        for field in Field::ALL {
            if let Some((ts, value)) = newest[field as usize] {
                call.arg(field.as_str()).arg(value).arg(ts.to_string());
            }
        }
        pipe.add_command(call).ignore();
        if !publish {
            continue;
        }
        let message = LiveMessage {
            machine_id: &machine.id,
            factory_id: &machine.factory_id,
            location: &machine.location,
            readings: readings.iter().map(LiveReading::from).collect(),
        };
        pipe.cmd("PUBLISH")
            .arg(redis.key(LIVE_CHANNEL))
            .arg(serde_json::to_string(&message).unwrap_or_default())
            .ignore();
    }
}
