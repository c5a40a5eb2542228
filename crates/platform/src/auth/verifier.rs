//! Token verification: signature (EdDSA only, key chosen by `kid`), issuer, audience, time
//! window with a small leeway, then the revocation mirror.

use super::keys::PublicKey;
use super::revocation::{RevocationCache, RevocationState};
use domain::{Permission, PermissionSet, Role};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use uuid::Uuid;

/// The claims of a Plantline access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    /// User id or gateway client id (UUID).
    pub sub: String,
    /// Login name (users) or client id (gateways).
    pub username: String,
    pub role: String,
    /// Permission names, as the role grants them at issue time.
    pub permissions: Vec<String>,
    pub iss: String,
    pub aud: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Token id, for revocation.
    pub jti: String,
    /// The refresh-token family (login session) the token belongs to; absent for gateways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// Who is calling, after verification.
#[derive(Debug, Clone)]
pub struct Principal {
    /// User or gateway id.
    pub subject: Uuid,
    /// Login name or gateway client id.
    pub username: String,
    pub role: Role,
    /// Permissions the token carries.
    pub permissions: PermissionSet,
    pub jti: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub not_before: i64,
    /// Login session (refresh family), for users.
    pub session: Option<Uuid>,
}

impl Principal {
    /// A gateway that showed its client id and secret rather than a token: the gateway
    /// role's permissions, "issued" when the secret was verified, so revoking the gateway
    /// refuses it as it refuses the tokens issued until then. No token, no `jti`; the time
    /// fields say when it was verified and are not checked.
    pub fn gateway(id: Uuid, client_id: &str, verified_at: i64) -> Self {
        Self {
            subject: id,
            username: client_id.to_owned(),
            role: Role::Gateway,
            permissions: Role::Gateway.permissions().iter().copied().collect(),
            jti: String::new(),
            issued_at: verified_at,
            expires_at: verified_at,
            not_before: verified_at,
            session: None,
        }
    }

    /// Whether the token grants `permission`.
    pub fn can(&self, permission: Permission) -> bool {
        self.permissions.contains(permission)
    }
}

/// Why a token was refused. Every variant is a 401 except `RevocationsUnavailable`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// Not a well-formed JWT, wrong algorithm, bad signature, bad claims.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The `kid` is not one of our keys.
    #[error("token signed with an unknown key")]
    UnknownKey,
    /// Past `exp`.
    #[error("token expired")]
    Expired,
    /// Before `nbf`.
    #[error("token not valid yet")]
    NotYetValid,
    /// Logged out, or its user or gateway was deactivated.
    #[error("token revoked")]
    Revoked,
    /// Revocations could not be checked recently (Redis away).
    #[error("token revocations cannot be checked right now")]
    RevocationsUnavailable,
}

/// Tokens verified recently. A gateway sends the same token with every batch for 15
/// minutes; checking its signature once is enough, since the same bytes always verify the
/// same way. The time window is re-checked on every hit; revocation is checked separately.
const VERIFIED_CACHE_CAPACITY: usize = 4096;

/// Verifies access tokens with a fixed set of public keys.
pub struct TokenVerifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
    leeway_secs: i64,
    revocations: RevocationCache,
    verified: Mutex<HashMap<String, Principal>>,
}

