//! The demo machines as Sparkplug B devices: one edge node per factory (`spBv1.0/{factory}/…/
//! plantline-sim`), each device named by its machine id. Births declare Temperature,
//! Pressure and Speed with aliases unique within the edge node (device n: 3n+1 to 3n+3);
//! data carries the aliases only; now and then a device dies and is born again; a rebirth
//! request (NCMD) is answered with births. Published at QoS 1 (Sparkplug asks 0 for data):
//! the broker then keeps what the bridge has not taken yet.

use crate::SimMachine;
use domain::sparkplug::{Metric, Payload, Value, data_type};
use paho_mqtt as mqtt;
use prost::Message;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::time::Duration;

const EDGE_NODE: &str = "plantline-sim";
/// The metrics every device declares: alias within the device, name, reading field.
const METRICS: [(u64, &str, &str); 3] = [
    (1, "Temperature", "temperature"),
    (2, "Pressure", "pressure"),
    (3, "Speed", "speed"),
];

/// A metric's alias on the edge node: unique across its devices.
fn alias(device_index: usize, within: u64) -> u64 {
    device_index as u64 * 3 + within
}

/// One edge node: its connection (whose will is its NDEATH) and sequence number.
struct EdgeNode {
    group: String,
    client: mqtt::AsyncClient,
    incoming: mqtt::AsyncReceiver<Option<mqtt::Message>>,
    seq: u64,
    bd_seq: u64,
    devices: Vec<String>,
}

/// Every factory's edge node.
pub struct SparkplugEdges {
    nodes: Vec<EdgeNode>,
    batches: u64,
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis() as u64
}

fn payload(seq: Option<u64>, metrics: Vec<Metric>) -> Vec<u8> {
    Payload {
        timestamp: Some(now_ms()),
        metrics,
        seq,
        uuid: None,
    }
    .encode_to_vec()
}

fn bd_seq_metric(bd_seq: u64) -> Metric {
    Metric {
        name: Some("bdSeq".into()),
        datatype: Some(data_type::INT64),
        value: Some(Value::Long(bd_seq)),
        ..Metric::default()
    }
}

impl EdgeNode {
    async fn connect(url: &str, group: &str, devices: Vec<String>) -> Result<Self, String> {
        let mut client = mqtt::AsyncClient::new(
            mqtt::CreateOptionsBuilder::new()
                .server_uri(url)
                .client_id(format!(
                    "plantline-sim-{group}-{}",
                    uuid::Uuid::new_v4().simple()
                ))
                .persistence(None)
                .finalize(),
        )
        .map_err(|e| e.to_string())?;
        let incoming = client.get_stream(64);
        // bdSeq: a new one per session, so a late will of an older one is recognised.
        let bd_seq = (chrono::Utc::now().timestamp() as u64) % 256;
        let death = payload(None, vec![bd_seq_metric(bd_seq)]);
        let will = mqtt::Message::new(format!("spBv1.0/{group}/NDEATH/{EDGE_NODE}"), death, 1);
        let options = mqtt::ConnectOptionsBuilder::new()
            .clean_session(true)
            .will_message(will)
            .finalize();
        client
            .connect(options)
            .await
            .map_err(|e| format!("cannot reach the MQTT broker at {url}: {e}"))?;
        client
            .subscribe(format!("spBv1.0/{group}/NCMD/{EDGE_NODE}"), 0)
            .await
            .map_err(|e| e.to_string())?;
        let mut node = Self {
            group: group.to_owned(),
            client,
            incoming,
            seq: 0,
            bd_seq,
            devices,
        };
        node.births().await?;
        Ok(node)
    }

    async fn publish(
        &mut self,
        kind: &str,
        device: Option<&str>,
        metrics: Vec<Metric>,
    ) -> Result<(), String> {
        let seq = self.seq;
        self.seq = (self.seq + 1) % 256;
        let topic = match device {
            Some(device) => format!("spBv1.0/{}/{kind}/{EDGE_NODE}/{device}", self.group),
            None => format!("spBv1.0/{}/{kind}/{EDGE_NODE}", self.group),
        };
        let message = mqtt::Message::new(topic, payload(Some(seq), metrics), 1);
        self.client
            .publish(message)
            .await
            .map_err(|e| e.to_string())
    }

