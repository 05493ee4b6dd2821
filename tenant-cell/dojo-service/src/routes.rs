//! `/v1/dojos`: create, list, read, join by code, end, remove a participant, chat history and
//! code snapshots. Who sees what: public dojos everyone in the tenant; invite-only dojos their
//! participants; admins everything.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use service_kit::ApiError;
use service_kit::extract::{ApiJson, ApiPath, ApiQuery};
use service_kit::revocation::Caller;
use time::OffsetDateTime;
use uuid::Uuid;
use wire_types::auth::Role;
use wire_types::dojos::{
    ChatPage, CreateDojo, Dojo, DojoDetail, DojoPage, JoinDojo, Participant, ParticipantRole,
    SnapshotPage,
};
use wire_types::{ErrorBody, ErrorCode, FieldError, UserId};

use crate::room::initial_state;
use crate::state::AppState;
use crate::store::{self, DojoRow, Listing};

pub fn public(state: AppState) -> Router {
    Router::new()
        .route("/v1/dojos", get(list_dojos).post(create_dojo))
        .route("/v1/dojos/join", post(join_dojo))
        .route("/v1/dojos/{id}", get(get_dojo))
        .route("/v1/dojos/{id}/end", post(end_dojo))
        .route(
            "/v1/dojos/{id}/participants/{user_id}",
            delete(remove_participant),
        )
        .route("/v1/dojos/{id}/chat", get(chat_history))
        .route("/v1/dojos/{id}/snapshots", get(snapshots))
        .route("/v1/dojos/{id}/live", get(crate::live::live))
        .route(
            "/v1/dojos/{id}/live-ticket",
            post(crate::tickets::create_ticket),
        )
        .with_state(state)
}

/// Routes of the internal listener (service token only).
pub fn internal(state: AppState) -> Router {
    Router::new()
        .route("/internal/v1/rooms", get(rooms))
        .with_state(state)
}

/// What is loaded in this instance: rooms and live connections (for operators).
async fn rooms(State(state): State<AppState>) -> ApiJson<wire_types::dojos::RoomTotals> {
    let (rooms, connections) = state.rooms.totals().await;
    ApiJson(wire_types::dojos::RoomTotals {
        rooms: u64::try_from(rooms).unwrap_or(u64::MAX),
        connections,
    })
}

fn is_admin(caller: &Caller) -> bool {
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

fn join_code() -> Result<String, ApiError> {
    // 10 characters from 32 unambiguous ones: 50 bits.
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 10];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::internal(anyhow::anyhow!("{e}")))?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

/// Control characters are refused (Postgres cannot store NUL, and names are single lines);
/// multi-line fields keep newlines and tabs.
fn has_control(text: &str, multiline: bool) -> bool {
    text.chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
}

fn validate(input: &CreateDojo) -> Result<(String, u32), Vec<FieldError>> {
    let mut errors = Vec::new();
    for (field, text, multiline) in [
        ("name", &input.name, false),
        ("language", &input.language, false),
        ("description", &input.description, true),
        ("initial_code", &input.initial_code, true),
    ] {
        if has_control(text, multiline) {
            errors.push(FieldError::new(
                field,
                "control_characters",
                "contains control characters",
            ));
        }
    }
    // Lengths apply to what was sent, as the OpenAPI document states.
    if input.name.trim().is_empty() || input.name.chars().count() > 120 {
        errors.push(FieldError::new(
            "name",
            "invalid_length",
            "1–120 characters",
        ));
    }
    if input.description.chars().count() > 2000 {
        errors.push(FieldError::new(
            "description",
            "too_long",
            "at most 2000 characters",
        ));
    }
    let language = input.language.trim().to_lowercase();
    if language.is_empty() || input.language.chars().count() > 32 {
        errors.push(FieldError::new(
            "language",
            "invalid_length",
            "1–32 characters",
        ));
    }
    let max = input.max_participants.unwrap_or(50);
    if !(2..=500).contains(&max) {
        errors.push(FieldError::new(
            "max_participants",
            "out_of_range",
            "between 2 and 500",
        ));
    }
    if input.initial_code.chars().count() > 50_000 {
        errors.push(FieldError::new(
            "initial_code",
            "too_long",
            "at most 50000 characters",
        ));
    }
    if errors.is_empty() {
        Ok((language, max))
    } else {
        Err(errors)
    }
}

