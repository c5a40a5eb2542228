//! Login throttling per account (username, or `gateway:<client id>`) and per client
//! address, counted in Redis. Every place a secret is checked goes through it: logins, gateway
//! tokens, and gateway credentials on the InfluxDB-compatible writes. When Redis is away,
//! checks are not throttled (logged): people must still be able to log in during a cache
//! outage, and argon2 already makes each guess expensive.

use deadpool_redis::redis;
use platform::ApiError;
use platform::config::AuthSettings;
use platform::error::ErrorCode;
use platform::redis::RedisClient;
use platform::redis_keys;

/// Decrements each key that holds a positive count; leaves absent keys absent.
const GIVE_BACK: &str = r"
for _, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count and count > 0 then redis.call('DECR', key) end
end
return 0
";

/// Failed-attempt counters with a fixed window.
#[derive(Clone)]
pub struct LoginThrottle {
    redis: RedisClient,
    max_per_user: u32,
    max_per_ip: u32,
    window_secs: u64,
}

impl LoginThrottle {
    /// Uses the limits from `settings`.
    pub fn new(redis: RedisClient, settings: &AuthSettings) -> Self {
        Self {
            redis,
            max_per_user: settings.login_max_failures_per_user,
            max_per_ip: settings.login_max_failures_per_ip,
            window_secs: settings.login_window_secs,
        }
    }

    fn keys(&self, account: &str, ip: &str) -> (String, String) {
        (
            self.redis
                .key(&redis_keys::login_failures_of_account(account)),
            self.redis.key(&redis_keys::login_failures_from_ip(ip)),
        )
    }

    /// Counts an attempt against the account and the address *before* the secret is
    /// checked, so a burst of concurrent guesses cannot outrun the limit. `Ok(true)` when it
    /// was counted, `Ok(false)` when Redis is away (not throttled, logged) or when `seen` (a
    /// digest of the exact credentials) was already counted in this window; 429 with
    /// `Retry-After` once either counter is over its limit (that attempt is not kept: a
    /// locked account does not use up its neighbours' address budget).
    async fn attempt(&self, account: &str, ip: &str, seen: Option<&str>) -> Result<bool, ApiError> {
        let (account_key, ip_key) = self.keys(account, ip);
        let counting = match seen {
            None => true,
            Some(digest) => match self.first_sight(digest).await {
                Ok(first) => first,
                Err(err) => {
                    tracing::warn!(error = %err, "Redis lost: login throttling skipped; retrying on the next login");
                    return Ok(false);
                }
            },
        };
        let mut pipe = redis::pipe();
        for key in [&account_key, &ip_key] {
            if counting {
                pipe.cmd("INCR")
                    .arg(key)
                    .cmd("EXPIRE")
                    .arg(key)
                    .arg(self.window_secs)
                    .arg("NX")
                    .ignore();
            } else {
                // Only read: the limit still holds for credentials seen before.
                pipe.cmd("GET").arg(key);
            }
            pipe.cmd("TTL").arg(key);
        }
        let counts: (Option<u32>, i64, Option<u32>, i64) = match self
            .redis
            .query_pipeline(&pipe)
            .await
        {
            Ok(counts) => counts,
            Err(err) => {
                tracing::warn!(error = %err, "Redis lost: login throttling skipped; retrying on the next login");
                return Ok(false);
            }
        };
        let retry_after = if counts.0.unwrap_or(0) > self.max_per_user {
            Some(counts.1)
        } else if counts.2.unwrap_or(0) > self.max_per_ip {
            Some(counts.3)
        } else {
            None
        };
        match retry_after {
            Some(ttl) => {
                if counting {
                    self.give_back(&[&account_key, &ip_key]).await;
                }
                Err(ApiError::new(
                    ErrorCode::TooManyAttempts,
                    "too many failed logins; wait before trying again",
                )
                .with_retry_after(ttl.max(1) as u64))
            }
            None => Ok(counting),
        }
    }

    /// Whether these exact credentials are new in this window (and marks them seen).
    async fn first_sight(&self, digest: &str) -> Result<bool, platform::redis::RedisError> {
        let set: Option<String> = self
            .redis
            .query(
                redis::cmd("SET")
                    .arg(self.redis.key(&redis_keys::login_attempt_seen(digest)))
                    .arg(1)
                    .arg("NX")
                    .arg("EX")
                    .arg(self.window_secs),
            )
            .await?;
        Ok(set.is_some())
    }

    /// Forgets that these credentials were counted (they passed, or were not judged).
    async fn unsee(&self, digest: &str) {
        let key = self.redis.key(&redis_keys::login_attempt_seen(digest));
        if let Err(err) = self.redis.query::<i64>(redis::cmd("DEL").arg(key)).await {
            tracing::warn!(error = %err, "Redis lost: credentials' seen mark not cleared");
        }
    }

    /// Runs a credential check as one counted attempt: counted before it runs (429 when over
    /// the limit), given back when it succeeds, and also when it failed for a reason of ours
    /// (PostgreSQL down, hashing saturated): only a wrong secret (401) stays counted.
    pub async fn run_counted<T>(
        &self,
        account: &str,
        ip: &str,
        check: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        self.run(account, ip, None, check).await
    }

    /// [`run_counted`](Self::run_counted), but the same wrong credentials (`digest`, a hash
    /// of them) count once per window: a client stuck on an old secret is one failure, not
    /// one per request, so it cannot lock out the account's current secret or its address.
    pub async fn run_counted_once<T>(
        &self,
        account: &str,
        ip: &str,
        digest: &str,
        check: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        self.run(account, ip, Some(digest), check).await
    }

    async fn run<T>(
        &self,
        account: &str,
        ip: &str,
        digest: Option<&str>,
        check: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let counted = self.attempt(account, ip, digest).await?;
        let outcome = check.await;
        let refused = outcome
            .as_ref()
            .is_err_and(|err| err.status() == actix_web::http::StatusCode::UNAUTHORIZED);
        if refused {
            tracing::info!(account = %account, client_ip = %ip, "credentials refused");
        }
        if counted {
            let (account_key, ip_key) = self.keys(account, ip);
            match (&outcome, refused) {
                (Ok(_), _) => self.succeeded(&account_key, &ip_key).await,
                (Err(_), false) => self.give_back(&[&account_key, &ip_key]).await,
                (Err(_), true) => {}
            }
        }
        if let Some(digest) = digest
            && !refused
        {
            self.unsee(digest).await;
        }
        outcome
    }

    /// Undoes one counted attempt on each key, never below zero and never creating a key
    /// (it may have expired, or been cleared by a success, since it was counted).
    async fn give_back(&self, keys: &[&str]) {
        // Seldom (failures of ours and successes), so EVAL rather than a cached script.
        let mut call = redis::cmd("EVAL");
        call.arg(GIVE_BACK).arg(keys.len());
        for key in keys {
            call.arg(*key);
        }
        if let Err(err) = self.redis.query::<i64>(&call).await {
            tracing::warn!(error = %err, "Redis lost: login attempt not given back");
        }
    }

    /// After a successful login: the account starts afresh, and the address gets its
    /// attempt back (people behind one NAT must not lock each other out by succeeding).
    async fn succeeded(&self, account_key: &str, ip_key: &str) {
        let mut del = redis::pipe();
        del.cmd("DEL").arg(account_key).ignore();
        if let Err(err) = self.redis.query_pipeline::<()>(&del).await {
            tracing::warn!(error = %err, "Redis lost: login counter not reset");
        }
        self.give_back(&[ip_key]).await;
    }
}
