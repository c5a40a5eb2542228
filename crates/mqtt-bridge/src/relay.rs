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

/// Alerts on their way to the broker, published in order by one thread of their own: paho's
/// lock may be taken for as long as the spool is full, and then one thread waits, not one
/// per alert, and the relay itself never does.
struct AlertOutbox(std::sync::mpsc::SyncSender<paho_mqtt::Message>);

/// Alerts queued for the publishing thread; beyond, new ones are not relayed (logged). They
/// stay in Redis and PostgreSQL either way.
const ALERTS_QUEUED_AT_MOST: usize = 1_000;

impl AlertOutbox {
    fn start(client: paho_mqtt::AsyncClient) -> std::io::Result<Self> {
        let (queue, alerts) = std::sync::mpsc::sync_channel(ALERTS_QUEUED_AT_MOST);
        std::thread::Builder::new()
            .name("alerts-to-mqtt".into())
            .spawn(move || {
                // Ends when the relay (the only sender) is dropped.
                for message in alerts {
                    if let Err(err) = client.try_publish(message) {
                        tracing::warn!(error = %err, "alert not published on MQTT");
                    }
                }
            })?;
        Ok(Self(queue))
    }
}

/// Relays until `shutdown`, resubscribing after Redis outages.
pub async fn alerts_to_mqtt(
    redis: RedisClient,
    client: paho_mqtt::AsyncClient,
    prefix: String,
    shutdown: CancellationToken,
) {
    let outbox = match AlertOutbox::start(client) {
        Ok(outbox) => outbox,
        Err(err) => {
            tracing::error!(error = %err, "no alert relay thread; alerts are not published on MQTT");
            return;
        }
    };
    let channels = [redis.key(redis_keys::ALERTS_CHANNEL)];
    redis
        .for_each_message(&channels, "alert relay", shutdown, None, |_, payload| {
            let (redis, outbox, prefix) = (&redis, &outbox, &prefix);
            async move { relay_one(redis, outbox, prefix, &payload).await }
        })
        .await;
}

async fn relay_one(redis: &RedisClient, outbox: &AlertOutbox, prefix: &str, payload: &str) {
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
    if outbox.0.try_send(message).is_err() {
        tracing::warn!(alert = %id, "alert relay queue full: not published on MQTT");
    }
}
