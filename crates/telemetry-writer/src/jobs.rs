//! The write side's background jobs, run by ingest-api (the one writing service every
//! deployment has; the bridge is optional): the rollups of hours that received readings too
//! late for the continuous queries, and the inactivity sweep. Every replica may run both:
//! `ZPOPMIN` hands each late hour to one of them, and the inactivity upsert is idempotent.

use platform::influx::InfluxClient;
use platform::redis::RedisClient;
use std::time::Duration;
use storage::alerts::AlertEngine;
use storage::rollups;
use tokio_util::sync::CancellationToken;

/// How often each job runs.
const ROLLUP_EVERY: Duration = Duration::from_secs(10);
const INACTIVITY_EVERY: Duration = Duration::from_secs(5);

/// Starts both jobs for the life of `app`.
pub fn run_in(
    app: &platform::Application,
    alerts: AlertEngine,
    influx: InfluxClient,
    redis: RedisClient,
) {
    app.spawn_background(sweep_inactivity(
        alerts,
        INACTIVITY_EVERY,
        app.shutdown_token(),
    ));
    app.spawn_background(run_rollups(
        influx,
        redis,
        ROLLUP_EVERY,
        app.shutdown_token(),
    ));
}

/// Works off the late hours every `every` until `shutdown`.
async fn run_rollups(
    influx: InfluxClient,
    redis: RedisClient,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(err) = work_off_late_hours(&influx, &redis).await {
            tracing::warn!(error = %err, "rollup maintenance paused; retrying");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Recomputes up to 100 late hours, longest waiting first. A mark is cleared only after its
/// hour was recomputed (history reads the hour raw until then); an hour that fails stays
/// marked and stops this round.
pub async fn work_off_late_hours(
    influx: &InfluxClient,
    redis: &RedisClient,
) -> Result<usize, String> {
    let marks = rollups::oldest(redis, 100)
        .await
        .map_err(|e| e.to_string())?;
    let mut done = 0;
    for mark in marks {
        let Some(start) = chrono::DateTime::from_timestamp(mark.hour, 0) else {
            continue;
        };
        influx
            .backfill_rollups(start, start + chrono::Duration::hours(1))
            .await
            .map_err(|err| format!("rolling up {start}: {err}"))?;
        done += 1;
        if let Err(err) = rollups::clear(redis, &mark).await {
            return Err(format!("clearing the late mark of {start}: {err}"));
        }
    }
    if done > 0 {
        // Cached history answers predate these rollups: a new generation retires them.
        let _ = rollups::new_generation(redis).await;
        tracing::info!(hours = done, "rollups recomputed for late readings");
    }
    Ok(done)
}

/// Checks for silent machines every `every`.
async fn sweep_inactivity(alerts: AlertEngine, every: Duration, shutdown: CancellationToken) {
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match alerts.sweep_inactivity().await {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("inactivity sweep works again");
            }
            Ok(_) => {}
            Err(err) if !failing => {
                failing = true;
                tracing::warn!(error = %err, "inactivity sweep failed; retrying");
            }
            Err(_) => {}
        }
    }
}
