//! Logins, refresh rotation, logout, the current principal, gateway tokens, the JWKS.

use super::{UserAnswer, reject_if_any};
use crate::AuthState;
use crate::tokens::{IssuedToken, new_refresh_token, refresh_token_hash};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use diesel_async::AsyncConnection;
use domain::Role;
use platform::ApiError;
use platform::auth::{Authenticated, Principal, require};
use platform::error::ErrorCode;
use platform::error::FieldError;
use platform::openapi::Success;
use platform::postgres::connection;
use platform::server::client_ip;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use storage::gateways::GatewayView;
use storage::users::UserView;
use storage::{gateways, refresh_tokens as refresh, users};
use uuid::Uuid;

const BAD_CREDENTIALS: &str = "invalid username or password";

/// A person's credentials.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(example = "operator")]
    username: String,
    password: String,
}

/// A refresh token from a login or an earlier refresh (single use).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

/// A new access token; after a login or refresh also the next refresh token and the user.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenAnswer<'a> {
    status: Success,
    access_token: &'a str,
    #[schema(example = "Bearer")]
    token_type: &'static str,
    /// Seconds the access token is valid.
    expires_in: i64,
    /// Single use: exchange it at `/api/v1/auth/refresh`.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    user: Option<UserView>,
}

/// A gateway's token: who it is, its role and permissions.
#[derive(Serialize, utoipa::ToSchema)]
pub struct GatewayPrincipal {
    status: Success,
    #[schema(value_type = Object)]
    gateway: GatewayView,
    #[schema(example = "gateway")]
    role: &'static str,
    permissions: Vec<&'static str>,
}

/// Whom a token belongs to: a person or a gateway.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum MeAnswer {
    User(UserAnswer),
    Gateway(GatewayPrincipal),
}

fn token_response(
    access: &IssuedToken,
    refresh_token: Option<&str>,
    user: Option<UserView>,
) -> HttpResponse {
    HttpResponse::Ok()
        // Tokens must never sit in a shared cache.
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(TokenAnswer {
            status: Success::Success,
            access_token: &access.token,
            token_type: "Bearer",
            expires_in: access.expires_in,
            refresh_token,
            user,
        })
}

/// The active user with this name and password; 401 for anything else.
async fn check_password(
    state: &AuthState,
    username: &str,
    password: String,
) -> Result<users::User, ApiError> {
    let mut conn = connection(&state.pg).await?;
    let user = users::find_by_username(&mut conn, username).await?;
    drop(conn);
    state.secrets.verify(user, password, BAD_CREDENTIALS).await
}

fn sign_error(err: crate::tokens::SignError) -> ApiError {
    tracing::error!(error = %err, "could not sign a token");
    ApiError::internal()
}

/// Logs a person in: a 15-minute access token and a refresh token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = TokenAnswer, description = "An access token, a refresh token and the user"),
        (status = 400, description = "Username or password missing or too long", body = platform::openapi::ErrorResponse),
        (status = 401, description = "Invalid username or password", body = platform::openapi::ErrorResponse),
        (status = 429, description = "Too many failures for this account or address; Retry-After", body = platform::openapi::ErrorResponse)))]
pub async fn login(
    state: web::Data<AuthState>,
    req: HttpRequest,
    body: platform::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let LoginRequest { username, password } = body.into_inner();
    let mut errors = Vec::new();
    if username.trim().is_empty() || username.len() > 64 {
        errors.push(FieldError::field("username", "must be 1 to 64 characters"));
    }
    if password.is_empty() || password.len() > 1024 {
        errors.push(FieldError::field(
            "password",
            "must be 1 to 1024 characters",
        ));
    }
    reject_if_any(errors)?;

    let ip = client_ip(&req);
    let user = state
        .throttle
        .run_counted(&username, &ip, check_password(&state, &username, password))
        .await?;

    let family = Uuid::new_v4();
    let refresh_token = new_refresh_token();
    let mut conn = connection(&state.pg).await?;
    refresh::insert(
        &mut conn,
        user.id,
        family,
        &refresh_token_hash(&refresh_token),
        chrono::Utc::now() + state.refresh_ttl,
    )
    .await?;
    users::touch_last_login(&mut conn, user.id).await?;
    let user = users::find(&mut conn, user.id).await?.unwrap_or(user);
    let access = state
        .signer
        .issue(user.id, &user.username, user.role, Some(family))
        .map_err(sign_error)?;
    tracing::info!(user_id = %user.id, username = %user.username, "login");
    Ok(token_response(
        &access,
        Some(&refresh_token),
        Some(user.view()),
    ))
}

