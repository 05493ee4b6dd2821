//! `/v1/auth`: register, login, refresh, logout.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Router, http::StatusCode};
use service_kit::ApiError;
use service_kit::cell::ClientIp;
use service_kit::extract::ApiJson;
use service_kit::secrets::token_hash;
use time::OffsetDateTime;
use wire_types::auth::{
    LoginRequest, RefreshRequest, RegisterRequest, RegistrationMode, RegistrationPending, Role,
    TokenResponse,
};
use wire_types::{ErrorBody, ErrorCode};

use crate::domain::{DisplayName, Email, Fields, Password};
use crate::session;
use crate::state::AppState;
use crate::store::{self, invites, settings, throttle, users};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/register", post(register))
        .route("/v1/auth/confirm-email", post(super::signup::confirm_email))
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/logout", post(logout))
}

/// Create an account. With an invite the account gets the invite's role and is signed in at
/// once (201). Without one, registration must be `open` in this cell and the address at one of
/// the tenant's email domains: a six-digit code is mailed to it (202), and the account exists
/// once `POST /v1/auth/confirm-email` brings the code back. (In standalone development mode
/// only, the first registrant of an empty cell becomes admin at once.)
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account created and signed in", body = TokenResponse),
        (status = 202, description = "A confirmation code was mailed to the address", body = RegistrationPending),
        (status = 400, description = "Malformed JSON or unknown fields", body = ErrorBody),
        (status = 403, description = "`registration_closed`, `invalid_invite` or `email_domain_not_allowed`", body = ErrorBody),
        (status = 409, description = "Email already registered", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
        (status = 429, description = "Too many registrations of this address or from this client",
            headers(("Retry-After" = u64, description = "Seconds to wait")), body = ErrorBody),
        (status = 503, description = "Overloaded with sign-ins",
            headers(("Retry-After" = u64, description = "Seconds to wait")), body = ErrorBody),
    ))]
pub async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<Response, ApiError> {
    let mut fields = Fields::default();
    let email = fields.check(Email::parse("email", &req.email));
    let password = fields.check(Password::parse(
        "password",
        &req.password,
        email.as_ref(),
        state.config.password_policy,
    ));
    let display_name = match &req.display_name {
        Some(name) => fields.check(DisplayName::parse("display_name", name)),
        None => email.as_ref().map(DisplayName::from_email),
    };
    if let Some(token) = &req.invite_token
        && (token.is_empty() || token.len() > 256)
    {
        fields.check::<()>(Err(wire_types::FieldError::new(
            "invite_token",
            "invalid_format",
            "invite token must be 1–256 characters",
        )));
    }
    fields.finish().map_err(ApiError::validation)?;
    let (Some(email), Some(password), Some(display_name)) = (email, password, display_name) else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };
    // Cheap checks first: nobody makes us spend an argon2 hash on a registration that cannot
    // succeed. The transaction below re-checks under lock.
    match &req.invite_token {
        Some(token) => {
            let invite = invites::find_by_hash(&state.pool, &token_hash(token)).await?;
            if !invite.is_some_and(|i| invite_fits(&i, &email)) {
                return Err(invalid_invite());
            }
        }
        None => {
            let open = settings::get(&state.pool).await?.registration == RegistrationMode::Open;
            let first_dev_user = state.config.dev_mode && users::count(&state.pool).await? == 0;
            if open && !first_dev_user {
                return super::signup::start(&state, ip, email, password, display_name).await;
            }
            if !first_dev_user {
                return Err(registration_closed());
            }
        }
    }
    let password_hash = session::hash_password(password.expose().to_owned()).await?;

    let mut tx = state.pool.begin().await?;
    // Serialises registrations, so "first user" and invite use are decided one at a time.
    let _settings = settings::lock(&mut *tx).await?;
    let invite = match &req.invite_token {
        Some(token) => {
            let invalid = || {
                ApiError::new(
                    ErrorCode::InvalidInvite,
                    "invite is invalid, used, expired or for another email",
                )
            };
            let invite = invites::lock_by_hash(&mut *tx, &token_hash(token))
                .await?
                .ok_or_else(invalid)?;
            if !invite.is_pending(OffsetDateTime::now_utc())
                || invite.email.as_deref().is_some_and(|e| e != email.as_str())
            {
                return Err(invalid());
            }
            Some(invite)
        }
        None => None,
    };
    let role = match &invite {
        Some(invite) => invite.role(),
        None if state.config.dev_mode && users::count(&mut *tx).await? == 0 => Role::Admin,
        None => {
            return Err(ApiError::new(
                ErrorCode::RegistrationClosed,
                "registration in this cell needs an invite",
            ));
        }
    };
    let new = users::NewUser {
        email: email.as_str(),
        display_name: display_name.as_str(),
        password_hash: &password_hash,
        role,
    };
    let user = insert_account(&mut tx, &new).await?;
    if let Some(invite) = &invite {
        invites::mark_used(&mut *tx, invite.id, user.id).await?;
    }
    let tokens = session::issue(&state, &mut tx, &user, None).await?;
    tx.commit().await?;
    tracing::info!(user = %user.id, role = role.as_str(), via_invite = invite.is_some(), "account registered");
    Ok((StatusCode::CREATED, ApiJson(tokens)).into_response())
}

