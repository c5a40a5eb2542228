//! The `users` table.

use crate::schema::users;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::Role;
use serde::Serialize;
use uuid::Uuid;

/// A stored user.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub email: Option<String>,
    /// argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
    /// Whether the account may log in.
    pub is_active: bool,
    pub last_login: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl User {
    /// The public view: never the hash.
    pub fn view(&self) -> UserView {
        let role = self.role;
        UserView {
            id: self.id,
            username: self.username.clone(),
            email: self.email.clone(),
            role,
            permissions: role.permissions().iter().map(|p| p.as_str()).collect(),
            is_active: self.is_active,
            last_login: self.last_login,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// What the API shows of a user (and what the audit log records).
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub role: Role,
    /// The role's permissions.
    pub permissions: Vec<&'static str>,
    /// Whether the account may log in.
    pub is_active: bool,
    pub last_login: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new user's columns.
#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: Option<&'a str>,
    /// argon2id hash.
    pub password_hash: &'a str,
    pub role: &'a str,
}

/// Changes to a user; `None` leaves a column alone.
#[derive(AsChangeset, Default)]
#[diesel(table_name = users)]
pub struct UserChanges {
    pub email: Option<Option<String>>,
    pub role: Option<String>,
    /// Activate or deactivate.
    pub is_active: Option<bool>,
    pub password_hash: Option<String>,
}

diesel::define_sql_function!(fn lower(text: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// Case-insensitive lookup by login name.
pub async fn find_by_username(
    conn: &mut AsyncPgConnection,
    username: &str,
) -> QueryResult<Option<User>> {
    users::table
        .filter(lower(users::username).eq(lower(username)))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// Lookup by id.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// Lookup by id, locking the row for the rest of the transaction.
pub async fn find_for_update(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// A page of users by name, and the total count.
pub async fn list(
    conn: &mut AsyncPgConnection,
    limit: i64,
    offset: i64,
) -> QueryResult<(Vec<User>, i64)> {
    let page = users::table
        .order(users::username.asc())
        .limit(limit)
        .offset(offset)
        .select(User::as_select())
        .load(conn)
        .await?;
    let total = users::table.count().get_result(conn).await?;
    Ok((page, total))
}

/// Inserts a user.
pub async fn insert(conn: &mut AsyncPgConnection, user: NewUser<'_>) -> QueryResult<User> {
    diesel::insert_into(users::table)
        .values(user)
        .returning(User::as_returning())
        .get_result(conn)
        .await
}

/// Applies changes and returns the updated row.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: UserChanges,
) -> QueryResult<User> {
    diesel::update(users::table.find(id))
        .set(changes)
        .returning(User::as_returning())
        .get_result(conn)
        .await
}

/// Records a successful login.
pub async fn touch_last_login(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    diesel::update(users::table.find(id))
        .set(users::last_login.eq(diesel::dsl::now))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Deletes a user (their refresh tokens go with them).
pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
    diesel::delete(users::table.find(id)).execute(conn).await
}

/// How many active management users exist besides `except`.
pub async fn other_active_managers(conn: &mut AsyncPgConnection, except: Uuid) -> QueryResult<i64> {
    users::table
        .filter(users::role.eq(Role::Management.as_str()))
        .filter(users::is_active.eq(true))
        .filter(users::id.ne(except))
        .count()
        .get_result(conn)
        .await
}
