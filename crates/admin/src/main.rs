//! `plantline-admin migrate` | `check-schema` | `gen-keys DIR` | `seed-demo [ENV_FILE]`

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: plantline-admin migrate | check-schema | gen-keys DIR | seed-demo [ENV_FILE (default .plantline/demo.env)]";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = match platform::load_settings() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("plantline-admin: {err}");
            return ExitCode::from(2);
        }
    };
    let outcome = match args.first().map(String::as_str) {
        Some("migrate") => migrate(&settings).await,
        Some("check-schema") => check_schema(&settings).await,
        Some("gen-keys") => match args.get(1) {
            Some(dir) => gen_keys(dir),
            None => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        },
        Some("seed-demo") => {
            let path = args
                .get(1)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(".plantline/demo.env"));
            seed_demo(&settings, path).await
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
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

fn gen_keys(dir: &str) -> Result<(), platform::StartupError> {
    let dir = std::path::Path::new(dir);
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
