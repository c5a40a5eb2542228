//! `plantline-bench` (`--help` for its options) measures Plantline against baselines taken in the same run on the same machine, and prints
//! each figure with its ratio.

mod auth;
mod ingest;
mod mqtt;
mod query;
mod report;
mod soak;
mod sparkplug;
mod stats;
mod stream;
mod write_api;

use std::process::ExitCode;

/// Where the running stack is and how to log in to it.
pub struct Target {
    /// nginx, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    /// `KEY=value` lines written by `make run`.
    pub demo_env: std::collections::HashMap<String, String>,
    /// Run only this section.
    pub only: Option<String>,
    /// `soak MINUTES` instead of the benchmark.
    pub soak_minutes: Option<u64>,
}

impl Target {
    /// An access token for the demo gateway client.
    pub async fn gateway_token(&self) -> Result<String, String> {
        simulator::GatewayClient::new(
            &self.base_url,
            self.env("GATEWAY_CLIENT_ID")?,
            self.env("GATEWAY_CLIENT_SECRET")?,
        )
        .token()
        .await
    }

    /// A value from the demo env file.
    pub fn env(&self, key: &str) -> Result<&str, String> {
        self.demo_env
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("{key} missing from the demo env file"))
    }
}

/// Measures the running stack (`make up`) against baselines taken in the same run on the
/// same machine, and writes bench/report.md with each figure's ratio.
#[derive(clap::Parser)]
#[command(name = "plantline-bench", version)]
struct Cli {
    /// Plantline's public address (nginx).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base_url: String,
    /// The demo credentials `make run` wrote.
    #[arg(long, default_value = ".plantline/demo.env")]
    demo_env: String,
    /// Run only this section.
    #[arg(long, value_parser = ["auth", "ingest", "write-api", "query", "mqtt", "stream"])]
    only: Option<String>,
    #[command(subcommand)]
    soak: Option<Soak>,
}

#[derive(clap::Subcommand)]
enum Soak {
    /// Steady HTTP and MQTT load instead of the benchmark: memory over time, errors, loss.
    Soak {
        /// How long.
        minutes: u64,
    },
}

fn parse_args() -> Result<Target, String> {
    let cli = <Cli as clap::Parser>::parse();
    let text = std::fs::read_to_string(&cli.demo_env)
        .map_err(|e| format!("{}: {e} (run `make up` first)", cli.demo_env))?;
    let demo_env = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Target {
        base_url: cli.base_url,
        demo_env,
        only: cli.only,
        soak_minutes: cli.soak.map(|Soak::Soak { minutes }| minutes),
    })
}

/// Sends `request` and reads its answer as JSON.
pub async fn json_of(request: reqwest::RequestBuilder) -> Result<serde_json::Value, String> {
    request
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let target = match parse_args() {
        Ok(target) => target,
        Err(err) => {
            eprintln!("plantline-bench: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(minutes) = target.soak_minutes {
        return match soak::run(&target, minutes).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(err) => {
                eprintln!("plantline-bench: soak: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let mut report = report::Report::new();
    let wanted = |section: &str| target.only.as_deref().is_none_or(|only| only == section);
    // MQTT last: it reuses the machines the query section registers.
    for section in ["auth", "ingest", "write-api", "query", "mqtt", "stream"] {
        if !wanted(section) {
            continue;
        }
        let outcome = match section {
            "auth" => auth::run(&target, &mut report).await,
            "ingest" => ingest::run(&target, &mut report).await,
            "write-api" => write_api::run(&target, &mut report).await,
            "query" => query::run(&target, &mut report).await,
            "mqtt" => mqtt::run(&target, &mut report).await,
            _ => stream::run(&target, &mut report).await,
        };
        if let Err(err) = outcome {
            eprintln!("plantline-bench: {section}: {err}");
            return ExitCode::FAILURE;
        }
    }
    report.print();
    let dir = std::path::Path::new("bench");
    match report.write(dir) {
        Ok(()) => println!("\nwrote {}/report.md and its plots", dir.display()),
        Err(err) => {
            eprintln!("plantline-bench: report: {err}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
