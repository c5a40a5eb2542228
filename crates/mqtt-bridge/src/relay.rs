//! Alerts to MQTT: every alert change announced on Redis (from ingest-api and from this
//! bridge alike) is published on `factory/{factory_id}/machine/{machine_id}/alerts`, so
//! machines and field panels hear about HTTP-path alerts too. With several bridges, a short
//! Redis claim per change makes exactly one of them publish it.

use deadpool_redis::redis;
use platform::redis::RedisClient;
use platform::redis_keys;
use tokio_util::sync::CancellationToken;

/// The MQTT topic of a machine's alerts.
pub fn alerts_topic(prefix: &str, factory: &str, machine: &str) -> String {
    format!("{prefix}factory/{factory}/machine/{machine}/alerts")
}

/// Relays until `shutdown`, resubscribing after Redis outages.
pub async fn alerts_to_mqtt(
    redis: RedisClient,
    client: paho_mqtt::AsyncClient,
    prefix: String,
    shutdown: CancellationToken,
) {
    let channels = [redis.key(redis_keys::ALERTS_CHANNEL)];
    redis
        .for_each_message(&channels, "alert relay", shutdown, None, |_, payload| {
            let (redis, client, prefix) = (&redis, &client, &prefix);
            async move { relay_one(redis, client, prefix, &payload).await }
        })
        .await;
}

async fn relay_one(
    redis: &RedisClient,
    client: &paho_mqtt::AsyncClient,
    prefix: &str,
    payload: &str,
) {
    let Ok(event) = serde_json::from_str::<storage::alerts::AlertEvent>(payload) else {
        tracing::warn!("an alert event of another shape; not relayed");
        return;
    };
    let alert = &event.alert;
    let (id, factory, machine) = (&alert.id, &alert.factory_id, &alert.machine_id.to_string());
    // One claim per change (same alert, event and count): the first bridge to claim publishes.
    let claim = redis.key(&redis_keys::alert_relayed(
        id,
        event.event.as_str(),
        alert.count,
    ));
    let claimed: Result<Option<String>, _> = redis
        .query(
            redis::cmd("SET")
                .arg(&claim)
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(300),
        )
        .await;
    if matches!(claimed, Ok(None)) {
        return;
    }
    let message = paho_mqtt::Message::new(alerts_topic(prefix, factory, machine), payload, 1);
    // Bounded: while the spool is full paho's lock is taken, and an alert is not worth
    // holding the relay (or a stop) for; it stays in Redis and PostgreSQL either way.
    let publishing = crate::broker::off_runtime(client, move |c| c.try_publish(message));
    match tokio::time::timeout(std::time::Duration::from_secs(2), publishing).await {
        Ok(Some(Ok(_))) => {}
        Ok(Some(Err(err))) => {
            tracing::warn!(error = %err, alert = %id, "alert not published on MQTT");
        }
        _ => tracing::warn!(alert = %id, "alert not published on MQTT: the client is busy"),
    }
}
