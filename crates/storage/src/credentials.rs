//! Checking a secret against an account's argon2 hash: on the bounded hashing pool, counted by
//! the throttle, with the same work and the same answer whether or not the account exists.
//! People's logins (`auth`) and gateway credentials (`auth`'s token endpoint and
//! ingest-api's InfluxDB-compatible writes) share it.

use crate::gateways::{self, Gateway};
use crate::hashing::HashPool;
use crate::secrets::{hash_secret, verify_secret_with};
use crate::throttle::LoginThrottle;
use crate::users::User;
use crate::verified::pair_key;
use crate::verified::{VerifiedGateway, VerifiedGateways};
use actix_web::http::StatusCode;
use platform::ApiError;
use platform::postgres::{DbError, PgPool, connection, within};
use secrecy::SecretString;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// How long a pair argon2 refused (for an active or unknown gateway) is refused again from
/// memory, without argon2: a client stuck on an old secret costs one check per this.
const REFUSED_FOR: Duration = Duration::from_secs(30);

/// Why a check let a gateway in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// PostgreSQL and argon2, just now.
    Postgres,
    /// Verified within the caller's `trust_for`, answered from memory.
    Trusted,
    /// Verified within `keep_for`, answered from memory because PostgreSQL (or the hashing
    /// pool) could not answer now.
    Fallback,
}

/// A gateway whose id and secret were checked.
#[derive(Debug, Clone)]
pub struct CheckedGateway {
    pub gateway: VerifiedGateway,
    /// Unix seconds, taken before PostgreSQL was asked: a revocation of the gateway in that
    /// second or later refuses the pair, as it refuses the tokens issued until then. (The
    /// clocks of the services and auth must agree, as they must for token expiry.)
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
    /// Pairs argon2 refused lately (keyed like `verified`), refused again without argon2.
    refused: Mutex<HashMap<[u8; 32], Instant>>,
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
            refused: Mutex::default(),
            in_flight: InFlight::default(),
        }
    }

    /// The active gateway with this id and secret; 401 for anything else. A pair verified
    /// within `trust_for` is answered from memory (no PostgreSQL, no throttle). Otherwise
    /// PostgreSQL and argon2 decide, counted by the throttle (429 after too many failures;
    /// the same wrong pair counts once per window and is refused from memory for
    /// [`REFUSED_FOR`]); while PostgreSQL is away any pair verified within `keep_for` is
    /// still let in (logged).
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
                    source: Source::Trusted,
                })
        };
        if let Some(known) = trusted() {
            return Ok(known);
        }
        let key = pair_key(client_id, secret);
        if self.refused_lately(&key) {
            return Err(ApiError::unauthorized(REFUSAL));
        }
        let _turn = self.in_flight.turn(key).await;
        // Whoever held the turn before may have just verified this very pair.
        if let Some(known) = trusted().filter(|_| !trust_for.is_zero()) {
            return Ok(known);
        }
        let checked = self.verify(client_id, secret, client_ip, &key).await;
        match checked {
            Ok((gateway, verified_at)) => Ok(CheckedGateway {
                gateway,
                verified_at,
                source: Source::Postgres,
            }),
            Err(err) if err.status() == StatusCode::SERVICE_UNAVAILABLE => {
                let Some(recalled) = self.verified.recall(client_id, secret) else {
                    return Err(err);
                };
                tracing::warn!(
                    client_id,
                    reason = err.message(),
                    "credentials could not be checked now; accepted as verified lately"
                );
                Ok(CheckedGateway {
                    gateway: recalled.gateway,
                    verified_at: recalled.verified_at,
                    source: Source::Fallback,
                })
            }
            Err(err) => Err(err),
        }
    }

    /// PostgreSQL and argon2, through the throttle. A pair that passed argon2 before is no
    /// guess and is not counted.
    async fn verify(
        &self,
        client_id: &str,
        secret: &str,
        client_ip: &str,
        key: &[u8; 32],
    ) -> Result<(VerifiedGateway, i64), ApiError> {
        if self.verified.recall(client_id, secret).is_some() {
            return self.against_postgres(client_id, secret, key).await;
        }
        let account = format!("gateway:{client_id}");
        let digest: String = key.iter().map(|b| format!("{b:02x}")).collect();
        self.throttle
            .run_counted_once(
                &account,
                client_ip,
                &digest,
                self.against_postgres(client_id, secret, key),
            )
            .await
    }

    async fn against_postgres(
        &self,
        client_id: &str,
        secret: &str,
        key: &[u8; 32],
    ) -> Result<(VerifiedGateway, i64), ApiError> {
        // Before the row is read: a revocation committed after this instant must catch it.
        let verified_at = chrono::Utc::now().timestamp();
        // A deadline of our own: on a silent PostgreSQL the pool alone may wait longer than a
        // gateway, and the credentials verified lately are there to answer instead.
        let looked_up = within(LOOKUP_DEADLINE, async {
            let mut conn = connection(&self.pg).await?;
            gateways::find_by_client_id(&mut conn, client_id)
                .await
                .map_err(DbError::Query)
        })
        .await?;
        // A disabled gateway's right secret becomes good again when it is enabled.
        let may_remember_refusal = looked_up.as_ref().is_none_or(|g| g.is_active);
        let gateway = self
            .checker
            .verify(looked_up, secret.to_owned(), REFUSAL)
            .await
            .inspect_err(|err| {
                if err.status() == StatusCode::UNAUTHORIZED {
                    self.verified.forget_pair(client_id, secret);
                    if may_remember_refusal {
                        self.remember_refusal(*key);
                    }
                }
            })?;
        let verified = VerifiedGateway {
            id: gateway.id,
            client_id: gateway.client_id,
        };
        self.verified.remember(&verified, secret, verified_at);
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
        Ok((verified, verified_at))
    }

    fn refused_lately(&self, key: &[u8; 32]) -> bool {
        self.refused.lock().is_ok_and(|refused| {
            refused
                .get(key)
                .is_some_and(|at| at.elapsed() < REFUSED_FOR)
        })
    }

    fn remember_refusal(&self, key: [u8; 32]) {
        if let Ok(mut refused) = self.refused.lock() {
            if refused.len() >= REFUSALS_KEPT {
                refused.retain(|_, at| at.elapsed() < REFUSED_FOR);
            }
            if refused.len() < REFUSALS_KEPT {
                refused.insert(key, Instant::now());
            }
        }
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

/// The answer to wrong credentials, whatever was wrong.
const REFUSAL: &str = "invalid client credentials";

/// Refused pairs kept at most (beyond, new refusals are not remembered: each costs argon2,
/// which the hashing pool bounds).
const REFUSALS_KEPT: usize = 10_000;

/// Per-pair turns for verification (keyed like the cache, never by the secret itself).
#[derive(Default)]
struct InFlight(Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>);

/// A pair's turn; the pair's entry goes when the last holder or waiter lets go.
struct Turn<'a> {
    owner: &'a InFlight,
    key: [u8; 32],
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl InFlight {
    async fn turn(&self, key: [u8; 32]) -> Turn<'_> {
        let lock = match self.0.lock() {
            Ok(mut turns) => {
                // A waiter whose request was dropped before its turn leaves its entry
                // behind; nobody else holds such an entry.
                turns.retain(|_, lock| Arc::strong_count(lock) > 1);
                turns.entry(key).or_default().clone()
            }
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
