//! One-use tickets that open a live stream (an `EventSource` cannot send a bearer token):
//! kept in Redis for a few seconds, so any query-api replica can redeem what another issued.

use deadpool_redis::redis;
use platform::redis::{RedisClient, RedisError};
use platform::redis_keys;
use secrecy::ExposeSecret;
use serde::{Serialize, de::DeserializeOwned};

/// How long an unredeemed ticket stays valid.
pub const TICKET_TTL_SECS: u64 = 30;

/// Why a ticket could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("ticket holder not serialisable: {0}")]
    Holder(#[from] serde_json::Error),
}

/// Stores `holder` under a new random ticket and returns the ticket.
pub async fn issue(redis: &RedisClient, holder: &impl Serialize) -> Result<String, TicketError> {
    let ticket = crate::secrets::generate_secret(32)
        .expose_secret()
        .to_owned();
    let holder = serde_json::to_string(holder)?;
    redis
        .query::<()>(
            redis::cmd("SET")
                .arg(redis.key(&redis_keys::stream_ticket(&ticket)))
                .arg(holder)
                .arg("EX")
                .arg(TICKET_TTL_SECS),
        )
        .await?;
    Ok(ticket)
}

/// The holder of `ticket`, once: `GETDEL` makes a ticket open one stream only. `None` for an
/// unknown, used or expired ticket.
pub async fn redeem<H: DeserializeOwned>(
    redis: &RedisClient,
    ticket: &str,
) -> Result<Option<H>, RedisError> {
    let holder: Option<String> = redis
        .query(redis::cmd("GETDEL").arg(redis.key(&redis_keys::stream_ticket(ticket))))
        .await?;
    Ok(holder.and_then(|h| serde_json::from_str(&h).ok()))
}
