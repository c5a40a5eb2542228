//! Checking a secret against an account's argon2 hash: on the bounded hashing pool, counted by
//! the throttle, with the same work and the same answer whether or not the account exists.
//! People's logins (`auth`) and gateway credentials (`auth`'s token endpoint and
//! ingest-api's InfluxDB-compatible writes) share it.

use crate::gateways::{self, Gateway};
use crate::hashing::HashPool;
use crate::secrets::{hash_secret, verify_secret_with};
use crate::throttle::LoginThrottle;
use crate::users::User;
use crate::verified::{VerifiedGateway, VerifiedGateways};
use actix_web::http::StatusCode;
use platform::ApiError;
use platform::postgres::{DbError, PgPool, connection, within};
use secrecy::SecretString;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What a credential check needs of an account: its stored hash and whether it may log in.
pub trait Account {
    fn secret_hash(&self) -> &str;
    fn is_active(&self) -> bool;
}

impl Account for User {
    fn secret_hash(&self) -> &str {
        &self.password_hash
    }
    fn is_active(&self) -> bool {
        self.is_active
    }
}

impl Account for Gateway {
    fn secret_hash(&self) -> &str {
        &self.secret_hash
    }
    fn is_active(&self) -> bool {
        self.is_active
    }
}

/// Checks secrets on a hashing pool; an unknown account is checked against a dummy hash.
#[derive(Clone)]
pub struct SecretChecker {
    hashing: HashPool,
    dummy_hash: String,
}

impl SecretChecker {
    /// Hashes the dummy once (one argon2 at startup, not counted as a check).
    pub fn new(hashing: HashPool) -> Result<Self, crate::secrets::HashError> {
        let dummy_hash = hash_secret(&SecretString::from("not-a-real-password".to_owned()))?;
        Ok(Self {
            hashing,
            dummy_hash,
        })
    }

    /// The pool, for hashing new secrets.
    pub fn hashing(&self) -> &HashPool {
        &self.hashing
    }

    /// `account` when `secret` matches its hash and it is active; 401 with `refusal`
    /// otherwise. An unknown account costs the same work and gets the same answer: no
    /// enumeration.
    pub async fn verify<A: Account>(
        &self,
        account: Option<A>,
        secret: String,
        refusal: &'static str,
    ) -> Result<A, ApiError> {
        let hash = account
            .as_ref()
            .map_or_else(|| self.dummy_hash.clone(), |a| a.secret_hash().to_owned());
        let secret = SecretString::from(secret);
        let matches = self
            .hashing
            .run(move |scratch| verify_secret_with(&secret, &hash, scratch))
            .await?;
        match account {
            Some(account) if matches && account.is_active() => Ok(account),
            _ => Err(ApiError::unauthorized(refusal)),
        }
    }
}

/// How long a gateway's credential check waits for PostgreSQL before the credentials
/// verified lately are used instead.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(2);

/// Why a check let a gateway in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// PostgreSQL and argon2, just now.
    Postgres,
    /// A pair verified earlier (trusted for its age, or because PostgreSQL is away).
    Cache,
}

/// A gateway whose id and secret were checked.
#[derive(Debug, Clone)]
pub struct CheckedGateway {
    pub gateway: VerifiedGateway,
    /// Unix seconds of the argon2 verification: a revocation of the gateway at or after it
    /// makes a cached answer stale.
    pub verified_at: i64,
    pub source: Source,
}

/// Gateway client id + secret, checked against PostgreSQL with argon2 and remembered, so a
/// gateway that sends its secret with every request costs one argon2 per `trust_for`.
pub struct GatewayCredentials {
    pg: PgPool,
    checker: SecretChecker,
    throttle: LoginThrottle,
    verified: VerifiedGateways,
    /// One verification at a time per pair: when a gateway's first requests arrive together
    /// (Telegraf's outputs after a restart), one runs argon2 and the others find its answer.
    in_flight: InFlight,
}

impl GatewayCredentials {
    /// Pairs are kept `keep_for` (the PostgreSQL-outage fallback); callers say per check how
    /// old an entry they trust while PostgreSQL answers.
    pub fn new(
        pg: PgPool,
        checker: SecretChecker,
        throttle: LoginThrottle,
        keep_for: Duration,
    ) -> Self {
        Self {
            pg,
            checker,
            throttle,
            verified: VerifiedGateways::new(keep_for),
            in_flight: InFlight::default(),
        }
    }

