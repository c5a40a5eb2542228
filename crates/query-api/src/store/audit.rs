//! Reading the audit log.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use platform::schema::audit_log;
use serde::Serialize;
use uuid::Uuid;

/// One audit entry.
#[derive(Debug, Serialize, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct Entry {
    /// Sequence number.
    pub id: i64,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// Who (id).
    pub actor_id: Option<Uuid>,
    /// Who (name at the time).
    pub actor_name: String,
    /// What, e.g. `machine.update`.
    pub action: String,
    /// On what kind of thing.
    pub resource_type: String,
    /// On which one.
    pub resource_id: Option<String>,
    /// State before.
    pub before: Option<serde_json::Value>,
    /// State after.
    pub after: Option<serde_json::Value>,
    /// The request that did it.
    pub request_id: Option<String>,
    /// From where.
    pub client_ip: Option<String>,
}

/// Newest first, optionally for one resource type and/or resource.
pub async fn list(
    conn: &mut AsyncPgConnection,
    resource_type: Option<&str>,
    resource_id: Option<&str>,
    limit: i64,
    offset: i64,
) -> QueryResult<(Vec<Entry>, i64)> {
    let filtered = || {
        let mut query = audit_log::table.into_boxed();
        if let Some(kind) = resource_type {
            query = query.filter(audit_log::resource_type.eq(kind.to_owned()));
        }
        if let Some(id) = resource_id {
            query = query.filter(audit_log::resource_id.eq(id.to_owned()));
        }
        query
    };
    let page = filtered()
        .order((audit_log::occurred_at.desc(), audit_log::id.desc()))
        .limit(limit)
        .offset(offset)
        .select(Entry::as_select())
        .load(conn)
        .await?;
    let total = filtered().count().get_result(conn).await?;
    Ok((page, total))
}
