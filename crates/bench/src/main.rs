//! `plantline-bench [--base-url URL] [--demo-env FILE] [--only auth|ingest|query|mqtt]`:
//! measures Plantline against baselines taken in the same run on the same machine, and prints
//! each figure with its ratio.

mod auth;
mod ingest;
mod mqtt;
mod query;
mod report;
mod stats;

use std::process::ExitCode;

/// Where the running stack is and how to log in to it.
pub struct Target {
    /// nginx, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    /// `KEY=value` lines written by `make run`.
    pub demo_env: std::collections::HashMap<String, String>,
    /// Run only this section.
    pub only: Option<String>,
}

impl Target {
    /// A value from the demo env file.
    pub fn env(&self, key: &str) -> Result<&str, String> {
        self.demo_env
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("{key} missing from the demo env file"))
    }
}

fn parse_args() -> Result<Target, String> {
    let mut base_url = "http://127.0.0.1:8080".to_owned();
    let mut demo_env = ".plantline/demo.env".to_owned();
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--base-url" => base_url = args.next().ok_or("--base-url needs a value")?,
            "--demo-env" => demo_env = args.next().ok_or("--demo-env needs a value")?,
            "--only" => only = Some(args.next().ok_or("--only needs a section")?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let text = std::fs::read_to_string(&demo_env)
        .map_err(|e| format!("{demo_env}: {e} (run `make up` first)"))?;
    let demo_env = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Target {
        base_url,
        demo_env,
        only,
    })
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
    let mut report = report::Report::new();
    let wanted = |section: &str| target.only.as_deref().is_none_or(|only| only == section);
    // MQTT last: it reuses the machines the query section registers.
    for section in ["auth", "ingest", "query", "mqtt"] {
        if !wanted(section) {
            continue;
        }
        let outcome = match section {
            "auth" => auth::run(&target, &mut report).await,
            "ingest" => ingest::run(&target, &mut report).await,
            "query" => query::run(&target, &mut report).await,
            _ => mqtt::run(&target, &mut report).await,
        };
        if let Err(err) = outcome {
            eprintln!("plantline-bench: {section}: {err}");
            return ExitCode::FAILURE;
        }
    }
    report.print();
    ExitCode::SUCCESS
}
