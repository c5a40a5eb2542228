//! The `refresh_tokens` table: one row per issued token, grouped in families (login sessions).

use crate::schema::refresh_tokens;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// A stored refresh token.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshToken {
    pub id: Uuid,
    pub user_id: Uuid,
    /// Login session this token belongs to.
    pub family_id: Uuid,
    pub expires_at: DateTime<Utc>,
    /// Set once exchanged for a successor; presenting it again means it was stolen.
    pub rotated_at: Option<DateTime<Utc>>,
    /// Set when its family was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Stores a new token of `family`.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    family_id: Uuid,
    token_hash: &str,
    expires_at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::user_id.eq(user_id),
            refresh_tokens::family_id.eq(family_id),
            refresh_tokens::token_hash.eq(token_hash),
            refresh_tokens::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Finds a token by hash and locks it, so two concurrent refreshes cannot both rotate it.
pub async fn find_for_update(
    conn: &mut AsyncPgConnection,
    token_hash: &str,
) -> QueryResult<Option<RefreshToken>> {
    refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(token_hash))
        .select(RefreshToken::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Marks a token as exchanged.
pub async fn mark_rotated(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    diesel::update(refresh_tokens::table.find(id))
        .set(refresh_tokens::rotated_at.eq(diesel::dsl::now))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Which refresh tokens to revoke.
pub enum Scope {
    /// One login session (logout, reuse detection).
    Family(Uuid),
    /// Every session of a user (deactivation, password reset, role change).
    User(Uuid),
}

/// Revokes every live token in `scope`; returns how many.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    scope: Scope,
    reason: &str,
) -> QueryResult<usize> {
    let live = refresh_tokens::table
        .filter(refresh_tokens::revoked_at.is_null())
        .into_boxed();
    let targets = match scope {
        Scope::Family(id) => live.filter(refresh_tokens::family_id.eq(id)),
        Scope::User(id) => live.filter(refresh_tokens::user_id.eq(id)),
    };
    diesel::update(refresh_tokens::table)
        .filter(refresh_tokens::id.eq_any(targets.select(refresh_tokens::id)))
        .set((
            refresh_tokens::revoked_at.eq(diesel::dsl::now),
            refresh_tokens::revoked_reason.eq(reason),
        ))
        .execute(conn)
        .await
}
