//! `plantline-sim`: a shop-floor gateway sending telemetry for the demo machines.
//!
//! `plantline-sim [--rate READINGS_PER_S] [--batch READINGS] [--duration SECONDS]
//!                [--overheat MACHINE_ID] [--base-url URL] [--demo-env FILE] [--mqtt BROKER_URL]
//!                [--sparkplug]`
//! Runs until Ctrl-C (or the duration); rejected batches are retried, never dropped. With
//! `--mqtt` the machines publish on their own telemetry topics (QoS 1) instead of a gateway
//! posting batches over HTTP; with `--sparkplug` as well, they are Sparkplug B devices of one
//! edge node per factory (births, aliased data, a device death and rebirth now and then).

use indicatif::{ProgressBar, ProgressStyle};
use paho_mqtt as mqtt;
use plantline_simulator::sparkplug::SparkplugEdges;
use plantline_simulator::{Attempt, GatewayClient, SimMachine, batch, mqtt_messages, retry_wait};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// A shop-floor gateway sending realistic telemetry for the demo machines until Ctrl-C (or
/// --duration); rejected batches are retried, never dropped.
#[derive(clap::Parser)]
#[command(name = "plantline-sim", version)]
struct Options {
    /// Readings per second, all machines together.
    #[arg(long, default_value_t = 20.0, value_parser = positive)]
    rate: f64,
    /// Readings per HTTP batch.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS", value_parser = |s: &str| s.parse().map(Duration::from_secs))]
    duration: Option<Duration>,
    /// Let this machine overheat (its temperature climbs past the alert threshold).
    #[arg(long, value_name = "MACHINE_ID")]
    overheat: Option<String>,
    /// Plantline's public address (nginx).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base_url: String,
    /// The demo credentials `make run` wrote.
    #[arg(long, default_value = ".plantline/demo.env")]
    demo_env: String,
    /// Publish on the machines' own MQTT topics through this broker instead of posting batches.
    #[arg(long, value_name = "BROKER_URL")]
    mqtt: Option<String>,
    /// With --mqtt: speak Sparkplug B (one edge node per factory, the machines its devices).
    #[arg(long, requires = "mqtt")]
    sparkplug: bool,
}

fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err("must be a positive number".to_owned()),
    }
}

fn credentials(path: &str) -> Result<(String, String), String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{path}: {e} (run `make up` first)"))?;
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .ok_or(format!("{key} missing in {path}"))
    };
    Ok((value("GATEWAY_CLIENT_ID")?, value("GATEWAY_CLIENT_SECRET")?))
}

/// Where batches go.
enum Transport {
    Http(GatewayClient),
    Mqtt(mqtt::AsyncClient),
    Sparkplug(SparkplugEdges),
}

async fn connect_mqtt(url: &str) -> Result<mqtt::AsyncClient, String> {
    let client = mqtt::AsyncClient::new(
        mqtt::CreateOptionsBuilder::new()
            .server_uri(url)
            .client_id(format!("plantline-sim-{}", uuid::Uuid::new_v4().simple()))
            .persistence(None)
            .finalize(),
    )
    .map_err(|e| e.to_string())?;
    let options = mqtt::ConnectOptionsBuilder::new()
        .automatic_reconnect(Duration::from_millis(250), Duration::from_secs(5))
        .finalize();
    let connecting = client.connect(options);
    connecting
        .await
        .map_err(|e| format!("cannot reach the MQTT broker at {url}: {e}"))?;
    Ok(client)
}

impl Transport {
    /// Sends one batch until it is accepted (HTTP 201/207, or every MQTT PUBACK); counts retries.
    async fn deliver(
        &mut self,
        machines: &[SimMachine],
        body: serde_json::Value,
        retries: &mut u64,
        bar: &ProgressBar,
    ) {
        match self {
            Self::Sparkplug(edges) => {
                while let Err(err) = edges.deliver(machines, &body).await {
                    *retries += 1;
                    bar.println(format!("Sparkplug publish failed: {err}; retrying"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            Self::Mqtt(client) => {
                for (topic, payload) in mqtt_messages(machines, &body) {
                    loop {
                        let message = mqtt::Message::new(topic.as_str(), payload.as_str(), 1);
                        match client.publish(message).await {
                            Ok(()) => break,
                            Err(err) => {
                                *retries += 1;
                                bar.println(format!("publish failed: {err}; retrying"));
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                }
            }
            Self::Http(client) => {
                let status = client
                    .deliver(body.to_string().into_bytes(), |attempt| match attempt {
                        Attempt::Answered(outcome) if retry_wait(attempt).is_some() => {
                            *retries += 1;
                            bar.println(format!("ingest answered {}; retrying", outcome.status));
                        }
                        Attempt::Answered(_) => {}
                        Attempt::Failed(err) => {
                            *retries += 1;
                            bar.println(format!("send failed: {err}; retrying"));
                        }
                    })
                    .await;
                if status != 201 && status != 207 {
                    bar.println(format!("batch refused with {status}; skipping it"));
                }
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = <Options as clap::Parser>::parse();
    let (client_id, secret) = match credentials(&options.demo_env) {
        Ok(c) => c,
        Err(err) => {
            eprintln!("plantline-sim: {err}");
            return ExitCode::from(2);
        }
    };
    let mut machines = SimMachine::demo_fleet();
    if let Some(target) = &options.overheat {
        match machines.iter_mut().find(|m| &m.id == target) {
            Some(machine) => machine.overheat_to = Some(120.0),
            None => {
                eprintln!("plantline-sim: --overheat {target}: not one of the demo machines");
                return ExitCode::from(2);
            }
        }
    }
    let mut transport = match &options.mqtt {
        Some(url) if options.sparkplug => match SparkplugEdges::connect(url, &machines).await {
            Ok(edges) => Transport::Sparkplug(edges),
            Err(err) => {
                eprintln!("plantline-sim: {err}");
                return ExitCode::FAILURE;
            }
        },
        Some(url) => match connect_mqtt(url).await {
            Ok(client) => Transport::Mqtt(client),
            Err(err) => {
                eprintln!("plantline-sim: {err}");
                return ExitCode::FAILURE;
            }
        },
        None => Transport::Http(GatewayClient::new(&options.base_url, &client_id, &secret)),
    };
    let interval = Duration::from_secs_f64(options.batch as f64 / options.rate);
    let spacing = Duration::from_secs_f64(machines.len() as f64 / options.rate);
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let started = Instant::now();
    let (mut sent, mut retries) = (0u64, 0u64);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = ticker.tick() => {}
        }
        if options.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        let body = batch(
            &mut machines,
            options.batch as usize,
            chrono::Utc::now(),
            spacing,
            &client_id,
        );
        // Keep the batch until it is accepted: 429/503/network errors are retried.
        transport.deliver(&machines, body, &mut retries, &bar).await;
        sent += options.batch as u64;
        let rate = sent as f64 / started.elapsed().as_secs_f64().max(0.001);
        bar.set_message(format!(
            "{sent} readings sent ({rate:.0}/s), {retries} retries, {} machines",
            machines.len()
        ));
        bar.tick();
    }
    bar.finish_with_message(format!("{sent} readings sent, {retries} retries"));
    if let Transport::Sparkplug(edges) = transport {
        edges.stop().await;
    }
    ExitCode::SUCCESS
}
