//! Internal API (internal listener, service token): what the cell's other services need.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use service_kit::ApiError;
use service_kit::extract::{ApiJson, ApiPath};
use uuid::Uuid;
use wire_types::auth::TokenVersion;
use wire_types::{ErrorBody, UserId};

use crate::state::AppState;
use crate::store::users;

pub fn router() -> Router<AppState> {
    Router::new().route("/internal/v1/users/{id}/token-version", get(token_version))
}

/// A user's current token version and disabled flag, for revocation checks by dojo and media
/// (which cache the answer for at most 30 s).
#[utoipa::path(get, path = "/internal/v1/users/{id}/token-version", tag = "internal", security(("service_token" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, body = TokenVersion),
        (status = 400, body = ErrorBody),
        (status = 401, description = "Not the cell's service token", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn token_version(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<TokenVersion>, ApiError> {
    let user = users::find(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(ApiJson(TokenVersion {
        user_id: UserId(user.id),
        token_version: user.token_version,
        disabled: user.disabled,
    }))
}
