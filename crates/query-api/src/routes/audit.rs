//! `GET /api/v1/audit`: who changed what, newest first.

use crate::QueryState;
use crate::store::audit;
use actix_web::{HttpResponse, web};
use platform::ApiError;
use platform::auth::{Authenticated, require};
use platform::error::{Page, offset_pagination, reject_if_any};
use platform::postgres::connection;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    resource_type: Option<String>,
    resource_id: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /api/v1/audit?resource_type=&resource_id=&limit=&offset=`
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
    Ok(HttpResponse::Ok().json(json!({
        "status": "success",
        "entries": entries,
        "pagination": offset_pagination(limit, offset, entries.len(), total),
    })))
}
