//! `/v1/reports`, `/v1/videos`, `/v1/media/files`: the dashboard, report and video jobs, and
//! downloads by signed link. A job belongs to the user who asked for it: anyone else (another
//! user, an admin, another cell) gets 404.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use service_kit::ApiError;
use service_kit::extract::{ApiJson, ApiPath, ApiQuery};
use service_kit::revocation::Caller;
use time::OffsetDateTime;
use uuid::Uuid;
use wire_types::media::{
    CreateReport, CreateVideo, Dashboard, Download, JobError, JobState, JobStatus, QueueDepth,
    Report, ReportPage, Video, VideoPage,
};
use wire_types::pocs::{tag_array, tag_query};
use wire_types::{ErrorBody, ErrorCode, FieldError, UserId};

use crate::artifacts::{FILE_NAMES, LinkError};
use crate::jobs::year_filter;
use crate::poc::{Filter, PocError};
use crate::render::video;
use crate::state::AppState;
use crate::store::{self, JobRow, Kind, Refusal, UserLimits};

pub fn public(state: AppState) -> Router {
    Router::new()
        .route("/v1/reports/dashboard", get(dashboard))
        .route("/v1/reports", get(list_reports).post(create_report))
        .route("/v1/reports/{id}", get(get_report).delete(delete_report))
        .route("/v1/reports/{id}/cancel", post(cancel_report))
        .route("/v1/videos", get(list_videos).post(create_video))
        .route("/v1/videos/{id}", get(get_video).delete(delete_video))
        .route("/v1/videos/{id}/cancel", post(cancel_video))
        .route("/v1/videos/{id}/download", get(download_video))
        .route("/v1/videos/{id}/thumbnail", get(video_thumbnail))
        .route("/v1/media/files/{id}/{file}", get(file))
        .with_state(state)
}

/// Routes of the internal listener (service token only).
pub fn internal(state: AppState) -> Router {
    Router::new()
        .route("/internal/v1/jobs", get(queue))
        .with_state(state)
}

/// Jobs waiting and running (for operators).
async fn queue(State(state): State<AppState>) -> Result<ApiJson<QueueDepth>, ApiError> {
    let depth = store::depth(&state.pool).await?;
    Ok(ApiJson(QueueDepth(
        depth
            .into_iter()
            .map(|(k, n)| (k, u64::try_from(n).unwrap_or(0)))
            .collect(),
    )))
}

/// `/t/<slug>` when the client reached the cell by path through the router, else empty.
fn prefix(headers: &HeaderMap) -> String {
    headers
        .get("x-forwarded-prefix")
        .and_then(|v| v.to_str().ok())
        .filter(|p| {
            p.strip_prefix("/t/").is_some_and(|slug| {
                !slug.is_empty()
                    && slug.len() <= 63
                    && slug
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            })
        })
        .unwrap_or_default()
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// Validation shared by the dashboard, reports and videos.

fn parse_day(field: &str, raw: &str, errors: &mut Vec<FieldError>) -> Option<time::Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    match time::Date::parse(raw, &format) {
        Ok(d) if (2000..=2100).contains(&d.year()) => Some(d),
        _ => {
            errors.push(FieldError::new(
                field,
                "invalid_format",
                format!("{field} must be a date YYYY-MM-DD between 2000 and 2100"),
            ));
            None
        }
    }
}

fn range(from: Option<&str>, to: Option<&str>, errors: &mut Vec<FieldError>) {
    let f = from.and_then(|v| parse_day("from", v, errors));
    let t = to.and_then(|v| parse_day("to", v, errors));
    if let (Some(f), Some(t)) = (f, t)
        && f > t
    {
        errors.push(FieldError::new(
            "to",
            "out_of_range",
            "to must not be before from",
        ));
    }
}

