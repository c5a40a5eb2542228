//! Who writes through the InfluxDB-compatible API. InfluxDB's tools hold credentials rather
//! than short-lived tokens, so besides an access token (`Bearer` or `Token`), a gateway's
//! client id and secret are accepted the ways those tools send them, in InfluxDB 1.x's order:
//! `u`/`p` query parameters, HTTP Basic, or `Authorization: Token <client id>:<secret>`.
//!
//! A secret costs one argon2 verification, then is trusted from memory (a SHA-256 of the pair)
//! for `auth.gateway_secret_trust_secs`; revoking the gateway (disable, delete, new secret)
//! drops it within the revocation mirror's poll, in every replica. People write with their
//! access token only: their passwords are never accepted here.

use crate::IngestState;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest};
use base64::Engine;
use domain::Permission;
use platform::ApiError;
use platform::auth::{Authenticated, Principal, require};
use std::time::Duration;
use storage::credentials::Source;

/// How the caller identifies itself.
#[derive(Debug, PartialEq, Eq)]
enum Presented {
    /// An access token in `Authorization` (or nothing at all: the token check says so).
    AccessToken,
    /// A gateway's client id and secret.
    Secret { client_id: String, secret: String },
}

fn refused(message: &str) -> ApiError {
    ApiError::unauthorized(message.to_owned())
}

/// What the request carries, without checking it.
fn presented(
    authorization: Option<&str>,
    user: Option<&str>,
    password: Option<&str>,
) -> Result<Presented, ApiError> {
    if let (Some(client_id), Some(secret)) = (user, password)
        && !client_id.is_empty()
        && !secret.is_empty()
    {
        return Ok(Presented::Secret {
            client_id: client_id.to_owned(),
            secret: secret.to_owned(),
        });
    }
    let Some((scheme, value)) = authorization.and_then(|v| v.trim().split_once(' ')) else {
        return Ok(Presented::AccessToken);
    };
    let value = value.trim();
    let pair = |text: &str| {
        text.split_once(':')
            .map(|(client_id, secret)| Presented::Secret {
                client_id: client_id.to_owned(),
                secret: secret.to_owned(),
            })
    };
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| refused("Basic credentials must be base64 of `client_id:secret`"))?;
        return pair(&decoded)
            .ok_or_else(|| refused("Basic credentials must be base64 of `client_id:secret`"));
    }
    // An access token has no `:`; a client id cannot hold one.
    if scheme.eq_ignore_ascii_case("token")
        && let Some(secret) = pair(value)
    {
        return Ok(secret);
    }
    Ok(Presented::AccessToken)
}

/// The caller, holding `write:sensor_data`; 401/403/429/503 in Plantline's shape otherwise.
pub async fn writer(
    state: &IngestState,
    req: &HttpRequest,
    user: Option<&str>,
    password: Option<&str>,
) -> Result<Principal, ApiError> {
    let authorization = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match presented(authorization, user, password)? {
        Presented::AccessToken => {
            let caller = Authenticated::<require::WriteSensorData>::extract(req).await?;
            Ok(caller.principal)
        }
        Presented::Secret { client_id, secret } => gateway(state, req, &client_id, &secret).await,
    }
}

/// A gateway by its client id and secret, held against the revocations written since it
/// was verified. A remembered pair that was revoked is forgotten and checked against
/// PostgreSQL once more (the gateway may have a new secret, or be enabled again); only a
/// refusal of that second check, or of a fresh one, is the answer.
async fn gateway(
    state: &IngestState,
    req: &HttpRequest,
    client_id: &str,
    secret: &str,
) -> Result<Principal, ApiError> {
    let client_ip = platform::server::client_ip(req);
    let mut trust_for = state.trust_secret_for;
    loop {
        let checked = state
            .gateways
            .check(client_id, secret, &client_ip, trust_for)
            .await?;
        let principal = Principal::gateway(
            checked.gateway.id,
            &checked.gateway.client_id,
            checked.verified_at,
        );
        match platform::auth::admit(req, principal, Some(Permission::WriteSensorData)) {
            Err(err)
                if err.status() == StatusCode::UNAUTHORIZED
                    && checked.source != Source::Postgres
                    && !trust_for.is_zero() =>
            {
                tracing::info!(
                    client_id,
                    "gateway revoked since its secret was verified; checking again"
                );
                state.gateways.forget_pair(client_id, secret);
                trust_for = Duration::ZERO;
            }
            answer => return answer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(client_id: &str, secret: &str) -> Presented {
        Presented::Secret {
            client_id: client_id.to_owned(),
            secret: secret.to_owned(),
        }
    }

    #[test]
    fn credentials_are_read_in_influxdb_1x_order() {
        // u/p first, whatever the header says.
        assert_eq!(
            presented(Some("Bearer eyJ.x.y"), Some("gw-1"), Some("s:3")).unwrap(),
            secret("gw-1", "s:3")
        );
        // Basic: base64 of id:secret; the secret may hold a colon.
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("gw-1:a:b")
        );
        assert_eq!(
            presented(Some(&basic), None, None).unwrap(),
            secret("gw-1", "a:b")
        );
        // 2.x: Token id:secret, or Token <access token>.
        assert_eq!(
            presented(Some("Token gw-1:s3"), None, None).unwrap(),
            secret("gw-1", "s3")
        );
        assert_eq!(
            presented(Some("Token eyJ.x.y"), None, None).unwrap(),
            Presented::AccessToken
        );
        assert_eq!(
            presented(Some("Bearer eyJ.x.y"), Some(""), Some("")).unwrap(),
            Presented::AccessToken
        );
        assert_eq!(presented(None, None, None).unwrap(), Presented::AccessToken);
        for broken in ["Basic !!!", "Basic Z3ctMQ=="] {
            assert_eq!(
                presented(Some(broken), None, None).unwrap_err().status(),
                actix_web::http::StatusCode::UNAUTHORIZED,
                "{broken}"
            );
        }
    }
}
