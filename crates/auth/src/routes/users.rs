//! `/api/v1/users`: management of people's accounts. Every change is audited in the same
//! transaction and revokes the tokens it makes stale.

use super::{Page, UserAnswer, conflict_on_duplicate, reject_if_any};
use crate::AuthState;
use actix_web::{HttpRequest, HttpResponse, web};
use diesel_async::AsyncConnection;
use domain::{Email, NewPassword, Role, Username};
use platform::ApiError;
use platform::auth::{Authenticated, require};
use platform::error::ErrorCode;
use platform::error::FieldError;
use platform::openapi::Success;
use platform::postgres::connection;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use storage::audit::{self, Actor, Change};
use storage::secrets::hash_secret_with;
use storage::users::UserView;
use storage::{refresh_tokens as refresh, users};

/// A new person.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    username: String,
    #[serde(default)]
    email: Option<String>,
    /// At least 12 characters.
    password: String,
    /// `operator`, `supervisor` or `management`.
    #[schema(example = "operator")]
    role: String,
}

/// What changes; `email: null` clears it. Role changes and deactivation revoke the
/// person's tokens.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    email: Option<Option<String>>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    is_active: Option<bool>,
    #[serde(default)]
    password: Option<String>,
}

fn parse_role(raw: &str, errors: &mut Vec<FieldError>) -> Option<Role> {
    match raw.parse::<Role>() {
        Ok(role) if role != Role::Gateway => Some(role),
        _ => {
            errors.push(
                FieldError::field("role", "must be one of operator, supervisor, management")
                    .with_value(raw),
            );
            None
        }
    }
}

fn parse_email(raw: &str, errors: &mut Vec<FieldError>) -> Option<Email> {
    Email::parse(raw)
        .map_err(|e| errors.push(FieldError::field("email", e.to_string()).with_value(raw)))
        .ok()
}

fn parse_password(raw: &str, username: &str, errors: &mut Vec<FieldError>) -> Option<NewPassword> {
    NewPassword::parse(raw, username)
        .map_err(|e| errors.push(FieldError::field("password", e.to_string())))
        .ok()
}

async fn hash_password(state: &AuthState, password: NewPassword) -> Result<String, ApiError> {
    let secret = SecretString::from(password.expose().to_owned());
    state
        .secrets
        .hashing()
        .run(move |scratch| hash_secret_with(&secret, scratch))
        .await?
        .map_err(|err| {
            tracing::error!(error = %err, "password hashing failed");
            ApiError::internal()
        })
}

fn not_found() -> ApiError {
    ApiError::not_found("no such user")
}

/// Refuses (409) a change that would leave the plant without an active manager: `user` is
/// about to stop being one (`stays_manager` false) and no other active manager exists.
async fn keep_a_manager(
    conn: &mut diesel_async::AsyncPgConnection,
    user: &users::User,
    stays_manager: bool,
) -> Result<(), ApiError> {
    let is_manager = user.role == Role::Management && user.is_active;
    if is_manager && !stays_manager && users::other_active_managers(conn, user.id).await? == 0 {
        return Err(ApiError::new(
            ErrorCode::LastManager,
            "this is the last active management account; promote another one first",
        ));
    }
    Ok(())
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserPage {
    status: Success,
    #[schema(value_type = Vec<Object>)]
    users: Vec<UserView>,
    pagination: UserPagination,
}

/// Where a page of users sits in the whole list.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UserPagination {
    limit: i64,
    offset: i64,
    total: i64,
}

/// Every user, paged.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = [])), params(Page), 
    responses(
        (status = 200, body = UserPage, description = "The page of users"),
        (status = 403, description = "Not read:users (management)", body = platform::openapi::ErrorResponse)))]
