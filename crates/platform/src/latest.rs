//! After a write InfluxDB acknowledged: the latest value per machine and field in Redis, and
//! a live message for dashboards. Both are best effort; the readings are already stored.

use crate::redis::{RedisClient, RedisError};
use crate::registry::MachineInfo;
use deadpool_redis::redis;
use domain::reading::{Field, Reading};

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

/// The Redis key holding a machine's latest values.
pub fn latest_key(redis: &RedisClient, machine: &uuid::Uuid) -> String {
    redis.key(&format!("latest:{machine}"))
}

/// Records the newest value of each field per machine and publishes the readings, in one
/// pipeline per request.
pub async fn record(
    redis: &RedisClient,
    batches: &[(&MachineInfo, &[Reading])],
) -> Result<(), RedisError> {
    let mut pipe = redis::pipe();
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
        let message = serde_json::json!({
            "machine_id": machine.id,
            "factory_id": machine.factory_id,
            "location": machine.location,
            "readings": readings.iter().map(|r| {
                let mut object = serde_json::Map::new();
                object.insert("timestamp".into(), r.timestamp().to_datetime().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true).into());
                for (field, value) in r.values() {
                    object.insert(field.as_str().into(), value.into());
                }
                serde_json::Value::Object(object)
            }).collect::<Vec<_>>(),
        });
        pipe.cmd("PUBLISH")
            .arg(redis.key(LIVE_CHANNEL))
            .arg(message.to_string())
            .ignore();
    }
    redis.query_pipeline::<()>(&pipe).await
}
