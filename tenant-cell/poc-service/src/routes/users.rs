//! `/v1/users`: the caller's own account, and user administration (admins).

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;
use service_kit::ApiError;
use service_kit::extract::{ApiJson, ApiPath, ApiQuery};
use uuid::Uuid;
use wire_types::auth::{Role, UpdateUserRequest, User, UserPage};
use wire_types::{ErrorBody, ErrorCode, FieldError};

use super::{Admin, CurrentUser};
use crate::state::AppState;
use crate::store::{tokens, users};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/users/me",
            get(me).patch(super::account::update_profile),
        )
        .route("/v1/users", get(list_users))
        .route("/v1/users/{id}", get(get_user).patch(update_user))
}

/// Pagination: `page` starts at 1; `per_page` is 1–100 (default 20).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    #[param(minimum = 1, maximum = 1000000)]
    pub page: Option<u32>,
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

impl PageQuery {
    /// `(page, per_page)` validated, or 422 naming the offending parameter.
    pub fn resolve(&self) -> Result<(u32, u32), ApiError> {
        let page = self.page.unwrap_or(1);
        let per_page = self.per_page.unwrap_or(20);
        let mut errors = Vec::new();
        if page == 0 || page > 1_000_000 {
            errors.push(FieldError::new(
                "page",
                "out_of_range",
                "page must be between 1 and 1000000",
            ));
        }
        if !(1..=100).contains(&per_page) {
            errors.push(FieldError::new(
                "per_page",
                "out_of_range",
                "per_page must be between 1 and 100",
            ));
        }
        if errors.is_empty() {
            Ok((page, per_page))
        } else {
            Err(ApiError::validation(errors))
        }
    }
}

/// The signed-in user.
#[utoipa::path(get, path = "/v1/users/me", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, body = User),
        (status = 401, description = "Missing, expired, revoked or foreign token", body = ErrorBody),
    ))]
pub async fn me(CurrentUser(user): CurrentUser) -> ApiJson<User> {
    ApiJson(user.to_wire())
}

/// All users of the cell, oldest first (admins).
#[utoipa::path(get, path = "/v1/users", tag = "users", security(("bearer" = [])), params(PageQuery),
    responses(
        (status = 200, body = UserPage),
        (status = 400, description = "Unparsable query", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 422, description = "Out-of-range paging", body = ErrorBody),
    ))]
pub async fn list_users(
    State(state): State<AppState>,
    _admin: Admin,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<ApiJson<UserPage>, ApiError> {
    let (page, per_page) = q.resolve()?;
    let rows = users::page(
        &state.pool,
        i64::from(per_page),
        i64::from(page - 1) * i64::from(per_page),
    )
    .await?;
    let total = users::count(&state.pool).await?;
    Ok(ApiJson(UserPage {
        items: rows.iter().map(|u| u.to_wire()).collect(),
        page,
        per_page,
        total: total.max(0) as u64,
    }))
}

/// One user (admins).
#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, body = User),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub async fn get_user(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<ApiJson<User>, ApiError> {
    let user = users::find(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(ApiJson(user.to_wire()))
}

/// Change a user's role or disable/enable them (admins). Any change bumps the user's token
/// version: their access tokens stop working at once; disabling also revokes refresh tokens.
/// The cell always keeps at least one active admin (`last_admin`).
#[utoipa::path(patch, path = "/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")), request_body = UpdateUserRequest,
    responses(
        (status = 200, body = User),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`last_admin`", body = ErrorBody),
        (status = 415, body = ErrorBody),
    ))]
pub async fn update_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdateUserRequest>,
) -> Result<ApiJson<User>, ApiError> {
    let mut tx = state.pool.begin().await?;
    // Admin changes are serialised so two admins cannot demote each other at once.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('mrbill.poc.admin-changes'))")
        .execute(&mut *tx)
        .await?;
    let user = users::lock(&mut *tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let role = req.role.unwrap_or(user.role());
    let disabled = req.disabled.unwrap_or(user.disabled);
    if role == user.role() && disabled == user.disabled {
        return Ok(ApiJson(user.to_wire()));
    }
    let was_active_admin = user.role() == Role::Admin && !user.disabled;
    let stays_active_admin = role == Role::Admin && !disabled;
    if was_active_admin && !stays_active_admin && users::count_active_admins(&mut *tx).await? <= 1 {
        return Err(ApiError::new(
            ErrorCode::LastAdmin,
            "the cell must keep at least one active admin",
        ));
    }
    let updated = users::update(&mut *tx, id, role, disabled).await?;
    if disabled && !user.disabled {
        tokens::revoke_user(&mut *tx, id).await?;
    }
    tx.commit().await?;
    tracing::info!(admin = %admin.id, user = %id, role = role.as_str(), disabled, "user updated");
    Ok(ApiJson(updated.to_wire()))
}
