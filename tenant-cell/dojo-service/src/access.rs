//! Who may see and run a dojo: public dojos everyone in the tenant; invite-only dojos their
//! participants; the host runs it; admins see and run everything.

use service_kit::ApiError;
use service_kit::peer::Caller;
use uuid::Uuid;
use wire_types::auth::Role;
use wire_types::dojos::ParticipantRole;

use crate::state::AppState;
use crate::store::{self, DojoRow};

pub(crate) fn is_admin(caller: &Caller) -> bool {
    caller.0.role == Role::Admin
}

/// A dojo the caller may see, with their membership; invisible ones are "not found".
pub(crate) async fn visible(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<(DojoRow, Option<ParticipantRole>), ApiError> {
    let row = store::find(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found("dojo"))?;
    let role = match store::membership(&state.pool, id, caller.0.sub.0).await? {
        Some((role, false)) => Some(role),
        _ => None,
    };
    if row.private && role.is_none() && !is_admin(caller) {
        return Err(ApiError::not_found("dojo"));
    }
    Ok((row, role))
}

/// A dojo the caller runs (host) or administers.
pub(crate) async fn hosted(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<DojoRow, ApiError> {
    let (row, role) = visible(state, caller, id).await?;
    if role != Some(ParticipantRole::Host) && !is_admin(caller) {
        return Err(ApiError::forbidden("only the host or an admin may do this"));
    }
    Ok(row)
}
