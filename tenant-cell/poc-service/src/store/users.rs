//! The `users` table.

use sqlx::{FromRow, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;
use wire_types::UserId;
use wire_types::auth::{Role, User};

#[derive(Clone, Debug, FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub role: String,
    pub disabled: bool,
    pub token_version: i64,
    pub created_at: OffsetDateTime,
}

impl UserRow {
    pub fn role(&self) -> Role {
        // The CHECK constraint admits only the two roles; default to the weaker one regardless.
        Role::parse(&self.role).unwrap_or(Role::Member)
    }

    pub fn user_id(&self) -> UserId {
        UserId(self.id)
    }

    pub fn to_wire(&self) -> User {
        User {
            id: self.user_id(),
            email: self.email.clone(),
            display_name: self.display_name.clone(),
            role: self.role(),
            disabled: self.disabled,
            created_at: self.created_at,
        }
    }
}

const COLUMNS: &str =
    "id, email, display_name, password_hash, role, disabled, token_version, created_at";

pub async fn find(ex: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(ex)
        .await
}

pub async fn find_by_email(ex: impl PgExecutor<'_>, email: &str) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE email = $1"))
        .bind(email)
        .fetch_optional(ex)
        .await
}

/// Locks the row for the rest of the transaction.
pub async fn lock(ex: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(ex)
    .await
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
}

/// Inserts a user; a taken email surfaces as a unique violation.
pub async fn insert(ex: impl PgExecutor<'_>, new: &NewUser<'_>) -> sqlx::Result<UserRow> {
    sqlx::query_as(&format!(
        "INSERT INTO users (id, email, display_name, password_hash, role) VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(new.email)
    .bind(new.display_name)
    .bind(new.password_hash)
    .bind(new.role.as_str())
    .fetch_one(ex)
    .await
}

pub async fn count(ex: impl PgExecutor<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(ex)
        .await
}

pub async fn count_active_admins(ex: impl PgExecutor<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM users WHERE role = 'admin' AND NOT disabled")
        .fetch_one(ex)
        .await
}

/// One page, oldest first (stable across pages: `(created_at, id)` is unique).
pub async fn page(ex: impl PgExecutor<'_>, limit: i64, offset: i64) -> sqlx::Result<Vec<UserRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users ORDER BY created_at, id LIMIT $1 OFFSET $2"
    ))
    .bind(limit)
    .bind(offset)
    .fetch_all(ex)
    .await
}

/// Applies role/disabled changes; any change bumps `token_version` so outstanding access
/// tokens (which carry the old role) stop working.
pub async fn update(
    ex: impl PgExecutor<'_>,
    id: Uuid,
    role: Role,
    disabled: bool,
) -> sqlx::Result<UserRow> {
    sqlx::query_as(&format!(
        "UPDATE users SET role = $2, disabled = $3, token_version = token_version + 1, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(role.as_str())
    .bind(disabled)
    .fetch_one(ex)
    .await
}

/// Sets a new password hash; bumps `token_version`, so every access token of the user dies.
pub async fn set_password(ex: impl PgExecutor<'_>, id: Uuid, hash: &str) -> sqlx::Result<UserRow> {
    sqlx::query_as(&format!(
        "UPDATE users SET password_hash = $2, token_version = token_version + 1, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(hash)
    .fetch_one(ex)
    .await
}

pub async fn set_display_name(
    ex: impl PgExecutor<'_>,
    id: Uuid,
    name: &str,
) -> sqlx::Result<UserRow> {
    sqlx::query_as(&format!(
        "UPDATE users SET display_name = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(name)
    .fetch_one(ex)
    .await
}
