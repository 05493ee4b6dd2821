//! Internal API (internal listener, service token): what the cell's other services need.
//!
//! **Invariant:** every PoC query takes `visible_to` and poc-service applies the visibility
//! rules itself; callers never filter for permissions.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;
use service_kit::ApiError;
use service_kit::extract::{ApiJson, ApiPath, ApiQuery};
use time::OffsetDateTime;
use uuid::Uuid;
use wire_types::auth::{Role, TokenVersion};
use wire_types::pocs::{InternalPocPage, KeyCount, PocAggregates};
use wire_types::{ErrorBody, ErrorCode, FieldError, UserId};

use crate::state::AppState;
use crate::store::pocs::{self, ReportFilter};
use crate::store::users;
use wire_types::pocs::tag_query;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/internal/v1/users/{id}/token-version", get(token_version))
        .route("/internal/v1/pocs", get(internal_pocs))
        .route("/internal/v1/pocs/aggregates", get(internal_aggregates))
}

/// A user's current token version and disabled flag, for revocation checks by dojo and media
/// (which cache the answer for at most 30 s).
#[utoipa::path(get, path = "/internal/v1/users/{id}/token-version", tag = "internal", security(("service_token" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, body = TokenVersion),
        (status = 400, body = ErrorBody),
        (status = 401, description = "Not the cell's service token", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn token_version(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<TokenVersion>, ApiError> {
    let user = users::find(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(ApiJson(TokenVersion {
        user_id: UserId(user.id),
        token_version: user.token_version,
        disabled: user.disabled,
    }))
}

/// Common filters of the internal PoC queries.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// The user the data is for: only PoCs they may see are included (admins see all).
    pub visible_to: Uuid,
    /// Created at or after: RFC 3339 timestamp or `YYYY-MM-DD` (UTC).
    pub from: Option<String>,
    /// Created before: RFC 3339 timestamp, or `YYYY-MM-DD` (that whole day included).
    pub to: Option<String>,
    /// Comma-separated; PoCs must carry all of them.
    pub tags: Option<String>,
    /// Comma-separated; PoCs carrying any of them are left out.
    pub exclude_tags: Option<String>,
    /// Only PoCs this user owns (still within what `visible_to` may see).
    pub owner: Option<Uuid>,
    /// From a previous page's `next_cursor` (`/internal/v1/pocs` only).
    pub cursor: Option<String>,
    /// Page size, 1–1000 (default 200; `/internal/v1/pocs` only).
    pub limit: Option<u32>,
}

fn parse_time(field: &str, raw: &str, end_of_day: bool) -> Result<OffsetDateTime, FieldError> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = OffsetDateTime::parse(raw, &Rfc3339) {
        return Ok(t);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(raw, &format).map_err(|_| {
        FieldError::new(
            field,
            "invalid_format",
            format!("{field} must be an RFC 3339 timestamp or YYYY-MM-DD"),
        )
    })?;
    let day = date.midnight().assume_utc();
    Ok(if end_of_day {
        day + time::Duration::days(1)
    } else {
        day
    })
}

/// Validates parameters and resolves `visible_to` into a filter (404 for unknown users, 403 for
/// disabled ones: a disabled account sees nothing).
async fn filter(state: &AppState, p: &ReportParams) -> Result<ReportFilter, ApiError> {
    let mut errors = Vec::new();
    let from = p.from.as_deref().and_then(|v| {
        parse_time("from", v, false)
            .map_err(|e| errors.push(e))
            .ok()
    });
    let to =
        p.to.as_deref()
            .and_then(|v| parse_time("to", v, true).map_err(|e| errors.push(e)).ok());
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        errors.push(FieldError::new(
            "to",
            "out_of_range",
            "to must not be before from",
        ));
    }
    let tags = tag_query("tags", p.tags.as_deref(), &mut errors);
    let exclude_tags = tag_query("exclude_tags", p.exclude_tags.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let user = users::find(&state.pool, p.visible_to)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    if user.disabled {
        return Err(ApiError::new(ErrorCode::Forbidden, "the user is disabled"));
    }
    let visible_to = if user.role() == Role::Admin {
        None
    } else {
        Some(user.id)
    };
    Ok(ReportFilter {
        visible_to,
        from,
        to,
        tags,
        exclude_tags,
        owner: p.owner,
    })
}

/// PoCs a user may see, oldest first, in pages (for reports and videos).
#[utoipa::path(get, path = "/internal/v1/pocs", tag = "internal", security(("service_token" = [])), params(ReportParams),
    responses(
        (status = 200, body = InternalPocPage),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The user is disabled", body = ErrorBody),
        (status = 404, description = "Unknown user", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn internal_pocs(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<ReportParams>,
) -> Result<ApiJson<InternalPocPage>, ApiError> {
    let limit = p.limit.unwrap_or(200);
    let mut errors = Vec::new();
    if !(1..=1000).contains(&limit) {
        errors.push(FieldError::new(
            "limit",
            "out_of_range",
            "limit must be between 1 and 1000",
        ));
    }
    let after = service_kit::cursor::param(p.cursor.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let f = filter(&state, &p).await?;
    let rows = pocs::report_page(&state.pool, &f, after, i64::from(limit) + 1).await?;
    let more = rows.len() > limit as usize;
    let items: Vec<_> = rows.iter().take(limit as usize).collect();
    let next_cursor = if more {
        items
            .last()
            .map(|r| service_kit::cursor::encode(r.created_at, r.id))
    } else {
        None
    };
    Ok(ApiJson(InternalPocPage {
        items: items.into_iter().map(|r| r.to_wire()).collect(),
        next_cursor,
    }))
}

/// Dashboard figures over the PoCs a user may see: totals and counts by language, tag, month
/// (`YYYY-MM`, UTC) and owner. Computed in Postgres; nothing is shipped row by row.
#[utoipa::path(get, path = "/internal/v1/pocs/aggregates", tag = "internal", security(("service_token" = [])), params(ReportParams),
    responses(
        (status = 200, body = PocAggregates),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The user is disabled", body = ErrorBody),
        (status = 404, description = "Unknown user", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn internal_aggregates(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<ReportParams>,
) -> Result<ApiJson<PocAggregates>, ApiError> {
    if p.cursor.is_some() || p.limit.is_some() {
        return Err(ApiError::validation(vec![FieldError::new(
            "cursor",
            "not_allowed",
            "aggregates take no cursor or limit",
        )]));
    }
    let f = filter(&state, &p).await?;
    let rows = pocs::report_aggregates(&state.pool, &f).await?;
    let dimension = |name: &str, by_key: bool| {
        let mut out: Vec<KeyCount> = rows
            .iter()
            .filter(|(d, _, _)| d == name)
            .map(|(_, key, count)| KeyCount {
                key: key.clone(),
                count: (*count).max(0) as u64,
            })
            .collect();
        if by_key {
            out.sort_by(|a, b| a.key.cmp(&b.key));
        } else {
            out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        }
        out.truncate(1000);
        out
    };
    let by_language = dimension("language", false);
    let total = by_language.iter().map(|k| k.count).sum();
    let (by_tag, by_month, by_owner) = (
        dimension("tag", false),
        dimension("month", true),
        dimension("owner", false),
    );
    Ok(ApiJson(PocAggregates {
        total,
        by_language,
        by_tag,
        by_month,
        by_owner,
    }))
}
