//! The `refresh_tokens` table: rotating refresh tokens grouped in families (one per login).

use std::time::Duration;

use sqlx::{FromRow, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Clone, Debug, FromRow)]
pub struct RefreshRow {
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    /// Used longer ago than the grace window (computed on the database clock, which also set
    /// `used_at`, so app-server clock skew cannot widen the window).
    pub past_grace: bool,
}

pub async fn insert(
    ex: impl PgExecutor<'_>,
    hash: &str,
    family: Uuid,
    user: Uuid,
    expires_at: OffsetDateTime,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(hash)
        .bind(family)
        .bind(user)
        .bind(expires_at)
        .execute(ex)
        .await
        .map(drop)
}

/// Locks the token row, serialising concurrent refreshes of the same token.
pub async fn lock(
    ex: impl PgExecutor<'_>,
    hash: &str,
    grace: Duration,
) -> sqlx::Result<Option<RefreshRow>> {
    sqlx::query_as(
        "SELECT family_id, user_id, expires_at, revoked_at,
                coalesce(used_at < now() - make_interval(secs => $2), false) AS past_grace
         FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(hash)
    .bind(grace.as_secs_f64())
    .fetch_optional(ex)
    .await
}

pub async fn mark_used(ex: impl PgExecutor<'_>, hash: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1 AND used_at IS NULL",
    )
    .bind(hash)
    .execute(ex)
    .await
    .map(drop)
}

pub async fn revoke_family(ex: impl PgExecutor<'_>, family: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family)
    .execute(ex)
    .await
    .map(drop)
}

pub async fn revoke_user(ex: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user)
    .execute(ex)
    .await
    .map(drop)
}
