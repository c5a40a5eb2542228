//! `GET /api/v1/audit`: who changed what, newest first.

use crate::QueryState;
use actix_web::{HttpResponse, web};
use platform::ApiError;
use platform::auth::{Authenticated, require};
use platform::error::reject_if_any;
use platform::openapi::Success;
use platform::pagination::{Page, Pagination};
use platform::postgres::connection;
use serde::Deserialize;
use storage::audit;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// `machine`, `user`, `gateway`, `config`, `alert`.
    resource_type: Option<String>,
    resource_id: Option<String>,
    /// 1..=500, default 50.
    limit: Option<i64>,
    /// Default 0.
    offset: Option<i64>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    status: Success,
    /// Newest first: who, when, what, and the state before and after.
    #[schema(value_type = Vec<Object>)]
    entries: Vec<audit::Entry>,
    pagination: Pagination,
}

/// Who changed what, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "registry", security(("bearer" = [])), params(AuditQuery),
    responses(
        (status = 200, body = AuditPage, description = "The page of matching entries"),
        (status = 400, description = "Bad parameters", body = platform::openapi::ErrorResponse),
        (status = 403, description = "Not read:audit (management)", body = platform::openapi::ErrorResponse)))]
pub async fn list(
    state: web::Data<QueryState>,
    _caller: Authenticated<require::ReadAudit>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let (limit, offset) = Page {
        limit: query.limit,
        offset: query.offset,
    }
    .check(&mut errors);
    reject_if_any("invalid query parameters", errors)?;
    let mut conn = connection(&state.pg).await?;
    let (entries, total) = audit::list(
        &mut conn,
        query.resource_type.as_deref(),
        query.resource_id.as_deref(),
        limit,
        offset,
    )
    .await?;
    let pagination = Pagination::of(limit, offset, entries.len(), total);
    Ok(HttpResponse::Ok().json(AuditPage {
        status: Success::Success,
        entries,
        pagination,
    }))
}
