//! Account self-service: the caller's profile and password, and password resets — issued by an
//! admin (a one-time token to hand over) or mailed on request ("forgot password").
//!
//! **Invariant:** a password change or reset ends every other session of the account (its
//! `token_version` is bumped and its refresh tokens are revoked), and a reset token is random,
//! stored hashed, bound to one user, expiring and usable once.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use service_kit::ApiError;
use service_kit::cell::ClientIp;
use service_kit::extract::{ApiJson, ApiPath};
use service_kit::secrets::{random_token, token_hash};
use time::OffsetDateTime;
use uuid::Uuid;
use wire_types::account::{
    ChangePasswordRequest, ForgotPasswordRequest, PasswordReset, ResetPasswordRequest,
    UpdateProfileRequest,
};
use wire_types::auth::{TokenResponse, User};
use wire_types::{ErrorBody, ErrorCode, FieldError};

use super::{Admin, CurrentUser};
use crate::domain::{DisplayName, Email, Password};
use crate::mail::Mail;
use crate::session;
use crate::state::AppState;
use crate::store::{resets, throttle, tokens, users};

/// How long an admin-issued reset token works.
const ADMIN_RESET_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a mailed reset token works.
const MAILED_RESET_TTL: Duration = Duration::from_secs(30 * 60);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/users/me/password", post(change_password))
        .route("/v1/users/{id}/password-reset", post(issue_reset))
        .route("/v1/auth/password-reset", post(reset_password))
        .route("/v1/auth/forgot-password", post(forgot_password))
}

/// Change your display name.
#[utoipa::path(patch, path = "/v1/users/me", tag = "users", security(("bearer" = [])),
    request_body = UpdateProfileRequest,
    responses(
        (status = 200, body = User),
        (status = 400, description = "Malformed JSON or unknown fields", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, description = "Invalid display name", body = ErrorBody),
    ))]
pub async fn update_profile(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(req): ApiJson<UpdateProfileRequest>,
) -> Result<ApiJson<User>, ApiError> {
    let name = DisplayName::parse("display_name", &req.display_name)
        .map_err(|e| ApiError::validation(vec![e]))?;
    let row = users::set_display_name(&state.pool, user.id, name.as_str()).await?;
    Ok(ApiJson(row.to_wire()))
}

/// Change your password. The current one is required (and counts as a sign-in attempt
/// against the login throttle); every other session ends, and this one continues with the
/// tokens in the answer.
#[utoipa::path(post, path = "/v1/users/me/password", tag = "users", security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 200, description = "Changed; fresh tokens for this session", body = TokenResponse),
        (status = 400, body = ErrorBody),
        (status = 401, description = "`invalid_credentials`: the current password is wrong", body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, description = "The new password breaks the policy", body = ErrorBody),
        (status = 429, description = "Too many wrong passwords",
            headers(("Retry-After" = u64, description = "Seconds to wait")), body = ErrorBody),
        (status = 503, description = "Overloaded with sign-ins",
            headers(("Retry-After" = u64, description = "Seconds to wait")), body = ErrorBody),
    ))]
pub async fn change_password(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(req): ApiJson<ChangePasswordRequest>,
) -> Result<ApiJson<TokenResponse>, ApiError> {
    let (email, new) = new_password(&state, &user.email, &req.new_password)?;
    if req.current_password.is_empty()
        || req.current_password.chars().count() > state.config.password_policy.max_chars
    {
        return Err(ApiError::validation(vec![FieldError::new(
            "current_password",
            "invalid_length",
            "password is empty or too long",
        )]));
    }
    let t = state.config.throttle;
    let account_key = format!("acct:{}", email.as_str());
    super::attempt(
        &state,
        &account_key,
        t.account_max_failures,
        "too_many_failed_logins",
    )
    .await?;
    let ok =
        session::verify_password(req.current_password, Some(user.password_hash.clone())).await?;
    if !ok {
        return Err(ApiError::new(
            ErrorCode::InvalidCredentials,
            "the current password is wrong",
        ));
    }
    throttle::clear(&state.pool, &account_key).await?;
    let hash = session::hash_password(new.expose().to_owned()).await?;
    let mut tx = state.pool.begin().await?;
    let row = users::set_password(&mut *tx, user.id, &hash).await?;
    tokens::revoke_user(&mut *tx, user.id).await?;
    let tokens = session::issue(&state, &mut tx, &row, None).await?;
    tx.commit().await?;
    tracing::info!(user = %user.id, "password changed; other sessions ended");
    Ok(ApiJson(tokens))
}

/// A one-time password-reset token for a user (admins), to hand over out of band; valid 24 h,
/// replaces the user's earlier unused ones. Nothing changes until it is used.
#[utoipa::path(post, path = "/v1/users/{id}/password-reset", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 201, body = PasswordReset),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn issue_reset(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, ApiJson<PasswordReset>), ApiError> {
    let user = users::find(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let token = random_token(32);
    let expires_at = OffsetDateTime::now_utc() + ADMIN_RESET_TTL;
    let mut conn = state.pool.acquire().await?;
    resets::insert(
        &mut conn,
        user.id,
        &token_hash(&token),
        expires_at,
        Some(admin.id),
    )
    .await?;
    tracing::info!(user = %user.id, by = %admin.id, "password reset issued");
    Ok((
        StatusCode::CREATED,
        ApiJson(PasswordReset { token, expires_at }),
    ))
}

