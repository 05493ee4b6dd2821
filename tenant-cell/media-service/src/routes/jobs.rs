//! What report and video jobs share: refusals, limits, status, links, paging, removal.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use service_kit::ApiError;
use service_kit::extract::ApiJson;
use uuid::Uuid;
use wire_types::media::{Download, JobError, JobState, JobStatus};
use wire_types::{ErrorCode, FieldError};

use crate::artifacts::FILE_NAMES;
use crate::state::AppState;
use crate::store::{self, JobRow, Kind, Refusal, UserLimits};

pub(crate) fn refused(r: Refusal) -> ApiError {
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

pub(crate) fn limits(state: &AppState) -> UserLimits {
    UserLimits {
        active: state.config.jobs.user_active,
        per_minute: state.config.jobs.user_per_minute,
    }
}

pub(crate) fn status(row: &JobRow) -> JobStatus {
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
pub(crate) fn download(
    state: &AppState,
    prefix: &str,
    row: &JobRow,
    file: &str,
) -> Option<Download> {
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

pub(crate) fn main_file(row: &JobRow) -> Option<String> {
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

pub(crate) async fn page(
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

pub(crate) async fn remove(
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

pub(crate) async fn cancel(
    state: &AppState,
    kind: Kind,
    owner: Uuid,
    id: Uuid,
) -> Result<JobRow, ApiError> {
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

pub(crate) fn accepted<T: wire_types::Wire>(location: String, body: T) -> Response {
    let mut res = (StatusCode::ACCEPTED, ApiJson(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}
