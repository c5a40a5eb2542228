//! The `gateway_clients` table.

use crate::schema::gateway_clients;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

/// A stored gateway client.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = gateway_clients)]
pub struct Gateway {
    /// Id (the token's `sub`).
    pub id: Uuid,
    /// The OAuth client id gateways authenticate with.
    pub client_id: String,
    pub name: String,
    /// argon2id hash of the secret.
    pub secret_hash: String,
    /// Whether it may obtain tokens.
    pub is_active: bool,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What the API shows of a gateway: never the secret's hash.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayView {
    pub id: Uuid,
    pub client_id: String,
    pub name: String,
    /// Whether it may obtain tokens.
    pub is_active: bool,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl Gateway {
    /// The public view.
    pub fn view(&self) -> GatewayView {
        GatewayView {
            id: self.id,
            client_id: self.client_id.clone(),
            name: self.name.clone(),
            is_active: self.is_active,
            last_used_at: self.last_used_at,
            created_at: self.created_at,
        }
    }
}

/// Lookup by client id.
pub async fn find_by_client_id(
    conn: &mut AsyncPgConnection,
    client_id: &str,
) -> QueryResult<Option<Gateway>> {
    gateway_clients::table
        .filter(gateway_clients::client_id.eq(client_id))
        .select(Gateway::as_select())
        .first(conn)
        .await
        .optional()
}

/// Lookup by id.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Gateway>> {
    gateway_clients::table
        .find(id)
        .select(Gateway::as_select())
        .first(conn)
        .await
        .optional()
}

/// Every gateway by client id.
pub async fn list(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Gateway>> {
    gateway_clients::table
        .order(gateway_clients::client_id.asc())
        .select(Gateway::as_select())
        .load(conn)
        .await
}

/// Inserts a gateway.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    client_id: &str,
    name: &str,
    secret_hash: &str,
) -> QueryResult<Gateway> {
    diesel::insert_into(gateway_clients::table)
        .values((
            gateway_clients::client_id.eq(client_id),
            gateway_clients::name.eq(name),
            gateway_clients::secret_hash.eq(secret_hash),
        ))
        .returning(Gateway::as_returning())
        .get_result(conn)
        .await
}

/// Sets name and/or active flag.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    name: Option<&str>,
    is_active: Option<bool>,
) -> QueryResult<Gateway> {
    diesel::update(gateway_clients::table.find(id))
        .set((
            name.map(|n| gateway_clients::name.eq(n.to_owned())),
            is_active.map(|a| gateway_clients::is_active.eq(a)),
        ))
        .returning(Gateway::as_returning())
        .get_result(conn)
        .await
}

/// Replaces the secret's hash (rotation); `None` when there is no such gateway.
pub async fn set_secret_hash(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    secret_hash: &str,
) -> QueryResult<Option<Gateway>> {
    diesel::update(gateway_clients::table.find(id))
        .set(gateway_clients::secret_hash.eq(secret_hash))
        .returning(Gateway::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Records a token issue or a verified secret.
pub async fn touch_last_used(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    diesel::update(gateway_clients::table.find(id))
        .set(gateway_clients::last_used_at.eq(diesel::dsl::now))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Deletes a gateway.
pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
    diesel::delete(gateway_clients::table.find(id))
        .execute(conn)
        .await
}
