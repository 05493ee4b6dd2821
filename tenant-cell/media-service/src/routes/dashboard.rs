//! `GET /v1/reports/dashboard`: figures over the PoCs the caller may see, at once.

use axum::extract::State;
use serde::Deserialize;
use service_kit::ApiError;
use service_kit::extract::{ApiJson, ApiQuery};
use service_kit::peer::Caller;
use wire_types::ErrorBody;
use wire_types::media::Dashboard;
use wire_types::pocs::tag_query;

use super::poc_error;
use crate::domain::range;
use crate::poc::Filter;
use crate::state::AppState;

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
