//! `plantline-admin migrate` | `check-schema` | `gen-keys DIR` | `seed-demo [ENV_FILE]` (`--help`).

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Plantline's administration: schema migrations, signing keys, demo data. Configured like the
/// services (`PLANTLINE_*` environment, README "Configuration").
#[derive(Parser)]
#[command(name = "plantline-admin", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate PostgreSQL and set up InfluxDB (idempotent; the Kubernetes migrate Job).
    Migrate,
    /// Exit 0 once PostgreSQL has every migration, 1 naming what is pending.
    CheckSchema,
    /// Create an Ed25519 signing key pair in DIR unless one is there.
    GenKeys {
        /// Folder for the key files.
        dir: PathBuf,
    },
    /// Seed demo users, machines and a gateway client; credentials go to ENV_FILE.
    SeedDemo {
        /// Where the demo credentials are kept (created when missing).
        #[arg(default_value = ".plantline/demo.env")]
        env_file: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    // Parsed before the configuration is loaded: --help needs no environment.
    let cli = Cli::parse();
    if let Command::GenKeys { dir } = &cli.command {
        return finish(gen_keys(dir));
    }
    let settings = match platform::load_settings() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("plantline-admin: {err}");
            return ExitCode::from(2);
        }
    };
    finish(match cli.command {
        Command::Migrate => migrate(&settings).await,
        Command::CheckSchema => check_schema(&settings).await,
        Command::SeedDemo { env_file } => seed_demo(&settings, env_file).await,
        Command::GenKeys { .. } => Ok(()),
    })
}

fn finish(outcome: Result<(), platform::StartupError>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("plantline-admin: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(settings: &platform::Settings) -> Result<(), platform::StartupError> {
    let report = plantline_admin::migrate(settings).await?;
    if report.postgres_applied.is_empty() {
        println!("postgres: schema up to date");
    } else {
        println!("postgres: applied {}", report.postgres_applied.join(", "));
    }
    if report.influx.is_unchanged() {
        println!("influxdb: schema up to date");
    } else {
        for change in report
            .influx
            .created
            .iter()
            .map(|c| format!("created {c}"))
            .chain(report.influx.altered.iter().map(|c| format!("altered {c}")))
            .chain(report.influx.dropped.iter().map(|c| format!("dropped {c}")))
        {
            println!("influxdb: {change}");
        }
    }
    Ok(())
}

/// Exit 0 once PostgreSQL has every migration (the services' init containers wait on this
/// while the migrate Job runs); 1 with what is missing otherwise.
async fn check_schema(settings: &platform::Settings) -> Result<(), platform::StartupError> {
    let pending = platform::postgres::pending_migrations(&settings.postgres.url).await?;
    if pending.is_empty() {
        println!("postgres: schema up to date");
        Ok(())
    } else {
        Err(format!(
            "schema not migrated yet, {} pending: {}",
            pending.len(),
            pending.join(", ")
        )
        .into())
    }
}

async fn seed_demo(
    settings: &platform::Settings,
    path: PathBuf,
) -> Result<(), platform::StartupError> {
    let credentials = plantline_admin::demo::DemoCredentials::load_or_generate(&path)?;
    credentials.write(&path)?;
    let pool = platform::postgres::build_pool(&settings.postgres)?;
    let new_machines = plantline_admin::demo::seed(&pool, &credentials).await?;
    println!(
        "demo data: {} machines ({new_machines} new), 3 users, 1 gateway client; credentials in {}",
        plantline_admin::demo::MACHINES.len(),
        path.display()
    );
    Ok(())
}

fn gen_keys(dir: &std::path::Path) -> Result<(), platform::StartupError> {
    if plantline_admin::keys::ensure_key_pair(dir)? {
        println!(
            "keys: generated a new Ed25519 signing key in {}",
            dir.display()
        );
    } else {
        println!("keys: keeping the signing key in {}", dir.display());
    }
    Ok(())
}
