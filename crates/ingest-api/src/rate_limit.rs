//! Per-caller request rate: a fixed one-minute window counted in Redis. Without Redis the
//! limit is not enforced (logged): a cache outage must not stop the plant's data.

use deadpool_redis::redis;
use platform::ApiError;
use platform::redis::RedisClient;
use uuid::Uuid;

/// Counts this request; 429 with `Retry-After` (seconds to the next window) when over.
pub async fn check(redis: &RedisClient, caller: &Uuid, per_minute: i64) -> Result<(), ApiError> {
    let now = chrono::Utc::now().timestamp();
    let window = now / 60;
    let key = redis.key(&format!("ratelimit:ingest:{caller}:{window}"));
    let mut pipe = redis::pipe();
    pipe.cmd("INCR")
        .arg(&key)
        .cmd("EXPIRE")
        .arg(&key)
        .arg(120)
        .ignore();
    match redis.query_pipeline::<(i64,)>(&pipe).await {
        Ok((count,)) if count > per_minute => Err(ApiError::new(
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("more than {per_minute} ingest requests this minute"),
        )
        .with_retry_after((60 - now % 60).max(1) as u64)),
        Ok(_) => Ok(()),
        Err(err) => {
            tracing::warn!(error = %err, "Redis lost: ingest rate limit not enforced; retrying on the next request");
            Ok(())
        }
    }
}