/// Exchanges a refresh token for a new pair; a token presented twice revokes the session.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, body = TokenAnswer, description = "A new access token, the next refresh token and the user"),
        (status = 401, description = "Invalid, expired, revoked or reused refresh token", body = platform::openapi::ErrorResponse)))]
pub async fn refresh(
    state: web::Data<AuthState>,
    body: platform::Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let presented = body.into_inner().refresh_token;
    if presented.is_empty() || presented.len() > 256 {
        return Err(ApiError::validation(
            "invalid request body",
            vec![FieldError::field(
                "refresh_token",
                "must be 1 to 256 characters",
            )],
        ));
    }
    let hash = refresh_token_hash(&presented);
    let invalid = || ApiError::unauthorized("invalid or expired refresh token");
    let mut conn = connection(&state.pg).await?;
    let outcome = conn
        .transaction::<_, ApiError, _>(async move |conn| {
            let Some(token) = refresh::find_for_update(conn, &hash).await? else {
                return Err(invalid());
            };
            if token.revoked_at.is_some() {
                return Err(invalid());
            }
            if token.rotated_at.is_some() {
                refresh::revoke(
                    conn,
                    refresh::Scope::Family(token.family_id),
                    "reuse_detected",
                )
                .await?;
                state.revoker.revoke_session(&token.family_id).await?;
                tracing::warn!(
                    security_event = "refresh_token_reuse",
                    user_id = %token.user_id,
                    family_id = %token.family_id,
                    "a rotated refresh token was presented again; its session is revoked"
                );
                return Ok(None);
            }
            if token.expires_at <= chrono::Utc::now() {
                return Err(invalid());
            }
            let user = users::find(conn, token.user_id)
                .await?
                .filter(|u| u.is_active)
                .ok_or_else(invalid)?;
            refresh::mark_rotated(conn, token.id).await?;
            let next = new_refresh_token();
            refresh::insert(
                conn,
                user.id,
                token.family_id,
                &refresh_token_hash(&next),
                chrono::Utc::now() + state.refresh_ttl,
            )
            .await?;
            let access = state
                .signer
                .issue(user.id, &user.username, user.role, Some(token.family_id))
                .map_err(sign_error)?;
            Ok(Some((access, next, user)))
        })
        .await?;
    match outcome {
        Some((access, next, user)) => Ok(token_response(&access, Some(&next), Some(user.view()))),
        // Committed the revocation; the caller learns only that the token is no good.
        None => Err(invalid()),
    }
}

/// Ends the caller's session: its refresh tokens, and its access tokens in every service within a second.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "No valid token", body = platform::openapi::ErrorResponse)))]
pub async fn logout(
    state: web::Data<AuthState>,
    caller: Authenticated<require::Any>,
) -> Result<HttpResponse, ApiError> {
    if let Some(session) = caller.session {
        let mut conn = connection(&state.pg).await?;
        refresh::revoke(&mut conn, refresh::Scope::Family(session), "logout").await?;
        state.revoker.revoke_session(&session).await?;
    }
    state
        .revoker
        .revoke_token(&caller.jti, caller.expires_at)
        .await?;
    tracing::info!(subject = %caller.subject, "logout");
    Ok(HttpResponse::NoContent().finish())
}

/// Who the token belongs to, with role and permissions.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, body = MeAnswer, description = "The user, or the gateway with its role and permissions"),
        (status = 401, description = "No valid token", body = platform::openapi::ErrorResponse)))]
pub async fn me(
    state: web::Data<AuthState>,
    caller: Authenticated<require::Any>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = connection(&state.pg).await?;
    if caller.role == Role::Gateway {
        let gateway = gateways::find(&mut conn, caller.subject)
            .await?
            .ok_or_else(|| ApiError::unauthorized("gateway no longer exists"))?;
        return Ok(HttpResponse::Ok().json(MeAnswer::Gateway(GatewayPrincipal {
            status: Success::Success,
            gateway: gateway.view(),
            role: "gateway",
            permissions: Role::Gateway
                .permissions()
                .iter()
                .map(|p| p.as_str())
                .collect(),
        })));
    }
    let user = users::find(&mut conn, caller.subject)
        .await?
        .ok_or_else(|| ApiError::unauthorized("user no longer exists"))?;
    Ok(HttpResponse::Ok().json(MeAnswer::User(UserAnswer::of(&user))))
}

