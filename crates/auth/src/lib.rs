//! `auth`: logins, refresh rotation and revocation, users and gateway clients, and the
//! bounded password-hashing pool. The only service that holds the signing key and can mint
//! tokens; every other service only verifies them.

pub mod revoker;
pub mod routes;
pub mod tokens;

use platform::auth::{PublicKey, SigningKey, Verification};
use platform::health::{Dependency, Probe, Readiness};
use platform::metrics::Metrics;
use platform::postgres::PgPool;
use platform::redis::RedisClient;
use platform::{Application, ServiceName, ServiceParts, Settings, StartupError};
use revoker::Revoker;
use std::path::Path;
use std::time::Duration;
use storage::credentials::{GatewayCredentials, SecretChecker};
use storage::hashing::HashPool;
use storage::throttle::LoginThrottle;

/// What the handlers share.
pub(crate) struct AuthState {
    pub pg: PgPool,
    pub signer: tokens::TokenSigner,
    pub revoker: Revoker,
    pub throttle: LoginThrottle,
    pub refresh_ttl: chrono::Duration,
    /// Where every password and secret is hashed or checked, a bounded number at a time.
    pub secrets: SecretChecker,
    /// Gateway credentials, remembered once verified: gateways get tokens while PostgreSQL
    /// is away.
    pub gateways: GatewayCredentials,
}

/// Builds the service from configuration.
pub async fn build(settings: &Settings) -> Result<Application, StartupError> {
    let pg = platform::postgres::build_pool(&settings.postgres)?;
    let redis = RedisClient::new(&settings.redis)?;
    let metrics = Metrics::new(ServiceName::Auth.as_str())?;

    let signing_path = settings.auth.signing_key_path().ok_or(
        "configuration key `auth.signing_key_file`: auth needs the private key it signs with",
    )?;
    let signing = SigningKey::from_pem_file(Path::new(signing_path))?;
    let extra_keys = settings
        .auth
        .public_key_paths()
        .map(|path| PublicKey::from_pem_file(Path::new(path)))
        .collect::<Result<Vec<_>, _>>()?;
    // A revocation must outlive whatever it revokes: access tokens, and the gateway secrets
    // services remember (trusted, or kept for a PostgreSQL outage).
    let revoked_things_live = settings
        .auth
        .access_ttl_secs
        .max(settings.auth.verified_gateway_ttl_secs)
        .max(settings.auth.gateway_secret_trust_secs);
    let keep_secs = (revoked_things_live + settings.auth.leeway_secs) as i64;
    let checks = prometheus::IntCounter::new(
        "password_checks_total",
        "argon2 hashes and verifications run (logins, gateway tokens, new secrets)",
    )?;
    metrics.register(Box::new(checks.clone()));
    let secrets = SecretChecker::new(HashPool::for_this_machine(checks)?)?;
    let throttle = LoginThrottle::new(redis.clone(), &settings.auth);
    let state = actix_web::web::Data::new(AuthState {
        pg: pg.clone(),
        signer: tokens::TokenSigner::new(&signing, &extra_keys, &settings.auth)?,
        revoker: Revoker::new(redis.clone(), keep_secs),
        throttle: throttle.clone(),
        refresh_ttl: chrono::Duration::seconds(settings.auth.refresh_ttl_secs as i64),
        gateways: GatewayCredentials::new(
            pg.clone(),
            secrets.clone(),
            throttle,
            Duration::from_secs(settings.auth.verified_gateway_ttl_secs),
        ),
        secrets,
    });

    let readiness = Readiness::new(
        vec![
            // Optional: while PostgreSQL is away, gateways still get tokens on credentials
            // verified lately, so auth must stay in its Service's endpoints.
            Dependency::optional("postgres", Probe::Postgres(pg)),
            // Logins keep working without Redis; administration fails closed (README).
            Dependency::optional("redis", Probe::Redis(redis.clone())),
        ],
        Duration::from_secs(2),
    );
    let verification = Verification::from_settings(&settings.auth, redis, &metrics)?;
    let parts = ServiceParts {
        service: ServiceName::Auth,
        readiness,
        metrics,
        verification: Some(verification),
        routes: move |cfg: &mut actix_web::web::ServiceConfig| {
            cfg.app_data(state.clone());
            routes::configure(cfg);
        },
    };
    Ok(Application::build(settings, parts)?)
}