fn poc_error(e: PocError) -> ApiError {
    match e {
        PocError::Refused { status: 422, body } => {
            ApiError::new(ErrorCode::ValidationFailed, body.message).with_details(body.details)
        }
        PocError::Refused { status: 403, .. } => {
            ApiError::new(ErrorCode::AccountDisabled, "the account is disabled")
        }
        PocError::Refused { .. } | PocError::Unavailable(_) => {
            tracing::warn!(error = %e, "poc-service did not answer");
            ApiError::unavailable(
                "PoC data is unavailable; retry shortly",
                Duration::from_secs(5),
            )
        }
        PocError::TooMany(_) => ApiError::new(ErrorCode::ValidationFailed, e.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Dashboard.

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DashboardParams {
    /// First day included, `YYYY-MM-DD` (UTC, years 2000–2100).
    #[param(format = Date, pattern = r"^(20[0-9]{2}|2100)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    pub from: Option<String>,
    /// Last day included, `YYYY-MM-DD` (UTC, years 2000–2100), not before `from`.
    #[param(format = Date, pattern = r"^(20[0-9]{2}|2100)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    pub to: Option<String>,
    /// Comma-separated; PoCs must carry all of them (at most 20 tags).
    pub tags: Option<String>,
    /// Comma-separated; PoCs carrying any of them are left out (at most 20 tags).
    pub exclude_tags: Option<String>,
}

/// Figures for the apps' dashboard over the PoCs the caller may see: totals and counts per
/// language, tag, month and contributor. Computed by poc-service in its database.
#[utoipa::path(get, path = "/v1/reports/dashboard", tag = "reports", security(("bearer" = [])), params(DashboardParams),
    responses(
        (status = 200, body = Dashboard),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 503, description = "PoC data is briefly unavailable; see Retry-After", body = ErrorBody),
    ))]
