//! The audit log: who changed what, from where, with which request. Written in the same
//! transaction as the change it records, so the log can never disagree with the data.

use crate::auth::Principal;
use crate::schema::audit_log;
use crate::server::RequestId;
use actix_web::{HttpMessage, HttpRequest};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

/// Who acted and where the request came from.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The user or gateway id; `None` for the system itself.
    pub id: Option<uuid::Uuid>,
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
            client_ip: Some(crate::server::client_ip(req)),
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
    /// Which one.
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
