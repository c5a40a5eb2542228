//! Whether a machine is online and since when, as its Sparkplug B edge node last said (a
//! birth: online; a death: offline). Kept in PostgreSQL: it changes seldom and must survive
//! a Redis restart. A change is announced on [`redis_keys::PRESENCE_CHANNEL`] for live
//! streams.

use crate::schema::machine_presence;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use platform::redis::RedisClient;
use platform::redis_keys;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

/// A machine's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub online: bool,
    /// When the edge node said so.
    pub since: DateTime<Utc>,
}

/// Records `presence` if it is a change and newer than the recorded one (a replayed message
/// never undoes a later one; a repeated birth keeps the first `since`). Whether it changed.
pub async fn record(
    conn: &mut AsyncPgConnection,
    machine: Uuid,
    presence: Presence,
) -> QueryResult<bool> {
    // Conditional upsert (ON CONFLICT … WHERE), written out: diesel's DSL has no filter there.
    let changed = diesel::sql_query(
        "INSERT INTO machine_presence (machine_id, online, since) VALUES ($1, $2, $3) \
         ON CONFLICT (machine_id) DO UPDATE \
         SET online = EXCLUDED.online, since = EXCLUDED.since, updated_at = now() \
         WHERE machine_presence.since <= EXCLUDED.since \
         AND machine_presence.online <> EXCLUDED.online",
    )
    .bind::<diesel::sql_types::Uuid, _>(machine)
    .bind::<diesel::sql_types::Bool, _>(presence.online)
    .bind::<diesel::sql_types::Timestamptz, _>(presence.since)
    .execute(conn)
    .await?;
    Ok(changed > 0)
}

/// The recorded presence of each of `machines` that has one.
pub async fn of(
    conn: &mut AsyncPgConnection,
    machines: &[Uuid],
) -> QueryResult<HashMap<Uuid, Presence>> {
    let rows: Vec<(Uuid, bool, DateTime<Utc>)> = machine_presence::table
        .filter(machine_presence::machine_id.eq_any(machines))
        .select((
            machine_presence::machine_id,
            machine_presence::online,
            machine_presence::since,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, online, since)| (id, Presence { online, since }))
        .collect())
}

/// What a live stream is told when a machine comes online or goes offline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PresenceEvent {
    pub machine_id: Uuid,
    pub factory_id: String,
    pub location: String,
    pub online: bool,
    pub since: DateTime<Utc>,
}

/// Announces a change to live streams (best effort: the record above is what counts).
pub async fn announce(redis: &RedisClient, event: &PresenceEvent) {
    let Ok(payload) = serde_json::to_string(event) else {
        return;
    };
    let publish = deadpool_redis::redis::cmd("PUBLISH")
        .arg(redis.key(redis_keys::PRESENCE_CHANNEL))
        .arg(payload)
        .to_owned();
    if let Err(err) = redis.query::<i64>(&publish).await {
        tracing::warn!(error = %err, machine_id = %event.machine_id, "presence change not announced to live streams");
    }
}
