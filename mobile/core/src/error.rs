//! One error for the apps, from the API's stable `code`s (never from status text).

use serde::Deserialize;
use wire_types::FieldError;

/// An error body as the API sends it; the code as text, so a code newer than this build is
/// still read.
#[derive(Deserialize)]
struct Answer {
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: serde_json::Value,
}

/// What went wrong, as an app shows it.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum CoreError {
    /// The router or the cell could not be reached (no network, server down): retry later.
    #[error("cannot reach the server: {reason}")]
    Network { reason: String },
    /// No company by that name or email domain.
    #[error("no company by that name or email domain")]
    CompanyNotFound,
    /// No company chosen yet ([`crate::MrBill::resolve`] first).
    #[error("no company chosen yet")]
    NoCompany,
    /// The session ended (signed out, refresh token reused or revoked, account disabled): the
    /// app shows its sign-in screen.
    #[error("signed out")]
    SignedOut,
    /// Email and password do not match.
    #[error("wrong email or password")]
    InvalidCredentials,
    /// The input was refused; one entry per field (`field` is the JSON path).
    #[error("invalid input")]
    Validation { fields: Vec<FieldError> },
    /// Nothing there, or not visible to this user.
    #[error("not found")]
    NotFound,
    /// Not allowed: `code` says why (`forbidden`, `invalid_invite`, `registration_closed`, …).
    #[error("not allowed: {detail}")]
    Refused { code: String, detail: String },
    /// The company's account is suspended.
    #[error("this company is suspended")]
    TenantSuspended,
    /// Too many attempts: try again after this many seconds.
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The server could not serve the request now, or failed: retry later.
    #[error("the server could not answer ({code}): {detail}")]
    Server {
        status: u16,
        code: String,
        detail: String,
    },
}

impl CoreError {
    /// The error an API answer means.
    pub(crate) fn from_answer(status: u16, retry_after: Option<u64>, body: &[u8]) -> Self {
        let Ok(body) = serde_json::from_slice::<Answer>(body) else {
            return Self::Server {
                status,
                code: "unexpected_answer".into(),
                detail: format!("HTTP {status} without an error body"),
            };
        };
        let code = body.code.as_str();
        match code {
            "validation_failed" => Self::Validation {
                fields: serde_json::from_value(body.details["fields"].clone()).unwrap_or_default(),
            },
            "invalid_json" | "invalid_parameter" | "payload_too_large" => Self::Validation {
                fields: vec![FieldError::new(
                    body.details["field"].as_str().unwrap_or(""),
                    code,
                    body.message,
                )],
            },
            "invalid_credentials" => Self::InvalidCredentials,
            "unauthenticated"
            | "invalid_refresh_token"
            | "refresh_token_reused"
            | "account_disabled" => Self::SignedOut,
            "not_found" => Self::NotFound,
            "tenant_not_found" => Self::CompanyNotFound,
            "tenant_suspended" => Self::TenantSuspended,
            "rate_limited" => Self::RateLimited {
                retry_after_secs: retry_after.unwrap_or(1),
            },
            _ if (400..500).contains(&status) => Self::Refused {
                code: code.to_owned(),
                detail: body.message,
            },
            _ => Self::Server {
                status,
                code: code.to_owned(),
                detail: body.message,
            },
        }
    }

    pub(crate) fn network(e: &reqwest::Error) -> Self {
        // Only the kind of failure: a URL may carry a link's signature.
        let reason = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "connection refused or unreachable"
        } else if e.is_decode() {
            "unreadable answer"
        } else {
            "connection failed"
        };
        Self::Network {
            reason: reason.into(),
        }
    }
}
