//! The broker session: one persistent MQTT session, reconnected for as long as the bridge runs.

use paho_mqtt as mqtt;
use platform::config::MqttSettings;
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Why the broker session could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("MQTT client: {0}")]
pub struct BrokerError(#[from] mqtt::Error);

/// A paho async client plus the connection state `/readyz` reports.
pub struct BrokerSession {
    client: mqtt::AsyncClient,
    connect_options: mqtt::ConnectOptions,
    connected: Arc<AtomicBool>,
}

impl BrokerSession {
    /// Creates the client; nothing is sent until [`run`](Self::run).
    pub fn new(settings: &MqttSettings) -> Result<Self, BrokerError> {
        let client = mqtt::AsyncClient::new(
            mqtt::CreateOptionsBuilder::new()
                .server_uri(settings.url.replace("mqtt://", "tcp://"))
                .client_id(&settings.client_id)
                .finalize(),
        )?;
        let connected = Arc::new(AtomicBool::new(false));
        let on_connect = connected.clone();
        client.set_connected_callback(move |_| {
            on_connect.store(true, Ordering::Relaxed);
            tracing::info!("connected to the MQTT broker");
        });
        let on_lost = connected.clone();
        client.set_connection_lost_callback(move |_| {
            on_lost.store(false, Ordering::Relaxed);
            tracing::warn!("lost the MQTT broker; reconnecting");
        });
        let mut options = mqtt::ConnectOptionsBuilder::new();
        options
            .keep_alive_interval(Duration::from_secs(settings.keep_alive_secs))
            // A persistent session: the broker queues QoS 1 messages while we are away.
            .clean_session(false)
            .connect_timeout(Duration::from_secs(5))
            .automatic_reconnect(Duration::from_millis(500), Duration::from_secs(30));
        if let Some(user) = &settings.username {
            options.user_name(user);
        }
        if let Some(password) = &settings.password {
            options.password(password.expose_secret());
        }
        Ok(Self {
            client,
            connect_options: options.finalize(),
            connected,
        })
    }

    /// The flag `/readyz` reads.
    pub fn connected_flag(&self) -> Arc<AtomicBool> {
        self.connected.clone()
    }

    /// Connects (retrying with backoff until the first success; paho reconnects after that)
    /// and disconnects cleanly when `shutdown` fires.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(250);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                result = self.client.connect(self.connect_options.clone()) => match result {
                    Ok(_) => break,
                    Err(err) => {
                        tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "cannot reach the MQTT broker");
                    }
                },
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
        shutdown.cancelled().await;
        self.connected.store(false, Ordering::Relaxed);
        if let Err(err) = self.client.disconnect(None).await {
            tracing::warn!(error = %err, "MQTT disconnect failed");
        }
    }
}
