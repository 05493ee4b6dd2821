//! The admin API: tenants, cells, tiers, and the router feed. Handlers extract, call the
//! catalog, and map; the reconciler does the slow work.
//!
//! **Invariant:** every endpoint needs the operator token, except `GET /v1/routes`, which also
//! takes the read-only router token.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{Method, StatusCode, header};
use secrecy::ExposeSecret;
use serde::Deserialize;
use service_kit::ApiError;
use service_kit::auth::bearer_token;
use service_kit::extract::{ApiJson, ApiPath, ApiQuery};
use service_kit::secrets::constant_time_eq;
use sqlx::{Connection, PgConnection};
use wire_types::admin::{
    Cell, CellList, CreatePlacement, CreateTenant, MigrateTenant, MigrationList, Operation,
    Placement, PlacementList, ScaleTenant, Step, Tenant, TenantList, TenantState, TierList,
};
use wire_types::{ErrorCode, FieldError};

use crate::Ctx;
use crate::catalog::{self, AdmitError, CellRow, MigrateError, Op, PlacementError, TenantRow};
use crate::domain::NewTenant;
use crate::migrate::{self, RequestError};
use crate::tenants::{self, ChangeError, ScaleError};

mod backups;

pub fn router(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/v1/tenants", post(create_tenant).get(list_tenants))
        .route("/v1/tenants/{slug}", get(show_tenant).delete(delete_tenant))
        .route("/v1/tenants/{slug}/suspend", post(suspend_tenant))
        .route("/v1/tenants/{slug}/resume", post(resume_tenant))
        .route("/v1/tenants/{slug}/scale", post(scale_tenant))
        .route("/v1/tenants/{slug}/migrate", post(migrate_tenant))
        .route("/v1/tenants/{slug}/migrations", get(tenant_migrations))
        .route("/v1/tenants/{slug}/migration/abort", post(abort_migration))
        .route(
            "/v1/tenants/{slug}/backups",
            post(backups::create).get(backups::list),
        )
        .route("/v1/tenants/{slug}/backups/{id}", get(backups::show))
        .route("/v1/tenants/{slug}/restore", post(backups::restore))
        .route(
            "/v1/tenants/{slug}/restore/abort",
            post(backups::abort_restore),
        )
        .route("/v1/cells", get(list_cells))
        .route("/v1/cells/{cell_id}", get(show_cell))
        .route("/v1/tiers", get(tiers))
        .route("/v1/placements", get(list_placements).post(add_placement))
        .route(
            "/v1/placements/{name}",
            get(show_placement).delete(remove_placement),
        )
        .route("/v1/placements/{name}/cordon", post(cordon))
        .route("/v1/placements/{name}/uncordon", post(uncordon))
        .route("/v1/routes", get(routes))
        .route_layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            authenticate,
        ))
        .with_state(ctx)
}

async fn authenticate(State(ctx): State<Arc<Ctx>>, req: Request, next: Next) -> Response {
    let token = match bearer_token(req.headers()) {
        Ok(token) => token,
        Err(e) => return e.into_response(),
    };
    if constant_time_eq(token, ctx.operator_token.expose_secret()) {
        return next.run(req).await;
    }
    if constant_time_eq(token, ctx.router_token.expose_secret()) {
        if req.method() == Method::GET && req.uri().path() == "/v1/routes" {
            return next.run(req).await;
        }
        return ApiError::forbidden("the router token only reads the route feed").into_response();
    }
    ApiError::unauthenticated("unknown token; the operator token is in MRBILL_HOME/control-plane")
        .into_response()
}

async fn create_tenant(
    State(ctx): State<Arc<Ctx>>,
    ApiJson(req): ApiJson<CreateTenant>,
) -> Result<Response, ApiError> {
    let tenant =
        NewTenant::parse(req, &ctx.config.placements[0].0).map_err(ApiError::validation)?;
    tenants::admit(&ctx, &tenant).await.map_err(admit_error)?;
    let mut conn = ctx.pool.acquire().await?;
    let view = tenant_view(&ctx, &mut conn, &tenant.slug).await?;
    Ok((StatusCode::ACCEPTED, ApiJson(view)).into_response())
}