/// Set a new password with a reset token (issued by an admin or mailed). The token works
/// once; every session of the account ends. Guesses count against the client's login limit.
#[utoipa::path(post, path = "/v1/auth/password-reset", tag = "auth", request_body = ResetPasswordRequest,
    responses(
        (status = 204, description = "Password set; sign in with it"),
        (status = 400, body = ErrorBody),
        (status = 403, description = "`invalid_reset_token`: unknown, used or expired", body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, description = "The new password breaks the policy", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this client",
            headers(("Retry-After" = u64, description = "Seconds to wait")), body = ErrorBody),
    ))]
pub async fn reset_password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<ResetPasswordRequest>,
) -> Result<StatusCode, ApiError> {
    if req.token.is_empty() || req.token.len() > 256 {
        return Err(ApiError::validation(vec![FieldError::new(
            "token",
            "invalid_length",
            "token must be 1–256 characters",
        )]));
    }
    let t = state.config.throttle;
    let ip_key = format!("ip:{ip}");
    super::attempt(&state, &ip_key, t.ip_max_failures, "too_many_failed_resets").await?;
    let mut tx = state.pool.begin().await?;
    let Some(user_id) = resets::take(&mut *tx, &token_hash(&req.token)).await? else {
        return Err(invalid_reset_token());
    };
    let user = users::lock(&mut *tx, user_id)
        .await?
        .ok_or_else(invalid_reset_token)?;
    let (email, new) = new_password(&state, &user.email, &req.new_password)?;
    let hash = session::hash_password(new.expose().to_owned()).await?;
    users::set_password(&mut *tx, user.id, &hash).await?;
    tokens::revoke_user(&mut *tx, user.id).await?;
    tx.commit().await?;
    throttle::release(&state.pool, &ip_key, t.ip_max_failures).await?;
    throttle::clear(&state.pool, &format!("acct:{}", email.as_str())).await?;
    tracing::info!(user = %user.id, "password reset; every session ended");
    Ok(StatusCode::NO_CONTENT)
}

/// Mail a password-reset token to this address, if it has an account here (the answer is the
/// same either way, and comes before any mail is sent). Valid 30 minutes; at most a few per
/// address and client in a while.
#[utoipa::path(post, path = "/v1/auth/forgot-password", tag = "auth", request_body = ForgotPasswordRequest,
    responses(
        (status = 202, description = "If the address has an account, a reset token is on its way"),
        (status = 400, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, description = "Not an email address", body = ErrorBody),
        (status = 429, description = "Asked too often",
            headers(("Retry-After" = u64, description = "Seconds to wait")), body = ErrorBody),
    ))]
pub async fn forgot_password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<ForgotPasswordRequest>,
) -> Result<StatusCode, ApiError> {
    let email = Email::parse("email", &req.email).map_err(|e| ApiError::validation(vec![e]))?;
    let t = state.config.throttle;
    for (key, max) in [
        (format!("forgot:{}", email.as_str()), 3),
        (format!("forgot-ip:{ip}"), t.ip_max_failures),
    ] {
        super::attempt(&state, &key, max, "too_many_reset_requests").await?;
    }
    // Off the request path: the answer is the same, and as fast, for any address.
    tokio::spawn(async move {
        if let Err(e) = mail_reset(&state, email.as_str()).await {
            tracing::warn!(error = %format!("{e:#}"), "password reset not mailed");
        }
    });
    Ok(StatusCode::ACCEPTED)
}

/// Stores a reset for the account at `email`, if there is an enabled one, and mails its token.
async fn mail_reset(state: &AppState, email: &str) -> anyhow::Result<()> {
    let Some(user) = users::find_by_email(&state.pool, email)
        .await?
        .filter(|u| !u.disabled)
    else {
        return Ok(());
    };
    let token = random_token(32);
    let mut conn = state.pool.acquire().await?;
    let expires_at = OffsetDateTime::now_utc() + MAILED_RESET_TTL;
    resets::insert(&mut conn, user.id, &token_hash(&token), expires_at, None).await?;
    let tenant = &state.config.common.tenant;
    state
        .mailer
        .send(&Mail {
            to: user.email.clone(),
            subject: format!("Your password reset for {tenant}"),
            body: format!(
                "Someone (hopefully you) asked to reset the password of {} at {tenant}.\n\n\
                 Your reset code, valid for 30 minutes and usable once:\n\n    {token}\n\n\
                 Enter it in the app to choose a new password. If you did not ask, ignore this \
                 message: your password stays as it is.\n",
                user.email
            ),
        })
        .await
}

/// The account's email and its new password, checked against the policy (422 otherwise).
fn new_password(state: &AppState, email: &str, raw: &str) -> Result<(Email, Password), ApiError> {
    let invalid = |e| ApiError::validation(vec![e]);
    let email = Email::parse("email", email).map_err(invalid)?;
    let password = Password::parse(
        "new_password",
        raw,
        Some(&email),
        state.config.password_policy,
    )
    .map_err(invalid)?;
    Ok((email, password))
}

fn invalid_reset_token() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidResetToken,
        "the reset token is unknown, used or expired",
    )
}
