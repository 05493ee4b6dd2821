//! Credentials on requests: bearer tokens and the internal listener's service token.
//!
//! **Invariant:** the internal listener accepts only the cell's service token; a user's access
//! token (even a valid one) never authenticates there.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, header};
use secrecy::{ExposeSecret, SecretString};

use crate::ApiError;
use crate::secrets::constant_time_eq;

/// The bearer token of `Authorization: Bearer <token>`, if well-formed.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthenticated("missing Authorization header"))?
        .to_str()
        .map_err(|_| ApiError::unauthenticated("malformed Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthenticated("expected `Bearer <token>`"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::unauthenticated("expected `Bearer <token>`"));
    }
    Ok(token)
}

/// The cell's service token, shared by its services for the internal API.
#[derive(Clone, Debug)]
pub struct ServiceToken(pub Arc<SecretString>);

impl ServiceToken {
    pub fn new(token: SecretString) -> Self {
        Self(Arc::new(token))
    }

    /// Whether `presented` is this token (constant time).
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq(self.0.expose_secret(), presented)
    }
}

/// Middleware for the internal listener: 401 unless the bearer token is the service token.
pub async fn require_service_token(
    State(token): State<ServiceToken>,
    req: Request,
    next: Next,
) -> Response {
    match bearer_token(req.headers()) {
        Ok(presented) if token.matches(presented) => next.run(req).await,
        Ok(_) => {
            ApiError::unauthenticated("internal API needs the cell's service token").into_response()
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert!(bearer_token(&h).is_err());
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().expect("valid"));
        assert_eq!(bearer_token(&h).expect("ok"), "abc");
        h.insert(
            header::AUTHORIZATION,
            "bearer  abc ".parse().expect("valid"),
        );
        assert_eq!(bearer_token(&h).expect("ok"), "abc");
        for bad in ["Basic abc", "Bearer", "Bearer ", "abc"] {
            h.insert(header::AUTHORIZATION, bad.parse().expect("valid"));
            assert!(bearer_token(&h).is_err(), "{bad}");
        }
    }
}
