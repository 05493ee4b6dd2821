//! Sessions: password hashing, issuing access + refresh tokens, refresh rotation, logout.
//!
//! **Invariant:** a refresh token works once. A second use within `refresh_grace` (two
//! concurrent refreshes from one device) gets a sibling token in the same family; any later
//! reuse is treated as theft and revokes the whole family.

use std::sync::OnceLock;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use service_kit::ApiError;
use service_kit::secrets::{random_token, token_hash};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;
use wire_types::ErrorCode;
use wire_types::auth::TokenResponse;

use crate::state::AppState;
use crate::store::users::UserRow;
use crate::store::{tokens, users};

/// Bounds concurrent argon2 work (each run takes ~19 MiB and a core) so a flood of sign-ins
/// queues instead of exhausting memory; a caller that waits too long gets 503 + Retry-After.
async fn hashing_permit() -> Result<tokio::sync::SemaphorePermit<'static>, ApiError> {
    static PERMITS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    let permits = PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        tokio::sync::Semaphore::new(cores * 2)
    });
    match tokio::time::timeout(Duration::from_secs(5), permits.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(ApiError::unavailable(
            "too many sign-ins in progress",
            Duration::from_secs(1),
        )),
    }
}

/// argon2id with the crate's recommended parameters (19 MiB, t=2, p=1), off the async runtime.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    let _permit = hashing_permit().await?;
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("OS randomness: {e}"))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing: {e}"))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// Verifies `password` against `hash`; with no hash (unknown account) it still spends the same
/// time on a dummy hash, so response times do not reveal which emails have accounts.
pub async fn verify_password(password: String, hash: Option<String>) -> Result<bool, ApiError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let _permit = hashing_permit().await?;
    tokio::task::spawn_blocking(move || {
        let hash = hash.unwrap_or_else(|| {
            DUMMY
                .get_or_init(|| {
                    let salt = SaltString::encode_b64(b"mrbill-dummy-slt")
                        .expect("16 bytes encode as a salt");
                    Argon2::default()
                        .hash_password(b"not-a-real-password", &salt)
                        .map(|h| h.to_string())
                        .unwrap_or_default()
                })
                .clone()
        });
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
    .await
    .map_err(ApiError::internal)
}

/// Issues an access token and a new refresh token (in `family`, or a new family).
pub async fn issue(
    state: &AppState,
    conn: &mut PgConnection,
    user: &UserRow,
    family: Option<Uuid>,
) -> Result<TokenResponse, ApiError> {
    let access_token = state
        .signer
        .sign(user.user_id(), user.role(), user.token_version)
        .map_err(ApiError::internal)?;
    let refresh_token = random_token(32);
    let expires_at = OffsetDateTime::now_utc() + state.config.refresh_ttl;
    tokens::insert(
        &mut *conn,
        &token_hash(&refresh_token),
        family.unwrap_or_else(Uuid::now_v7),
        user.id,
        expires_at,
    )
    .await?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: state.signer.ttl().as_secs(),
        refresh_token,
        refresh_expires_in: state.config.refresh_ttl.as_secs(),
        user: user.to_wire(),
    })
}

/// Rotates a refresh token (see the module invariant).
pub async fn refresh(state: &AppState, presented: &str) -> Result<TokenResponse, ApiError> {
    let invalid = || {
        ApiError::new(
            ErrorCode::InvalidRefreshToken,
            "refresh token is invalid, expired or revoked",
        )
    };
    let hash = token_hash(presented);
    let mut tx = state.pool.begin().await?;
    let Some(row) = tokens::lock(&mut *tx, &hash, state.config.refresh_grace).await? else {
        return Err(invalid());
    };
    let now = OffsetDateTime::now_utc();
    if row.revoked_at.is_some() || row.expires_at <= now {
        return Err(invalid());
    }
    if row.past_grace {
        tokens::revoke_family(&mut *tx, row.family_id).await?;
        tx.commit().await?;
        tracing::warn!(user = %row.user_id, family = %row.family_id, "refresh token reused; family revoked");
        return Err(ApiError::new(
            ErrorCode::RefreshTokenReused,
            "refresh token was already used; sign in again",
        ));
    }
    let Some(user) = users::find(&mut *tx, row.user_id).await? else {
        return Err(invalid());
    };
    if user.disabled {
        tokens::revoke_family(&mut *tx, row.family_id).await?;
        tx.commit().await?;
        return Err(ApiError::new(
            ErrorCode::AccountDisabled,
            "this account is disabled",
        ));
    }
    tokens::mark_used(&mut *tx, &hash).await?;
    let response = issue(state, &mut tx, &user, Some(row.family_id)).await?;
    tx.commit().await?;
    Ok(response)
}

/// Revokes the family of `presented`. Unknown tokens are ignored (logout is idempotent).
pub async fn logout(state: &AppState, presented: &str) -> Result<(), ApiError> {
    let mut tx = state.pool.begin().await?;
    if let Some(row) =
        tokens::lock(&mut *tx, &token_hash(presented), state.config.refresh_grace).await?
    {
        tokens::revoke_family(&mut *tx, row.family_id).await?;
    }
    tx.commit().await?;
    Ok(())
}
