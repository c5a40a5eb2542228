//! Writing revocations: one sorted set of revoked tokens, sessions and subjects and a version
//! counter, which every service's `RevocationCache` mirrors (platform::auth::revocation).

use deadpool_redis::redis;
use platform::redis::{RedisClient, RedisError};
use platform::redis_keys::{REVOCATIONS, REVOCATIONS_VERSION};
use uuid::Uuid;

#[derive(Clone)]
pub struct Revoker {
    redis: RedisClient,
    /// How long an entry must be kept: the longest token lifetime plus leeway.
    keep_secs: i64,
}

impl Revoker {
    /// Entries are kept for `keep_secs` (access-token lifetime plus leeway).
    pub fn new(redis: RedisClient, keep_secs: i64) -> Self {
        Self { redis, keep_secs }
    }

    /// Revokes one access token until it would have expired anyway.
    pub async fn revoke_token(&self, jti: &str, expires_at: i64) -> Result<(), RedisError> {
        self.add(format!("jti:{jti}"), expires_at + 60).await
    }

    /// Revokes every access token of one login session (logout, refresh-token reuse).
    pub async fn revoke_session(&self, session: &Uuid) -> Result<(), RedisError> {
        self.add(format!("sid:{session}"), now_secs() + self.keep_secs)
            .await
    }

    /// Revokes every token of a subject issued up to now (deactivation, role change, logout
    /// everywhere, refresh-token reuse).
    pub async fn revoke_subject(&self, subject: &Uuid) -> Result<(), RedisError> {
        let now = now_secs();
        self.add(format!("sub:{subject}:{now}"), now + self.keep_secs)
            .await
    }

    async fn add(&self, member: String, keep_until: i64) -> Result<(), RedisError> {
        let set = self.redis.key(REVOCATIONS);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZADD")
            .arg(&set)
            .arg(keep_until)
            .arg(member)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&set)
            .arg("-inf")
            .arg(now_secs() - 1)
            .ignore()
            .cmd("INCR")
            .arg(self.redis.key(REVOCATIONS_VERSION))
            .ignore();
        self.redis.query_pipeline::<()>(&pipe).await
    }
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}
