//! A dojo's participants: the host or an admin removes one.

use axum::extract::State;
use axum::http::StatusCode;
use service_kit::ApiError;
use service_kit::extract::ApiPath;
use service_kit::peer::Caller;
use uuid::Uuid;
use wire_types::ErrorBody;

use crate::state::AppState;
use crate::store::{self};

use crate::access::hosted;

/// Remove a participant (host or admin): their sockets are closed (4003) and the code no
/// longer lets them in.
#[utoipa::path(delete, path = "/v1/dojos/{id}/participants/{user_id}", tag = "dojos", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Dojo id"), ("user_id" = Uuid, Path, description = "The participant")),
    responses((status = 204, description = "Removed"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "No such dojo, or the user is not a participant (the host cannot be removed)"),
        (status = 503, body = ErrorBody, description = "Tokens cannot be checked right now; retry after `Retry-After`")))]
pub async fn remove_participant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, user)): ApiPath<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    hosted(&state, &caller, id).await?;
    if !store::remove(&state.pool, id, user).await? {
        return Err(ApiError::not_found("participant"));
    }
    state.rooms.kick(id, user).await;
    Ok(StatusCode::NO_CONTENT)
}
