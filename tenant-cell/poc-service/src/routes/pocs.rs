//! `/v1/pocs`: create, read, replace, patch, soft-delete, and search/list.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::get;
use serde::Deserialize;
use service_kit::ApiError;
use service_kit::extract::{ApiJson, ApiPath, ApiQuery};
use uuid::Uuid;
use wire_types::auth::Role;
use wire_types::pocs::{Poc, PocInput, PocPage, PocPatch};
use wire_types::{ErrorBody, ErrorCode, FieldError};

use super::CurrentUser;
use crate::domain::ValidPoc;
use crate::domain::poc::normalise_language;
use crate::search::embedded::MAX_WINDOW;
use crate::search::{SearchQuery, Sort, Viewer};
use crate::state::AppState;
use crate::store::pocs::{self, PocRow};
use crate::store::users::UserRow;
use wire_types::pocs::tag_query;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/pocs", get(search_pocs).post(create_poc))
        .route(
            "/v1/pocs/{id}",
            get(get_poc)
                .put(replace_poc)
                .patch(patch_poc)
                .delete(delete_poc),
        )
}

/// What a user may see: admins everything, members tenant-wide PoCs and their own.
pub fn viewer_of(user: &UserRow) -> Viewer {
    if user.role() == Role::Admin {
        Viewer::Everything
    } else {
        Viewer::User(user.id)
    }
}

/// Result order for `GET /v1/pocs`.
#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
pub enum SortParam {
    /// Best match first, then newest (the default when `q` is given).
    #[serde(rename = "relevance")]
    Relevance,
    /// Newest first (the default without `q`).
    #[serde(rename = "-created_at")]
    CreatedDesc,
    #[serde(rename = "created_at")]
    CreatedAsc,
    #[serde(rename = "-updated_at")]
    UpdatedDesc,
    #[serde(rename = "updated_at")]
    UpdatedAsc,
    #[serde(rename = "name")]
    NameAsc,
    #[serde(rename = "-name")]
    NameDesc,
}

/// Search and list parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Free text over name, tags, language, frameworks and description (≤ 200 characters).
    /// Words of 5+ letters tolerate one typo; the last word also matches as a prefix.
    #[param(max_length = 200)]
    pub q: Option<String>,
    /// Only this language (case-insensitive); blank for any.
    #[param(
        max_length = 32,
        pattern = r"^[^\S\x00-\x1F\x7F-\x9F]*([\p{Alpha}\p{N}+#.-]([\p{Alpha}\p{N}+#. -]*[\p{Alpha}\p{N}+#.-])?)?[^\S\x00-\x1F\x7F-\x9F]*$"
    )]
    pub language: Option<String>,
    /// Comma-separated (at most 20); every tag must be present.
    pub tags: Option<String>,
    /// A user id, or `me`; blank for anyone.
    #[param(pattern = r"^ *(me|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})? *$")]
    pub owner: Option<String>,
    /// Page number; `page × per_page` may not exceed 10,000.
    #[param(minimum = 1, maximum = 10000)]
    pub page: Option<u32>,
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
    #[param(inline)]
    pub sort: Option<SortParam>,
}

