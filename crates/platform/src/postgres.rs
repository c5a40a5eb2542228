//! PostgreSQL: the diesel-async pool every service shares the code of, and the migrations.

use crate::config::PostgresSettings;
use diesel::connection::SimpleConnection;
use diesel_async::AsyncPgConnection;
use diesel_async::RunQueryDsl;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use secrecy::{ExposeSecret, SecretString};

/// The migrations under `migrations/`, compiled into every binary that can migrate.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// A pool of async Postgres connections.
pub type PgPool = Pool<AsyncPgConnection>;

/// A connection checked out of [`PgPool`].
pub type PgConn = Object<AsyncPgConnection>;

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The pool could not be built from the settings.
    #[error("building the Postgres pool: {0}")]
    Build(String),
    /// No connection within the configured wait (database down or pool exhausted).
    #[error("no Postgres connection: {0}")]
    Pool(String),
    /// The query itself failed.
    #[error("Postgres query failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// Migrations could not be applied.
    #[error("migrating Postgres: {0}")]
    Migration(String),
}

/// Builds the pool. Connections are made on first use, so a service starts while Postgres is
/// still coming up and reports it in `/readyz` instead of crash-looping.
pub fn build_pool(settings: &PostgresSettings) -> Result<PgPool, DbError> {
    let statement_timeout_ms = settings.statement_timeout_ms;
    let mut config = ManagerConfig::default();
    // Every connection cancels its own runaway statements; the pool's timeouts bound
    // getting one (a server that accepts and stays silent included).
    config.custom_setup = Box::new(move |url| {
        let url = url.to_owned();
        Box::pin(async move {
            use diesel_async::{AsyncConnection, SimpleAsyncConnection};
            let mut conn = AsyncPgConnection::establish(&url).await?;
            conn.batch_execute(&format!("SET statement_timeout = {statement_timeout_ms}"))
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        })
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        settings.url.expose_secret(),
        config,
    );
    let wait = Some(settings.connect_timeout());
    Pool::builder(manager)
        .max_size(settings.pool_size)
        .runtime(deadpool::Runtime::Tokio1)
        .wait_timeout(wait)
        .create_timeout(wait)
        .recycle_timeout(wait)
        .build()
        .map_err(|e| DbError::Build(e.to_string()))
}

/// Runs `call` (PostgreSQL work on a pooled connection) within `limit`, on our side: a
/// server or network that goes silent mid-statement is no answer, not a hang.
pub async fn within<T>(
    limit: std::time::Duration,
    call: impl Future<Output = Result<T, DbError>>,
) -> Result<T, DbError> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|_| Err(DbError::Pool(format!("no answer within {limit:?}"))))
}

/// Checks out a connection, mapping pool errors (timeouts, refused connections) to [`DbError`].
pub async fn connection(pool: &PgPool) -> Result<PgConn, DbError> {
    pool.get().await.map_err(|e| DbError::Pool(e.to_string()))
}

/// A round trip to the database, for readiness checks.
pub async fn ping(pool: &PgPool) -> Result<(), DbError> {
    let mut conn = connection(pool).await?;
    diesel::sql_query("SELECT 1").execute(&mut conn).await?;
    Ok(())
}

/// The migrations not yet applied (Kubernetes init containers wait until there are none).
pub async fn pending_migrations(url: &SecretString) -> Result<Vec<String>, DbError> {
    let url = url.expose_secret().to_owned();
    tokio::task::spawn_blocking(move || {
        use diesel::Connection;
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)
            .map_err(|e| DbError::Migration(format!("connecting: {e}")))?;
        conn.pending_migrations(MIGRATIONS)
            .map(|pending| pending.iter().map(|m| m.name().to_string()).collect())
            .map_err(|e| DbError::Migration(e.to_string()))
    })
    .await
    .map_err(|e| DbError::Migration(format!("migration check failed: {e}")))?
}

/// Applies pending migrations and returns the versions applied now.
///
/// diesel's migration harness is synchronous, so it runs on a blocking thread through the
/// async connection wrapper (which needs the tokio handle that `spawn_blocking` provides).
pub async fn run_migrations(url: &SecretString) -> Result<Vec<String>, DbError> {
    let url = url.expose_secret().to_owned();
    tokio::task::spawn_blocking(move || {
        use diesel::Connection;
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)
            .map_err(|e| DbError::Migration(format!("connecting: {e}")))?;
        // Two migrators racing (replicas' init containers) would both try to apply the same
        // version; the advisory lock makes the second one wait and then find nothing to do.
        conn.batch_execute("SELECT pg_advisory_lock(727001)")
            .map_err(|e| DbError::Migration(format!("locking: {e}")))?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
            .map_err(|e| DbError::Migration(e.to_string()));
        conn.batch_execute("SELECT pg_advisory_unlock(727001)")
            .map_err(|e| DbError::Migration(format!("unlocking: {e}")))?;
        applied
    })
    .await
    .map_err(|e| DbError::Migration(format!("migration task failed: {e}")))?
}
