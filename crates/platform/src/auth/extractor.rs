//! The actix extractor: `Authenticated<require::WriteConfig>` in a handler's arguments means
//! "a valid, unrevoked token carrying write:config", answered 401/403/503 otherwise.

use super::verifier::{AuthError, Principal, TokenVerifier};
use crate::error::ApiError;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use domain::Permission;
use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::sync::Arc;

/// A permission a route requires, as a type (so a handler's signature documents it).
pub trait RequiredPermission {
    /// The permission, or `None` for "any authenticated caller".
    const PERMISSION: Option<Permission>;
}

/// Marker types, one per permission, plus `Any`.
pub mod require {
    use super::RequiredPermission;
    use domain::Permission;

    macro_rules! markers {
        ($($name:ident),* $(,)?) => {$(
            #[doc = concat!("Requires `", stringify!($name), "`.")]
            pub struct $name;
            impl RequiredPermission for $name {
                const PERMISSION: Option<Permission> = Some(Permission::$name);
            }
        )*};
    }
    markers!(
        ReadMachines,
        ReadSensorData,
        WriteSensorData,
        WriteMachines,
        DeleteMachines,
        ReadConfig,
        WriteConfig,
        ReadUsers,
        WriteUsers,
        DeleteUsers,
        ReadAudit,
        AcknowledgeAlerts,
    );

    /// Any valid token, whatever its permissions.
    pub struct Any;
    impl RequiredPermission for Any {
        const PERMISSION: Option<Permission> = None;
    }
}

/// A verified caller holding permission `P`.
pub struct Authenticated<P: RequiredPermission> {
    /// Who is calling.
    pub principal: Principal,
    _permission: PhantomData<P>,
}

impl<P: RequiredPermission> std::ops::Deref for Authenticated<P> {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.principal
    }
}

/// Counts requests let through while revocations could not be checked.
#[derive(Clone)]
pub struct UncheckedRevocations(pub prometheus::IntCounter);

fn bearer(req: &HttpRequest) -> Result<&str, AuthError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Invalid("authorization header is not text".to_owned()))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| AuthError::Invalid("expected `Bearer <token>`".to_owned()))?;
    // `Token` is how InfluxDB's 2.x clients send theirs; the token is the same either way.
    let known = scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token");
    if !known || token.trim().is_empty() {
        return Err(AuthError::Invalid("expected `Bearer <token>`".to_owned()));
    }
    Ok(token.trim())
}

fn authenticate(req: &HttpRequest, permission: Option<Permission>) -> Result<Principal, ApiError> {
    let verifier = verifier_of(req)?;
    let principal = bearer(req)
        .and_then(|token| verifier.verify(token))
        .map_err(|err| ApiError::unauthorized(err.to_string()))?;
    admit(req, principal, permission)
}

fn verifier_of(req: &HttpRequest) -> Result<Arc<TokenVerifier>, ApiError> {
    req.app_data::<web::Data<TokenVerifier>>()
        .map(|data| Arc::clone(&data.clone().into_inner()))
        .ok_or_else(|| {
            tracing::error!("route needs authentication but no TokenVerifier is registered");
            ApiError::internal()
        })
}

/// Lets `principal` in if it is not revoked and holds `permission`: the rules every caller
/// passes, whether it showed a token or credentials checked another way (a gateway's id and
/// secret, whose `issued_at` is when they were verified).
pub fn admit(
    req: &HttpRequest,
    principal: Principal,
    permission: Option<Permission>,
) -> Result<Principal, ApiError> {
    match verifier_of(req)?.check_revocation(&principal) {
        Ok(()) => {}
        Err(AuthError::RevocationsUnavailable) => {
            // Redis outage policy: administration fails closed, the plant's data flow and
            // reads fail open (logged and counted) so a cache outage never stops production.
            if permission.is_some_and(|p| p.is_administrative()) {
                return Err(ApiError::unavailable(
                    "revocations cannot be checked right now; administrative calls are refused",
                    5,
                ));
            }
            tracing::warn!(subject = %principal.subject, "revocations unchecked (Redis lost); allowing");
            if let Some(counter) = req.app_data::<web::Data<UncheckedRevocations>>() {
                counter.0.inc();
            }
        }
        Err(err) => return Err(ApiError::unauthorized(err.to_string())),
    }
    permitted(principal, permission)
}

/// `principal` if it holds `permission`; 403 naming it otherwise.
pub fn permitted(
    principal: Principal,
    permission: Option<Permission>,
) -> Result<Principal, ApiError> {
    if let Some(permission) = permission
        && !principal.can(permission)
    {
        return Err(ApiError::forbidden(format!(
            "this action needs the {permission} permission, which role {} does not have",
            principal.role
        )));
    }
    Ok(principal)
}

impl<P: RequiredPermission> FromRequest for Authenticated<P> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(authenticate(req, P::PERMISSION).map(|principal| Self {
            principal,
            _permission: PhantomData,
        }))
    }
}
