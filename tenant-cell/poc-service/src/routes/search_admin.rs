//! `/v1/admin/search`: index status and rebuild (admins).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use service_kit::ApiError;
use service_kit::extract::ApiJson;
use wire_types::ErrorBody;
use wire_types::pocs::SearchStatus;

use super::Admin;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/search", get(search_status))
        .route("/v1/admin/search/reindex", post(reindex))
}

async fn status(state: &AppState) -> Result<SearchStatus, ApiError> {
    let pending = state.indexer.pending(&state.pool).await?;
    Ok(SearchStatus {
        engine: state.index.engine().to_owned(),
        pending: pending.max(0) as u64,
        indexed_seq: state.indexer.indexed_seq(),
        reindexing: state.indexer.is_reindexing(),
    })
}

/// The search index's engine, backlog and rebuild state.
#[utoipa::path(get, path = "/v1/admin/search", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = SearchStatus), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn search_status(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<ApiJson<SearchStatus>, ApiError> {
    Ok(ApiJson(status(&state).await?))
}

/// Rebuild the search index from Postgres in the background. Searches keep working (they may
/// miss PoCs until the rebuild is done); writes made meanwhile are not lost.
#[utoipa::path(post, path = "/v1/admin/search/reindex", tag = "admin", security(("bearer" = [])),
    responses((status = 202, description = "Rebuild started", body = SearchStatus), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn reindex(
    State(state): State<AppState>,
    Admin(admin): Admin,
) -> Result<(StatusCode, ApiJson<SearchStatus>), ApiError> {
    tracing::info!(admin = %admin.id, "search reindex requested");
    state.indexer.request_reindex();
    Ok((StatusCode::ACCEPTED, ApiJson(status(&state).await?)))
}