/// Create a dojo; the caller hosts it.
#[utoipa::path(post, path = "/v1/dojos", tag = "dojos", security(("bearer" = [])), request_body = CreateDojo,
    responses(
        (status = 201, body = Dojo, headers(("Location" = String, description = "URL of the new dojo"))),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "Tokens cannot be checked right now; retry after `Retry-After`"),
    ))]
pub async fn create_dojo(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<CreateDojo>,
) -> Result<(StatusCode, HeaderMap, ApiJson<Dojo>), ApiError> {
    let (language, max) = validate(&input).map_err(ApiError::validation)?;
    let now = OffsetDateTime::now_utc();
    let row = DojoRow {
        id: Uuid::now_v7(),
        name: input.name.trim().to_owned(),
        description: input.description.clone(),
        language,
        host_id: caller.0.sub.0,
        max_participants: i32::try_from(max).unwrap_or(50),
        private: input.private,
        join_code: join_code()?,
        scheduled_start: input.scheduled_start.filter(|s| *s > now).unwrap_or(now),
        created_at: now,
        ended_at: None,
    };
    store::create(
        &state.pool,
        &row,
        &initial_state(&input.initial_code),
        &input.initial_code,
    )
    .await?;
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/dojos/{}", row.id)) {
        headers.insert(header::LOCATION, location);
    }
    Ok((
        StatusCode::CREATED,
        headers,
        ApiJson(row.to_wire(Some(ParticipantRole::Host), is_admin(&caller), 0)),
    ))
}

/// Listing parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `active`, `upcoming`, or both (the default).
    #[param(inline)]
    pub status: Option<ListStatus>,
    /// Only this language (case-insensitive).
    #[param(max_length = 32, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$")]
    pub language: Option<String>,
    /// From a previous page's `next_cursor`.
    #[param(
        pattern = r"^[0-9]{1,19}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    )]
    pub cursor: Option<String>,
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListStatus {
    Active,
    Upcoming,
}

/// Active and upcoming dojos the caller can see, soonest first.
#[utoipa::path(get, path = "/v1/dojos", tag = "dojos", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = DojoPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "Tokens cannot be checked right now; retry after `Retry-After`")))]
pub async fn list_dojos(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<ApiJson<DojoPage>, ApiError> {
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidParameter, "limit: 1–100"));
    }
    let after = match params.cursor.as_deref() {
        Some(cursor) => Some(
            service_kit::cursor::decode(cursor)
                .ok_or_else(|| ApiError::new(ErrorCode::InvalidParameter, "cursor: not ours"))?,
        ),
        None => None,
    };
    let listing = match params.status {
        Some(ListStatus::Active) => Listing::Active,
        Some(ListStatus::Upcoming) => Listing::Upcoming,
        None => Listing::Open,
    };
    if params
        .language
        .as_ref()
        .is_some_and(|l| l.chars().any(char::is_control))
    {
        // Postgres cannot even compare text holding NUL: refuse it here (it was a 500).
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "language: no control characters",
        ));
    }
    if params
        .language
        .as_ref()
        .is_some_and(|l| l.chars().count() > 32)
    {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "language: at most 32 characters",
        ));
    }
    let language = params.language.map(|l| l.trim().to_lowercase());
    let mut rows = store::list(
        &state.pool,
        caller.0.sub.0,
        is_admin(&caller),
        listing,
        language.as_deref(),
        after,
        i64::from(limit) + 1,
    )
    .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last())
        .flatten()
        .map(|(r, _)| service_kit::cursor::encode(r.scheduled_start, r.id));
    let mut items = Vec::with_capacity(rows.len());
    for (row, role) in rows {
        let (online, _) = state.rooms.online(row.id).await;
        items.push(row.to_wire(role, is_admin(&caller), online));
    }
    Ok(ApiJson(DojoPage { items, next_cursor }))
}

