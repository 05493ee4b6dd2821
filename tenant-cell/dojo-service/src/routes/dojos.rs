//! Dojos: create, list, read, join by code, end.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use service_kit::ApiError;
use service_kit::extract::{ApiJson, ApiPath, ApiQuery};
use service_kit::peer::Caller;
use time::OffsetDateTime;
use uuid::Uuid;
use wire_types::dojos::{
    CreateDojo, Dojo, DojoDetail, DojoPage, JoinDojo, Participant, ParticipantRole,
};
use wire_types::{ErrorBody, ErrorCode, FieldError, UserId};

use crate::room::initial_state;
use crate::state::AppState;
use crate::store::{self, DojoRow, Listing};

use crate::access::{hosted, is_admin, visible};
use crate::domain::validate;

pub(crate) fn join_code() -> Result<String, ApiError> {
    // 10 characters from 32 unambiguous ones: 50 bits.
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 10];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::internal(anyhow::anyhow!("{e}")))?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
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
    let language = params
        .language
        .map(|l| wire_types::rules::lowercase(l.trim()));
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
