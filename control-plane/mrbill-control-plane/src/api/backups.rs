//! `/v1/tenants/{slug}/backups` and `/v1/tenants/{slug}/restore`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use service_kit::ApiError;
use service_kit::extract::{ApiJson, ApiPath};
use wire_types::ErrorCode;
use wire_types::admin::{Backup, BackupList, RestoreTenant};

use crate::Ctx;
use crate::backups::{self, RequestError};
use crate::catalog;

/// `202` with the queued backup.
pub async fn create(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(slug): ApiPath<String>,
) -> Result<Response, ApiError> {
    let backup = backups::request_backup(&ctx, &slug).await.map_err(error)?;
    Ok((StatusCode::ACCEPTED, ApiJson(backup)).into_response())
}

pub async fn list(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(slug): ApiPath<String>,
) -> Result<ApiJson<BackupList>, ApiError> {
    let mut conn = ctx.pool.acquire().await?;
    let rows = catalog::backups_of_tenant(&mut conn, &slug).await?;
    if rows.is_empty() && catalog::tenant(&mut conn, &slug).await?.is_none() {
        return Err(ApiError::new(ErrorCode::TenantNotFound, "no such tenant"));
    }
    Ok(ApiJson(BackupList {
        backups: rows.iter().map(catalog::BackupRow::to_wire).collect(),
    }))
}

pub async fn show(
    State(ctx): State<Arc<Ctx>>,
    ApiPath((slug, id)): ApiPath<(String, String)>,
) -> Result<ApiJson<Backup>, ApiError> {
    let not_found = || ApiError::new(ErrorCode::NotFound, format!("`{slug}` has no backup {id}"));
    let Ok(uuid) = uuid::Uuid::parse_str(&id) else {
        return Err(not_found());
    };
    let mut conn = ctx.pool.acquire().await?;
    let row = catalog::backup(&mut conn, uuid)
        .await?
        .filter(|b| b.tenant == slug)
        .ok_or_else(not_found)?;
    Ok(ApiJson(row.to_wire()))
}

/// `202` with the restore's plan once it is queued.
pub async fn restore(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(slug): ApiPath<String>,
    ApiJson(req): ApiJson<RestoreTenant>,
) -> Result<Response, ApiError> {
    let (from, to_time) = backups::parse_restore(&req).map_err(ApiError::validation)?;
    let plan = backups::request_restore(&ctx, &slug, from, to_time)
        .await
        .map_err(error)?;
    Ok((StatusCode::ACCEPTED, ApiJson(plan)).into_response())
}

/// `202` with the tenant once the restore's undoing is queued (before its switch only).
pub async fn abort_restore(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(slug): ApiPath<String>,
) -> Result<Response, ApiError> {
    backups::request_unrestore(&ctx, &slug)
        .await
        .map_err(error)?;
    let mut conn = ctx.pool.acquire().await?;
    let view = super::tenant_view(&ctx, &mut conn, &slug).await?;
    Ok((StatusCode::ACCEPTED, ApiJson(view)).into_response())
}

fn error(e: RequestError) -> ApiError {
    let message = e.to_string();
    match e {
        RequestError::NotFound => ApiError::new(ErrorCode::TenantNotFound, message),
        RequestError::Unsupported(_) => ApiError::new(ErrorCode::Conflict, message),
        RequestError::NotActive(state) => ApiError::new(ErrorCode::TenantNotActive, message)
            .with_details(serde_json::json!({ "state": state.as_str() })),
        RequestError::Busy(op) => ApiError::new(ErrorCode::OperationInProgress, message)
            .with_details(serde_json::json!({ "operation": op })),
        RequestError::NoBackup(_) => ApiError::new(ErrorCode::NotFound, message),
        RequestError::Readmit(e) => super::admit_error(e),
        RequestError::Unrestore(_) => ApiError::new(ErrorCode::Conflict, message),
        RequestError::Db(e) => e.into(),
    }
}
