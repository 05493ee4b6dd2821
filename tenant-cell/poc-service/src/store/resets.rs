//! The `password_resets` table: one-time tokens that set a user's password, issued by an admin
//! or mailed on request. Only SHA-256 hashes are stored.

use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

/// Stores a new reset for `user`; the user's earlier unused ones stop working (only the
/// newest counts).
pub async fn insert(
    conn: &mut PgConnection,
    user: Uuid,
    hash: &str,
    expires_at: OffsetDateTime,
    created_by: Option<Uuid>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE password_resets SET used_at = now() WHERE user_id = $1 AND used_at IS NULL",
    )
    .bind(user)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO password_resets (token_hash, user_id, expires_at, created_by)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(hash)
    .bind(user)
    .bind(expires_at)
    .bind(created_by)
    .execute(conn)
    .await
    .map(drop)
}

/// Takes the reset with this hash if it is unused and unexpired: marks it used and returns its
/// user. Used or not, a token works at most once.
pub async fn take(ex: impl PgExecutor<'_>, hash: &str) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar(
        "UPDATE password_resets SET used_at = now()
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
         RETURNING user_id",
    )
    .bind(hash)
    .fetch_optional(ex)
    .await
}