pub(crate) fn admit_error(e: AdmitError) -> ApiError {
    match e {
        AdmitError::SlugTaken => ApiError::new(ErrorCode::SlugTaken, "a tenant with this slug exists"),
        AdmitError::DomainsTaken(domains) => ApiError::new(
            ErrorCode::EmailDomainTaken,
            format!("email domains already belong to another tenant: {}", domains.join(", ")),
        )
        .with_details(serde_json::json!({ "domains": domains })),
        AdmitError::Capacity { placement, capacity, used, free, units } => ApiError::new(
            ErrorCode::CapacityExhausted,
            format!("placement {placement} has {free} free capacity units; this tier needs {units}"),
        )
        .with_details(serde_json::json!({ "placement": placement, "capacity": capacity, "used": used, "needed": units })),
        AdmitError::UnknownPlacement => ApiError::validation(vec![FieldError::new(
            "placement",
            "unknown_placement",
            "no such placement",
        )]),
        AdmitError::UnknownRegion => ApiError::validation(vec![FieldError::new(
            "region",
            "unknown_region",
            "no uncordoned placement in this region",
        )]),
        AdmitError::Cordoned(placement) => ApiError::new(
            ErrorCode::PlacementCordoned,
            format!("placement {placement} is cordoned: it admits no new cells"),
        )
        .with_details(serde_json::json!({ "placement": placement })),
        AdmitError::Db(e) => e.into(),
    }
}

async fn list_tenants(State(ctx): State<Arc<Ctx>>) -> Result<ApiJson<TenantList>, ApiError> {
    let mut conn = ctx.pool.acquire().await?;
    // The list and every tenant's view from one snapshot: a tenant deleted meanwhile is
    // either wholly there or wholly absent.
    let mut tx = conn.begin_with(SNAPSHOT).await?;
    let mut tenants = Vec::new();
    for row in catalog::tenants(&mut tx).await? {
        // Invite tokens only ever in answers about one tenant, never in listings.
        let mut tenant = view_in(&ctx, &mut tx, &row.slug).await?;
        tenant.admin_invite = None;
        tenants.push(tenant);
    }
    tx.commit().await?;
    Ok(ApiJson(TenantList { tenants }))
}

async fn show_tenant(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(slug): ApiPath<String>,
) -> Result<ApiJson<Tenant>, ApiError> {
    let mut conn = ctx.pool.acquire().await?;
    Ok(ApiJson(tenant_view(&ctx, &mut conn, &slug).await?))
}

async fn suspend_tenant(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(slug): ApiPath<String>,
) -> Result<Response, ApiError> {
    change_state(&ctx, &slug, TenantState::Suspended).await
}

async fn resume_tenant(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(slug): ApiPath<String>,
) -> Result<Response, ApiError> {
    change_state(&ctx, &slug, TenantState::Active).await
}

async fn delete_tenant(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(slug): ApiPath<String>,
) -> Result<Response, ApiError> {
    change_state(&ctx, &slug, TenantState::Deleting).await
}

/// Suspend, resume or delete (see `tenants::change_state`); answers the tenant as the change
/// left it, read in the change's own transaction: a delete may be over by the time it commits.
async fn change_state(ctx: &Arc<Ctx>, slug: &str, to: TenantState) -> Result<Response, ApiError> {
    let mut tx = ctx.pool.begin().await?;
    let from = tenants::change_state(ctx, &mut tx, slug, to)
        .await
        .map_err(|e| match e {
            ChangeError::NotFound(_) => ApiError::new(ErrorCode::TenantNotFound, e.to_string()),
            ChangeError::BeingDeleted(_) => ApiError::new(ErrorCode::Conflict, e.to_string()),
            ChangeError::Migrating(_, op) => {
                ApiError::new(ErrorCode::OperationInProgress, e.to_string())
                    .with_details(serde_json::json!({ "operation": op.as_str() }))
            }
            ChangeError::Db(e) => e.into(),
        })?;
    let view = view_in(ctx, &mut tx, slug).await?;
    tx.commit().await?;
    tenants::changed(ctx, slug, from, to);
    Ok((StatusCode::ACCEPTED, ApiJson(view)).into_response())
}

async fn list_cells(State(ctx): State<Arc<Ctx>>) -> Result<ApiJson<CellList>, ApiError> {
    let mut conn = ctx.pool.acquire().await?;
    let mut cells = Vec::new();
    for row in catalog::cells(&ctx.pool).await? {
        cells.push(cell_view(&ctx, &mut conn, row).await?);
    }
    Ok(ApiJson(CellList { cells }))
}

