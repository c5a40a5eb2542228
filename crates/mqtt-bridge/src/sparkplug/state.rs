//! The host application's STATE (Sparkplug 3.0 §7.5): retained `spBv1.0/STATE/{host_id}`
//! `{"online": true, "timestamp": t}`, with `{"online": false, "timestamp": t}` as the will of
//! the same connection and the same `t`. Edge nodes that honour it store and forward while
//! Plantline is away.
//!
//! A connection of its own, with a clean session as the specification asks: the bridge's
//! main session is persistent and its will is the bridge's status topic. STATE goes online
//! only once the main session is subscribed, and offline when the bridge stops.

use super::topic::NAMESPACE;
use crate::broker::{connect_options, create_options, off_runtime};
use paho_mqtt as mqtt;
use platform::config::MqttSettings;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn state(online: bool, timestamp: i64) -> String {
    serde_json::json!({"online": online, "timestamp": timestamp}).to_string()
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
    let lost = Arc::new(AtomicBool::new(true));
    let on_lost = lost.clone();
    client.set_connection_lost_callback(move |_| on_lost.store(true, Ordering::Relaxed));
    let mut timestamp = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        if !lost.load(Ordering::Relaxed) || !subscribed.load(Ordering::Relaxed) {
            continue;
        }
        // A new connection, a new timestamp: the will and the birth must carry the same one.
        timestamp = chrono::Utc::now().timestamp_millis();
        let will = mqtt::Message::new_retained(topic.as_str(), state(false, timestamp), 1);
        let Ok(options) = connect_options(&settings, will, false) else {
            tracing::error!("Sparkplug STATE connection options refused");
            return;
        };
        let online = mqtt::Message::new_retained(topic.as_str(), state(true, timestamp), 1);
        let connected = off_runtime(&client, move |c| {
            c.connect(options).wait_for(Duration::from_secs(5))?;
            c.publish(online).wait_for(Duration::from_secs(5))
        })
        .await;
        match connected {
            Some(Ok(())) => {
                lost.store(false, Ordering::Relaxed);
                tracing::info!(%topic, "Sparkplug host STATE online");
            }
            Some(Err(err)) => {
                tracing::warn!(error = %err, "Sparkplug STATE not announced; retrying")
            }
            None => {}
        }
    }
    if !lost.load(Ordering::Relaxed) {
        let offline = mqtt::Message::new_retained(topic.as_str(), state(false, timestamp), 1);
        let goodbye = off_runtime(&client, move |c| {
            let _ = c.publish(offline).wait_for(Duration::from_secs(2));
            c.disconnect(None)
                .wait_for(Duration::from_secs(2))
                .map(|_| ())
        });
        let _ = tokio::time::timeout(Duration::from_secs(5), goodbye).await;
    }
}
