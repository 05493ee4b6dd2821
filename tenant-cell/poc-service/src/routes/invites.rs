//! `/v1/invites`: admins invite people (optionally bound to an email) with a role.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use service_kit::ApiError;
use service_kit::extract::{ApiJson, ApiPath};
use service_kit::secrets::{random_token, token_hash};
use time::OffsetDateTime;
use uuid::Uuid;
use wire_types::auth::{CreateInviteRequest, Invite, InviteCreated};
use wire_types::{ErrorBody, FieldError};

use super::Admin;
use crate::domain::{Email, Fields};
use crate::state::AppState;
use crate::store::invites;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/invites", get(list_invites).post(create_invite))
        .route("/v1/invites/{id}", delete(revoke_invite))
}

/// Create an invite. The token in the response is shown once; only its hash is stored.
#[utoipa::path(post, path = "/v1/invites", tag = "invites", security(("bearer" = [])), request_body = CreateInviteRequest,
    responses(
        (status = 201, body = InviteCreated),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn create_invite(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiJson(req): ApiJson<CreateInviteRequest>,
) -> Result<(StatusCode, ApiJson<InviteCreated>), ApiError> {
    let mut fields = Fields::default();
    let email = req
        .email
        .as_deref()
        .map(|e| fields.check(Email::parse("email", e)));
    let hours = req.expires_in_hours.unwrap_or(168);
    if !(1..=720).contains(&hours) {
        fields.check::<()>(Err(FieldError::new(
            "expires_in_hours",
            "out_of_range",
            "expires_in_hours must be between 1 and 720",
        )));
    }
    fields.finish().map_err(ApiError::validation)?;
    let email = email.flatten();
    let token = random_token(32);
    let new = invites::NewInvite {
        token_hash: &token_hash(&token),
        email: email.as_ref().map(Email::as_str),
        role: req.role,
        bootstrap: false,
        created_by: Some(admin.id),
        expires_at: OffsetDateTime::now_utc() + Duration::from_secs(u64::from(hours) * 3600),
    };
    let invite = invites::insert(&state.pool, &new).await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(InviteCreated {
            invite: invite.to_wire(),
            token,
        }),
    ))
}

/// Invites, newest first (at most 200; bootstrap invites are not listed).
#[utoipa::path(get, path = "/v1/invites", tag = "invites", security(("bearer" = [])),
    responses((status = 200, body = Vec<Invite>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_invites(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<ApiJson<Vec<Invite>>, ApiError> {
    let rows = invites::list(&state.pool, 200).await?;
    Ok(ApiJson(rows.iter().map(|i| i.to_wire()).collect()))
}

/// Revoke an invite so its token no longer works.
#[utoipa::path(delete, path = "/v1/invites/{id}", tag = "invites", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Invite id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn revoke_invite(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    if invites::revoke(&state.pool, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("invite"))
    }
}
