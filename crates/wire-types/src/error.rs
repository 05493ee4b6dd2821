//! The one error body shared by every HTTP API: `{code, message, details}`.

use serde::{Deserialize, Serialize};

/// Stable, machine-readable error codes. Serialized as snake_case strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not valid JSON, has unknown fields or wrong types (400).
    InvalidJson,
    /// A query string or path parameter could not be parsed (400).
    InvalidParameter,
    /// Fields parsed but failed validation; `details.fields` lists them (422).
    ValidationFailed,
    /// The request body is larger than the endpoint accepts (413).
    PayloadTooLarge,
    /// The request needs `Content-Type: application/json` (415).
    UnsupportedMediaType,
    /// Missing, malformed, expired or foreign credentials (401).
    Unauthenticated,
    /// Email and password do not match an active account (401).
    InvalidCredentials,
    /// The refresh token is unknown, expired or revoked (401).
    InvalidRefreshToken,
    /// A refresh token was used twice; its whole family is revoked (401).
    RefreshTokenReused,
    /// Authenticated but not allowed (403).
    Forbidden,
    /// The account is disabled (403).
    AccountDisabled,
    /// Registration needs an invite in this cell (403).
    RegistrationClosed,
    /// The invite is unknown, used, expired or for another email (403).
    InvalidInvite,
    /// The password-reset token is unknown, used or expired (403).
    InvalidResetToken,
    /// Open registration admits only addresses at the tenant's email domains (403).
    EmailDomainNotAllowed,
    /// The email confirmation code is wrong, used or expired (403).
    InvalidConfirmationCode,
    /// The tenant is suspended (403).
    TenantSuspended,
    /// A download link's signature does not match (403).
    InvalidLink,
    /// A download link is past its expiry; ask for the job again for a fresh one (403).
    LinkExpired,
    /// Nothing here, or not visible to the caller (404).
    NotFound,
    /// The router knows no tenant by that name or email domain (404).
    TenantNotFound,
    /// The method is not allowed on this path (405).
    MethodNotAllowed,
    /// The resource already exists (409).
    Conflict,
    /// The change would leave the cell without an active admin (409).
    LastAdmin,
    /// A tenant with this slug already exists (409).
    SlugTaken,
    /// An email domain already belongs to another tenant (409); `details.domains` lists them.
    EmailDomainTaken,
    /// The placement has no room for a cell of this tier (409); `details` has used/capacity.
    CapacityExhausted,
    /// The placement is cordoned: it admits no new cells (409).
    PlacementCordoned,
    /// The placement still has cells (409); `details.cells` says how many.
    PlacementInUse,
    /// Another operation runs on the cell (409); `details.operation` names it.
    OperationInProgress,
    /// The tenant is suspended or being deleted (409); `details.state` says which.
    TenantNotActive,
    /// The request was meant for another cell (421).
    WrongCell,
    /// Too many requests; retry after the `Retry-After` header (429).
    RateLimited,
    /// The service is starting, stopping or overloaded; retry after `Retry-After` (503).
    Unavailable,
    /// A bug on our side; the cause is logged with the request id (500).
    Internal,
}

impl ErrorCode {
    /// The snake_case string clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidParameter => "invalid_parameter",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::InvalidRefreshToken => "invalid_refresh_token",
            ErrorCode::RefreshTokenReused => "refresh_token_reused",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::AccountDisabled => "account_disabled",
            ErrorCode::RegistrationClosed => "registration_closed",
            ErrorCode::InvalidInvite => "invalid_invite",
            ErrorCode::InvalidResetToken => "invalid_reset_token",
            ErrorCode::EmailDomainNotAllowed => "email_domain_not_allowed",
            ErrorCode::InvalidConfirmationCode => "invalid_confirmation_code",
            ErrorCode::TenantSuspended => "tenant_suspended",
            ErrorCode::InvalidLink => "invalid_link",
            ErrorCode::LinkExpired => "link_expired",
            ErrorCode::NotFound => "not_found",
            ErrorCode::TenantNotFound => "tenant_not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::LastAdmin => "last_admin",
            ErrorCode::SlugTaken => "slug_taken",
            ErrorCode::EmailDomainTaken => "email_domain_taken",
            ErrorCode::CapacityExhausted => "capacity_exhausted",
            ErrorCode::PlacementCordoned => "placement_cordoned",
            ErrorCode::PlacementInUse => "placement_in_use",
            ErrorCode::OperationInProgress => "operation_in_progress",
            ErrorCode::TenantNotActive => "tenant_not_active",
            ErrorCode::WrongCell => "wrong_cell",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status this code is always sent with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidJson | ErrorCode::InvalidParameter => 400,
            ErrorCode::Unauthenticated
            | ErrorCode::InvalidCredentials
            | ErrorCode::InvalidRefreshToken
            | ErrorCode::RefreshTokenReused => 401,
            ErrorCode::Forbidden
            | ErrorCode::AccountDisabled
            | ErrorCode::RegistrationClosed
            | ErrorCode::InvalidInvite
            | ErrorCode::InvalidResetToken
            | ErrorCode::EmailDomainNotAllowed
            | ErrorCode::InvalidConfirmationCode
            | ErrorCode::TenantSuspended
            | ErrorCode::InvalidLink
            | ErrorCode::LinkExpired => 403,
            ErrorCode::NotFound | ErrorCode::TenantNotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict
            | ErrorCode::LastAdmin
            | ErrorCode::SlugTaken
            | ErrorCode::EmailDomainTaken
            | ErrorCode::CapacityExhausted
            | ErrorCode::PlacementCordoned
            | ErrorCode::PlacementInUse
            | ErrorCode::OperationInProgress
            | ErrorCode::TenantNotActive => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::WrongCell => 421,
            ErrorCode::ValidationFailed => 422,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error body of every HTTP API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// Human-readable; may change between releases. Match on `code`, not on this.
    pub message: String,
    /// Code-specific structured details (e.g. `fields` for `validation_failed`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: serde_json::Value,
}

/// One field that failed validation, listed under `details.fields` of `validation_failed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct FieldError {
    /// JSON path of the field, e.g. `email` or `tags[3]`.
    pub field: String,
    /// Stable snake_case reason, e.g. `too_short`, `invalid_format`.
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_stable_strings() {
        for code in [
            ErrorCode::WrongCell,
            ErrorCode::ValidationFailed,
            ErrorCode::RefreshTokenReused,
            ErrorCode::PlacementCordoned,
            ErrorCode::PlacementInUse,
            ErrorCode::OperationInProgress,
            ErrorCode::TenantNotActive,
        ] {
            let json = serde_json::to_value(code).expect("serializes");
            assert_eq!(json, code.as_str());
        }
    }
}
