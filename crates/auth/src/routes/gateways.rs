//! `/api/v1/gateways`: the shop-floor clients that send telemetry. Their secret is shown
//! once, at creation, and stored only as an argon2id hash.

use super::{conflict_on_duplicate, reject_if_any};
use crate::AuthState;
use actix_web::{HttpRequest, HttpResponse, web};
use diesel_async::AsyncConnection;
use platform::ApiError;
use platform::auth::{Authenticated, require};
use platform::error::FieldError;
use platform::openapi::Success;
use platform::postgres::connection;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use storage::audit::{self, Actor, Change};
use storage::gateways;
use storage::gateways::GatewayView;
use storage::secrets::{generate_secret, hash_secret_with};

/// A new gateway client; its secret is generated and answered once.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGateway {
    client_id: String,
    name: String,
}

/// What changes; deactivating revokes the gateway's tokens.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateGateway {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    is_active: Option<bool>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct GatewayList {
    status: Success,
    #[schema(value_type = Vec<Object>)]
    gateways: Vec<GatewayView>,
}

/// One gateway client (never its secret's hash).
#[derive(Serialize, utoipa::ToSchema)]
pub struct GatewayAnswer {
    status: Success,
    #[schema(value_type = Object)]
    gateway: GatewayView,
}

/// A new gateway client and its secret, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct GatewayCreated<'a> {
    status: Success,
    #[schema(value_type = Object)]
    gateway: GatewayView,
    client_secret: &'a str,
    #[schema(example = "store the client_secret now: it is not shown again")]
    note: &'static str,
}

fn check_name(name: &str, errors: &mut Vec<FieldError>) {
    if name.trim().is_empty() || name.chars().count() > 255 {
        errors.push(FieldError::field("name", "must be 1 to 255 characters").with_value(name));
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("no such gateway")
}

/// A new client secret and its argon2id hash.
async fn new_secret(state: &AuthState) -> Result<(SecretString, String), ApiError> {
    let secret = generate_secret(40);
    let to_hash = secret.clone();
    let hash = state
        .secrets
        .hashing()
        .run(move |scratch| hash_secret_with(&to_hash, scratch))
        .await?
        .map_err(|err| {
            tracing::error!(error = %err, "secret hashing failed");
            ApiError::internal()
        })?;
    Ok((secret, hash))
}

/// Every gateway client.
#[utoipa::path(get, path = "/api/v1/gateways", tag = "gateways", security(("bearer" = [])),  
    responses(
        (status = 200, body = GatewayList, description = "Every gateway client"),
        (status = 403, description = "Not read:users (management)", body = platform::openapi::ErrorResponse)))]
pub async fn list(
    state: web::Data<AuthState>,
    _caller: Authenticated<require::ReadUsers>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = connection(&state.pg).await?;
    let all = gateways::list(&mut conn).await?;
    Ok(HttpResponse::Ok().json(GatewayList {
        status: Success::Success,
        gateways: all.iter().map(gateways::Gateway::view).collect(),
    }))
}

/// Creates a gateway client (audited); the secret is in this answer only.
#[utoipa::path(post, path = "/api/v1/gateways", tag = "gateways", security(("bearer" = [])),  request_body = CreateGateway,
    responses(
        (status = 201, body = GatewayCreated, description = "Created; the secret is in this answer only"),
        (status = 400, description = "Invalid fields", body = platform::openapi::ErrorResponse),
        (status = 403, description = "Not write:users (management)", body = platform::openapi::ErrorResponse),
        (status = 409, description = "client_id taken", body = platform::openapi::ErrorResponse)))]
pub async fn create(
    state: web::Data<AuthState>,
    caller: Authenticated<require::WriteUsers>,
    req: HttpRequest,
    body: platform::Json<CreateGateway>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut errors = Vec::new();
    let client_id_ok = (3..=64).contains(&body.client_id.len())
        && body
            .client_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !client_id_ok {
        errors.push(
            FieldError::field(
                "client_id",
                "must be 3 to 64 characters of letters, digits, '.', '_' or '-'",
            )
            .with_value(body.client_id.as_str()),
        );
    }
    check_name(&body.name, &mut errors);
    reject_if_any(errors)?;

    let (secret, hash) = new_secret(&state).await?;
    let actor = Actor::from_request(&caller, &req);
    let mut conn = connection(&state.pg).await?;
    let gateway = conn
        .transaction::<_, ApiError, _>(async move |conn| {
            let gateway = gateways::insert(conn, &body.client_id, body.name.trim(), &hash)
                .await
                .map_err(|e| conflict_on_duplicate(e, "a gateway with this client_id exists"))?;
            audit::record(
                conn,
                &actor,
                Change::of("gateway.create", "gateway", gateway.id).after(gateway.view()),
            )
            .await?;
            Ok(gateway)
        })
        .await?;
    Ok(HttpResponse::Created().json(GatewayCreated {
        status: Success::Success,
        gateway: gateway.view(),
        client_secret: secret.expose_secret(),
        note: "store the client_secret now: it is not shown again",
    }))
}

