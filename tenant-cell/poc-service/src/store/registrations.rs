//! The `pending_registrations` table: open registrations waiting for the code mailed to their
//! address. No account exists until the code comes back ([`take`]).

use sqlx::PgExecutor;
use time::OffsetDateTime;

/// A registration waiting for its confirmation code.
pub struct Pending<'a> {
    pub email: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub code_hash: &'a str,
    pub expires_at: OffsetDateTime,
}

/// What [`take`] hands back to create the account with.
#[derive(sqlx::FromRow)]
pub struct Confirmed {
    pub display_name: String,
    pub password_hash: String,
}

/// Stores `pending`, replacing an earlier registration of the same address (only the newest
/// code works), and forgets expired ones.
pub async fn upsert(ex: impl PgExecutor<'_> + Copy, pending: &Pending<'_>) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM pending_registrations WHERE expires_at < now()")
        .execute(ex)
        .await?;
    sqlx::query(
        "INSERT INTO pending_registrations (email, display_name, password_hash, code_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (email) DO UPDATE SET display_name = EXCLUDED.display_name,
             password_hash = EXCLUDED.password_hash, code_hash = EXCLUDED.code_hash,
             created_at = now(), expires_at = EXCLUDED.expires_at",
    )
    .bind(pending.email)
    .bind(pending.display_name)
    .bind(pending.password_hash)
    .bind(pending.code_hash)
    .bind(pending.expires_at)
    .execute(ex)
    .await
    .map(drop)
}

/// Removes and returns the registration of `email` if `code_hash` is its current, unexpired
/// code.
pub async fn take(
    ex: impl PgExecutor<'_>,
    email: &str,
    code_hash: &str,
) -> sqlx::Result<Option<Confirmed>> {
    sqlx::query_as(
        "DELETE FROM pending_registrations
         WHERE email = $1 AND code_hash = $2 AND expires_at > now()
         RETURNING display_name, password_hash",
    )
    .bind(email)
    .bind(code_hash)
    .fetch_optional(ex)
    .await
}
