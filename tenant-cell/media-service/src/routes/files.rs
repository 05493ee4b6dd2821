//! `/v1/media/files/{id}/{file}`: downloads by signed, expiring link.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde::Deserialize;
use service_kit::ApiError;
use service_kit::extract::{ApiPath, ApiQuery};
use uuid::Uuid;
use wire_types::media::JobState;
use wire_types::{ErrorBody, ErrorCode};

use crate::artifacts::{FILE_NAMES, LinkError};
use crate::state::AppState;
use crate::store::{self};

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
