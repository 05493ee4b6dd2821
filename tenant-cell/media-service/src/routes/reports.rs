//! `/v1/reports`: report jobs (PDF, CSV, JSON).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use service_kit::ApiError;
use service_kit::extract::{ApiJson, ApiPath, ApiQuery};
use service_kit::peer::Caller;
use uuid::Uuid;
use wire_types::media::{CreateReport, Report, ReportPage};
use wire_types::pocs::tag_array;
use wire_types::{ErrorBody, UserId};

use super::jobs::*;
use super::prefix;
use crate::domain::range;
use crate::state::AppState;
use crate::store::{self, JobRow, Kind};

pub(crate) fn report(state: &AppState, prefix: &str, row: &JobRow) -> Report {
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
