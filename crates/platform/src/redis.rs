//! Redis: one shared connection per process that owns the deployment's key prefix and bounds
//! every command in time.
//!
//! deadpool-redis pools multiplexed connections and checks each one out with an `UNWATCH` +
//! `PING` round trip, which doubled the round trips of every command on the write path. A
//! multiplexed connection is made to be shared: concurrent commands are pipelined on its one
//! socket. So the pool only makes the connection (with its timeouts); every command clones the
//! one it made, and a connection that failed is dropped so the next command makes another.

use crate::config::RedisSettings;
use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{self, FromRedisValue};
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;

/// Why a Redis operation failed. Callers decide whether that is fatal (it rarely is: Redis
/// holds caches and rate limits, Postgres and InfluxDB hold the truth).
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The pool could not be built from the settings.
    #[error("building the Redis pool: {0}")]
    Build(String),
    /// No connection could be had.
    #[error("no Redis connection: {0}")]
    Pool(String),
    #[error("Redis command failed: {0}")]
    Command(#[from] redis::RedisError),
    /// The command did not finish within `redis.command_timeout_ms`.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// A Redis connection plus the key prefix that namespaces everything this deployment stores.
#[derive(Clone)]
pub struct RedisClient {
    /// Makes the shared connection (and a new one after it failed).
    pool: deadpool_redis::Pool,
    /// The connection every command of this process uses; `None` until the first command and
    /// after a connection error.
    shared: Arc<std::sync::Mutex<Option<MultiplexedConnection>>>,
    /// For dedicated pub/sub connections (a subscribed connection cannot go back to a pool).
    client: redis::Client,
    prefix: Arc<str>,
    timeout: Duration,
}

impl RedisClient {
    /// Builds the pool; connections are made on first use.
    pub fn new(settings: &RedisSettings) -> Result<Self, RedisError> {
        let mut config = deadpool_redis::Config::from_url(settings.url.expose_secret());
        config.pool = Some(deadpool_redis::PoolConfig {
            max_size: settings.pool_size,
            timeouts: deadpool_redis::Timeouts {
                wait: Some(settings.command_timeout()),
                create: Some(settings.command_timeout()),
                recycle: Some(settings.command_timeout()),
            },
            ..Default::default()
        });
        let pool = config
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .map_err(|e| RedisError::Build(e.to_string()))?;
        let client = redis::Client::open(settings.url.expose_secret())
            .map_err(|e| RedisError::Build(e.to_string()))?;
        Ok(Self {
            pool,
            shared: Arc::default(),
            client,
            prefix: Arc::from(settings.key_prefix.as_str()),
            timeout: settings.command_timeout(),
        })
    }

    /// The full key for a logical name, e.g. `machine:{id}` → `plantline:machine:{id}`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    /// A dedicated connection subscribed to `channels` (full names, see [`key`](Self::key)).
    pub async fn subscribe(&self, channels: &[String]) -> Result<redis::aio::PubSub, RedisError> {
        self.bounded(async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            for channel in channels {
                pubsub.subscribe(channel).await?;
            }
            Ok(pubsub)
        })
        .await
    }

    /// Calls `handle(channel, payload)` for every message on `channels` until `shutdown`,
    /// resubscribing after Redis outages (logged once per outage as `what`). `subscribed`,
    /// when given, holds since when the subscription has been active (`None` while it is not).
    pub async fn for_each_message<F, Fut>(
        &self,
        channels: &[String],
        what: &str,
        shutdown: tokio_util::sync::CancellationToken,
        subscribed: Option<&tokio::sync::watch::Sender<Option<std::time::Instant>>>,
        mut handle: F,
    ) where
        F: FnMut(String, String) -> Fut,
        Fut: Future<Output = ()>,
    {
        use futures_util::StreamExt;
        let mut failing = false;
        loop {
            match self.subscribe(channels).await {
                Ok(mut pubsub) => {
                    if failing {
                        tracing::info!(what, "subscribed to Redis again");
                        failing = false;
                    }
                    let mut messages = pubsub.on_message();
                    let signal = |since| {
                        if let Some(subscribed) = subscribed {
                            subscribed.send_replace(since);
                        }
                    };
                    signal(Some(std::time::Instant::now()));
                    loop {
                        let message = tokio::select! {
                            () = shutdown.cancelled() => {
                                signal(None);
                                return;
                            }
                            message = messages.next() => message,
                        };
                        let Some(message) = message else { break };
                        let payload: String = message.get_payload().unwrap_or_default();
                        handle(message.get_channel_name().to_owned(), payload).await;
                    }
                    signal(None);
                }
                Err(err) if !failing => {
                    failing = true;
                    tracing::warn!(error = %err, what, "cannot subscribe to Redis; retrying");
                }
                Err(_) => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// The deployment's prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Runs one command within the configured time bound.
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        let mut conn = self.connection().await?;
        let outcome = self
            .bounded(async { Ok(cmd.query_async(&mut conn).await?) })
            .await;
        self.forget_if_broken(&outcome);
        outcome
    }

    /// Runs a pipeline (atomic when built with `.atomic()`) within the time bound.
    pub async fn query_pipeline<T: FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, RedisError> {
        let mut conn = self.connection().await?;
        let outcome = self
            .bounded(async { Ok(pipe.query_async(&mut conn).await?) })
            .await;
        self.forget_if_broken(&outcome);
        outcome
    }

    async fn connection(&self) -> Result<MultiplexedConnection, RedisError> {
        if let Some(conn) = self.shared_slot().as_ref() {
            return Ok(conn.clone());
        }
        // Two commands may race to connect: both connections work, the last one is kept.
        let made = self
            .pool
            .get()
            .await
            .map_err(|e| RedisError::Pool(e.to_string()))?;
        let conn = deadpool_redis::Connection::take(made);
        *self.shared_slot() = Some(conn.clone());
        Ok(conn)
    }

    fn shared_slot(&self) -> std::sync::MutexGuard<'_, Option<MultiplexedConnection>> {
        // Only ever held to clone or replace the handle: a poisoned lock still holds one.
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drops the shared connection when `outcome` says it broke (or hangs), so the next
    /// command connects again; a command Redis refused leaves it in place.
    fn forget_if_broken<T>(&self, outcome: &Result<T, RedisError>) {
        let broken = match outcome {
            Ok(_) => false,
            Err(RedisError::Command(err)) => {
                err.is_io_error() || err.is_connection_dropped() || err.is_unrecoverable_error()
            }
            Err(_) => true,
        };
        if broken {
            *self.shared_slot() = None;
        }
    }

    /// A round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), RedisError> {
        let pong: String = self.query(&redis::cmd("PING")).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(RedisError::Pool(format!("unexpected PING answer {pong:?}")))
        }
    }

    /// Deletes every key under this client's prefix (tests and demo resets). Returns the count.
    pub async fn delete_all_prefixed(&self) -> Result<u64, RedisError> {
        let pattern = format!("{}*", self.prefix);
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .query(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(500),
                )
                .await?;
            if !keys.is_empty() {
                deleted += self.query::<u64>(redis::cmd("DEL").arg(&keys)).await?;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RedisError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| RedisError::Timeout(self.timeout))?
    }
}