/// OAuth 2 client credentials (or HTTP Basic with `grant_type` only).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ClientCredentials {
    grant_type: String,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Client credentials from an HTTP Basic header (RFC 6749 §2.3.1), if present.
fn basic_credentials(req: &HttpRequest) -> Option<(String, String)> {
    use base64::Engine;
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// A gateway's access token: OAuth 2 client credentials as form, JSON or HTTP Basic.
#[utoipa::path(post, path = "/api/v1/auth/token", tag = "auth",
    request_body(description = "grant_type=client_credentials with client_id and client_secret (or HTTP Basic)", content(
        (ClientCredentials = "application/json"), (ClientCredentials = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, body = TokenAnswer, description = "An access token (no refresh token, no user)"),
        (status = 400, description = "Unsupported grant type or missing fields", body = platform::openapi::ErrorResponse),
        (status = 401, description = "Invalid client credentials", body = platform::openapi::ErrorResponse),
        (status = 429, description = "Too many failures; Retry-After", body = platform::openapi::ErrorResponse)))]
pub async fn client_credentials(
    state: web::Data<AuthState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (client_id, secret) = credentials(&req, &body)?;
    // Every token request is checked against PostgreSQL; the pairs verified lately answer
    // only while it is away. Either way the gateway must not be revoked since.
    let checked = state
        .gateways
        .check(&client_id, &secret, &client_ip(&req), Duration::ZERO)
        .await?;
    let gateway = checked.gateway;
    let since = Principal::gateway(gateway.id, &gateway.client_id, checked.verified_at);
    platform::auth::admit(&req, since, None).inspect_err(|_| {
        state.gateways.forget_pair(&client_id, &secret);
    })?;
    let access = state
        .signer
        .issue(gateway.id, &gateway.client_id, Role::Gateway, None)
        .map_err(sign_error)?;
    Ok(token_response(&access, None, None))
}

/// The body of a token request, as JSON or as a form.
fn token_request(req: &HttpRequest, body: &[u8]) -> Result<ClientCredentials, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") {
        platform::extract::parse_body(body)
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        // A form is encoded like a query string, and held to the same text rule.
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::malformed_body("a form body must be UTF-8"))?;
        platform::extract::check_query(text)?;
        serde_urlencoded::from_bytes(body)
            .map_err(|e| ApiError::malformed_body(format!("invalid form body: {e}")))
    } else {
        Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "Content-Type must be application/x-www-form-urlencoded or application/json",
        ))
    }
}

/// The client id and secret of a token request, from its body or HTTP Basic, checked.
fn credentials(req: &HttpRequest, body: &[u8]) -> Result<(String, String), ApiError> {
    let request = token_request(req, body)?;
    if request.grant_type != "client_credentials" {
        return Err(ApiError::validation(
            "unsupported grant type",
            vec![
                FieldError::field("grant_type", "must be client_credentials")
                    .with_value(request.grant_type),
            ],
        ));
    }
    let (client_id, secret) = match (
        request.client_id,
        request.client_secret,
        basic_credentials(req),
    ) {
        (Some(id), Some(secret), _) => (id, secret),
        (_, _, Some(basic)) => basic,
        _ => {
            return Err(ApiError::validation(
                "client credentials missing",
                vec![FieldError::field(
                    "client_id",
                    "client_id and client_secret are required (body or HTTP Basic)",
                )],
            ));
        }
    };
    for (field, value, max) in [
        ("client_id", &client_id, 64),
        ("client_secret", &secret, 256),
    ] {
        if let Err(err) = domain::text::check(value, max) {
            return Err(ApiError::validation(
                "invalid client credentials",
                vec![FieldError::field(field, err.to_string())],
            ));
        }
    }
    if client_id.is_empty() {
        return Err(ApiError::unauthorized("invalid client credentials"));
    }
    Ok((client_id, secret))
}

/// The public keys that verify access tokens (RFC 7517), for anyone who verifies tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "`{keys: [{kty: OKP, crv: Ed25519, x, kid, alg: EdDSA, use: sig}]}`")))]
pub async fn jwks(state: web::Data<AuthState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(state.signer.jwks())
}