async fn show_cell(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(cell_id): ApiPath<String>,
) -> Result<ApiJson<Cell>, ApiError> {
    let mut conn = ctx.pool.acquire().await?;
    let row = match catalog::cell(&mut conn, &cell_id).await? {
        Some(row) => row,
        // `mrbill cell show <tenant>` works too.
        None => catalog::cell_of_tenant(&mut conn, &cell_id)
            .await?
            .ok_or_else(|| ApiError::not_found("cell"))?,
    };
    Ok(ApiJson(cell_view(&ctx, &mut conn, row).await?))
}

async fn tiers(State(ctx): State<Arc<Ctx>>) -> Result<ApiJson<TierList>, ApiError> {
    let tiers = cell_model::Tier::ALL
        .into_iter()
        .map(|t| {
            let mut v = serde_json::to_value(t.template()).unwrap_or_default();
            v["units"] = t.units().into();
            v
        })
        .collect();
    Ok(ApiJson(TierList {
        tiers,
        placements: catalog::placements(&ctx.pool).await?,
    }))
}

async fn list_placements(State(ctx): State<Arc<Ctx>>) -> Result<ApiJson<PlacementList>, ApiError> {
    Ok(ApiJson(PlacementList {
        placements: catalog::placements(&ctx.pool).await?,
    }))
}

async fn show_placement(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(name): ApiPath<String>,
) -> Result<ApiJson<Placement>, ApiError> {
    placement_view(&ctx, &name).await.map(ApiJson)
}

async fn placement_view(ctx: &Ctx, name: &str) -> Result<Placement, ApiError> {
    let mut conn = ctx.pool.acquire().await?;
    catalog::placement(&mut conn, name)
        .await?
        .ok_or_else(|| ApiError::not_found("placement"))
}

async fn add_placement(
    State(ctx): State<Arc<Ctx>>,
    ApiJson(req): ApiJson<CreatePlacement>,
) -> Result<Response, ApiError> {
    let req = crate::domain::parse_placement(req).map_err(ApiError::validation)?;
    catalog::add_placement(&ctx.pool, &req.name, &req.region, req.capacity)
        .await
        .map_err(placement_error)?;
    tracing::info!(placement = %req.name, region = %req.region, capacity = req.capacity, "placement added");
    let view = placement_view(&ctx, &req.name).await?;
    Ok((StatusCode::CREATED, ApiJson(view)).into_response())
}

/// Answers the placement as it was before it went.
async fn remove_placement(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(name): ApiPath<String>,
) -> Result<ApiJson<Placement>, ApiError> {
    let view = placement_view(&ctx, &name).await?;
    catalog::remove_placement(&ctx.pool, &name)
        .await
        .map_err(placement_error)?;
    tracing::info!(placement = %name, "placement removed");
    Ok(ApiJson(view))
}

async fn cordon(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(name): ApiPath<String>,
) -> Result<ApiJson<Placement>, ApiError> {
    set_cordoned(&ctx, &name, true).await
}

async fn uncordon(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(name): ApiPath<String>,
) -> Result<ApiJson<Placement>, ApiError> {
    set_cordoned(&ctx, &name, false).await
}

async fn set_cordoned(
    ctx: &Ctx,
    name: &str,
    cordoned: bool,
) -> Result<ApiJson<Placement>, ApiError> {
    catalog::set_cordoned(&ctx.pool, name, cordoned)
        .await
        .map_err(placement_error)?;
    tracing::info!(placement = %name, cordoned, "placement cordon changed");
    placement_view(ctx, name).await.map(ApiJson)
}

