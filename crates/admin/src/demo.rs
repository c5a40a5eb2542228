//! The demo plant: seven machines, one user per role and one gateway client.
//!
//! Secrets are generated on first use and kept in an env file (mode 0600) so repeated runs
//! keep the same credentials; nothing secret is committed to the repository.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use platform::postgres::{DbError, PgPool, connection};
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::path::Path;
use storage::schema::{gateway_clients, machine_metadata, users};
use storage::secrets::{generate_secret, hash_secret};
use uuid::Uuid;

/// A demo machine: id, name, location, sensor type, status, factory.
type DemoMachine = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// The seed's seven machines across two factories, with stable ids for docs and simulators.
pub const MACHINES: [DemoMachine; 7] = [
    (
        "0b6f1c3e-8a51-4c7e-9a01-000000000001",
        "CNC Mill 01",
        "Hall 1",
        "multi",
        "active",
        "A",
    ),
    (
        "0b6f1c3e-8a51-4c7e-9a01-000000000002",
        "CNC Lathe 02",
        "Hall 1",
        "multi",
        "active",
        "A",
    ),
    (
        "0b6f1c3e-8a51-4c7e-9a01-000000000003",
        "Hydraulic Press 03",
        "Hall 2",
        "pressure",
        "active",
        "A",
    ),
    (
        "0b6f1c3e-8a51-4c7e-9a01-000000000004",
        "Injection Moulder 04",
        "Hall 2",
        "temperature",
        "active",
        "A",
    ),
    (
        "0b6f1c3e-8a51-4c7e-9a01-000000000005",
        "Conveyor 05",
        "Hall 3",
        "speed",
        "maintenance",
        "A",
    ),
    (
        "0b6f1c3e-8a51-4c7e-9a01-000000000006",
        "Furnace 06",
        "Foundry",
        "temperature",
        "active",
        "B",
    ),
    (
        "0b6f1c3e-8a51-4c7e-9a01-000000000007",
        "Compressor 07",
        "Foundry",
        "pressure",
        "inactive",
        "B",
    ),
];

/// Demo accounts: env-file prefix, username, role.
pub const USERS: [(&str, &str, &str); 3] = [
    ("OPERATOR", "operator", "operator"),
    ("SUPERVISOR", "supervisor", "supervisor"),
    ("MANAGEMENT", "manager", "management"),
];

/// The demo gateway's client id.
pub const GATEWAY_CLIENT_ID: &str = "demo-gateway";

/// Why seeding failed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// Reading or writing the env file.
    #[error("demo env file {path}: {source}")]
    EnvFile {
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Hashing a secret.
    #[error(transparent)]
    Hash(#[from] storage::secrets::HashError),
    /// Talking to Postgres.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for SeedError {
    fn from(err: diesel::result::Error) -> Self {
        Self::Db(DbError::Query(err))
    }
}

/// The demo credentials, as written to the env file.
#[derive(Debug, Clone)]
pub struct DemoCredentials(BTreeMap<String, SecretString>);

impl DemoCredentials {
    /// A value by its env-file key, e.g. `OPERATOR_PASSWORD`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|s| s.expose_secret())
    }

    /// Reads the env file if it exists, then fills in anything missing with fresh secrets.
    pub fn load_or_generate(path: &Path) -> Result<Self, SeedError> {
        let io_err = |source| SeedError::EnvFile {
            path: path.display().to_string(),
            source,
        };
        let mut values = BTreeMap::new();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for line in text.lines() {
                    if let Some((key, value)) = line.split_once('=') {
                        let value = value.trim().trim_matches('\'').trim_matches('"');
                        values.insert(key.trim().to_owned(), SecretString::from(value.to_owned()));
                    }
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_err(err)),
        }
        for (prefix, username, _) in USERS {
            values
                .entry(format!("{prefix}_USER"))
                .or_insert_with(|| SecretString::from(username.to_owned()));
            values
                .entry(format!("{prefix}_PASSWORD"))
                .or_insert_with(|| generate_secret(20));
        }
        values
            .entry("GATEWAY_CLIENT_ID".to_owned())
            .or_insert_with(|| SecretString::from(GATEWAY_CLIENT_ID.to_owned()));
        values
            .entry("GATEWAY_CLIENT_SECRET".to_owned())
            .or_insert_with(|| generate_secret(32));
        Ok(Self(values))
    }

    /// Writes the env file, readable by its owner only.
    pub fn write(&self, path: &Path) -> Result<(), SeedError> {
        let io_err = |source| SeedError::EnvFile {
            path: path.display().to_string(),
            source,
        };
        let mut text =
            String::from("# Plantline demo credentials, generated by `make run`. Do not commit.\n");
        for (key, value) in &self.0 {
            text.push_str(&format!("{key}={}\n", value.expose_secret()));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(io_err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
                .map_err(io_err)?;
        }
        std::fs::rename(&tmp, path).map_err(io_err)
    }
}

/// Inserts the demo machines, users and gateway (updating secrets of existing demo accounts
/// so they match the credentials). Returns how many machines were new.
pub async fn seed(pool: &PgPool, credentials: &DemoCredentials) -> Result<usize, SeedError> {
    let mut conn = connection(pool).await?;
    let mut new_machines = 0;
    for (id, name, location, sensor_type, status, factory_id) in MACHINES {
        let id: Uuid = id.parse().unwrap_or_default();
        new_machines += diesel::insert_into(machine_metadata::table)
            .values((
                machine_metadata::id.eq(id),
                machine_metadata::name.eq(name),
                machine_metadata::location.eq(location),
                machine_metadata::sensor_type.eq(sensor_type),
                machine_metadata::status.eq(status),
                machine_metadata::factory_id.eq(factory_id),
            ))
            .on_conflict(machine_metadata::id)
            .do_nothing()
            .execute(&mut conn)
            .await?;
    }
    for (prefix, _, role) in USERS {
        let username = credentials
            .get(&format!("{prefix}_USER"))
            .unwrap_or_default();
        let password = SecretString::from(
            credentials
                .get(&format!("{prefix}_PASSWORD"))
                .unwrap_or_default()
                .to_owned(),
        );
        let hash = hash_secret(&password)?;
        let updated = diesel::update(users::table.filter(users::username.eq(username)))
            .set((
                users::password_hash.eq(&hash),
                users::role.eq(role),
                users::is_active.eq(true),
            ))
            .execute(&mut conn)
            .await?;
        if updated == 0 {
            diesel::insert_into(users::table)
                .values((
                    users::username.eq(username),
                    users::email.eq(format!("{username}@plantline.local")),
                    users::password_hash.eq(&hash),
                    users::role.eq(role),
                ))
                .execute(&mut conn)
                .await?;
        }
    }
    let client_id = credentials
        .get("GATEWAY_CLIENT_ID")
        .unwrap_or(GATEWAY_CLIENT_ID);
    let secret = SecretString::from(
        credentials
            .get("GATEWAY_CLIENT_SECRET")
            .unwrap_or_default()
            .to_owned(),
    );
    let hash = hash_secret(&secret)?;
    diesel::insert_into(gateway_clients::table)
        .values((
            gateway_clients::client_id.eq(client_id),
            gateway_clients::name.eq("Demo gateway (Hall 1)"),
            gateway_clients::secret_hash.eq(&hash),
        ))
        .on_conflict(gateway_clients::client_id)
        .do_update()
        .set((
            gateway_clients::secret_hash.eq(&hash),
            gateway_clients::is_active.eq(true),
        ))
        .execute(&mut conn)
        .await?;
    Ok(new_machines)
}
