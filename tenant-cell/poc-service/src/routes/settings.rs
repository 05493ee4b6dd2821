//! `/v1/settings`: cell-wide account settings.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use service_kit::ApiError;
use service_kit::extract::ApiJson;
use wire_types::ErrorBody;
use wire_types::auth::{Settings, UpdateSettingsRequest};

use super::{Admin, CurrentUser};
use crate::state::AppState;
use crate::store::settings;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/settings", get(get_settings).patch(update_settings))
}

/// The cell's account settings (any signed-in user).
#[utoipa::path(get, path = "/v1/settings", tag = "settings", security(("bearer" = [])),
    responses((status = 200, body = Settings), (status = 401, body = ErrorBody)))]
pub async fn get_settings(
    State(state): State<AppState>,
    _user: CurrentUser,
) -> Result<ApiJson<Settings>, ApiError> {
    Ok(ApiJson(settings::get(&state.pool).await?))
}

/// Change the cell's account settings (admins): `registration` is `open` or `invite_only`.
#[utoipa::path(patch, path = "/v1/settings", tag = "settings", security(("bearer" = [])), request_body = UpdateSettingsRequest,
    responses(
        (status = 200, body = Settings),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 415, body = ErrorBody),
    ))]
pub async fn update_settings(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiJson(req): ApiJson<UpdateSettingsRequest>,
) -> Result<ApiJson<Settings>, ApiError> {
    let current = match req.registration {
        Some(mode) => {
            tracing::info!(admin = %admin.id, registration = mode.as_str(), "settings changed");
            settings::set_registration(&state.pool, mode).await?
        }
        None => settings::get(&state.pool).await?,
    };
    Ok(ApiJson(current))
}
