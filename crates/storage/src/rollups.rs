//! Late hours: hours whose `hourly`/`daily` rollups miss readings that arrived after the
//! continuous queries' look-back. The write path marks them (before it answers), history reads
//! them raw while marked, and the rollup job recomputes them and then clears the mark, only
//! if no newer late reading re-marked the hour meanwhile.
//!
//! Redis layout: a sorted set of hour starts (unix seconds) scored by when they were last
//! marked (unix milliseconds), and a generation counter that retires cached aggregates.

use crate::registry::MachineInfo;
use deadpool_redis::redis;
use domain::reading::Reading;
use platform::redis::{RedisClient, RedisError};
use platform::redis_keys::{LATE_HOURS, ROLLUP_GENERATION};
use std::collections::BTreeSet;

/// More pending hours than this and history reads raw rather than list them all.
const MAX_PENDING_READ: isize = 10_000;

/// Removes a mark only if its score is the one the job read: a reading marked after the
/// recompute started keeps the hour pending.
const CLEAR_IF_UNCHANGED: &str = r"
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0";

/// Queues, on `pipe`, the hours of readings too old for the continuous queries to see, and
/// a new generation so no cached aggregate of those hours is served again.
pub fn queue_late_hours(
    pipe: &mut redis::Pipeline,
    redis: &RedisClient,
    batches: &[(&MachineInfo, &[Reading])],
) {
    let now = chrono::Utc::now();
    let cutoff = now.timestamp() - platform::influx::ROLLUP_LOOKBACK_SECS + 300;
    let mut hours: Vec<i64> = batches
        .iter()
        .flat_map(|(_, readings)| readings.iter())
        .map(|r| r.timestamp().nanos().div_euclid(1_000_000_000))
        .filter(|secs| *secs < cutoff)
        .map(|secs| secs - secs.rem_euclid(3600))
        .collect();
    hours.sort_unstable();
    hours.dedup();
    if hours.is_empty() {
        return;
    }
    let marked_at = now.timestamp_millis();
    let mut add = redis::cmd("ZADD");
    add.arg(redis.key(LATE_HOURS));
    for hour in hours {
        add.arg(marked_at).arg(hour);
    }
    pipe.add_command(add).ignore();
    pipe.cmd("INCR").arg(redis.key(ROLLUP_GENERATION)).ignore();
}

/// Every hour waiting for its rollup; `None` when there are too many to list.
pub async fn pending(redis: &RedisClient) -> Result<Option<BTreeSet<i64>>, RedisError> {
    let members: Vec<String> = redis
        .query(
            redis::cmd("ZRANGE")
                .arg(redis.key(LATE_HOURS))
                .arg(0)
                .arg(MAX_PENDING_READ),
        )
        .await?;
    if members.len() > MAX_PENDING_READ as usize {
        return Ok(None);
    }
    Ok(Some(
        members.iter().filter_map(|m| m.parse().ok()).collect(),
    ))
}

/// A marked hour as the job read it: the hour start and the mark it must match to clear it.
#[derive(Debug, Clone)]
pub struct Mark {
    pub hour: i64,
    score: String,
}

/// The `count` longest-waiting marks.
pub async fn oldest(redis: &RedisClient, count: isize) -> Result<Vec<Mark>, RedisError> {
    let marks: Vec<(String, String)> = redis
        .query(
            redis::cmd("ZRANGE")
                .arg(redis.key(LATE_HOURS))
                .arg(0)
                .arg(count - 1)
                .arg("WITHSCORES"),
        )
        .await?;
    Ok(marks
        .into_iter()
        .filter_map(|(hour, score)| {
            Some(Mark {
                hour: hour.parse().ok()?,
                score,
            })
        })
        .collect())
}

/// Clears `mark` unless the hour was marked again meanwhile; returns whether it was cleared.
pub async fn clear(redis: &RedisClient, mark: &Mark) -> Result<bool, RedisError> {
    let removed: i64 = redis
        .query(
            redis::cmd("EVAL")
                .arg(CLEAR_IF_UNCHANGED)
                .arg(1)
                .arg(redis.key(LATE_HOURS))
                .arg(mark.hour)
                .arg(&mark.score),
        )
        .await?;
    Ok(removed == 1)
}

/// Retires every cached aggregate (after rollups changed).
pub async fn new_generation(redis: &RedisClient) -> Result<(), RedisError> {
    redis
        .query::<i64>(redis::cmd("INCR").arg(redis.key(ROLLUP_GENERATION)))
        .await
        .map(|_| ())
}