    /// The active gateway with this id and secret; 401 for anything else, 429 after too
    /// many failures. A pair verified within `trust_for` is answered from memory; otherwise
    /// PostgreSQL and argon2 decide, and while PostgreSQL is away any pair verified within
    /// `keep_for` is still let in (logged).
    pub async fn check(
        &self,
        client_id: &str,
        secret: &str,
        client_ip: &str,
        trust_for: Duration,
    ) -> Result<CheckedGateway, ApiError> {
        let trusted = || {
            self.verified
                .recall(client_id, secret)
                .filter(|recalled| recalled.age <= trust_for)
                .map(|recalled| CheckedGateway {
                    gateway: recalled.gateway,
                    verified_at: recalled.verified_at,
                    source: Source::Cache,
                })
        };
        if let Some(known) = trusted() {
            return Ok(known);
        }
        let _turn = self.in_flight.turn(client_id, secret).await;
        // Whoever held the turn before may have just verified this very pair.
        if let Some(known) = trusted().filter(|_| !trust_for.is_zero()) {
            return Ok(known);
        }
        // A pair that passed argon2 before is not a guess: checking it again is not counted,
        // so a stale client sending an old secret cannot lock out the gateway's current one.
        let checked = if self.verified.recall(client_id, secret).is_some() {
            self.against_postgres(client_id, secret).await
        } else {
            let account = format!("gateway:{client_id}");
            self.throttle
                .run_counted(
                    &account,
                    client_ip,
                    self.against_postgres(client_id, secret),
                )
                .await
        };
        match checked {
            Ok(gateway) => Ok(CheckedGateway {
                gateway,
                verified_at: chrono::Utc::now().timestamp(),
                source: Source::Postgres,
            }),
            Err(err) if err.status() == StatusCode::SERVICE_UNAVAILABLE => {
                match self.verified.recall(client_id, secret) {
                    Some(recalled) => {
                        tracing::warn!(
                            client_id,
                            reason = err.message(),
                            "credentials not checked against PostgreSQL; accepted as verified lately"
                        );
                        Ok(CheckedGateway {
                            gateway: recalled.gateway,
                            verified_at: recalled.verified_at,
                            source: Source::Cache,
                        })
                    }
                    None => Err(err),
                }
            }
            Err(err) => Err(err),
        }
    }

    async fn against_postgres(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<VerifiedGateway, ApiError> {
        // A deadline of our own: on a silent PostgreSQL the pool alone may wait longer than a
        // gateway, and the credentials verified lately are there to answer instead.
        let looked_up = within(LOOKUP_DEADLINE, async {
            let mut conn = connection(&self.pg).await?;
            gateways::find_by_client_id(&mut conn, client_id)
                .await
                .map_err(DbError::Query)
        })
        .await?;
        let gateway = self
            .checker
            .verify(looked_up, secret.to_owned(), "invalid client credentials")
            .await
            .inspect_err(|err| {
                if err.status() == StatusCode::UNAUTHORIZED {
                    self.verified.forget_pair(client_id, secret);
                }
            })?;
        let verified = VerifiedGateway {
            id: gateway.id,
            client_id: gateway.client_id,
        };
        self.verified.remember(&verified, secret);
        let touched = within(LOOKUP_DEADLINE, async {
            let mut conn = connection(&self.pg).await?;
            gateways::touch_last_used(&mut conn, verified.id)
                .await
                .map_err(DbError::Query)
        })
        .await;
        if let Err(err) = touched {
            tracing::warn!(error = %err, client_id, "gateway's last use not recorded");
        }
        Ok(verified)
    }

    /// Drops every remembered pair of gateway `id` (disabled, deleted, secret rotated).
    pub fn forget(&self, id: uuid::Uuid) {
        self.verified.forget(id);
    }

    /// Drops this pair (it was revoked since it was verified).
    pub fn forget_pair(&self, client_id: &str, secret: &str) {
        self.verified.forget_pair(client_id, secret);
    }
}

/// Per-pair turns for verification (keyed like the cache, never by the secret itself).
#[derive(Default)]
struct InFlight(std::sync::Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>);

/// A pair's turn; the pair's entry goes when the last holder or waiter lets go.
struct Turn<'a> {
    owner: &'a InFlight,
    key: [u8; 32],
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl InFlight {
    async fn turn(&self, client_id: &str, secret: &str) -> Turn<'_> {
        let key = crate::verified::pair_key(client_id, secret);
        let lock = match self.0.lock() {
            Ok(mut turns) => turns.entry(key).or_default().clone(),
            Err(_) => Arc::default(),
        };
        Turn {
            owner: self,
            key,
            _guard: lock.lock_owned().await,
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Ok(mut turns) = self.owner.0.lock()
            && let Some(lock) = turns.get(&self.key)
            // Ours and the map's: nobody else waits for this pair.
            && Arc::strong_count(lock) <= 2
        {
            turns.remove(&self.key);
        }
    }
}