/// Renames, activates or deactivates a gateway client (audited).
#[utoipa::path(patch, path = "/api/v1/gateways/{id}", tag = "gateways", security(("bearer" = [])), params(("id" = uuid::Uuid, Path, description = "The gateway client")), request_body = UpdateGateway,
    responses(
        (status = 200, body = GatewayAnswer, description = "The gateway client as changed"),
        (status = 400, description = "Invalid fields", body = platform::openapi::ErrorResponse),
        (status = 403, description = "Not write:users", body = platform::openapi::ErrorResponse),
        (status = 404, description = "Unknown gateway", body = platform::openapi::ErrorResponse)))]
pub async fn update(
    state: web::Data<AuthState>,
    caller: Authenticated<require::WriteUsers>,
    req: HttpRequest,
    id: web::Path<domain::GatewayId>,
    body: platform::Json<UpdateGateway>,
) -> Result<HttpResponse, ApiError> {
    let id = *id.into_inner().as_uuid();
    let body = body.into_inner();
    let mut errors = Vec::new();
    if let Some(name) = &body.name {
        check_name(name, &mut errors);
    }
    if body.name.is_none() && body.is_active.is_none() {
        errors.push(FieldError::field(
            "body",
            "nothing to change: give name or is_active",
        ));
    }
    reject_if_any(errors)?;
    let actor = Actor::from_request(&caller, &req);
    let revoker = state.revoker.clone();
    let mut conn = connection(&state.pg).await?;
    let gateway = conn
        .transaction::<_, ApiError, _>(async move |conn| {
            let before = gateways::find(conn, id).await?.ok_or_else(not_found)?;
            let after = gateways::update(
                conn,
                id,
                body.name.as_deref().map(str::trim),
                body.is_active,
            )
            .await?;
            audit::record(
                conn,
                &actor,
                Change::of("gateway.update", "gateway", id)
                    .before(before.view())
                    .after(after.view()),
            )
            .await?;
            if body.is_active == Some(false) {
                revoker.revoke_subject(&id).await?;
            }
            Ok(after)
        })
        .await?;
    state.gateways.forget(id);
    Ok(HttpResponse::Ok().json(GatewayAnswer {
        status: Success::Success,
        gateway: gateway.view(),
    }))
}

/// Deletes a gateway client (audited); its tokens stop working within a second.
#[utoipa::path(delete, path = "/api/v1/gateways/{id}", tag = "gateways", security(("bearer" = [])), params(("id" = uuid::Uuid, Path, description = "The gateway client")), 
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not delete:users", body = platform::openapi::ErrorResponse),
        (status = 404, description = "Unknown gateway", body = platform::openapi::ErrorResponse)))]
pub async fn delete(
    state: web::Data<AuthState>,
    caller: Authenticated<require::DeleteUsers>,
    req: HttpRequest,
    id: web::Path<domain::GatewayId>,
) -> Result<HttpResponse, ApiError> {
    let id = *id.into_inner().as_uuid();
    let actor = Actor::from_request(&caller, &req);
    let revoker = state.revoker.clone();
    let mut conn = connection(&state.pg).await?;
    conn.transaction::<_, ApiError, _>(async move |conn| {
        let before = gateways::find(conn, id).await?.ok_or_else(not_found)?;
        gateways::delete(conn, id).await?;
        audit::record(
            conn,
            &actor,
            Change::of("gateway.delete", "gateway", id).before(before.view()),
        )
        .await?;
        revoker.revoke_subject(&id).await?;
        Ok(())
    })
    .await?;
    state.gateways.forget(id);
    Ok(HttpResponse::NoContent().finish())
}

/// Gives a gateway client a new secret (audited), shown in this answer only. The old secret
/// stops working at once, in every service, and so do the tokens issued until now.
#[utoipa::path(post, path = "/api/v1/gateways/{id}/secret", tag = "gateways", security(("bearer" = [])), params(("id" = uuid::Uuid, Path, description = "The gateway client")),
    responses(
        (status = 200, body = GatewayCreated, description = "The new secret, in this answer only"),
        (status = 403, description = "Not write:users", body = platform::openapi::ErrorResponse),
        (status = 404, description = "Unknown gateway", body = platform::openapi::ErrorResponse)))]
pub async fn rotate_secret(
    state: web::Data<AuthState>,
    caller: Authenticated<require::WriteUsers>,
    req: HttpRequest,
    id: web::Path<domain::GatewayId>,
) -> Result<HttpResponse, ApiError> {
    let id = *id.into_inner().as_uuid();
    let (secret, hash) = new_secret(&state).await?;
    let actor = Actor::from_request(&caller, &req);
    let revoker = state.revoker.clone();
    let mut conn = connection(&state.pg).await?;
    let gateway = conn
        .transaction::<_, ApiError, _>(async move |conn| {
            let gateway = gateways::set_secret_hash(conn, id, &hash)
                .await?
                .ok_or_else(not_found)?;
            audit::record(
                conn,
                &actor,
                Change::of("gateway.rotate_secret", "gateway", id).after(gateway.view()),
            )
            .await?;
            // Every service drops the old secret (and this gateway's tokens) on this.
            revoker.revoke_subject(&id).await?;
            Ok(gateway)
        })
        .await?;
    state.gateways.forget(id);
    Ok(HttpResponse::Ok().json(GatewayCreated {
        status: Success::Success,
        gateway: gateway.view(),
        client_secret: secret.expose_secret(),
        note: "store the client_secret now: it is not shown again",
    }))
}