/// `202` with the tenant once the scale operation is queued; `200` when the tenant is suspended
/// (recorded: its resume starts what was asked).
async fn scale_tenant(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(slug): ApiPath<String>,
    ApiJson(req): ApiJson<ScaleTenant>,
) -> Result<Response, ApiError> {
    let scaled = tenants::scale(&ctx, &slug, &req).await.map_err(|e| {
        let message = e.to_string();
        match e {
            ScaleError::NotFound(_) => ApiError::new(ErrorCode::TenantNotFound, message),
            ScaleError::Bounds(fields) => ApiError::validation(fields),
            ScaleError::NotActive(state) => ApiError::new(ErrorCode::TenantNotActive, message)
                .with_details(serde_json::json!({ "state": state.as_str() })),
            ScaleError::Busy(op) => ApiError::new(ErrorCode::OperationInProgress, message)
                .with_details(serde_json::json!({ "operation": op.as_str() })),
            ScaleError::Db(e) => e.into(),
        }
    })?;
    let mut conn = ctx.pool.acquire().await?;
    let view = tenant_view(&ctx, &mut conn, &slug).await?;
    let status = match scaled {
        tenants::Scaled::Started => StatusCode::ACCEPTED,
        tenants::Scaled::Recorded => StatusCode::OK,
    };
    Ok((status, ApiJson(view)).into_response())
}

/// `202` with the plan of the migration it started; `200` with the plan for a dry run.
async fn migrate_tenant(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(slug): ApiPath<String>,
    ApiJson(req): ApiJson<MigrateTenant>,
) -> Result<Response, ApiError> {
    if !cell_model::is_valid_slug(&req.to) {
        return Err(ApiError::validation(vec![FieldError::new(
            "to",
            "invalid_format",
            "a placement name: 3–40 of a-z, 0-9 and '-'",
        )]));
    }
    let plan = migrate::request(&ctx, &slug, &req.to, req.dry_run)
        .await
        .map_err(migrate_error)?;
    let status = if plan.dry_run {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, ApiJson(plan)).into_response())
}

async fn tenant_migrations(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(slug): ApiPath<String>,
) -> Result<ApiJson<MigrationList>, ApiError> {
    let mut conn = ctx.pool.acquire().await?;
    if catalog::tenant(&mut conn, &slug).await?.is_none() {
        return Err(ApiError::new(ErrorCode::TenantNotFound, "no such tenant"));
    }
    drop(conn);
    let migrations = migrate::history(&ctx, &slug).await?;
    Ok(ApiJson(MigrationList { migrations }))
}

/// `202` with the tenant's migrations once the abort is queued.
async fn abort_migration(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(slug): ApiPath<String>,
) -> Result<Response, ApiError> {
    migrate::abort(&ctx, &slug).await.map_err(migrate_error)?;
    let migrations = migrate::history(&ctx, &slug).await?;
    Ok((StatusCode::ACCEPTED, ApiJson(MigrationList { migrations })).into_response())
}

fn migrate_error(e: RequestError) -> ApiError {
    let message = e.to_string();
    match e {
        RequestError::NotFound => ApiError::new(ErrorCode::TenantNotFound, message),
        RequestError::Unsupported => ApiError::new(ErrorCode::Conflict, message),
        RequestError::Db(e) => e.into(),
        RequestError::Refused(e) => match e {
            MigrateError::UnknownPlacement(_) => ApiError::validation(vec![FieldError::new(
                "to",
                "unknown_placement",
                "no such placement",
            )]),
            MigrateError::SamePlacement(_) => ApiError::validation(vec![FieldError::new(
                "to",
                "same_placement",
                "the cell already runs there",
            )]),
            MigrateError::SameRegion { .. } => ApiError::validation(vec![FieldError::new(
                "to",
                "same_region",
                message,
            )]),
            MigrateError::Cordoned(placement) => ApiError::new(ErrorCode::PlacementCordoned, message)
                .with_details(serde_json::json!({ "placement": placement })),
            MigrateError::Capacity { placement, capacity, used, units, .. } => {
                ApiError::new(ErrorCode::CapacityExhausted, message).with_details(
                    serde_json::json!({ "placement": placement, "capacity": capacity, "used": used, "needed": units }),
                )
            }
            MigrateError::NotActive(state) => ApiError::new(ErrorCode::TenantNotActive, message)
                .with_details(serde_json::json!({ "state": state.as_str() })),
            MigrateError::Busy(op) => ApiError::new(ErrorCode::OperationInProgress, message)
                .with_details(serde_json::json!({ "operation": op.as_str() })),
            MigrateError::NoMigration => ApiError::new(ErrorCode::NotFound, message),
            MigrateError::Switched => ApiError::new(ErrorCode::Conflict, message),
            MigrateError::Db(e) => e.into(),
        },
    }
}