impl SearchParams {
    fn into_query(self, user: &UserRow) -> Result<(SearchQuery, u32, u32), ApiError> {
        let mut errors = Vec::new();
        let text = self.q.unwrap_or_default();
        if text.chars().count() > 200 {
            errors.push(FieldError::new(
                "q",
                "too_long",
                "q must have at most 200 characters",
            ));
        }
        let language = match self.language.as_deref() {
            // Blank means "any language"; the length limit applies to what was sent.
            Some(l)
                if l.trim().is_empty()
                    && !l.chars().any(char::is_control)
                    && l.chars().count() <= 32 =>
            {
                None
            }
            Some(l) => normalise_language("language", l)
                .map_err(|e| errors.push(e))
                .ok(),
            None => None,
        };
        let tags = tag_query("tags", self.tags.as_deref(), &mut errors);
        let owner = match self
            .owner
            .as_deref()
            .map(|o| o.trim_matches(' '))
            .filter(|o| !o.is_empty())
        {
            Some("me") => Some(user.id),
            // Only the form ids are given out in (lower-case, hyphenated), as documented.
            Some(o) => Some(o)
                .filter(|o| o.len() == 36 && !o.bytes().any(|b| b.is_ascii_uppercase()))
                .and_then(|o| o.parse::<Uuid>().ok())
                .ok_or(())
                .map_err(|_| {
                    errors.push(FieldError::new(
                        "owner",
                        "invalid_format",
                        "owner must be a user id or `me`",
                    ))
                })
                .ok(),
            None => None,
        };
        let page = self.page.unwrap_or(1);
        let per_page = self.per_page.unwrap_or(20);
        if !(1..=100).contains(&per_page) {
            errors.push(FieldError::new(
                "per_page",
                "out_of_range",
                "per_page must be between 1 and 100",
            ));
        } else if page == 0 || (page as usize) * (per_page as usize) > MAX_WINDOW {
            errors.push(FieldError::new(
                "page",
                "out_of_range",
                format!("page must be at least 1 and page × per_page at most {MAX_WINDOW}"),
            ));
        }
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        let sort = match self.sort {
            Some(SortParam::Relevance) if text.trim().is_empty() => Sort::CreatedDesc,
            Some(SortParam::Relevance) => Sort::Relevance,
            Some(SortParam::CreatedDesc) => Sort::CreatedDesc,
            Some(SortParam::CreatedAsc) => Sort::CreatedAsc,
            Some(SortParam::UpdatedDesc) => Sort::UpdatedDesc,
            Some(SortParam::UpdatedAsc) => Sort::UpdatedAsc,
            Some(SortParam::NameAsc) => Sort::NameAsc,
            Some(SortParam::NameDesc) => Sort::NameDesc,
            None if text.trim().is_empty() => Sort::CreatedDesc,
            None => Sort::Relevance,
        };
        let query = SearchQuery {
            text,
            language,
            tags,
            owner,
            viewer: viewer_of(user),
            sort,
            offset: ((page - 1) * per_page) as usize,
            limit: per_page as usize,
        };
        Ok((query, page, per_page))
    }
}

/// Search and list PoCs the caller may see. Facet counts (language, tags) cover every match the
/// caller may see, not just the page.
#[utoipa::path(get, path = "/v1/pocs", tag = "pocs", security(("bearer" = [])), params(SearchParams),
    responses(
        (status = 200, body = PocPage),
        (status = 400, description = "Unparsable or unknown parameter", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 422, description = "Invalid parameter values", body = ErrorBody),
        (status = 503, description = "Search engine unavailable",
            headers(("Retry-After" = u64, description = "Seconds to wait")), body = ErrorBody),
    ))]