pub async fn dashboard(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(p): ApiQuery<DashboardParams>,
) -> Result<ApiJson<Dashboard>, ApiError> {
    let mut errors = Vec::new();
    range(p.from.as_deref(), p.to.as_deref(), &mut errors);
    let with_tags = tag_query("tags", p.tags.as_deref(), &mut errors);
    let exclude_tags = tag_query("exclude_tags", p.exclude_tags.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let a = state
        .poc
        .aggregates(&Filter {
            visible_to: caller.0.sub.0,
            owner: None,
            from: p.from.clone(),
            to: p.to.clone(),
            tags: with_tags,
            exclude_tags,
        })
        .await
        .map_err(poc_error)?;
    let mut by_month = a.by_month;
    by_month.sort_by(|x, y| x.key.cmp(&y.key));
    Ok(ApiJson(Dashboard {
        from: p.from,
        to: p.to,
        total: a.total,
        languages: a.by_language.len() as u64,
        by_language: a.by_language,
        by_tag: a.by_tag,
        by_month,
        by_user: a.by_owner,
    }))
}

// ---------------------------------------------------------------------------------------------
// Jobs in common.

fn refused(r: Refusal) -> ApiError {
    let (after, message) = match r {
        Refusal::TooManyActive(n) => (
            Duration::from_secs(30),
            format!("you have {n} reports or videos in progress; wait for one to finish"),
        ),
        Refusal::TooManyPerMinute(n) => (
            Duration::from_secs(60),
            format!("{n} requests in the last minute; retry later"),
        ),
    };
    let mut e = ApiError::rate_limited(after);
    e.message = message;
    e
}

fn limits(state: &AppState) -> UserLimits {
    UserLimits {
        active: state.config.jobs.user_active,
        per_minute: state.config.jobs.user_per_minute,
    }
}

fn status(row: &JobRow) -> JobStatus {
    JobStatus {
        state: row.state(),
        progress: u8::try_from(row.progress.clamp(0, 100)).unwrap_or(0),
        attempts: u32::try_from(row.attempts.max(0)).unwrap_or(0),
        error: row.error_code.as_ref().map(|code| JobError {
            code: code.clone(),
            message: row.error_message.clone().unwrap_or_default(),
        }),
        created_at: row.created_at,
        finished_at: row.finished_at,
    }
}

/// A signed link to one of a completed job's files.
fn download(state: &AppState, prefix: &str, row: &JobRow, file: &str) -> Option<Download> {
    if row.state() != JobState::Completed {
        return None;
    }
    let artifact = row.artifacts.get(file)?;
    let (url, expires_at) = state.artifacts.link(prefix, row.id, file);
    Some(Download {
        url,
        expires_at,
        content_type: artifact["content_type"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        bytes: artifact["bytes"].as_u64().unwrap_or_default(),
    })
}

fn main_file(row: &JobRow) -> Option<String> {
    let files = row.artifacts.as_object()?;
    FILE_NAMES
        .iter()
        .find(|f| f.starts_with("report.") && files.contains_key(**f))
        .map(|f| (*f).to_owned())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// From a previous page's `next_cursor`.
    #[param(
        pattern = r"^[0-9]{1,19}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    )]
    pub cursor: Option<String>,
    /// 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

async fn page(
    state: &AppState,
    kind: Kind,
    owner: Uuid,
    p: &PageParams,
) -> Result<(Vec<JobRow>, Option<String>), ApiError> {
    let limit = p.limit.unwrap_or(20);
    let mut errors = Vec::new();
    if !(1..=100).contains(&limit) {
        errors.push(FieldError::new(
            "limit",
            "out_of_range",
            "limit must be between 1 and 100",
        ));
    }
    let after = service_kit::cursor::param(p.cursor.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let mut rows = store::list(&state.pool, kind, owner, after, i64::from(limit) + 1).await?;
    let next = (rows.len() > limit as usize)
        .then(|| {
            rows.truncate(limit as usize);
            rows.last()
                .map(|r| service_kit::cursor::encode(r.created_at, r.id))
        })
        .flatten();
    Ok((rows, next))
}

async fn remove(
    state: &AppState,
    kind: Kind,
    owner: Uuid,
    id: Uuid,
) -> Result<StatusCode, ApiError> {
    let row = store::delete(&state.pool, kind, owner, id)
        .await?
        .ok_or_else(|| ApiError::not_found(kind.as_str()))?;
    if let Some(files) = row.artifacts.as_object() {
        for artifact in files.values() {
            if let Some(key) = artifact["key"].as_str()
                && let Err(e) = state.artifacts.delete(key).await
            {
                // Tracked, so the sweeper removes it later.
                tracing::warn!(key, error = %e, "deleting an artifact failed");
                let _ = store::track_objects(&state.pool, id, &[key.to_owned()]).await;
            }
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn cancel(state: &AppState, kind: Kind, owner: Uuid, id: Uuid) -> Result<JobRow, ApiError> {
    let row = store::cancel(&state.pool, kind, owner, id)
        .await?
        .ok_or_else(|| ApiError::not_found(kind.as_str()))?;
    match row.state() {
        JobState::Cancelled => Ok(row),
        s => Err(ApiError::new(
            ErrorCode::Conflict,
            format!("the {} is already {}", kind.as_str(), s.as_str()),
        )),
    }
}

fn accepted<T: wire_types::Wire>(location: String, body: T) -> Response {
    let mut res = (StatusCode::ACCEPTED, ApiJson(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

// ---------------------------------------------------------------------------------------------
// Reports.

fn report(state: &AppState, prefix: &str, row: &JobRow) -> Report {
    let request: Option<CreateReport> = serde_json::from_value(row.params.clone()).ok();
    let file = main_file(row);
    Report {
        id: row.id,
        owner_id: UserId(row.owner_id),
        format: request
            .as_ref()
            .map_or(wire_types::media::ReportFormat::Json, |r| r.format),
        group_by: request.as_ref().map(|r| r.group_by).unwrap_or_default(),
        from: request.as_ref().and_then(|r| r.from.clone()),
        to: request.as_ref().and_then(|r| r.to.clone()),
        tags: request.as_ref().map(|r| r.tags.clone()).unwrap_or_default(),
        exclude_tags: request
            .as_ref()
            .map(|r| r.exclude_tags.clone())
            .unwrap_or_default(),
        status: status(row),
        download: file.and_then(|f| download(state, prefix, row, &f)),
    }
}

/// Queues a report over the PoCs the caller may see (PDF with summary figures, a chart and the
/// table; CSV with one row per PoC; or JSON). Answers 202 with the job; poll it for progress.
#[utoipa::path(post, path = "/v1/reports", tag = "reports", security(("bearer" = [])), request_body = CreateReport,
    responses(
        (status = 202, description = "Queued; `Location` is the job", body = Report),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, description = "Too many jobs in progress or requests this minute; see Retry-After", body = ErrorBody),
    ))]
pub async fn create_report(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(mut input): ApiJson<CreateReport>,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    range(input.from.as_deref(), input.to.as_deref(), &mut errors);
    input.tags = tag_array("tags", &input.tags, &mut errors);
    input.exclude_tags = tag_array("exclude_tags", &input.exclude_tags, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let params = serde_json::to_value(&input).map_err(ApiError::internal)?;
    let row = store::insert(
        &state.pool,
        Kind::Report,
        caller.0.sub.0,
        &params,
        limits(&state),
    )
    .await?
    .map_err(refused)?;
    let p = prefix(&headers);
    Ok(accepted(
        format!("{p}/v1/reports/{}", row.id),
        report(&state, &p, &row),
    ))
}

/// The caller's reports, newest first.
#[utoipa::path(get, path = "/v1/reports", tag = "reports", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = ReportPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_reports(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(p): ApiQuery<PageParams>,
) -> Result<ApiJson<ReportPage>, ApiError> {
    let (rows, next_cursor) = page(&state, Kind::Report, caller.0.sub.0, &p).await?;
    let prefix = prefix(&headers);
    Ok(ApiJson(ReportPage {
        items: rows.iter().map(|r| report(&state, &prefix, r)).collect(),
        next_cursor,
    }))
}

/// One of the caller's reports: state, progress, and a signed download link once completed.
#[utoipa::path(get, path = "/v1/reports/{id}", tag = "reports", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Report id")),
    responses((status = 200, body = Report), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_report(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<Report>, ApiError> {
    let row = store::find(&state.pool, Kind::Report, caller.0.sub.0, id)
        .await?
        .ok_or_else(|| ApiError::not_found("report"))?;
    Ok(ApiJson(report(&state, &prefix(&headers), &row)))
}

/// Deletes a report and its file (cancelling it if it is still running).
#[utoipa::path(delete, path = "/v1/reports/{id}", tag = "reports", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Report id")),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_report(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    remove(&state, Kind::Report, caller.0.sub.0, id).await
}

/// Cancels a pending or running report.
#[utoipa::path(post, path = "/v1/reports/{id}/cancel", tag = "reports", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Report id")),
    responses((status = 200, body = Report), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Already completed or failed", body = ErrorBody)))]
pub async fn cancel_report(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<Report>, ApiError> {
    let row = cancel(&state, Kind::Report, caller.0.sub.0, id).await?;
    Ok(ApiJson(report(&state, &prefix(&headers), &row)))
}

// ---------------------------------------------------------------------------------------------
// Videos.

fn video_of(state: &AppState, prefix: &str, row: &JobRow) -> Video {
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

async fn redirect(
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

// ---------------------------------------------------------------------------------------------
// Files by signed link.

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LinkParams {
    /// Unix seconds after which the link stops working.
    pub expires: i64,
    /// HMAC-SHA256 of the link (base64url).
    pub sig: String,
}

/// A job's file by signed link (no token: the signature is the permission). Links come from
/// the jobs' `download`/`thumbnail` fields and expire (15 minutes by default).
#[utoipa::path(get, path = "/v1/media/files/{id}/{file}", tag = "files", security(()),
    params(("id" = Uuid, Path, description = "Job id"),
        ("file" = String, Path, description = "`report.pdf`, `report.csv`, `report.json`, `video.mp4` or `thumbnail.jpg`"),
        LinkParams),
    responses(
        (status = 200, description = "The file", content(
            ("application/pdf"), ("text/csv"), ("application/json"), ("video/mp4"), ("image/jpeg"))),
        (status = 400, body = ErrorBody),
        (status = 403, description = "`invalid_link` or `link_expired`", body = ErrorBody),
        (status = 404, description = "The job or file is gone", body = ErrorBody),
    ))]
pub async fn file(
    State(state): State<AppState>,
    ApiPath((id, name)): ApiPath<(Uuid, String)>,
    ApiQuery(p): ApiQuery<LinkParams>,
) -> Result<Response, ApiError> {
    if !FILE_NAMES.contains(&name.as_str()) {
        return Err(ApiError::not_found("file"));
    }
    state
        .artifacts
        .verify(id, &name, p.expires, &p.sig)
        .map_err(|e| match e {
            LinkError::Invalid => ApiError::new(ErrorCode::InvalidLink, "the link is not valid"),
            LinkError::Expired => ApiError::new(
                ErrorCode::LinkExpired,
                "the link has expired; fetch the job again for a fresh one",
            ),
        })?;
    let row = store::find_any(&state.pool, id)
        .await?
        .filter(|r| r.state() == JobState::Completed)
        .ok_or_else(|| ApiError::not_found("file"))?;
    let artifact = row
        .artifacts
        .get(&name)
        .ok_or_else(|| ApiError::not_found("file"))?;
    let key = artifact["key"].as_str().unwrap_or_default();
    let (size, stream) = state
        .artifacts
        .get(key)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("file"))?;
    let content_type = artifact["content_type"]
        .as_str()
        .unwrap_or("application/octet-stream");
    let mut res = Response::new(Body::from_stream(stream));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).map_err(ApiError::internal)?,
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
            .map_err(ApiError::internal)?,
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_path_prefixes_are_used_in_links() {
        let mut h = HeaderMap::new();
        assert_eq!(prefix(&h), "");
        h.insert("x-forwarded-prefix", HeaderValue::from_static("/t/acme-2"));
        assert_eq!(prefix(&h), "/t/acme-2");
        for bad in [
            "/t/",
            "https://evil.example",
            "/t/acme/../x",
            "/t/ACME",
            "//evil",
        ] {
            h.insert("x-forwarded-prefix", HeaderValue::from_static(bad));
            assert_eq!(prefix(&h), "", "{bad}");
        }
    }
}
