//! HTTP routes of `auth`.

mod gateways;
mod session;
mod users;

use actix_web::web;
use platform::ApiError;
use platform::error::FieldError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/.well-known/jwks.json", web::get().to(session::jwks))
        .service(
            web::scope("/api/v1/auth")
                .route("/login", web::post().to(session::login))
                .route("/refresh", web::post().to(session::refresh))
                .route("/logout", web::post().to(session::logout))
                .route("/me", web::get().to(session::me))
                .route("/token", web::post().to(session::client_credentials)),
        )
        .service(
            web::resource("/api/v1/users")
                .route(web::get().to(users::list))
                .route(web::post().to(users::create)),
        )
        .service(
            web::resource("/api/v1/users/{id}")
                .route(web::get().to(users::get))
                .route(web::patch().to(users::update))
                .route(web::delete().to(users::delete)),
        )
        .service(
            web::resource("/api/v1/gateways")
                .route(web::get().to(gateways::list))
                .route(web::post().to(gateways::create)),
        )
        .service(
            web::resource("/api/v1/gateways/{id}")
                .route(web::patch().to(gateways::update))
                .route(web::delete().to(gateways::delete)),
        );
}

/// Runs a CPU-heavy password hash/verify off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    web::block(work).await.map_err(|err| {
        tracing::error!(error = %err, "password hashing task failed");
        ApiError::internal()
    })
}

/// 400 listing every problem, or nothing.
fn reject_if_any(errors: Vec<FieldError>) -> Result<(), ApiError> {
    platform::error::reject_if_any("invalid request body", errors)
}

/// Pagination without other filters.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    limit: Option<i64>,
    offset: Option<i64>,
}

impl Page {
    fn parse(&self) -> Result<(i64, i64), ApiError> {
        let mut errors = Vec::new();
        let page = platform::error::Page {
            limit: self.limit,
            offset: self.offset,
        }
        .check(&mut errors);
        platform::error::reject_if_any("invalid query parameters", errors).map(|()| page)
    }
}

pub(crate) use platform::error::conflict_on_duplicate;
