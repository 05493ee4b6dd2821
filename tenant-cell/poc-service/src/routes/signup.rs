//! Open registration with a confirmed address: `POST /v1/auth/register` without an invite
//! admits only addresses at the tenant's email domains, and creates nothing but a pending
//! registration; the account exists (and signs in) once `POST /v1/auth/confirm-email` brings
//! back the one-time code mailed to the address. So nobody sees tenant data with an address
//! they do not hold.

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use service_kit::ApiError;
use service_kit::cell::ClientIp;
use service_kit::extract::ApiJson;
use service_kit::secrets::token_hash;
use time::OffsetDateTime;
use wire_types::auth::{
    ConfirmEmailRequest, RegistrationMode, RegistrationPending, Role, TokenResponse,
};
use wire_types::{ErrorBody, ErrorCode, FieldError};

use crate::domain::{DisplayName, Email, Password};
use crate::mail::Mail;
use crate::session;
use crate::state::AppState;
use crate::store::{registrations, settings, throttle, users};

/// How long a mailed confirmation code works.
const CODE_TTL: Duration = Duration::from_secs(30 * 60);
/// Wrong codes per address before it is blocked for the throttle's block time.
const MAX_CODE_ATTEMPTS: u32 = 5;
/// Registrations (codes mailed) per address per throttle window.
const MAX_CODES: u32 = 3;

/// Whether open registration admits `email`: its domain is one of the tenant's.
fn domain_allowed(domains: &[String], email: &Email) -> bool {
    let domain = email.as_str().rsplit_once('@').map_or("", |(_, d)| d);
    domains.iter().any(|d| d == domain)
}

fn domain_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::EmailDomainNotAllowed,
        "registration without an invite is open only to the company's email addresses",
    )
}

/// Six random digits, uniformly.
fn confirmation_code() -> Result<String, ApiError> {
    loop {
        let mut bytes = [0u8; 4];
        getrandom::fill(&mut bytes).map_err(|e| ApiError::internal(anyhow::anyhow!("{e}")))?;
        let n = u32::from_le_bytes(bytes);
        // 4_294_000_000 is a multiple of 10⁶: no digit is likelier than another.
        if n < 4_294_000_000 {
            return Ok(format!("{:06}", n % 1_000_000));
        }
    }
}

fn code_hash(email: &Email, code: &str) -> String {
    token_hash(&format!("{}:{code}", email.as_str()))
}

/// The open branch of `register`: checks the address's domain, stores a pending registration
/// and mails its code. Answers 202 with [`RegistrationPending`].
pub(super) async fn start(
    state: &AppState,
    ip: IpAddr,
    email: Email,
    password: Password,
    display_name: DisplayName,
) -> Result<Response, ApiError> {
    if !domain_allowed(&state.config.email_domains, &email) {
        return Err(domain_not_allowed());
    }
    let t = state.config.throttle;
    for (key, max) in [
        (format!("signup:{}", email.as_str()), MAX_CODES),
        (format!("signup-ip:{ip}"), t.ip_max_failures),
    ] {
        super::attempt(state, &key, max, "too_many_registrations").await?;
    }
    if users::find_by_email(&state.pool, email.as_str())
        .await?
        .is_some()
    {
        return Err(super::auth::email_taken());
    }
    let password_hash = session::hash_password(password.expose().to_owned()).await?;
    let code = confirmation_code()?;
    let expires_at = OffsetDateTime::now_utc() + CODE_TTL;
    registrations::upsert(
        &state.pool,
        &registrations::Pending {
            email: email.as_str(),
            display_name: display_name.as_str(),
            password_hash: &password_hash,
            code_hash: &code_hash(&email, &code),
            expires_at,
        },
    )
    .await?;
    let tenant = &state.config.common.tenant;
    let mail = Mail {
        to: email.as_str().to_owned(),
        subject: format!("Your confirmation code for {tenant}"),
        body: format!(
            "Someone (hopefully you) registered {} at {tenant}.\n\n\
             Your confirmation code, valid for 30 minutes:\n\n    {code}\n\n\
             Enter it in the app to finish creating your account. If it was not you, ignore \
             this message: no account is created without the code.\n",
            email.as_str()
        ),
    };
    let mailer = state.mailer.clone();
    tokio::spawn(async move {
        if let Err(e) = mailer.send(&mail).await {
            tracing::warn!(error = %format!("{e:#}"), "confirmation code not mailed");
        }
    });
    let pending = RegistrationPending {
        email: email.as_str().to_owned(),
        expires_at,
    };
    Ok((StatusCode::ACCEPTED, ApiJson(pending)).into_response())
}

/// Finish an open registration with the code mailed to the address: the account is created
/// (as a member) and signed in. Wrong codes are counted per address and per client.
#[utoipa::path(post, path = "/v1/auth/confirm-email", tag = "auth", request_body = ConfirmEmailRequest,
    responses(
        (status = 201, description = "Account created and signed in", body = TokenResponse),
        (status = 400, description = "Malformed JSON or unknown fields", body = ErrorBody),
        (status = 403, description = "`invalid_confirmation_code` (wrong, used or expired), `registration_closed` or `email_domain_not_allowed`", body = ErrorBody),
        (status = 409, description = "Email already registered", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid fields", body = ErrorBody),
        (status = 429, description = "Too many wrong codes",
            headers(("Retry-After" = u64, description = "Seconds to wait")), body = ErrorBody),
    ))]
pub async fn confirm_email(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<ConfirmEmailRequest>,
) -> Result<(StatusCode, ApiJson<TokenResponse>), ApiError> {
    let email = Email::parse("email", &req.email);
    let code_ok = req.code.len() == 6 && req.code.bytes().all(|b| b.is_ascii_digit());
    let email = match (email, code_ok) {
        (Ok(email), true) => email,
        (email, _) => {
            let mut errors: Vec<FieldError> = email.err().into_iter().collect();
            if !code_ok {
                errors.push(FieldError::new("code", "invalid_format", "six digits"));
            }
            return Err(ApiError::validation(errors));
        }
    };
    let key = format!("confirm:{}", email.as_str());
    super::attempt(&state, &key, MAX_CODE_ATTEMPTS, "too_many_attempts").await?;
    let ip_key = format!("confirm-ip:{ip}");
    let ip_max = state.config.throttle.ip_max_failures;
    super::attempt(&state, &ip_key, ip_max, "too_many_attempts").await?;

    let mut tx = state.pool.begin().await?;
    // Serialises account creation with registrations and settings changes.
    let cell_settings = settings::lock(&mut *tx).await?;
    let pending = registrations::take(&mut *tx, email.as_str(), &code_hash(&email, &req.code))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidConfirmationCode,
                "the code is wrong, used or expired; register again for a new one",
            )
        })?;
    if cell_settings.registration != RegistrationMode::Open {
        return Err(super::auth::registration_closed());
    }
    if !domain_allowed(&state.config.email_domains, &email) {
        return Err(domain_not_allowed());
    }
    let new = users::NewUser {
        email: email.as_str(),
        display_name: &pending.display_name,
        password_hash: &pending.password_hash,
        role: Role::Member,
    };
    let user = super::auth::insert_account(&mut tx, &new).await?;
    let tokens = session::issue(&state, &mut tx, &user, None).await?;
    tx.commit().await?;
    // The right code: the wrong guesses before it stay counted, this one does not.
    throttle::release(&state.pool, &key, MAX_CODE_ATTEMPTS).await?;
    throttle::release(&state.pool, &ip_key, ip_max).await?;
    tracing::info!(user = %user.id, "account registered with a confirmed address");
    Ok((StatusCode::CREATED, ApiJson(tokens)))
}
