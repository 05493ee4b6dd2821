//! `/v1/reports`, `/v1/videos`, `/v1/media/files`: the dashboard, report and video jobs, and
//! downloads by signed link, one module per resource. A job belongs to the user who asked for
//! it: anyone else (another user, an admin, another cell) gets 404.

pub mod dashboard;
pub mod files;
mod jobs;
pub mod reports;
pub mod videos;

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use service_kit::ApiError;
use service_kit::extract::ApiJson;
use wire_types::ErrorCode;
use wire_types::media::QueueDepth;

use crate::poc::PocError;
use crate::state::AppState;
use crate::store::{self};

pub fn public(state: AppState) -> Router {
    Router::new()
        .route("/v1/reports/dashboard", get(dashboard::dashboard))
        .route(
            "/v1/reports",
            get(reports::list_reports).post(reports::create_report),
        )
        .route(
            "/v1/reports/{id}",
            get(reports::get_report).delete(reports::delete_report),
        )
        .route("/v1/reports/{id}/cancel", post(reports::cancel_report))
        .route(
            "/v1/videos",
            get(videos::list_videos).post(videos::create_video),
        )
        .route(
            "/v1/videos/{id}",
            get(videos::get_video).delete(videos::delete_video),
        )
        .route("/v1/videos/{id}/cancel", post(videos::cancel_video))
        .route("/v1/videos/{id}/download", get(videos::download_video))
        .route("/v1/videos/{id}/thumbnail", get(videos::video_thumbnail))
        .route("/v1/media/files/{id}/{file}", get(files::file))
        .with_state(state)
}

/// Routes of the internal listener (service token only).
pub fn internal(state: AppState) -> Router {
    Router::new()
        .route("/internal/v1/jobs", get(queue))
        .with_state(state)
}

/// Jobs waiting and running (for operators).
pub(crate) async fn queue(State(state): State<AppState>) -> Result<ApiJson<QueueDepth>, ApiError> {
    let depth = store::depth(&state.pool).await?;
    Ok(ApiJson(QueueDepth(
        depth
            .into_iter()
            .map(|(k, n)| (k, u64::try_from(n).unwrap_or(0)))
            .collect(),
    )))
}

/// `/t/<slug>` when the client reached the cell by path through the router, else empty.
pub(crate) fn prefix(headers: &HeaderMap) -> String {
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

pub(crate) fn poc_error(e: PocError) -> ApiError {
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

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
