//! HTTP routes. Handlers extract, call, and map; rules live in `domain`, SQL in `store`.

mod account;
mod auth;
mod internal;
mod invites;
mod pocs;
mod search_admin;
mod settings;
mod signup;
mod users;

use axum::Router;
use axum::extract::FromRequestParts;
use http::request::Parts;
use service_kit::ApiError;
use service_kit::auth::bearer_token;
use service_kit::jwt::TokenError;
use wire_types::ErrorCode;
use wire_types::auth::Role;

use crate::state::AppState;
use crate::store::users::{self as user_store, UserRow};

pub(crate) use {
    account::*, auth::*, internal::*, invites::*, pocs::*, search_admin::*, settings::*, signup::*,
    users::*,
};

/// Reserves one attempt on a throttle `key` (see `store::throttle`), or answers 429
/// `rate_limited` with `Retry-After` (details `{reason}`) while the key is blocked.
pub(crate) async fn attempt(
    state: &AppState,
    key: &str,
    max: u32,
    reason: &str,
) -> Result<(), ApiError> {
    let t = state.config.throttle;
    match crate::store::throttle::reserve(&state.pool, key, max, t.window, t.block_for).await? {
        Ok(()) => Ok(()),
        Err(wait) => {
            Err(ApiError::rate_limited(wait).with_details(serde_json::json!({ "reason": reason })))
        }
    }
}

/// Routes of the public listener (reached through the router).
pub fn public(state: AppState) -> Router {
    Router::new()
        .merge(auth::router())
        .merge(account::router())
        .merge(users::router())
        .merge(invites::router())
        .merge(settings::router())
        .merge(pocs::router())
        .merge(search_admin::router())
        .with_state(state)
}

/// Routes of the internal listener (service token only).
pub fn internal(state: AppState) -> Router {
    internal::router().with_state(state)
}

/// The authenticated caller: a valid access token for this cell whose user exists, is enabled
/// and still has the token's `token_version`.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub UserRow);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers)?;
        let claims = state.verifier.verify(token).map_err(|e| match e {
            TokenError::Expired => ApiError::unauthenticated("access token expired; refresh it"),
            TokenError::Invalid(_) => ApiError::unauthenticated("invalid access token"),
        })?;
        let user = user_store::find(&state.pool, claims.sub.0)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("invalid access token"))?;
        if user.disabled || user.token_version != claims.token_version {
            return Err(ApiError::unauthenticated(
                "access token was revoked; sign in again",
            ));
        }
        Ok(CurrentUser(user))
    }
}

/// An authenticated admin; members get 403.
#[derive(Debug, Clone)]
pub struct Admin(pub UserRow);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, state).await?;
        if user.role() != Role::Admin {
            return Err(ApiError::new(ErrorCode::Forbidden, "admins only"));
        }
        Ok(Admin(user))
    }
}