    /// NBIRTH and every DBIRTH (the sequence starts again at 0).
    async fn births(&mut self) -> Result<(), String> {
        self.seq = 0;
        let rebirth = Metric {
            name: Some("Node Control/Rebirth".into()),
            datatype: Some(data_type::BOOLEAN),
            value: Some(Value::Boolean(false)),
            ..Metric::default()
        };
        self.publish("NBIRTH", None, vec![bd_seq_metric(self.bd_seq), rebirth])
            .await?;
        for device in self.devices.clone() {
            self.device_birth(&device).await?;
        }
        Ok(())
    }

    fn index_of(&self, device: &str) -> usize {
        self.devices
            .iter()
            .position(|d| d == device)
            .unwrap_or_default()
    }

    /// A device's birth declares its metrics and aliases (no values: data brings them).
    async fn device_birth(&mut self, device: &str) -> Result<(), String> {
        let index = self.index_of(device);
        let declared = METRICS
            .iter()
            .map(|(within, name, _)| Metric {
                name: Some((*name).into()),
                alias: Some(alias(index, *within)),
                datatype: Some(data_type::DOUBLE),
                is_null: Some(true),
                ..Metric::default()
            })
            .collect();
        self.publish("DBIRTH", Some(device), declared).await
    }

    /// Births again if the host asked for them.
    async fn answer_commands(&mut self) -> Result<(), String> {
        let mut asked = false;
        while let Ok(Some(message)) = self.incoming.try_recv() {
            let rebirth = Payload::decode(message.payload()).is_ok_and(|p| {
                p.metrics.iter().any(|m| {
                    m.name.as_deref() == Some("Node Control/Rebirth")
                        && m.value == Some(Value::Boolean(true))
                })
            });
            asked |= rebirth;
        }
        if asked {
            self.births().await?;
        }
        Ok(())
    }
}

impl SparkplugEdges {
    /// Connects one edge node per factory of `machines` and publishes their births.
    pub async fn connect(url: &str, machines: &[SimMachine]) -> Result<Self, String> {
        let mut by_factory: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for machine in machines {
            by_factory
                .entry(machine.factory_id.as_str())
                .or_default()
                .push(machine.id.clone());
        }
        let mut nodes = Vec::new();
        for (group, devices) in by_factory {
            nodes.push(EdgeNode::connect(url, group, devices).await?);
        }
        Ok(Self { nodes, batches: 0 })
    }

    /// Each edge node says it is leaving (its NDEATH, as its will would) and disconnects.
    pub async fn stop(self) {
        for node in self.nodes {
            let death = payload(None, vec![bd_seq_metric(node.bd_seq)]);
            let topic = format!("spBv1.0/{}/NDEATH/{EDGE_NODE}", node.group);
            let _ = node
                .client
                .publish(mqtt::Message::new(topic, death, 1))
                .await;
            let _ = node.client.disconnect(None).await;
        }
    }

    /// One simulator batch as DDATA (aliases only, each value with its reading's time).
    pub async fn deliver(&mut self, machines: &[SimMachine], batch: &Json) -> Result<(), String> {
        self.batches += 1;
        for node in &mut self.nodes {
            node.answer_commands().await?;
        }
        let Some(items) = batch["batch"].as_array() else {
            return Ok(());
        };
        for item in items {
            let Some(id) = item["machine_id"].as_str() else {
                continue;
            };
            let Some(machine) = machines.iter().find(|m| m.id == id) else {
                continue;
            };
            let Some(node) = self
                .nodes
                .iter_mut()
                .find(|n| n.group == machine.factory_id)
            else {
                continue;
            };
            let readings = item["readings"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            let metrics = data_metrics(node.index_of(id), readings);
            node.publish("DDATA", Some(id), metrics).await?;
        }
        // Now and then a device dies and is born again, as devices on a shop floor do.
        if self.batches.is_multiple_of(150)
            && let Some(node) = self.nodes.first_mut()
            && let Some(device) = node
                .devices
                .get(self.batches as usize / 150 % node.devices.len().max(1))
                .cloned()
        {
            node.publish("DDEATH", Some(&device), Vec::new()).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            node.device_birth(&device).await?;
        }
        Ok(())
    }
}

/// The readings of one machine (the node's device `index`) as alias-only metrics with their
/// own timestamps.
fn data_metrics(index: usize, readings: &[Json]) -> Vec<Metric> {
    let mut metrics = Vec::new();
    for reading in readings {
        let timestamp = reading["timestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis() as u64);
        for (within, _, field) in METRICS {
            if let Some(value) = reading[field].as_f64() {
                metrics.push(Metric {
                    alias: Some(alias(index, within)),
                    timestamp,
                    value: Some(Value::Double(value)),
                    ..Metric::default()
                });
            }
        }
    }
    metrics
}
