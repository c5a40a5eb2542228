//! Token verification: signature (EdDSA only, key chosen by `kid`), issuer, audience, time
//! window with a small leeway, then the revocation mirror.

use super::keys::PublicKey;
use super::revocation::{RevocationCache, RevocationState};
use domain::{Permission, PermissionSet, Role};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

/// The claims of a Plantline access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    /// User id or gateway client id (UUID).
    pub sub: String,
    /// Login name (users) or client id (gateways).
    pub username: String,
    /// Role name.
    pub role: String,
    /// Permission names, as the role grants them at issue time.
    pub permissions: Vec<String>,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expires at.
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
    /// Role.
    pub role: Role,
    /// Permissions the token carries.
    pub permissions: PermissionSet,
    /// Token id.
    pub jti: String,
    /// Issued at.
    pub issued_at: i64,
    /// Expires at.
    pub expires_at: i64,
    /// Login session (refresh family), for users.
    pub session: Option<Uuid>,
}

impl Principal {
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

/// Verifies access tokens with a fixed set of public keys.
pub struct TokenVerifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
    revocations: RevocationCache,
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
            revocations,
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
        session: match claims.sid {
            Some(sid) => Some(sid.parse().map_err(|_| invalid("sid must be a UUID"))?),
            None => None,
        },
    })
}
