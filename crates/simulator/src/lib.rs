//! Telemetry generation and a gateway's HTTP client, shared by the simulator and the bench.

pub mod sparkplug;

use rand::Rng;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// A simulated machine: a random walk around typical values for its sensor package.
#[derive(Debug, Clone)]
pub struct SimMachine {
    pub id: String,
    /// Which fields it reports.
    pub sensor_type: String,
    /// Where it stands.
    pub location: String,
    /// Its factory (the MQTT topic's `factory_id`).
    pub factory_id: String,
    temperature: f64,
    pressure: f64,
    speed: f64,
    /// When set, temperature climbs towards this (an overheating machine).
    pub overheat_to: Option<f64>,
}

impl SimMachine {
    /// A machine with plausible starting values.
    pub fn new(id: &str, sensor_type: &str, location: &str, factory_id: &str) -> Self {
        let mut rng = rand::rng();
        Self {
            id: id.to_owned(),
            sensor_type: sensor_type.to_owned(),
            location: location.to_owned(),
            factory_id: factory_id.to_owned(),
            temperature: rng.random_range(55.0..70.0),
            pressure: rng.random_range(95.0..130.0),
            speed: rng.random_range(1200.0..1800.0),
            overheat_to: None,
        }
    }

    /// The demo plant's machines that accept telemetry (inactive ones are skipped).
    pub fn demo_fleet() -> Vec<Self> {
        admin::demo::MACHINES
            .iter()
            .filter(|(_, _, _, _, status, _)| *status != "inactive")
            .map(|(id, _, location, sensor_type, _, factory)| {
                Self::new(id, sensor_type, location, factory)
            })
            .collect()
    }

    /// The next reading at `timestamp`, as the batch JSON wants it.
    pub fn next_reading(&mut self, timestamp: chrono::DateTime<chrono::Utc>) -> Value {
        let mut rng = rand::rng();
        let drift =
            |value: &mut f64, step: f64, low: f64, high: f64, rng: &mut rand::rngs::ThreadRng| {
                *value = (*value + rng.random_range(-step..step)).clamp(low, high);
            };
        match self.overheat_to {
            Some(target) if self.temperature < target => {
                self.temperature += rng.random_range(0.5..2.0)
            }
            _ => drift(&mut self.temperature, 0.4, 40.0, 78.0, &mut rng),
        }
        drift(&mut self.pressure, 1.0, 80.0, 145.0, &mut rng);
        drift(&mut self.speed, 15.0, 900.0, 2000.0, &mut rng);
        let round = |v: f64| (v * 100.0).round() / 100.0;
        let mut reading =
            json!({"timestamp": timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)});
        let fields: &[&str] = match self.sensor_type.as_str() {
            "temperature" => &["temperature"],
            "pressure" => &["pressure"],
            "speed" => &["speed"],
            _ => &["temperature", "pressure", "speed"],
        };
        for field in fields {
            let value = match *field {
                "temperature" => self.temperature,
                "pressure" => self.pressure,
                _ => self.speed,
            };
            reading[*field] = json!(round(value));
        }
        reading
    }
}

/// Builds one batch of `readings` readings spread round-robin over `machines`, timestamps
/// `spacing` apart ending at `end`.
pub fn batch(
    machines: &mut [SimMachine],
    readings: usize,
    end: chrono::DateTime<chrono::Utc>,
    spacing: Duration,
    gateway_id: &str,
) -> Value {
    let mut per_machine: HashMap<usize, Vec<Value>> = HashMap::new();
    let spacing = chrono::Duration::from_std(spacing).unwrap_or_default();
    let count = machines.len().max(1);
    for i in 0..readings {
        let slot = i % count;
        let steps = ((readings - 1 - i) / count) as i32;
        let timestamp = end - spacing * steps;
        if let Some(machine) = machines.get_mut(slot) {
            per_machine
                .entry(slot)
                .or_default()
                .push(machine.next_reading(timestamp));
        }
    }
    let mut items: Vec<(usize, Vec<Value>)> = per_machine.into_iter().collect();
    items.sort_by_key(|(slot, _)| *slot);
    json!({
        "gateway_id": gateway_id,
        "timestamp": end.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "batch": items.into_iter().map(|(slot, readings)| {
            let m = &machines[slot];
            json!({"machine_id": m.id, "sensor_type": m.sensor_type, "location": m.location, "readings": readings})
        }).collect::<Vec<_>>(),
    })
}

