//! `POST /v1/dojos/{id}/live-ticket`: one-time tickets for the live socket, so browsers (which
//! cannot set headers on a WebSocket) need not put an access token in the socket's URL, where
//! proxies and access logs would keep it. A ticket names one dojo, works once, for
//! `live.ticket_ttl` (30 s), and carries the identity of the token that asked for it; the socket then
//! lives by that token's expiry and revocation like any other.

use axum::extract::State;
use axum::http::StatusCode;
use service_kit::ApiError;
use service_kit::extract::{ApiJson, ApiPath};
use service_kit::jwt::Claims;
use service_kit::peer::Caller;
use service_kit::secrets::{random_token, token_hash};
use sqlx::PgPool;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;
use wire_types::ErrorBody;
use wire_types::dojos::LiveTicket;

use crate::state::AppState;

/// A one-time ticket for this dojo's live socket (valid 30 seconds).
#[utoipa::path(post, path = "/v1/dojos/{id}/live-ticket", tag = "dojos", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Dojo id")),
    responses((status = 201, body = LiveTicket), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "Tokens cannot be checked right now; retry after `Retry-After`")))]
pub async fn create_ticket(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, ApiJson<LiveTicket>), ApiError> {
    // Only for a dojo the caller can see (an invite-only one: its participants and admins).
    crate::access::visible(&state, &caller, id).await?;
    let ticket = random_token(32);
    let expires_at = OffsetDateTime::now_utc() + state.config.live.ticket_ttl;
    sqlx::query("DELETE FROM live_tickets WHERE expires_at < now()")
        .execute(&state.pool)
        .await?;
    sqlx::query(
        "INSERT INTO live_tickets (ticket_hash, dojo_id, claims, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(token_hash(&ticket))
    .bind(id)
    .bind(Json(&caller.0))
    .bind(expires_at)
    .execute(&state.pool)
    .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(LiveTicket { ticket, expires_at }),
    ))
}

/// Uses up `ticket` for `dojo`: the claims it was issued to, if it is this dojo's, unused and
/// unexpired.
pub async fn take(pool: &PgPool, dojo: Uuid, ticket: &str) -> sqlx::Result<Option<Claims>> {
    let claims: Option<Json<Claims>> = sqlx::query_scalar(
        "DELETE FROM live_tickets WHERE ticket_hash = $1 AND dojo_id = $2 AND expires_at > now()
         RETURNING claims",
    )
    .bind(token_hash(ticket))
    .bind(dojo)
    .fetch_optional(pool)
    .await?;
    Ok(claims.map(|c| c.0))
}
