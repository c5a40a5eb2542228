//! The host application's STATE (Sparkplug 3.0 §7.5): retained `spBv1.0/STATE/{host_id}`
//! `{"online": true, "timestamp": t}`, with `{"online": false, "timestamp": t}` as the will of
//! the same connection and the same `t`. Edge nodes that honour it store and forward while
//! Plantline is away.
//!
//! A connection of its own, with a clean session as the specification asks: the bridge's
//! main session is persistent and its will is the bridge's status topic. STATE is online
//! exactly while the main session is subscribed: when that session drops, this connection
//! says offline and closes, and it comes back once the main session is subscribed again.

use super::topic::NAMESPACE;
use crate::broker::{connect_options, create_options, off_runtime};
use paho_mqtt as mqtt;
use platform::config::MqttSettings;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(5);

fn state(topic: &str, online: bool, timestamp: i64) -> mqtt::Message {
    let payload = serde_json::json!({"online": online, "timestamp": timestamp}).to_string();
    mqtt::Message::new_retained(topic, payload, 1)
}

/// Says offline (now) and closes the connection.
async fn goodbye(client: &mqtt::AsyncClient, topic: &str) {
    let offline = state(topic, false, chrono::Utc::now().timestamp_millis());
    let closing = off_runtime(client, move |c| {
        let _ = c.publish(offline).wait_for(WAIT);
        c.disconnect(None).wait_for(WAIT).map(|_| ())
    });
    let _ = tokio::time::timeout(2 * WAIT, closing).await;
}

/// Keeps STATE true while `subscribed` (the main session) holds, until `shutdown`.
pub async fn run(settings: MqttSettings, subscribed: Arc<AtomicBool>, shutdown: CancellationToken) {
    let topic = format!(
        "{}{NAMESPACE}/STATE/{}",
        settings.topic_prefix, settings.sparkplug_host_id
    );
    let client_id = format!("{}-state", settings.client_id);
    let client = match mqtt::AsyncClient::new(create_options(&settings, &client_id)) {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(error = %err, "Sparkplug STATE client not created; edge nodes will not see this host");
            return;
        }
    };
    let lost = Arc::new(AtomicBool::new(false));
    let on_lost = lost.clone();
    client.set_connection_lost_callback(move |_| on_lost.store(true, Ordering::Relaxed));
    let mut online = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let main_up = subscribed.load(Ordering::Relaxed);
        if online && lost.load(Ordering::Relaxed) {
            online = false;
        }
        if online && !main_up {
            goodbye(&client, &topic).await;
            online = false;
            tracing::info!(%topic, "Sparkplug host STATE offline: the main session is down");
        }
        if online || !main_up {
            continue;
        }
        // A new connection, a new timestamp: the will and the birth carry the same one.
        let timestamp = chrono::Utc::now().timestamp_millis();
        let Ok(options) = connect_options(&settings, state(&topic, false, timestamp), false) else {
            tracing::error!("Sparkplug STATE connection options refused");
            return;
        };
        let announce = state(&topic, true, timestamp);
        lost.store(false, Ordering::Relaxed);
        let connected = off_runtime(&client, move |c| {
            if c.is_connected() {
                let _ = c.disconnect(None).wait_for(WAIT);
            }
            c.connect(options).wait_for(WAIT)?;
            c.publish(announce).wait_for(WAIT)
        })
        .await;
        match connected {
            Some(Ok(())) => {
                online = true;
                tracing::info!(%topic, "Sparkplug host STATE online");
            }
            Some(Err(err)) => {
                tracing::warn!(error = %err, "Sparkplug STATE not announced; retrying")
            }
            None => {}
        }
    }
    if online {
        goodbye(&client, &topic).await;
    }
}
