//! A dojo's chat history and code snapshots.

use axum::extract::State;
use serde::Deserialize;
use service_kit::ApiError;
use service_kit::extract::{ApiJson, ApiPath, ApiQuery};
use service_kit::peer::Caller;
use uuid::Uuid;
use wire_types::dojos::{ChatPage, SnapshotPage};
use wire_types::{ErrorBody, ErrorCode};

use crate::state::AppState;
use crate::store::{self};

use crate::access::visible;

/// Chat history parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChatParams {
    /// Messages after this `seq` (default: from the start).
    pub after: Option<i64>,
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// Chat history, oldest first.
#[utoipa::path(get, path = "/v1/dojos/{id}/chat", tag = "dojos", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Dojo id"), ChatParams),
    responses((status = 200, body = ChatPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "Tokens cannot be checked right now; retry after `Retry-After`")))]
pub async fn chat_history(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<ChatParams>,
) -> Result<ApiJson<ChatPage>, ApiError> {
    visible(&state, &caller, id).await?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidParameter, "limit: 1–200"));
    }
    let mut items = store::chat_page(
        &state.pool,
        id,
        params.after.unwrap_or(0),
        i64::from(limit) + 1,
    )
    .await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_after = more.then(|| items.last().map(|m| m.seq)).flatten();
    Ok(ApiJson(ChatPage { items, next_after }))
}

/// Snapshot history parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SnapshotParams {
    /// Snapshots before this `seq` (default: the newest).
    pub before: Option<i64>,
    /// Page size, 1–50 (default 10).
    #[param(minimum = 1, maximum = 50)]
    pub limit: Option<u32>,
}

/// Stored versions of the code, newest first (one per compaction of the live document).
#[utoipa::path(get, path = "/v1/dojos/{id}/snapshots", tag = "dojos", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Dojo id"), SnapshotParams),
    responses((status = 200, body = SnapshotPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "Tokens cannot be checked right now; retry after `Retry-After`")))]
pub async fn snapshots(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<SnapshotParams>,
) -> Result<ApiJson<SnapshotPage>, ApiError> {
    visible(&state, &caller, id).await?;
    let limit = params.limit.unwrap_or(10);
    if !(1..=50).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidParameter, "limit: 1–50"));
    }
    let mut items = store::snapshot_page(
        &state.pool,
        id,
        params.before.unwrap_or(i64::MAX),
        i64::from(limit) + 1,
    )
    .await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_before = more.then(|| items.last().map(|s| s.seq)).flatten();
    Ok(ApiJson(SnapshotPage { items, next_before }))
}
