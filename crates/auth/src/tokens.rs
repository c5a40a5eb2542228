//! Minting tokens: EdDSA access tokens and opaque refresh tokens (stored only as hashes).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::Role;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use platform::auth::{AccessClaims, Jwks, PublicKey, SigningKey};
use platform::config::AuthSettings;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Signs access tokens with the active key and publishes every accepted key.
pub struct TokenSigner {
    key: EncodingKey,
    kid: String,
    issuer: String,
    audience: String,
    ttl_secs: i64,
    jwks: Jwks,
}

/// A freshly minted access token.
pub struct IssuedToken {
    /// The compact JWT.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
}

/// Why a token could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("signing failed: {0}")]
pub struct SignError(String);

impl TokenSigner {
    /// The active key signs; `extra_keys` (a rotation's previous or next key) are published too.
    pub fn new(
        signing: &SigningKey,
        extra_keys: &[PublicKey],
        settings: &AuthSettings,
    ) -> Result<Self, SignError> {
        let key = EncodingKey::from_ed_der(signing.to_pkcs8_der());
        let mut keys = vec![signing.public_key().to_jwk()];
        for extra in extra_keys {
            if !keys.iter().any(|k| k.kid == extra.kid()) {
                keys.push(extra.to_jwk());
            }
        }
        Ok(Self {
            key,
            kid: signing.public_key().kid().to_owned(),
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            ttl_secs: settings.access_ttl_secs as i64,
            jwks: Jwks { keys },
        })
    }

    /// The published key set.
    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    /// Mints an access token for `subject` with the role's permissions.
    pub fn issue(
        &self,
        subject: Uuid,
        username: &str,
        role: Role,
        session: Option<Uuid>,
    ) -> Result<IssuedToken, SignError> {
        let now = chrono::Utc::now().timestamp();
        let claims = AccessClaims {
            sub: subject.to_string(),
            username: username.to_owned(),
            role: role.as_str().to_owned(),
            permissions: role
                .permissions()
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            nbf: now,
            exp: now + self.ttl_secs,
            jti: Uuid::new_v4().to_string(),
            sid: session.map(|s| s.to_string()),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| SignError(e.to_string()))?;
        Ok(IssuedToken {
            token,
            expires_in: self.ttl_secs,
        })
    }
}

/// A new opaque refresh token: 256 random bits, base64url.
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// How refresh tokens are stored: SHA-256 hex. A fast hash is right here: the token has 256
/// bits of entropy, so there is nothing to brute-force, and lookups stay cheap.
pub fn refresh_token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