/// Inserts the account; an address that is taken (case-insensitively) is 409 `conflict`.
pub(super) async fn insert_account(
    conn: &mut sqlx::PgConnection,
    new: &users::NewUser<'_>,
) -> Result<users::UserRow, ApiError> {
    users::insert(conn, new).await.map_err(|e| {
        if store::is_unique_violation(&e) {
            email_taken()
        } else {
            e.into()
        }
    })
}

pub(super) fn email_taken() -> ApiError {
    ApiError::new(
        ErrorCode::Conflict,
        "an account with this email already exists",
    )
}

fn invite_fits(invite: &invites::InviteRow, email: &Email) -> bool {
    invite.is_pending(OffsetDateTime::now_utc())
        && invite.email.as_deref().is_none_or(|e| e == email.as_str())
}

fn invalid_invite() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidInvite,
        "invite is invalid, used, expired or for another email",
    )
}

pub(super) fn registration_closed() -> ApiError {
    ApiError::new(
        ErrorCode::RegistrationClosed,
        "registration in this cell needs an invite",
    )
}

/// Sign in with email and password. Failed attempts are counted per account and per client IP;
/// past the limit the answer is 429 with `Retry-After`, even for the right password.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 400, description = "Malformed JSON or unknown fields", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`account_disabled`", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
        (status = 429, description = "Too many failed attempts",
            headers(("Retry-After" = u64, description = "Seconds to wait")), body = ErrorBody),
        (status = 503, description = "Overloaded with sign-ins",
            headers(("Retry-After" = u64, description = "Seconds to wait")), body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<ApiJson<TokenResponse>, ApiError> {
    let email = Email::parse("email", &req.email).map_err(|e| ApiError::validation(vec![e]))?;
    if req.password.is_empty()
        || req.password.chars().count() > state.config.password_policy.max_chars
    {
        return Err(ApiError::validation(vec![wire_types::FieldError::new(
            "password",
            "invalid_length",
            "password is empty or too long",
        )]));
    }
    let t = state.config.throttle;
    let account_key = format!("acct:{}", email.as_str());
    let ip_key = format!("ip:{ip}");
    const REASON: &str = "too_many_failed_logins";
    // Both attempts are reserved before the (slow) verify; one that turns out right is given back.
    super::attempt(&state, &account_key, t.account_max_failures, REASON).await?;
    if let Err(blocked) = super::attempt(&state, &ip_key, t.ip_max_failures, REASON).await {
        throttle::release(&state.pool, &account_key, t.account_max_failures).await?;
        return Err(blocked);
    }
    let user = users::find_by_email(&state.pool, email.as_str()).await?;
    let ok = session::verify_password(req.password, user.as_ref().map(|u| u.password_hash.clone()))
        .await?;
    let Some(user) = user.filter(|_| ok) else {
        metrics::counter!("mrbill_poc_login_failures_total").increment(1);
        return Err(ApiError::new(
            ErrorCode::InvalidCredentials,
            "email or password is wrong",
        ));
    };
    throttle::clear(&state.pool, &account_key).await?;
    throttle::release(&state.pool, &ip_key, t.ip_max_failures).await?;
    if user.disabled {
        return Err(ApiError::new(
            ErrorCode::AccountDisabled,
            "this account is disabled",
        ));
    }
    let mut conn = state.pool.acquire().await?;
    Ok(ApiJson(
        session::issue(&state, &mut conn, &user, None).await?,
    ))
}

/// Exchange a refresh token for new tokens. Each refresh token works once; reusing one after the
/// short grace window revokes every token of that sign-in (`refresh_token_reused`).
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 400, description = "Malformed JSON or unknown fields", body = ErrorBody),
        (status = 401, description = "`invalid_refresh_token` or `refresh_token_reused`", body = ErrorBody),
        (status = 403, description = "`account_disabled`", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    ))]
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<ApiJson<TokenResponse>, ApiError> {
    session::refresh(&state, &req.refresh_token)
        .await
        .map(ApiJson)
}

/// Sign out: revokes the refresh token and every token rotated from the same sign-in.
/// Idempotent; needs no access token (it may have expired).
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 204, description = "Signed out"),
        (status = 400, description = "Malformed JSON or unknown fields", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    ))]
pub async fn logout(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    session::logout(&state, &req.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}