pub async fn list(
    state: web::Data<AuthState>,
    _caller: Authenticated<require::ReadUsers>,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let (limit, offset) = page.parse()?;
    let mut conn = connection(&state.pg).await?;
    let (page, total) = users::list(&mut conn, limit, offset).await?;
    Ok(HttpResponse::Ok().json(UserPage {
        status: Success::Success,
        users: page.iter().map(users::User::view).collect(),
        pagination: UserPagination {
            limit,
            offset,
            total,
        },
    }))
}

/// One user.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = uuid::Uuid, Path, description = "The user")), 
    responses(
        (status = 200, body = UserAnswer, description = "The user"),
        (status = 403, description = "Not read:users", body = platform::openapi::ErrorResponse),
        (status = 404, description = "Unknown user", body = platform::openapi::ErrorResponse)))]
pub async fn get(
    state: web::Data<AuthState>,
    _caller: Authenticated<require::ReadUsers>,
    id: web::Path<domain::UserId>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = connection(&state.pg).await?;
    let user = users::find(&mut conn, *id.as_uuid())
        .await?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(UserAnswer::of(&user)))
}

/// Creates a user (audited).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", security(("bearer" = [])),  request_body = CreateUser,
    responses(
        (status = 201, body = UserAnswer, description = "Created"),
        (status = 400, description = "Invalid fields, each named", body = platform::openapi::ErrorResponse),
        (status = 403, description = "Not write:users (management)", body = platform::openapi::ErrorResponse),
        (status = 409, description = "Username taken", body = platform::openapi::ErrorResponse)))]
pub async fn create(
    state: web::Data<AuthState>,
    caller: Authenticated<require::WriteUsers>,
    req: HttpRequest,
    body: platform::Json<CreateUser>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut errors = Vec::new();
    let username = Username::parse(&body.username)
        .map_err(|e| {
            errors.push(
                FieldError::field("username", e.to_string()).with_value(body.username.as_str()),
            )
        })
        .ok();
    let email = body
        .email
        .as_deref()
        .and_then(|e| parse_email(e, &mut errors));
    let role = parse_role(&body.role, &mut errors);
    let password = parse_password(&body.password, &body.username, &mut errors);
    reject_if_any(errors)?;
    let (Some(username), Some(role), Some(password)) = (username, role, password) else {
        return Err(ApiError::validation("invalid request body", Vec::new()));
    };
    let hash = hash_password(&state, password).await?;

    let actor = Actor::from_request(&caller, &req);
    let mut conn = connection(&state.pg).await?;
    let user = conn
        .transaction::<_, ApiError, _>(async move |conn| {
            let user = users::insert(
                conn,
                users::NewUser {
                    username: username.as_ref(),
                    email: email.as_ref().map(AsRef::as_ref),
                    password_hash: &hash,
                    role: role.as_str(),
                },
            )
            .await
            .map_err(|e| conflict_on_duplicate(e, "a user with this username exists"))?;
            audit::record(
                conn,
                &actor,
                Change::of("user.create", "user", user.id).after(user.view()),
            )
            .await?;
            Ok(user)
        })
        .await?;
    Ok(HttpResponse::Created().json(UserAnswer::of(&user)))
}

/// The changes `body` asks of `existing`, checked, the new password hashed; and whether they
/// end the user's sessions (a new password or role, or deactivation).
async fn checked_changes(
    state: &AuthState,
    body: &UpdateUser,
    existing: &users::User,
) -> Result<(users::UserChanges, bool), ApiError> {
    let mut errors = Vec::new();
    let email = match &body.email {
        Some(Some(raw)) => parse_email(raw, &mut errors).map(|e| Some(e.as_ref().to_owned())),
        Some(None) => Some(None),
        None => None,
    };
    let role = body
        .role
        .as_deref()
        .and_then(|r| parse_role(r, &mut errors));
    let password = body
        .password
        .as_deref()
        .and_then(|p| parse_password(p, &existing.username, &mut errors));
    if body.email.is_none()
        && body.role.is_none()
        && body.is_active.is_none()
        && body.password.is_none()
    {
        errors.push(FieldError::field(
            "body",
            "nothing to change: give email, role, is_active or password",
        ));
    }
    reject_if_any(errors)?;
    let password_hash = match password {
        Some(password) => Some(hash_password(state, password).await?),
        None => None,
    };
    let sessions_end = password_hash.is_some()
        || role.is_some_and(|r| r != existing.role)
        || body.is_active == Some(false);
    let changes = users::UserChanges {
        email,
        role: role.map(|r| r.as_str().to_owned()),
        is_active: body.is_active,
        password_hash,
    };
    Ok((changes, sessions_end))
}

