//! Provisioning-time creation of the tenant's first admin.
//!
//! The local driver runs `poc-service bootstrap-admin --email <admin>` once the cell's database
//! exists; on Kubernetes poc-service ensures the invite at start from its configuration (the
//! email and the token's SHA-256 from the Cell's `spec.bootstrap`, see [`ensure_invite`]). It creates a one-time, email-bound admin invite and prints its token; the admin
//! registers with it. Running it again before the invite is used is idempotent when given the
//! same token (`--token-file`) and replaces the invite otherwise; once any admin exists it
//! refuses ([`BootstrapError::AlreadyBootstrapped`]), so it works once and only once.

use std::time::Duration;

use serde::Serialize;
use service_kit::secrets::{random_token, token_hash};
use sqlx::PgPool;
use time::OffsetDateTime;
use wire_types::auth::Role;

use crate::domain::Email;
use crate::store::invites;

/// How long the bootstrap invite stays valid.
pub const BOOTSTRAP_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// What the command prints (JSON) for the control plane / CLI.
#[derive(Debug, Serialize)]
pub struct BootstrapInvite {
    pub email: String,
    pub invite_token: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("invalid admin email: {0}")]
    InvalidEmail(String),
    #[error("this cell already has an admin; bootstrap works only once")]
    AlreadyBootstrapped,
    /// The invite with this token exists but can no longer be used (it expired or was
    /// replaced); a token is never stored twice, so a new invite needs a new token.
    #[error("the first admin's invite with this token expired or was replaced; issue a new one")]
    InviteSpent,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Creates (or re-issues) the bootstrap invite for `email`. With `token`, that exact secret is
/// used, making retries by a crashed-and-restarted provisioner idempotent.
pub async fn bootstrap_admin(
    pool: &PgPool,
    email: &str,
    token: Option<String>,
) -> Result<BootstrapInvite, BootstrapError> {
    let token = token.unwrap_or_else(|| random_token(32));
    let (email, expires_at) = ensure_invite(pool, email, &token_hash(&token), None).await?;
    Ok(BootstrapInvite {
        email,
        invite_token: token,
        expires_at,
    })
}

/// Makes the pending bootstrap invite the one for `email` whose token hashes to `hash`,
/// expiring at `expires_at` (default: [`BOOTSTRAP_TTL`] from now): an identical pending invite
/// is kept (idempotent), any other is revoked. Refuses once any admin exists or a bootstrap
/// invite was used. Returns the normalised email and the invite's expiry.
pub async fn ensure_invite(
    pool: &PgPool,
    email: &str,
    hash: &str,
    expires_at: Option<OffsetDateTime>,
) -> Result<(String, OffsetDateTime), BootstrapError> {
    let email =
        Email::parse("email", email).map_err(|e| BootstrapError::InvalidEmail(e.message))?;
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('mrbill.poc.bootstrap'))")
        .execute(&mut *tx)
        .await?;
    let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE role = 'admin'")
        .fetch_one(&mut *tx)
        .await?;
    let used: i64 =
        sqlx::query_scalar("SELECT count(*) FROM invites WHERE bootstrap AND used_at IS NOT NULL")
            .fetch_one(&mut *tx)
            .await?;
    if admins > 0 || used > 0 {
        return Err(BootstrapError::AlreadyBootstrapped);
    }
    let pending = invites::pending_bootstrap(&mut *tx).await?;
    if let Some(same) = pending
        .iter()
        .find(|i| i.token_hash == hash && i.email.as_deref() == Some(email.as_str()))
    {
        let expires_at = same.expires_at;
        tx.commit().await?;
        return Ok((email.as_str().to_owned(), expires_at));
    }
    // The same token seen before but no longer pending (expired unused, or replaced): a cell
    // restarting with an old `spec.bootstrap` must start, and must not store the hash twice.
    let seen: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM invites WHERE token_hash = $1)")
            .bind(hash)
            .fetch_one(&mut *tx)
            .await?;
    if seen {
        return Err(BootstrapError::InviteSpent);
    }
    invites::revoke_bootstrap(&mut *tx).await?;
    let expires_at = expires_at.unwrap_or_else(|| OffsetDateTime::now_utc() + BOOTSTRAP_TTL);
    let new = invites::NewInvite {
        token_hash: hash,
        email: Some(email.as_str()),
        role: Role::Admin,
        bootstrap: true,
        created_by: None,
        expires_at,
    };
    let invite = invites::insert(&mut *tx, &new).await?;
    tx.commit().await?;
    Ok((email.as_str().to_owned(), invite.expires_at))
}
