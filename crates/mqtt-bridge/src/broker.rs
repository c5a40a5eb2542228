//! The broker session: one persistent MQTT session (clean session off, stable client id, QoS 1),
//! reconnected by paho with backoff, resubscribed and re-announced on every connect.
//!
//! Every message is appended to the spool inside paho's message callback. Paho C sends the
//! PUBACK of a QoS 1 message only when that callback returns (MQTTProtocolClient.c,
//! `MQTTProtocol_handlePublishes`), so the broker never hears "got it" before the message is on
//! disk; while the spool is full the callback waits and the broker keeps the messages.

use crate::metrics::BridgeMetrics;
use crate::spool::Spool;
use paho_mqtt as mqtt;
use platform::config::MqttSettings;
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Why the broker session could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// paho refused the options.
    #[error("MQTT client: {0}")]
    Client(#[from] mqtt::Error),
    /// `ssl://` in a build without TLS.
    #[error(
        "mqtt.url uses TLS but this build has no TLS support: build mqtt-bridge with `--features tls`"
    )]
    NoTls,
}

/// Runs one paho call on a blocking thread. paho C takes one process-wide lock for every call
/// (publish, subscribe, is-connected, disconnect), and its receive thread holds that lock while
/// our message callback waits for spool room: a call made on the runtime's own threads could
/// then stall the very pipeline that frees the room. `None` if the thread panicked.
pub async fn off_runtime<T, F>(client: &mqtt::AsyncClient, call: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce(&mqtt::AsyncClient) -> T + Send + 'static,
{
    let client = client.clone();
    tokio::task::spawn_blocking(move || call(&client))
        .await
        .ok()
}

/// How long a clean stop waits for the broker to take `offline` and the disconnect.
const GOODBYE: Duration = Duration::from_secs(3);

/// `plantline/bridge/{instance}/status`: retained `online` while connected, `offline` (the
/// last will, or a clean stop) otherwise.
pub fn status_topic(prefix: &str, instance: &str) -> String {
    format!("{prefix}plantline/bridge/{instance}/status")
}

/// A paho async client plus the connection state `/readyz` reports.
pub struct BrokerSession {
    client: mqtt::AsyncClient,
    connect_options: mqtt::ConnectOptions,
    connected: Arc<AtomicBool>,
    /// Connected at the socket level (subscribed or not).
    socket_up: Arc<AtomicBool>,
    /// The JSON telemetry filter (shared when configured) and the Sparkplug groups'.
    subscriptions: Vec<String>,
    status_topic: String,
    events: tokio::sync::mpsc::UnboundedReceiver<()>,
}

/// The client of a connection named `client_id`.
pub(crate) fn create_options(settings: &MqttSettings, client_id: &str) -> mqtt::CreateOptions {
    let version = if settings.is_v5() {
        mqtt::MQTT_VERSION_5
    } else {
        mqtt::MQTT_VERSION_3_1_1
    };
    mqtt::CreateOptionsBuilder::new()
        .server_uri(settings.url.replace("mqtt://", "tcp://"))
        .client_id(client_id)
        .mqtt_version(version)
        // Outgoing dead letters and status messages are kept in memory while the broker is
        // away, up to this many; incoming messages are the spool's business.
        .persistence(None)
        .send_while_disconnected(true)
        .max_buffered_messages(10_000)
        .finalize()
}

/// How to connect: a persistent session (the bridge's, whose QoS 1 messages the broker keeps
/// while it is away) or a clean one, with `will`.
pub(crate) fn connect_options(
    settings: &MqttSettings,
    will: mqtt::Message,
    persistent: bool,
) -> Result<mqtt::ConnectOptions, BrokerError> {
    let mut options = if settings.is_v5() {
        let mut options = mqtt::ConnectOptionsBuilder::new_v5();
        let mut properties = mqtt::Properties::new();
        let expiry = if persistent {
            settings.session_expiry_secs
        } else {
            0
        };
        properties.push_u32(mqtt::PropertyCode::SessionExpiryInterval, expiry)?;
        options.clean_start(!persistent).properties(properties);
        options
    } else {
        let mut options = mqtt::ConnectOptionsBuilder::new();
        options.clean_session(!persistent);
        options
    };
    options
        .keep_alive_interval(Duration::from_secs(settings.keep_alive_secs))
        .connect_timeout(Duration::from_secs(5))
        .will_message(will);
    // A clean session's owner reconnects itself (it has more to do on each connect).
    if persistent {
        options.automatic_reconnect(Duration::from_millis(250), Duration::from_secs(10));
    }
    if let Some(user) = &settings.username {
        options.user_name(user);
    }
    if let Some(password) = &settings.password {
        options.password(password.expose_secret());
    }
    if settings.url.starts_with("ssl://") || settings.url.starts_with("mqtts://") {
        tls(&mut options, settings)?;
    }
    Ok(options.finalize())
}

#[cfg(feature = "tls")]
fn tls(
    options: &mut mqtt::ConnectOptionsBuilder,
    settings: &MqttSettings,
) -> Result<(), BrokerError> {
    let mut ssl = mqtt::SslOptionsBuilder::new();
    if let Some(ca) = settings.ca_file.as_deref().filter(|f| !f.is_empty()) {
        ssl.trust_store(ca)?;
    }
    ssl.enable_server_cert_auth(true).verify(true);
    options.ssl_options(ssl.finalize());
    Ok(())
}

#[cfg(not(feature = "tls"))]
fn tls(_: &mut mqtt::ConnectOptionsBuilder, _: &MqttSettings) -> Result<(), BrokerError> {
    Err(BrokerError::NoTls)
}

impl BrokerSession {
    /// Creates the client and its callbacks; nothing is sent until [`run`](Self::run).
    pub fn new(
        settings: &MqttSettings,
        spool: Spool,
        metrics: BridgeMetrics,
    ) -> Result<Self, BrokerError> {
        let client = mqtt::AsyncClient::new(create_options(settings, &settings.client_id))?;
        let status_topic = status_topic(&settings.topic_prefix, &settings.client_id);
        let will = mqtt::Message::new_retained(status_topic.as_str(), "offline", 1);
        let connect_options = connect_options(settings, will, true)?;
        let connected = Arc::new(AtomicBool::new(false));
        let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
        // paho calls this after every (re)connect; the session task subscribes and announces.
        // Kept from paho's callbacks, never asked of paho (see `off_runtime`).
        let socket_up = Arc::new(AtomicBool::new(false));
        let on_connect = socket_up.clone();
        client.set_connected_callback(move |_| {
            on_connect.store(true, Ordering::Relaxed);
            let _ = events_tx.send(());
        });
        let (on_lost, lost_socket) = (connected.clone(), socket_up.clone());
        client.set_connection_lost_callback(move |_| {
            on_lost.store(false, Ordering::Relaxed);
            lost_socket.store(false, Ordering::Relaxed);
            tracing::warn!("lost the MQTT broker; reconnecting");
        });
        client.set_message_callback(move |_, message| {
            let Some(message) = message else { return };
            let started = std::time::Instant::now();
            let received_ms = chrono::Utc::now().timestamp_millis();
            // MQTT 5 publishers may carry their trace context; kept only while exporting.
            let traceparent = platform::telemetry::exporting()
                .then(|| message.properties().find_user_property("traceparent"))
                .flatten();
            spool.append_traced(
                message.topic(),
                message.payload(),
                received_ms,
                traceparent.as_deref(),
            );
            metrics.received.inc();
            metrics
                .append_seconds
                .observe(started.elapsed().as_secs_f64());
        });
        Ok(Self {
            client,
            connect_options,
            connected,
            socket_up,
            subscriptions: settings.subscriptions(),
            status_topic,
            events,
        })
    }

    /// The flag `/readyz` reads: connected and subscribed.
    pub fn connected_flag(&self) -> Arc<AtomicBool> {
        self.connected.clone()
    }

    /// A handle for publishing (dead letters).
    pub fn client(&self) -> mqtt::AsyncClient {
        self.client.clone()
    }

    /// Connects (retrying with backoff until the first success; paho reconnects after that),
    /// subscribes and announces `online` after every connect, and on `shutdown` lets the
    /// spool take whatever paho's callback holds, announces `offline` and disconnects.
    pub async fn run(mut self, spool: Spool, shutdown: CancellationToken) {
        if self.connect_first(&shutdown).await {
            let mut check = tokio::time::interval(Duration::from_secs(3));
            // Every step raced against the stop: a paho call may wait on paho's lock for as
            // long as the spool is full, and only the stop below lets that go.
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    going = self.step(&mut check) => if !going { break },
                }
            }
        }
        self.connected.store(false, Ordering::Relaxed);
        // A callback waiting for room would hold paho's lock through the goodbye: let it
        // write over the bound (the spool is flushed once the session is closed).
        spool.close();
        let status_topic = self.status_topic.clone();
        let goodbye = off_runtime(&self.client, move |client| {
            let offline = mqtt::Message::new_retained(status_topic.as_str(), "offline", 1);
            let _ = client.publish(offline).wait_for(GOODBYE);
            client.disconnect(None).wait_for(GOODBYE).map(|_| ())
        });
        match tokio::time::timeout(2 * GOODBYE + Duration::from_secs(1), goodbye).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(err))) => tracing::warn!(error = %err, "MQTT disconnect failed"),
            _ => tracing::warn!("MQTT disconnect did not finish; stopping anyway"),
        }
        spool.close();
    }

    /// Handles one (re)connect or self-check; `false` once paho's callbacks are gone.
    async fn step(&mut self, check: &mut tokio::time::Interval) -> bool {
        tokio::select! {
            event = self.events.recv() => match event {
                Some(()) => self.on_connected().await,
                None => return false,
            },
            // Self-healing: connected at the socket level but not subscribed (a lost callback
            // or a subscription that never got its answer) is retried here.
            _ = check.tick() => {
                if self.socket_up.load(Ordering::Relaxed) && !self.connected.load(Ordering::Relaxed) {
                    self.on_connected().await;
                }
            }
        }
        true
    }

    /// The first connect, retried with backoff; `false` when `shutdown` came first.
    async fn connect_first(&self, shutdown: &CancellationToken) -> bool {
        let mut backoff = Duration::from_millis(250);
        loop {
            let options = self.connect_options.clone();
            let connecting = off_runtime(&self.client, move |c| c.connect(options));
            let attempt = async {
                match connecting.await {
                    Some(token) => token.await.map(|_| ()),
                    None => Err(mqtt::Error::General("connect thread failed")),
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return false,
                result = attempt => match result {
                    Ok(()) => return true,
                    Err(err) => {
                        tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "cannot reach the MQTT broker");
                    }
                },
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    async fn on_connected(&self) {
        // The broker may have lost the session (restarted without persistence): subscribe
        // every time. With the session intact this is a harmless repeat.
        let filters = self.subscriptions.clone();
        let subscribing = async {
            let qos = vec![1; filters.len()];
            match off_runtime(&self.client, move |c| c.subscribe_many(&filters, &qos)).await {
                Some(token) => token.await.map(|_| ()),
                None => Err(mqtt::Error::General("subscribe thread failed")),
            }
        };
        let subscriptions = self.subscriptions.join(", ");
        match tokio::time::timeout(Duration::from_secs(5), subscribing)
            .await
            .unwrap_or(Err(mqtt::Error::Timeout))
        {
            Ok(()) => {
                self.connected.store(true, Ordering::Relaxed);
                tracing::info!(%subscriptions, "connected to the MQTT broker and subscribed");
            }
            Err(err) => {
                tracing::error!(error = %err, %subscriptions, "subscription refused; reconnecting");
                off_runtime(&self.client, |c| c.reconnect()).await;
                return;
            }
        }
        let online = mqtt::Message::new_retained(self.status_topic.as_str(), "online", 1);
        if let Some(Err(err)) = off_runtime(&self.client, move |c| c.try_publish(online)).await {
            tracing::warn!(error = %err, "status not announced");
        }
    }
}
