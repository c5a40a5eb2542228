//! MQTT for tests: a publishing/subscribing client on the real broker, and a private Mosquitto
//! a test may stop and start.

use paho_mqtt as mqtt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A test's own MQTT client: publishes with QoS 1 (waiting for the broker's PUBACK) and
/// collects what it subscribed to.
pub struct MqttTestClient {
    client: mqtt::AsyncClient,
    received: mqtt::AsyncReceiver<Option<mqtt::Message>>,
}

impl MqttTestClient {
    /// Connects to `url` (clean session) and subscribes to `filters` with QoS 1.
    pub async fn connect(url: &str, filters: &[&str]) -> Self {
        let client = mqtt::AsyncClient::new(
            mqtt::CreateOptionsBuilder::new()
                .server_uri(url)
                .client_id(format!(
                    "plantline-test-client-{}",
                    uuid::Uuid::new_v4().simple()
                ))
                .persistence(None)
                .finalize(),
        )
        .expect("MQTT test client");
        let mut client = client;
        let received = client.get_stream(100_000);
        let options = mqtt::ConnectOptionsBuilder::new()
            .clean_session(true)
            .connect_timeout(Duration::from_secs(5))
            .finalize();
        // The options are not Send: hand them over before awaiting.
        let connecting = client.connect(options);
        connecting.await.expect("test client reaches the broker");
        for filter in filters {
            client
                .subscribe(*filter, 1)
                .await
                .expect("test client subscribes");
        }
        Self { client, received }
    }

    /// Publishes with QoS 1 and waits for the broker's acknowledgement.
    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(mqtt::Message::new(topic, payload.into(), 1))
            .await
            .expect("broker acknowledges the publish");
    }

    /// Publishes a retained message (an empty one clears the topic's) with QoS 1.
    pub async fn publish_retained(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(mqtt::Message::new_retained(topic, payload.into(), 1))
            .await
            .expect("broker acknowledges the publish");
    }

    /// The next message received, or `None` after `timeout`.
    pub async fn next(&self, timeout: Duration) -> Option<mqtt::Message> {
        match tokio::time::timeout(timeout, self.received.recv()).await {
            Ok(Ok(Some(message))) => Some(message),
            _ => None,
        }
    }

    /// Disconnects.
    pub async fn disconnect(self) {
        let _ = self.client.disconnect(None).await;
    }
}

/// A Mosquitto of the test's own on a free loopback port, with its own persistence folder:
/// stopped and started by the test without touching the shared broker.
pub struct PrivateBroker {
    /// The port it listens on.
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateBroker {
    /// Starts one (persistence on, so sessions survive a restart).
    pub async fn start() -> Self {
        let port = crate::net::stable_port();
        let dir = std::env::temp_dir().join(format!(
            "plantline-test-broker-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("broker folder");
        let config = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nautosave_interval 1\nuser root\nlog_dest stderr\nlog_type error\n",
            dir.display()
        );
        std::fs::write(dir.join("mosquitto.conf"), config).expect("broker config");
        let mut broker = Self {
            port,
            dir,
            child: None,
        };
        broker.resume().await;
        broker
    }

    /// `tcp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Stops it gracefully (it saves its sessions) and waits for the exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same persistence folder.
    pub async fn resume(&mut self) {
        let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("mosquitto installed (make services installs it)");
        let child = Command::new(binary)
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let address = format!("127.0.0.1:{}", self.port);
        crate::eventually(Duration::from_secs(10), "private broker listening", || {
            let address = address.clone();
            async move { tokio::net::TcpStream::connect(address).await.ok() }
        })
        .await;
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