pub async fn search_pocs(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> Result<ApiJson<PocPage>, ApiError> {
    let (query, page, per_page) = params.into_query(&user)?;
    let hits = state.index.search(&query).await.map_err(|e| {
        let mut err = ApiError::unavailable(
            "search is temporarily unavailable",
            std::time::Duration::from_secs(1),
        );
        err.source = Some(e);
        err
    })?;
    let rows = if hits.ids.is_empty() {
        Vec::new()
    } else {
        pocs::visible_by_ids(&state.pool, &hits.ids, query.viewer).await?
    };
    let items = hits
        .ids
        .iter()
        .filter_map(|id| rows.iter().find(|r| r.id == *id))
        .map(PocRow::to_wire)
        .collect();
    Ok(ApiJson(PocPage {
        items,
        page,
        per_page,
        total: hits.total,
        facets: hits.facets,
    }))
}

/// Register a PoC; the caller owns it.
#[utoipa::path(post, path = "/v1/pocs", tag = "pocs", security(("bearer" = [])), request_body = PocInput,
    responses(
        (status = 201, body = Poc, headers(("Location" = String, description = "URL of the new PoC"))),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn create_poc(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(input): ApiJson<PocInput>,
) -> Result<(StatusCode, HeaderMap, ApiJson<Poc>), ApiError> {
    let poc = ValidPoc::parse(&input).map_err(ApiError::validation)?;
    let row = pocs::insert(&state.pool, user.id, &poc).await?;
    state.indexer.nudge();
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/pocs/{}", row.id)) {
        headers.insert(header::LOCATION, location);
    }
    Ok((StatusCode::CREATED, headers, ApiJson(row.to_wire())))
}

/// One PoC. Another member's private PoC is reported as not found.
#[utoipa::path(get, path = "/v1/pocs/{id}", tag = "pocs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "PoC id")),
    responses((status = 200, body = Poc), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_poc(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<Poc>, ApiError> {
    let row = pocs::find_live(&state.pool, id)
        .await?
        .filter(|r| r.visible_to(viewer_of(&user)))
        .ok_or_else(|| ApiError::not_found("poc"))?;
    Ok(ApiJson(row.to_wire()))
}

/// Loads a PoC for a change: 404 if the caller cannot see it, 403 if they can but do not own it
/// (admins may change every PoC).
async fn lock_for_change(
    tx: &mut sqlx::PgConnection,
    user: &UserRow,
    id: Uuid,
) -> Result<PocRow, ApiError> {
    let row = pocs::lock_live(&mut *tx, id)
        .await?
        .filter(|r| r.visible_to(viewer_of(user)))
        .ok_or_else(|| ApiError::not_found("poc"))?;
    if row.owner_id != user.id && user.role() != Role::Admin {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the owner or an admin may change this PoC",
        ));
    }
    Ok(row)
}

async fn save(
    state: &AppState,
    user: &UserRow,
    id: Uuid,
    change: impl FnOnce(&PocRow) -> PocInput,
) -> Result<ApiJson<Poc>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let current = lock_for_change(&mut tx, user, id).await?;
    let poc = ValidPoc::parse(&change(&current)).map_err(ApiError::validation)?;
    let row = pocs::update(&mut *tx, id, &poc).await?;
    tx.commit().await?;
    state.indexer.nudge();
    Ok(ApiJson(row.to_wire()))
}

/// Replace a PoC (owner or admin). Omitted optional fields are reset to their defaults.
#[utoipa::path(put, path = "/v1/pocs/{id}", tag = "pocs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "PoC id")), request_body = PocInput,
    responses(
        (status = 200, body = Poc),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Not the owner", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn replace_poc(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(input): ApiJson<PocInput>,
) -> Result<ApiJson<Poc>, ApiError> {
    save(&state, &user, id, |_| input).await
}

/// Change some fields of a PoC (owner or admin).
#[utoipa::path(patch, path = "/v1/pocs/{id}", tag = "pocs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "PoC id")), request_body = PocPatch,
    responses(
        (status = 200, body = Poc),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Not the owner", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn patch_poc(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(patch): ApiJson<PocPatch>,
) -> Result<ApiJson<Poc>, ApiError> {
    save(&state, &user, id, |current| PocInput {
        name: patch.name.unwrap_or_else(|| current.name.clone()),
        description: patch
            .description
            .unwrap_or_else(|| current.description.clone()),
        repository_url: patch
            .repository_url
            .unwrap_or_else(|| current.repository_url.clone()),
        language: patch.language.unwrap_or_else(|| current.language.clone()),
        tags: patch.tags.unwrap_or_else(|| current.tags.clone()),
        frameworks: patch
            .frameworks
            .unwrap_or_else(|| current.frameworks.clone()),
        visibility: patch.visibility.unwrap_or_else(|| current.visibility()),
    })
    .await
}

/// Delete a PoC (owner or admin). It disappears from search and lists; the row is kept.
#[utoipa::path(delete, path = "/v1/pocs/{id}", tag = "pocs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "PoC id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Not the owner", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn delete_poc(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.pool.begin().await?;
    lock_for_change(&mut tx, &user, id).await?;
    pocs::soft_delete(&mut *tx, id).await?;
    tx.commit().await?;
    state.indexer.nudge();
    Ok(StatusCode::NO_CONTENT)
}
