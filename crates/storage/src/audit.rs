//! The audit log: who changed what, from where, with which request. Written in the same
//! transaction as the change it records, so the log can never disagree with the data.

use crate::schema::audit_log;
use actix_web::{HttpMessage, HttpRequest};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use platform::auth::Principal;
use platform::server::RequestId;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// Who acted and where the request came from.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The user or gateway id; `None` for the system itself.
    pub id: Option<Uuid>,
    /// Their name at the time.
    pub name: String,
    /// The request id, to find the request's log lines.
    pub request_id: Option<String>,
    /// The client's address.
    pub client_ip: Option<String>,
}

impl Actor {
    /// The caller of an authenticated request.
    pub fn from_request(principal: &Principal, req: &HttpRequest) -> Self {
        Self {
            id: Some(principal.subject),
            name: principal.username.clone(),
            request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
            client_ip: Some(platform::server::client_ip(req)),
        }
    }
}

/// One change to record. `before`/`after` must never hold secrets.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// Dotted verb, e.g. `user.create`, `config.update`.
    pub action: &'a str,
    /// What kind of thing changed: `user`, `gateway`, `machine`, `config`.
    pub resource_type: &'a str,
    pub resource_id: Option<String>,
    /// State before, when there was one.
    pub before: Option<Value>,
    /// State after, when there is one.
    pub after: Option<Value>,
}

impl<'a> Change<'a> {
    /// A change of `action` on one resource; add its states with `before` and `after`.
    pub fn of(action: &'a str, resource_type: &'a str, resource_id: impl ToString) -> Self {
        Self {
            action,
            resource_type,
            resource_id: Some(resource_id.to_string()),
            before: None,
            after: None,
        }
    }

    /// The state before the change.
    pub fn before(mut self, state: impl serde::Serialize) -> Self {
        self.before = serde_json::to_value(state).ok().filter(|v| !v.is_null());
        self
    }

    /// The state after the change.
    pub fn after(mut self, state: impl serde::Serialize) -> Self {
        self.after = serde_json::to_value(state).ok().filter(|v| !v.is_null());
        self
    }
}

/// Appends one entry; call it inside the transaction that makes the change.
pub async fn record(
    conn: &mut AsyncPgConnection,
    actor: &Actor,
    change: Change<'_>,
) -> QueryResult<()> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::actor_id.eq(actor.id),
            audit_log::actor_name.eq(&actor.name),
            audit_log::action.eq(change.action),
            audit_log::resource_type.eq(change.resource_type),
            audit_log::resource_id.eq(change.resource_id),
            audit_log::before.eq(change.before),
            audit_log::after.eq(change.after),
            audit_log::request_id.eq(&actor.request_id),
            audit_log::client_ip.eq(&actor.client_ip),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// One audit entry.
#[derive(Debug, Serialize, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct Entry {
    pub id: i64,
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
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    /// The request that did it.
    pub request_id: Option<String>,
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
