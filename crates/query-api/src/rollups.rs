//! Rollup maintenance: recomputes the hourly/daily rollups of hours that received readings
//! too late for the continuous queries. Every query-api replica may run it; `ZPOPMIN` hands
//! each hour to one of them.

use deadpool_redis::redis;
use platform::influx::{InfluxClient, LATE_HOURS};
use platform::redis::RedisClient;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Works off the late hours every `every` until `shutdown`.
pub async fn run(
    influx: InfluxClient,
    redis: RedisClient,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(err) = work_off(&influx, &redis).await {
            tracing::warn!(error = %err, "rollup maintenance paused; retrying");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Recomputes up to 100 late hours; an hour that fails goes back into the set.
pub async fn work_off(influx: &InfluxClient, redis: &RedisClient) -> Result<usize, String> {
    let key = redis.key(LATE_HOURS);
    let popped: Vec<(i64, f64)> = redis
        .query(redis::cmd("ZPOPMIN").arg(&key).arg(100))
        .await
        .map_err(|e| e.to_string())?;
    let mut done = 0;
    for (hour, _) in popped {
        let Some(start) = chrono::DateTime::from_timestamp(hour, 0) else {
            continue;
        };
        match influx
            .backfill_rollups(start, start + chrono::Duration::hours(1))
            .await
        {
            Ok(()) => done += 1,
            Err(err) => {
                let _: Result<(), _> = redis
                    .query(redis::cmd("ZADD").arg(&key).arg(hour).arg(hour))
                    .await;
                return Err(format!("rolling up {start}: {err}"));
            }
        }
    }
    if done > 0 {
        // Cached history answers predate these rollups: a new generation retires them.
        let _: Result<i64, _> = redis
            .query(redis::cmd("INCR").arg(redis.key(platform::influx::ROLLUP_GENERATION)))
            .await;
        tracing::info!(hours = done, "rollups recomputed for late readings");
    }
    Ok(done)
}
