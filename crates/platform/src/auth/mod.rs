//! Access-token verification shared by every service: EdDSA signatures checked locally with
//! the configured public keys, revocations mirrored from Redis, and the actix extractor that
//! turns a request into a [`Principal`] holding a required permission.

pub mod extractor;
pub mod keys;
pub mod revocation;
pub mod verifier;

pub use extractor::{Authenticated, RequiredPermission, admit, permitted, require};
pub use keys::{Jwk, Jwks, PublicKey, SigningKey};
pub use revocation::RevocationCache;
pub use verifier::{AccessClaims, AuthError, Principal, TokenVerifier};

use crate::config::AuthSettings;
use crate::metrics::Metrics;
use crate::redis::RedisClient;
use actix_web::web;
use std::path::Path;
use std::time::Duration;

/// Why token verification could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// A key file is missing or malformed.
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    /// No key configured at all.
    #[error(
        "configuration key `auth.public_key_files` (or `auth.signing_key_file`): no key to verify tokens with"
    )]
    NoKeys,
    /// The verifier refused a key.
    #[error(transparent)]
    Verifier(#[from] AuthError),
    /// Its metric could not be registered.
    #[error("metric: {0}")]
    Metric(#[from] prometheus::Error),
}

/// Everything a service needs to authenticate requests; handed to `Application::build`,
/// which registers the verifier and keeps the revocation mirror in sync.
pub struct Verification {
    pub(crate) verifier: web::Data<TokenVerifier>,
    pub(crate) unchecked: web::Data<extractor::UncheckedRevocations>,
    pub(crate) redis: RedisClient,
    pub(crate) poll: Duration,
}

impl Verification {
    /// Loads the configured public keys (and the signing key's, when this is `auth`).
    pub fn from_settings(
        settings: &AuthSettings,
        redis: RedisClient,
        metrics: &Metrics,
    ) -> Result<Self, AuthSetupError> {
        let mut keys = Vec::new();
        if let Some(path) = settings.signing_key_path() {
            keys.push(
                SigningKey::from_pem_file(Path::new(path))?
                    .public_key()
                    .clone(),
            );
        }
        for path in settings.public_key_paths() {
            let key = PublicKey::from_pem_file(Path::new(path))?;
            if !keys.iter().any(|k: &PublicKey| k.kid() == key.kid()) {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err(AuthSetupError::NoKeys);
        }
        let cache = RevocationCache::new(Duration::from_millis(settings.revocation_stale_after_ms));
        let verifier = TokenVerifier::new(
            &keys,
            &settings.issuer,
            &settings.audience,
            settings.leeway_secs,
            cache,
        )?;
        let unchecked = prometheus::IntCounter::new(
            "auth_revocations_unchecked_total",
            "Requests allowed while the revocation list could not be synced (Redis lost)",
        )?;
        metrics.register(Box::new(unchecked.clone()));
        Ok(Self {
            verifier: web::Data::new(verifier),
            unchecked: web::Data::new(extractor::UncheckedRevocations(unchecked)),
            redis,
            poll: Duration::from_millis(settings.revocation_poll_ms),
        })
    }

    /// The verifier (benchmarks and tests call it directly).
    pub fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }
}