/// Changes a user (audited); the last active manager cannot be demoted or deactivated.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = uuid::Uuid, Path, description = "The user")), request_body = UpdateUser,
    responses(
        (status = 200, body = UserAnswer, description = "The user as changed"),
        (status = 400, description = "Invalid fields", body = platform::openapi::ErrorResponse),
        (status = 403, description = "Not write:users", body = platform::openapi::ErrorResponse),
        (status = 404, description = "Unknown user", body = platform::openapi::ErrorResponse),
        (status = 409, description = "Would leave no active manager", body = platform::openapi::ErrorResponse)))]
pub async fn update(
    state: web::Data<AuthState>,
    caller: Authenticated<require::WriteUsers>,
    req: HttpRequest,
    id: web::Path<domain::UserId>,
    body: platform::Json<UpdateUser>,
) -> Result<HttpResponse, ApiError> {
    let id = *id.into_inner().as_uuid();
    let body = body.into_inner();
    let mut conn = connection(&state.pg).await?;
    let existing = users::find(&mut conn, id).await?.ok_or_else(not_found)?;
    let (changes, sessions_end) = checked_changes(&state, &body, &existing).await?;
    let actor = Actor::from_request(&caller, &req);
    let revoker = state.revoker.clone();
    let user = conn
        .transaction::<_, ApiError, _>(async move |conn| {
            let before = users::find_for_update(conn, id)
                .await?
                .ok_or_else(not_found)?;
            let demoted = changes
                .role
                .as_deref()
                .is_some_and(|r| r != Role::Management.as_str());
            let stays = !demoted && changes.is_active != Some(false);
            keep_a_manager(conn, &before, stays).await?;
            let after = users::update(conn, id, changes).await?;
            audit::record(
                conn,
                &actor,
                Change::of("user.update", "user", id)
                    .before(before.view())
                    .after(after.view()),
            )
            .await?;
            if sessions_end {
                refresh::revoke(conn, refresh::Scope::User(id), "account_changed").await?;
                // Before commit: if Redis cannot take the revocation, nothing changes.
                revoker.revoke_subject(&id).await?;
            }
            Ok(after)
        })
        .await?;
    Ok(HttpResponse::Ok().json(UserAnswer::of(&user)))
}

/// Deletes a user (audited); their tokens stop working within a second.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = uuid::Uuid, Path, description = "The user")), 
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not delete:users", body = platform::openapi::ErrorResponse),
        (status = 404, description = "Unknown user", body = platform::openapi::ErrorResponse),
        (status = 409, description = "Would leave no active manager", body = platform::openapi::ErrorResponse)))]
pub async fn delete(
    state: web::Data<AuthState>,
    caller: Authenticated<require::DeleteUsers>,
    req: HttpRequest,
    id: web::Path<domain::UserId>,
) -> Result<HttpResponse, ApiError> {
    let id = *id.into_inner().as_uuid();
    let actor = Actor::from_request(&caller, &req);
    let revoker = state.revoker.clone();
    let mut conn = connection(&state.pg).await?;
    conn.transaction::<_, ApiError, _>(async move |conn| {
        let before = users::find_for_update(conn, id)
            .await?
            .ok_or_else(not_found)?;
        keep_a_manager(conn, &before, false).await?;
        users::delete(conn, id).await?;
        audit::record(
            conn,
            &actor,
            Change::of("user.delete", "user", id).before(before.view()),
        )
        .await?;
        revoker.revoke_subject(&id).await?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
