//! The `invites` table. Only SHA-256 hashes of invite tokens are stored.

use sqlx::{FromRow, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;
use wire_types::InviteId;
use wire_types::auth::{Invite, Role};

#[derive(Clone, Debug, FromRow)]
pub struct InviteRow {
    pub id: Uuid,
    pub token_hash: String,
    pub email: Option<String>,
    pub role: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

impl InviteRow {
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Member)
    }

    /// Unused, not revoked, not expired.
    pub fn is_pending(&self, now: OffsetDateTime) -> bool {
        self.used_at.is_none() && self.revoked_at.is_none() && self.expires_at > now
    }

    pub fn to_wire(&self) -> Invite {
        Invite {
            id: InviteId(self.id),
            email: self.email.clone(),
            role: self.role(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            used: self.used_at.is_some(),
        }
    }
}

const COLUMNS: &str = "id, token_hash, email, role, created_at, expires_at, used_at, revoked_at";

pub struct NewInvite<'a> {
    pub token_hash: &'a str,
    pub email: Option<&'a str>,
    pub role: Role,
    pub bootstrap: bool,
    pub created_by: Option<Uuid>,
    pub expires_at: OffsetDateTime,
}

pub async fn insert(ex: impl PgExecutor<'_>, new: &NewInvite<'_>) -> sqlx::Result<InviteRow> {
    sqlx::query_as(&format!(
        "INSERT INTO invites (id, token_hash, email, role, bootstrap, created_by, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(new.token_hash)
    .bind(new.email)
    .bind(new.role.as_str())
    .bind(new.bootstrap)
    .bind(new.created_by)
    .bind(new.expires_at)
    .fetch_one(ex)
    .await
}

pub async fn find_by_hash(ex: impl PgExecutor<'_>, hash: &str) -> sqlx::Result<Option<InviteRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM invites WHERE token_hash = $1"
    ))
    .bind(hash)
    .fetch_optional(ex)
    .await
}

/// Locks the invite with this token hash for the rest of the transaction.
pub async fn lock_by_hash(ex: impl PgExecutor<'_>, hash: &str) -> sqlx::Result<Option<InviteRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM invites WHERE token_hash = $1 FOR UPDATE"
    ))
    .bind(hash)
    .fetch_optional(ex)
    .await
}

pub async fn mark_used(ex: impl PgExecutor<'_>, id: Uuid, by: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE invites SET used_at = now(), used_by = $2 WHERE id = $1")
        .bind(id)
        .bind(by)
        .execute(ex)
        .await
        .map(drop)
}

/// Newest first, at most `limit`.
pub async fn list(ex: impl PgExecutor<'_>, limit: i64) -> sqlx::Result<Vec<InviteRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM invites WHERE revoked_at IS NULL AND NOT bootstrap ORDER BY created_at DESC LIMIT $1"))
        .bind(limit)
        .fetch_all(ex)
        .await
}

/// Revokes a pending, non-bootstrap invite; `false` when there is none with this id.
pub async fn revoke(ex: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE invites SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL AND NOT bootstrap").bind(id).execute(ex).await?;
    Ok(done.rows_affected() == 1)
}

/// Pending bootstrap invites (at most one is kept).
pub async fn pending_bootstrap(ex: impl PgExecutor<'_>) -> sqlx::Result<Vec<InviteRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM invites WHERE bootstrap AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now() FOR UPDATE"
    ))
    .fetch_all(ex)
    .await
}

pub async fn revoke_bootstrap(ex: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query("UPDATE invites SET revoked_at = now() WHERE bootstrap AND used_at IS NULL AND revoked_at IS NULL").execute(ex).await.map(drop)
}
