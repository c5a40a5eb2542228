//! Per-caller request rate: a fixed one-minute window counted in Redis. The counter is read
//! in the same round trip as the machine lookup and bumped with the post-write pipeline, so
//! the limit costs no round trip of its own; requests that store nothing are not counted.
//! Without Redis the limit is not enforced (logged): a cache outage must not stop the data.

use deadpool_redis::redis;
use platform::ApiError;
use platform::error::ErrorCode;
use platform::redis::RedisClient;
use uuid::Uuid;

/// This minute's counter of one caller.
pub struct RateWindow {
    pub key: String,
    seconds_left: i64,
}

impl RateWindow {
    /// The current window of `caller`.
    pub fn current(redis: &RedisClient, caller: &Uuid) -> Self {
        let now = chrono::Utc::now().timestamp();
        Self {
            key: redis.key(&platform::redis_keys::ingest_rate(caller, now / 60)),
            seconds_left: 60 - now % 60,
        }
    }

    /// 429 with `Retry-After` when the counter read (`None`: Redis away) is at the limit.
    pub fn check(&self, counted: Option<&str>, per_minute: i64) -> Result<(), ApiError> {
        let count: i64 = counted.and_then(|c| c.parse().ok()).unwrap_or(0);
        if count >= per_minute {
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                format!("more than {per_minute} ingest requests this minute"),
            )
            .with_retry_after(self.seconds_left.max(1) as u64));
        }
        Ok(())
    }

    /// Queues the count of this request on the post-write pipeline.
    pub fn count(&self, pipe: &mut redis::Pipeline) {
        pipe.cmd("INCR")
            .arg(&self.key)
            .ignore()
            .cmd("EXPIRE")
            .arg(&self.key)
            .arg(120)
            .ignore();
    }
}