/// One dojo with its participants and who is online.
#[utoipa::path(get, path = "/v1/dojos/{id}", tag = "dojos", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Dojo id")),
    responses((status = 200, body = DojoDetail), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "Tokens cannot be checked right now; retry after `Retry-After`")))]
pub async fn get_dojo(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<DojoDetail>, ApiError> {
    let (row, role) = visible(&state, &caller, id).await?;
    let (online, users) = state.rooms.online(id).await;
    let participants = store::participants(&state.pool, id)
        .await?
        .into_iter()
        .map(|(user, role, joined_at)| Participant {
            user_id: UserId(user),
            role,
            joined_at,
            online: users.contains(&user),
        })
        .collect();
    Ok(ApiJson(DojoDetail {
        dojo: row.to_wire(role, is_admin(&caller), online),
        participants,
    }))
}

/// Join a dojo with its join code (the way into invite-only dojos).
#[utoipa::path(post, path = "/v1/dojos/join", tag = "dojos", security(("bearer" = [])), request_body = JoinDojo,
    responses((status = 200, body = Dojo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "Removed from this dojo by its host"),
        (status = 404, body = ErrorBody, description = "No dojo has this code"),
        (status = 409, body = ErrorBody, description = "The dojo has ended"),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "Tokens cannot be checked right now; retry after `Retry-After`")))]
pub async fn join_dojo(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<JoinDojo>,
) -> Result<ApiJson<Dojo>, ApiError> {
    let code = input.join_code.trim().to_uppercase();
    if code.is_empty() || input.join_code.chars().count() > 32 {
        return Err(ApiError::validation(vec![FieldError::new(
            "join_code",
            "invalid_length",
            "1–32 characters",
        )]));
    }
    let row = store::find_by_code(&state.pool, &code)
        .await?
        .ok_or_else(|| ApiError::not_found("dojo"))?;
    if row.ended_at.is_some() {
        return Err(ApiError::new(ErrorCode::Conflict, "the dojo has ended"));
    }
    let wanted = if input.observer {
        ParticipantRole::Observer
    } else {
        ParticipantRole::Editor
    };
    let (role, removed) = store::join(&state.pool, row.id, caller.0.sub.0, wanted).await?;
    if removed {
        return Err(ApiError::forbidden("removed from this dojo by its host"));
    }
    let (online, _) = state.rooms.online(row.id).await;
    Ok(ApiJson(row.to_wire(Some(role), is_admin(&caller), online)))
}

/// A dojo the caller runs (host) or administers.
async fn hosted(state: &AppState, caller: &Caller, id: Uuid) -> Result<DojoRow, ApiError> {
    let (row, role) = visible(state, caller, id).await?;
    if role != Some(ParticipantRole::Host) && !is_admin(caller) {
        return Err(ApiError::forbidden("only the host or an admin may do this"));
    }
    Ok(row)
}

/// End a dojo (host or admin): everyone is disconnected; history stays readable.
#[utoipa::path(post, path = "/v1/dojos/{id}/end", tag = "dojos", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Dojo id")),
    responses((status = 200, body = Dojo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "Tokens cannot be checked right now; retry after `Retry-After`")))]
pub async fn end_dojo(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<Dojo>, ApiError> {
    hosted(&state, &caller, id).await?;
    store::end(&state.pool, id).await?;
    state.rooms.end(id).await;
    let (row, role) = visible(&state, &caller, id).await?;
    Ok(ApiJson(row.to_wire(role, is_admin(&caller), 0)))
}

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