fn placement_error(e: PlacementError) -> ApiError {
    match e {
        PlacementError::NotFound(_) => ApiError::not_found("placement"),
        PlacementError::Exists(name) => {
            ApiError::new(ErrorCode::Conflict, format!("a placement `{name}` exists"))
        }
        PlacementError::InUse { name, cells } => ApiError::new(
            ErrorCode::PlacementInUse,
            format!("placement `{name}` still has {cells} cells; migrate them first"),
        )
        .with_details(serde_json::json!({ "placement": name, "cells": cells })),
        PlacementError::Db(e) => e.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedQuery {
    #[serde(default)]
    watch: Option<String>,
    #[serde(default)]
    since: Option<u64>,
}

async fn routes(
    State(ctx): State<Arc<Ctx>>,
    ApiQuery(q): ApiQuery<FeedQuery>,
) -> Result<Response, ApiError> {
    let watch = matches!(q.watch.as_deref(), Some("1" | "true"));
    let body = ctx.hub.stream(&ctx.pool, q.since, watch).await?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// Reads that must agree with each other (a tenant and its cell, which a delete removes
/// together) see one snapshot.
const SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

pub(crate) async fn tenant_view(
    ctx: &Ctx,
    conn: &mut PgConnection,
    slug: &str,
) -> Result<Tenant, ApiError> {
    catalog::drop_expired_admin_invite(conn, slug).await?;
    let mut tx = conn.begin_with(SNAPSHOT).await?;
    let view = view_in(ctx, &mut tx, slug).await?;
    tx.commit().await?;
    Ok(view)
}

/// A tenant as one snapshot shows it (`conn` is in a repeatable-read transaction).
async fn view_in(ctx: &Ctx, conn: &mut PgConnection, slug: &str) -> Result<Tenant, ApiError> {
    let row: TenantRow = catalog::tenant(conn, slug)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::TenantNotFound, format!("no tenant `{slug}`")))?;
    let cell = catalog::cell_of_tenant(conn, slug)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("tenant {slug} has no cell")))?;
    let cell = cell_view(ctx, conn, cell).await?;
    Ok(Tenant {
        email_domains: catalog::email_domains(conn, slug).await?,
        admin_invite: row
            .admin_invite
            .clone()
            .map(|invite| invite.0)
            .filter(|invite| !expired(&invite.expires_at)),
        state: row.state(),
        slug: row.slug,
        display_name: row.display_name,
        admin_email: row.admin_email,
        tier: row.tier,
        created_at: row.created_at,
        cell,
        backup_path: row.backup_path,
    })
}

async fn cell_view(ctx: &Ctx, conn: &mut PgConnection, row: CellRow) -> Result<Cell, ApiError> {
    let (op, op_id, finished) = match (row.op(), row.op_id) {
        (Some(op), Some(id)) => (Some(op), Some(id), false),
        _ => (
            row.last_op.as_deref().and_then(Op::parse),
            row.last_op_id,
            true,
        ),
    };
    let operation = match (op, op_id) {
        (Some(op), Some(op_id)) => {
            let done = catalog::steps(conn, &row.cell_id, op_id).await?;
            Some(Operation {
                name: op.as_str().to_owned(),
                steps: migrate::op_steps(ctx.driver.as_ref(), op)
                    .iter()
                    .map(|s| {
                        let d = done.iter().find(|(name, _)| name == s.as_str());
                        Step {
                            name: s.as_str().to_owned(),
                            done: d.is_some(),
                            duration_ms: d.map(|(_, ms)| (*ms).max(0) as u64),
                        }
                    })
                    .collect(),
                finished,
                last_error: row.last_error.clone(),
            })
        }
        _ => None,
    };
    let mut status = row.status.0;
    status.endpoints.public = Some(ctx.config.endpoint(&row.tenant));
    let local = ctx.driver.details(&row.placement, &row.cell_id);
    Ok(Cell {
        cell_id: row.cell_id,
        tenant: row.tenant,
        placement: row.placement,
        generation: row.generation,
        spec: row.spec.0,
        status,
        operation,
        local,
    })
}

/// Whether an RFC 3339 instant has passed (unreadable ones count as passed).
fn expired(at: &str) -> bool {
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .map_or(true, |at| at <= time::OffsetDateTime::now_utc())
}