/// The MQTT messages of one batch: per machine, `factory/{factory}/machine/{id}/telemetry`
/// carrying `{"readings": [...]}`.
pub fn mqtt_messages(machines: &[SimMachine], batch: &Value) -> Vec<(String, String)> {
    let Some(items) = batch["batch"].as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let id = item["machine_id"].as_str()?;
            let machine = machines.iter().find(|m| m.id == id)?;
            Some((
                format!("factory/{}/machine/{id}/telemetry", machine.factory_id),
                json!({"readings": item["readings"]}).to_string(),
            ))
        })
        .collect()
}

/// A gateway's HTTP session: client-credentials token, renewed before it expires.
pub struct GatewayClient {
    http: reqwest::Client,
    base_url: String,
    client_id: String,
    secret: String,
    token: Option<(String, std::time::Instant)>,
}

/// What the ingest endpoint said.
#[derive(Debug, Clone)]
pub struct SendOutcome {
    pub status: u16,
    /// Seconds to wait before retrying (429/503).
    pub retry_after: Option<u64>,
}

/// One try of [`GatewayClient::deliver`].
#[derive(Debug)]
pub enum Attempt {
    Answered(SendOutcome),
    /// No answer (connection refused, timeout, token request failed).
    Failed(String),
}

/// How long to wait before trying again after `attempt`; `None` when the batch is done
/// (accepted, or refused for good: another 4xx will not change by retrying).
pub fn retry_wait(attempt: &Attempt) -> Option<Duration> {
    match attempt {
        Attempt::Answered(outcome) if outcome.status == 429 || outcome.status >= 500 => Some(
            Duration::from_secs(outcome.retry_after.unwrap_or(1).clamp(1, 10)),
        ),
        Attempt::Answered(_) => None,
        Attempt::Failed(_) => Some(Duration::from_secs(1)),
    }
}

impl GatewayClient {
    /// A client for the stack at `base_url`.
    pub fn new(base_url: &str, client_id: &str, secret: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(64)
                .build()
                .unwrap_or_default(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            client_id: client_id.to_owned(),
            secret: secret.to_owned(),
            token: None,
        }
    }

    /// A valid access token, fetching a new one a minute before the old one expires.
    pub async fn token(&mut self) -> Result<String, String> {
        if let Some((token, renew_at)) = &self.token
            && std::time::Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        let response = self
            .http
            .post(format!("{}/api/v1/auth/token", self.base_url))
            .basic_auth(&self.client_id, Some(&self.secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("token request answered {}", response.status()));
        }
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        let token = body["access_token"]
            .as_str()
            .ok_or("no access_token")?
            .to_owned();
        let lifetime = body["expires_in"].as_u64().unwrap_or(900);
        let renew_at = std::time::Instant::now() + Duration::from_secs(lifetime.saturating_sub(60));
        self.token = Some((token.clone(), renew_at));
        Ok(token)
    }

    /// Sends one batch until it is accepted (201/207) or refused for good, waiting as told
    /// between tries (429/5xx honour `Retry-After`, 1 to 10 s): a gateway keeps what the
    /// server did not acknowledge. `observe` sees every try. Returns the final status.
    pub async fn deliver(&mut self, body: Vec<u8>, mut observe: impl FnMut(&Attempt)) -> u16 {
        loop {
            let attempt = match self.send(body.clone()).await {
                Ok(outcome) => Attempt::Answered(outcome),
                Err(err) => Attempt::Failed(err),
            };
            observe(&attempt);
            match (retry_wait(&attempt), &attempt) {
                (None, Attempt::Answered(outcome)) => return outcome.status,
                (wait, _) => tokio::time::sleep(wait.unwrap_or(Duration::from_secs(1))).await,
            }
        }
    }

    /// Sends one batch body (already serialised) and reports the status.
    pub async fn send(&mut self, body: Vec<u8>) -> Result<SendOutcome, String> {
        let token = self.token().await?;
        let response = self
            .http
            .post(format!("{}/api/v1/data/ingest", self.base_url))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let _ = response.bytes().await;
        Ok(SendOutcome {
            status,
            retry_after,
        })
    }
}
