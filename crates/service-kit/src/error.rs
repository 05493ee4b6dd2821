//! `ApiError`: the one error type handlers return, rendered as the shared `{code, message,
//! details}` body.
//!
//! **Invariant:** 5xx bodies are generic; their cause chain is logged (inside the request span,
//! so it carries the request id) and never sent to the client.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use wire_types::{ErrorBody, ErrorCode, FieldError};

/// An error a handler returns.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Value,
    /// Sent as `Retry-After` (whole seconds, rounded up) with 429 and 503.
    pub retry_after: Option<Duration>,
    /// Internal cause, logged for 5xx, never rendered.
    pub source: Option<anyhow::Error>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Value::Object(Default::default()),
            retry_after: None,
            source: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// 422 with per-field details.
    pub fn validation(fields: Vec<FieldError>) -> Self {
        let message = match fields.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            _ => format!("{} fields are invalid", fields.len()),
        };
        Self::new(ErrorCode::ValidationFailed, message).with_details(json!({ "fields": fields }))
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    pub fn rate_limited(retry_after: Duration) -> Self {
        Self::new(ErrorCode::RateLimited, "too many requests").with_retry_after(retry_after)
    }

    pub fn unavailable(message: impl Into<String>, retry_after: Duration) -> Self {
        Self::new(ErrorCode::Unavailable, message).with_retry_after(retry_after)
    }

    /// A bug or an infrastructure failure: 500 with a generic message; `cause` is logged.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        let mut e = Self::new(ErrorCode::Internal, "internal error");
        e.source = Some(cause.into());
        e
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<sqlx::Error> for ApiError {
    /// Database failures the handler did not map itself: pool exhaustion, lost connections, a
    /// server shutting down, restarting or recovering (SQLSTATE classes 08 and 57P) and one
    /// out of resources — a full disk, memory, connections (class 53) — are unavailability
    /// (503, retry), everything else is a bug (500).
    fn from(err: sqlx::Error) -> Self {
        let unavailable = match &err {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| unavailable_sqlstate(&code)),
            _ => false,
        };
        match err {
            _ if unavailable => {
                let mut e = ApiError::unavailable("database unavailable", Duration::from_secs(1));
                e.source = Some(err.into());
                e
            }
            other => ApiError::internal(other),
        }
    }
}

/// Whether a SQLSTATE says the database cannot serve now, rather than that the request or
/// the code is wrong: connection exceptions (08), operator intervention — shutdown, crash
/// recovery (57P) — and insufficient resources — disk full, out of memory, too many
/// connections (53).
pub fn unavailable_sqlstate(code: &str) -> bool {
    ["08", "57P", "53"]
        .iter()
        .any(|class| code.starts_with(class))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            match &self.source {
                Some(cause) => tracing::error!(code = %self.code, error = ?cause, "request failed"),
                None => {
                    tracing::error!(code = %self.code, message = %self.message, "request failed")
                }
            }
        }
        let body = ErrorBody {
            code: self.code,
            message: self.message,
            details: self.details,
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750: a 401 names the scheme the client should use.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(after) = self.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            if let Ok(value) = HeaderValue::from_str(&secs.max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_out_of_service_or_resources_is_unavailable_and_a_bad_query_is_not() {
        for code in ["08006", "57P01", "57P03", "53100", "53200", "53300"] {
            assert!(unavailable_sqlstate(code), "{code}");
        }
        for code in ["23505", "42P01", "22P02", "40001", "57014"] {
            assert!(!unavailable_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let response = ApiError::rate_limited(Duration::from_millis(1500)).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn pool_timeouts_are_overload_not_bugs() {
        let e = ApiError::from(sqlx::Error::PoolTimedOut);
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.retry_after.is_some());
    }
}