impl TokenVerifier {
    /// Accepts tokens signed by any of `keys`, issued by `issuer` for `audience`.
    pub fn new(
        keys: &[PublicKey],
        issuer: &str,
        audience: &str,
        leeway_secs: u64,
        revocations: RevocationCache,
    ) -> Result<Self, AuthError> {
        let mut decoding = HashMap::new();
        for key in keys {
            let decoding_key = DecodingKey::from_ed_components(&key.x())
                .map_err(|e| AuthError::Invalid(e.to_string()))?;
            decoding.insert(key.kid().to_owned(), decoding_key);
        }
        // alg is pinned: a token claiming HS256 (signed with our public key as the secret)
        // or `none` never reaches signature checking.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = leeway_secs;
        Ok(Self {
            keys: decoding,
            validation,
            leeway_secs: leeway_secs as i64,
            revocations,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The revocation mirror this verifier consults.
    pub fn revocations(&self) -> &RevocationCache {
        &self.revocations
    }

    /// Verifies the signature and claims, and parses them into a [`Principal`]. Revocation is
    /// checked separately ([`check_revocation`](Self::check_revocation)) because what to do
    /// when it cannot be checked depends on the endpoint.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let cached = self
            .verified
            .lock()
            .ok()
            .and_then(|cache| cache.get(token).cloned());
        if let Some(principal) = cached {
            let now = chrono::Utc::now().timestamp();
            if now > principal.expires_at + self.leeway_secs {
                return Err(AuthError::Expired);
            }
            if now + self.leeway_secs < principal.not_before {
                return Err(AuthError::NotYetValid);
            }
            return Ok(principal);
        }
        let principal = self.verify_uncached(token)?;
        if let Ok(mut cache) = self.verified.lock() {
            if cache.len() >= VERIFIED_CACHE_CAPACITY {
                // Crude but bounded: start over rather than track recency.
                cache.clear();
            }
            cache.insert(token.to_owned(), principal.clone());
        }
        Ok(principal)
    }

    fn verify_uncached(&self, token: &str) -> Result<Principal, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::Invalid("algorithm must be EdDSA".to_owned()));
        }
        let kid = header.kid.ok_or(AuthError::UnknownKey)?;
        let key = self.keys.get(&kid).ok_or(AuthError::UnknownKey)?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                _ => AuthError::Invalid(e.to_string()),
            },
        )?;
        principal_from(data.claims)
    }

    /// `Ok(())` when not revoked; `RevocationsUnavailable` when the mirror is stale.
    pub fn check_revocation(&self, principal: &Principal) -> Result<(), AuthError> {
        match self.revocations.state() {
            RevocationState::Fresh(view) => {
                if view.is_revoked(
                    &principal.jti,
                    principal.session.as_ref(),
                    &principal.subject,
                    principal.issued_at,
                ) {
                    Err(AuthError::Revoked)
                } else {
                    Ok(())
                }
            }
            RevocationState::Stale(view) => {
                // Still refuse what we know is revoked; only unknown revocations are at risk.
                if view.is_revoked(
                    &principal.jti,
                    principal.session.as_ref(),
                    &principal.subject,
                    principal.issued_at,
                ) {
                    Err(AuthError::Revoked)
                } else {
                    Err(AuthError::RevocationsUnavailable)
                }
            }
        }
    }
}

fn principal_from(claims: AccessClaims) -> Result<Principal, AuthError> {
    let invalid = |what: &str| AuthError::Invalid(what.to_owned());
    let role: Role = claims.role.parse().map_err(|_| invalid("unknown role"))?;
    let mut permissions = PermissionSet::default();
    for name in &claims.permissions {
        let permission: Permission = name.parse().map_err(|_| invalid("unknown permission"))?;
        // A token can never grant more than its role allows, whatever it lists.
        if role.allows(permission) {
            permissions.insert(permission);
        }
    }
    Ok(Principal {
        subject: claims
            .sub
            .parse()
            .map_err(|_| invalid("sub must be a UUID"))?,
        username: claims.username,
        role,
        permissions,
        jti: claims.jti,
        issued_at: claims.iat,
        expires_at: claims.exp,
        not_before: claims.nbf,
        session: match claims.sid {
            Some(sid) => Some(sid.parse().map_err(|_| invalid("sid must be a UUID"))?),
            None => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::SigningKey;
    use jsonwebtoken::{EncodingKey, Header};
    use std::time::{Duration, Instant};

    fn token(key: &SigningKey, exp_in: i64) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = AccessClaims {
            sub: Uuid::new_v4().to_string(),
            username: "gw".to_owned(),
            role: "gateway".to_owned(),
            permissions: vec!["write:sensor_data".to_owned(), "write:config".to_owned()],
            iss: "plantline".to_owned(),
            aud: "plantline-api".to_owned(),
            iat: now,
            nbf: now,
            exp: now + exp_in,
            jti: Uuid::new_v4().to_string(),
            sid: None,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.public_key().kid().to_owned());
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_ed_der(key.to_pkcs8_der()),
        )
        .unwrap()
    }

    fn verifier(key: &SigningKey) -> TokenVerifier {
        TokenVerifier::new(
            std::slice::from_ref(key.public_key()),
            "plantline",
            "plantline-api",
            0,
            RevocationCache::new(Duration::from_secs(3)),
        )
        .unwrap()
    }

    #[test]
    fn permissions_beyond_the_role_are_dropped() {
        let key = SigningKey::generate();
        let principal = verifier(&key).verify(&token(&key, 60)).unwrap();
        assert!(principal.can(Permission::WriteSensorData));
        assert!(
            !principal.can(Permission::WriteConfig),
            "a gateway token cannot grant write:config"
        );
    }

    #[test]
    fn a_cached_token_still_expires() {
        let key = SigningKey::generate();
        let verifier = verifier(&key);
        let short = token(&key, 1);
        assert!(verifier.verify(&short).is_ok());
        assert!(
            verifier.verify(&short).is_ok(),
            "second call answered from the cache"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match verifier.verify(&short) {
                Err(AuthError::Expired) => break,
                Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                other => panic!("expected expiry, got {other:?}"),
            }
        }
    }
}
