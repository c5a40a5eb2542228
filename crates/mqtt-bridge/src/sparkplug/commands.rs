//! Rebirth requests: `NCMD` with `Node Control/Rebirth = true` to an edge node the host lost
//! track of (a sequence gap, an alias no birth defined, data before a birth). At most one per
//! edge node per [`EVERY`], and only for messages received lately: replaying an old backlog
//! must not send a burst of requests for gaps long since healed.

use super::host::NodeKey;
use super::topic::NAMESPACE;
use crate::broker::off_runtime;
use domain::sparkplug::{Metric, Payload, Value, data_type};
use paho_mqtt as mqtt;
use prost::Message;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One request per edge node per this.
pub const EVERY: Duration = Duration::from_secs(5);
/// Messages older than this (a replayed backlog) ask for nothing.
const FRESH_MS: i64 = 60_000;

/// The pipeline's side: decides, the publisher task sends.
pub struct Rebirths {
    requests: mpsc::Sender<NodeKey>,
    last: HashMap<NodeKey, Instant>,
    counter: prometheus::IntCounterVec,
}

impl Rebirths {
    /// Requests go to `requests`; each sent one is counted.
    pub fn new(requests: mpsc::Sender<NodeKey>, counter: prometheus::IntCounterVec) -> Self {
        Self {
            requests,
            last: HashMap::new(),
            counter,
        }
    }

    /// Asks `node` for a rebirth, unless it was asked lately or the message is old.
    pub fn request(&mut self, node: NodeKey, reason: &str, received_ms: i64) {
        if chrono::Utc::now().timestamp_millis() - received_ms > FRESH_MS {
            return;
        }
        if self.last.get(&node).is_some_and(|at| at.elapsed() < EVERY) {
            return;
        }
        // Edge node ids are anyone's to make up: only the lately asked are remembered.
        if self.last.len() >= 10_000 {
            self.last.retain(|_, at| at.elapsed() < EVERY);
        }
        tracing::info!(group = %node.group, edge_node = %node.edge_node, reason, "asking a Sparkplug edge node for a rebirth");
        self.last.insert(node.clone(), Instant::now());
        self.counter.with_label_values(&["rebirth_requested"]).inc();
        if self.requests.try_send(node).is_err() {
            tracing::warn!("rebirth requests are backed up; this one is dropped");
        }
    }
}

/// `Node Control/Rebirth = true`, as Sparkplug 3.0 §6.4.18 has it.
pub fn rebirth_payload() -> Vec<u8> {
    Payload {
        timestamp: Some(chrono::Utc::now().timestamp_millis() as u64),
        metrics: vec![Metric {
            name: Some("Node Control/Rebirth".to_owned()),
            datatype: Some(data_type::BOOLEAN),
            value: Some(Value::Boolean(true)),
            ..Metric::default()
        }],
        seq: None,
        uuid: None,
    }
    .encode_to_vec()
}

/// Publishes the requests (QoS 0, as commands are) until `shutdown`.
pub async fn publish(
    client: mqtt::AsyncClient,
    prefix: String,
    mut requests: mpsc::Receiver<NodeKey>,
    shutdown: CancellationToken,
) {
    loop {
        let node = tokio::select! {
            () = shutdown.cancelled() => return,
            node = requests.recv() => match node { Some(node) => node, None => return },
        };
        let topic = format!("{prefix}{NAMESPACE}/{}/NCMD/{}", node.group, node.edge_node);
        let message = mqtt::Message::new(topic, rebirth_payload(), 0);
        if let Some(Err(err)) = off_runtime(&client, move |c| c.try_publish(message)).await {
            tracing::warn!(error = %err, "rebirth request not sent");
        }
    }
}
