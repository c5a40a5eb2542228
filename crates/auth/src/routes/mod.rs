//! HTTP routes of `auth`.

mod gateways;
mod session;
mod users;

use platform::ApiError;
use platform::error::FieldError;
use platform::openapi::Success;
use storage::users::{User, UserView};

platform::http_routes! {
    service: platform::ServiceName::Auth;
    "/.well-known/jwks.json" => { get: session::jwks },
    "/api/v1/auth/login" => { post: session::login },
    "/api/v1/auth/refresh" => { post: session::refresh },
    "/api/v1/auth/logout" => { post: session::logout },
    "/api/v1/auth/me" => { get: session::me },
    "/api/v1/auth/token" => { post: session::client_credentials },
    "/api/v1/users" => { get: users::list, post: users::create },
    "/api/v1/users/{id}" => { get: users::get, patch: users::update, delete: users::delete },
    "/api/v1/gateways" => { get: gateways::list, post: gateways::create },
    "/api/v1/gateways/{id}" => { patch: gateways::update, delete: gateways::delete },
    "/api/v1/gateways/{id}/secret" => { post: gateways::rotate_secret },
}

/// One user (never the password hash).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct UserAnswer {
    status: Success,
    /// With the role's permissions.
    #[schema(value_type = Object)]
    user: UserView,
}

impl UserAnswer {
    fn of(user: &User) -> Self {
        Self {
            status: Success::Success,
            user: user.view(),
        }
    }
}

/// 400 listing every problem, or nothing.
fn reject_if_any(errors: Vec<FieldError>) -> Result<(), ApiError> {
    platform::error::reject_if_any("invalid request body", errors)
}

/// Pagination without other filters.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// 1..=500, default 50.
    limit: Option<i64>,
    /// Default 0.
    offset: Option<i64>,
}

impl Page {
    fn parse(&self) -> Result<(i64, i64), ApiError> {
        let mut errors = Vec::new();
        let page = platform::pagination::Page {
            limit: self.limit,
            offset: self.offset,
        }
        .check(&mut errors);
        platform::error::reject_if_any("invalid query parameters", errors).map(|()| page)
    }
}

pub(crate) use platform::error::conflict_on_duplicate;
