//! `/v1/videos`: the yearly video jobs, their download and thumbnail.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use service_kit::ApiError;
use service_kit::extract::{ApiJson, ApiPath, ApiQuery};
use service_kit::peer::Caller;
use time::OffsetDateTime;
use uuid::Uuid;
use wire_types::media::{CreateVideo, Video, VideoPage};
use wire_types::pocs::tag_array;
use wire_types::{ErrorBody, ErrorCode, FieldError, UserId};

use super::jobs::*;
use super::{poc_error, prefix};
use crate::jobs::year_filter;
use crate::render::video;
use crate::state::AppState;
use crate::store::{self, JobRow, Kind};

pub(crate) fn video_of(state: &AppState, prefix: &str, row: &JobRow) -> Video {
    let request: Option<CreateVideo> = serde_json::from_value(row.params.clone()).ok();
    let year = request.as_ref().map_or(0, |r| r.year);
    Video {
        id: row.id,
        owner_id: UserId(row.owner_id),
        year,
        title: request
            .as_ref()
            .and_then(|r| r.title.clone())
            .unwrap_or_else(|| format!("{year} in PoCs")),
        tags: request.as_ref().map(|r| r.tags.clone()).unwrap_or_default(),
        exclude_tags: request
            .as_ref()
            .map(|r| r.exclude_tags.clone())
            .unwrap_or_default(),
        cards: row.facts["cards"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok()),
        duration_secs: row.facts["duration_secs"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok()),
        status: status(row),
        download: download(state, prefix, row, "video.mp4"),
        thumbnail: download(state, prefix, row, "thumbnail.jpg"),
    }
}

/// Queues the caller's yearly video: an intro card, one card per PoC of that year (name,
/// language, tags, date, repository), an outro with totals; 1280×720 H.264 MP4 at 30 fps, plus
/// a JPEG thumbnail. A year without matching PoCs is refused with 422 (`no_pocs` on `year`).
#[utoipa::path(post, path = "/v1/videos", tag = "videos", security(("bearer" = [])), request_body = CreateVideo,
    responses(
        (status = 202, description = "Queued; `Location` is the job", body = Video),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, description = "Too many jobs in progress or requests this minute; see Retry-After", body = ErrorBody),
        (status = 503, description = "PoC data is briefly unavailable; see Retry-After", body = ErrorBody),
    ))]
pub async fn create_video(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(mut input): ApiJson<CreateVideo>,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    let this_year = OffsetDateTime::now_utc().year();
    if !(2000..=this_year).contains(&input.year) {
        errors.push(FieldError::new(
            "year",
            "out_of_range",
            format!("year must be between 2000 and {this_year}"),
        ));
    }
    if let Some(title) = &input.title {
        let trimmed = title.trim();
        if trimmed.is_empty() || title.chars().count() > 80 || title.chars().any(char::is_control) {
            errors.push(FieldError::new(
                "title",
                "invalid_length",
                "1–80 characters on one line",
            ));
        }
        input.title = Some(trimmed.to_owned());
    }
    input.tags = tag_array("tags", &input.tags, &mut errors);
    input.exclude_tags = tag_array("exclude_tags", &input.exclude_tags, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let owner = caller.0.sub.0;
    let found = state
        .poc
        .aggregates(&year_filter(
            owner,
            input.year,
            &input.tags,
            &input.exclude_tags,
        ))
        .await
        .map_err(poc_error)?;
    if found.total == 0 {
        return Err(ApiError::validation(vec![FieldError::new(
            "year",
            "no_pocs",
            format!("you have no PoCs in {} matching these tags", input.year),
        )]));
    }
    if found.total > state.config.max_video_pocs as u64 {
        return Err(ApiError::validation(vec![FieldError::new(
            "year",
            "too_many_pocs",
            format!(
                "{} PoCs match; a video holds at most {} — narrow it with tags",
                found.total, state.config.max_video_pocs
            ),
        )]));
    }
    let params = serde_json::to_value(&input).map_err(ApiError::internal)?;
    let row = store::insert(&state.pool, Kind::Video, owner, &params, limits(&state))
        .await?
        .map_err(refused)?;
    let p = prefix(&headers);
    let mut body = video_of(&state, &p, &row);
    // Known from the count already; the worker confirms it when it starts.
    let cards = u32::try_from(found.total).unwrap_or(u32::MAX);
    body.cards = Some(cards);
    body.duration_secs = Some(video::duration_secs(cards as usize));
    Ok(accepted(format!("{p}/v1/videos/{}", row.id), body))
}

/// The caller's videos, newest first.
#[utoipa::path(get, path = "/v1/videos", tag = "videos", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = VideoPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_videos(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(p): ApiQuery<PageParams>,
) -> Result<ApiJson<VideoPage>, ApiError> {
    let (rows, next_cursor) = page(&state, Kind::Video, caller.0.sub.0, &p).await?;
    let prefix = prefix(&headers);
    Ok(ApiJson(VideoPage {
        items: rows.iter().map(|r| video_of(&state, &prefix, r)).collect(),
        next_cursor,
    }))
}

/// One of the caller's videos: state, progress, and signed links once completed.
#[utoipa::path(get, path = "/v1/videos/{id}", tag = "videos", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Video id")),
    responses((status = 200, body = Video), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_video(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<Video>, ApiError> {
    let row = store::find(&state.pool, Kind::Video, caller.0.sub.0, id)
        .await?
        .ok_or_else(|| ApiError::not_found("video"))?;
    Ok(ApiJson(video_of(&state, &prefix(&headers), &row)))
}

/// Deletes a video, its MP4 and thumbnail (cancelling it if it is still rendering).
#[utoipa::path(delete, path = "/v1/videos/{id}", tag = "videos", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Video id")),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_video(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    remove(&state, Kind::Video, caller.0.sub.0, id).await
}

/// Cancels a pending or rendering video.
#[utoipa::path(post, path = "/v1/videos/{id}/cancel", tag = "videos", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Video id")),
    responses((status = 200, body = Video), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Already completed or failed", body = ErrorBody)))]
pub async fn cancel_video(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<Video>, ApiError> {
    let row = cancel(&state, Kind::Video, caller.0.sub.0, id).await?;
    Ok(ApiJson(video_of(&state, &prefix(&headers), &row)))
}

pub(crate) async fn redirect(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    id: Uuid,
    file: &str,
) -> Result<Response, ApiError> {
    let row = store::find(&state.pool, Kind::Video, caller.0.sub.0, id)
        .await?
        .ok_or_else(|| ApiError::not_found("video"))?;
    let link = download(state, &prefix(headers), &row, file).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Conflict,
            format!("the video is {}, not completed", row.state().as_str()),
        )
    })?;
    let mut res = StatusCode::FOUND.into_response();
    res.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&link.url).map_err(ApiError::internal)?,
    );
    Ok(res)
}

/// Redirects (302) to a fresh signed link of the MP4.
#[utoipa::path(get, path = "/v1/videos/{id}/download", tag = "videos", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Video id")),
    responses((status = 302, description = "`Location` is a signed link"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Not completed", body = ErrorBody)))]
pub async fn download_video(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    redirect(&state, &caller, &headers, id, "video.mp4").await
}

/// Redirects (302) to a fresh signed link of the JPEG thumbnail.
#[utoipa::path(get, path = "/v1/videos/{id}/thumbnail", tag = "videos", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Video id")),
    responses((status = 302, description = "`Location` is a signed link"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Not completed", body = ErrorBody)))]
pub async fn video_thumbnail(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    redirect(&state, &caller, &headers, id, "thumbnail.jpg").await
}
