//! Tenant lifecycle: admitting a tenant and changing its desired state. Each is one catalog
//! transaction that records what should be and queues the operation getting there; the
//! reconciler does the slow work. The admin API maps these to HTTP, nothing more.

use cell_model::route_feed::{RouteEntry, RouteState, ServiceUrls};
use cell_model::{AdminBootstrap, Phase};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use wire_types::admin::{AdminInvite, TenantState};

use crate::Ctx;
use crate::catalog::{self, AdmitError, Op};
use crate::domain::NewTenant;

/// How long the first admin's invite stays valid.
const ADMIN_INVITE_DAYS: i64 = 7;

/// Admits a validated tenant (to its placement, or to the roomiest uncordoned placement of its
/// region): its catalog rows, its cell's spec (carrying the first admin's
/// invite as a hash; the token stays in the catalog for `tenant show`), and a route that
/// answers 503 + Retry-After until the cell serves. Returns the new cell's id.
pub async fn admit(ctx: &Ctx, tenant: &NewTenant) -> Result<String, AdmitError> {
    let mut tenant = tenant.clone();
    // Held from the region's choice of placement to the commit: admissions are serialized, so
    // two at once never both pick the one placement that has room for one.
    let writer = ctx.hub.writer().await;
    let mut tx = ctx.pool.begin().await?;
    if let Some(region) = &tenant.region {
        let units = tenant.tier.units() as i32;
        tenant.placement = catalog::placement_in_region(&mut tx, region, units).await?;
    }
    let tenant = &tenant;
    let cell_id = format!(
        "c-{}-{}",
        tenant.slug,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut spec = tenant.cell_spec(
        &cell_id,
        ctx.config.cell_engines(),
        &ctx.config.cell_version,
    );
    let (invite, bootstrap) = admin_invite(&tenant.admin_email);
    spec.bootstrap = Some(bootstrap);
    catalog::admit(&mut tx, tenant, &spec).await?;
    let event = writer.put(&mut tx, first_route(tenant, &cell_id)).await?;
    catalog::set_admin_invite(&mut tx, &tenant.slug, &invite).await?;
    tx.commit().await?;
    writer.publish(Some(event));
    ctx.wake.notify_one();
    tracing::info!(tenant = %tenant.slug, cell = %cell_id, tier = tenant.tier.as_str(), expires_at = %invite.expires_at, "tenant admitted");
    Ok(cell_id)
}

/// Admits a deleted tenant again as it was (slug, name, admin, domains, tier, placement, and
/// its cell's id and spec), inside the restore's transaction `tx` that then starts the restore
/// from one of that cell's backups. The route answers 503 + Retry-After until the restore's
/// switch. Returns the cell's row and the route event to publish once `tx` commits.
pub async fn readmit(
    tx: &mut sqlx::PgConnection,
    writer: &crate::feed::RouteWriter<'_>,
    deleted: &catalog::DeletedTenant,
) -> Result<(catalog::CellRow, cell_model::route_feed::RouteEvent), AdmitError> {
    let kept = &deleted.tenant.0;
    let mut spec = kept.spec.clone();
    spec.suspended = false;
    spec.migration = None;
    spec.restore = None;
    let tenant = NewTenant {
        slug: deleted.slug.clone(),
        display_name: kept.display_name.clone(),
        admin_email: kept.admin_email.clone(),
        email_domains: kept.email_domains.clone(),
        tier: spec.tier,
        placement: spec.placement.clone(),
        region: None,
    };
    catalog::admit(&mut *tx, &tenant, &spec).await?;
    let event = writer
        .put(&mut *tx, first_route(&tenant, &spec.cell_id))
        .await?;
    let cell = catalog::cell_of_tenant(&mut *tx, &tenant.slug)
        .await?
        .ok_or_else(|| AdmitError::Db(sqlx::Error::RowNotFound))?;
    catalog::mark_restored(&mut *tx, deleted).await?;
    tracing::info!(tenant = %tenant.slug, cell = %spec.cell_id, deleted_at = %deleted.deleted_at, "deleted tenant admitted again");
    Ok((cell, event))
}

/// A newly admitted cell's route: active, no services yet (503 + Retry-After until it serves).
fn first_route(tenant: &NewTenant, cell_id: &str) -> RouteEntry {
    RouteEntry {
        tenant: tenant.slug.clone(),
        cell_id: cell_id.to_owned(),
        generation: 0,
        state: RouteState::Active,
        services: ServiceUrls::default(),
        replicas: Default::default(),
        email_domains: tenant.email_domains.clone(),
    }
}

/// A fresh one-time invite for the first admin: what the control plane shows, and what the
/// cell gets (the token's SHA-256 only; poc-service creates the invite from it at start).
fn admin_invite(email: &str) -> (AdminInvite, AdminBootstrap) {
    let token = service_kit::secrets::random_token(32);
    let expires_at = (OffsetDateTime::now_utc() + time::Duration::days(ADMIN_INVITE_DAYS))
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc())
        .format(&Rfc3339)
        .unwrap_or_default();
    let bootstrap = AdminBootstrap {
        admin_email: email.to_owned(),
        invite_token_sha256: service_kit::secrets::token_hash(&token),
        expires_at: expires_at.clone(),
    };
    let invite = AdminInvite {
        email: email.to_owned(),
        invite_token: token,
        expires_at,
    };
    (invite, bootstrap)
}

/// Why a scale was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    #[error("no tenant `{0}`")]
    NotFound(String),
    #[error("the tenant is {}", .0.as_str())]
    NotActive(TenantState),
    #[error("operation `{}` is in progress", .0.as_str())]
    Busy(Op),
    #[error("outside the tier's bounds")]
    Bounds(Vec<wire_types::FieldError>),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// What a scale did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scaled {
    /// The scale operation runs.
    Started,
    /// The tenant is suspended: the sizes are recorded and take effect when it resumes.
    Recorded,
}

/// Records the replicas a tenant's cell should run (within its tier's bounds) and starts the
/// scale operation (a suspended tenant's resume applies them instead).
pub async fn scale(
    ctx: &Ctx,
    slug: &str,
    req: &wire_types::admin::ScaleTenant,
) -> Result<Scaled, ScaleError> {
    use cell_model::contract::Service;
    let mut tx = ctx.pool.begin().await?;
    let not_found = || ScaleError::NotFound(slug.to_owned());
    let tenant = catalog::tenant_for_update(&mut tx, slug)
        .await?
        .ok_or_else(not_found)?;
    let cell = catalog::cell_of_tenant_for_update(&mut tx, slug)
        .await?
        .ok_or_else(not_found)?;
    let mut spec = cell.spec.0.clone();
    let template = spec.tier.template();
    let mut errors = Vec::new();
    for (service, wanted) in [
        (Service::Poc, req.poc),
        (Service::Dojo, req.dojo),
        (Service::Media, req.media),
    ] {
        let Some(wanted) = wanted else { continue };
        let b = template.bounds(service);
        if !b.allows(wanted) {
            errors.push(wire_types::FieldError::new(
                service.name(),
                "out_of_range",
                format!("{}–{} in tier {}", b.min, b.max, spec.tier.as_str()),
            ));
        }
        match service {
            Service::Poc => spec.replicas.poc = Some(wanted),
            Service::Dojo => spec.replicas.dojo = Some(wanted),
            Service::Media => spec.replicas.media = Some(wanted),
        }
    }
    if let Some(class) = &req.db_class {
        if template.db_classes.contains(&class.as_str()) {
            spec.database.class = Some(class.clone());
        } else {
            errors.push(wire_types::FieldError::new(
                "db_class",
                "out_of_range",
                format!(
                    "one of {} in tier {}",
                    template.db_classes.join(", "),
                    spec.tier.as_str()
                ),
            ));
        }
    }
    if let Some(gib) = req.db_storage_gib {
        let current = spec.database.storage_gib;
        if gib < current {
            errors.push(wire_types::FieldError::new(
                "db_storage_gib",
                "cannot_shrink",
                format!("storage only grows: the database has {current} GiB"),
            ));
        } else if gib > template.db_storage_max_gib {
            errors.push(wire_types::FieldError::new(
                "db_storage_gib",
                "out_of_range",
                format!(
                    "{current}–{} GiB in tier {}",
                    template.db_storage_max_gib,
                    spec.tier.as_str()
                ),
            ));
        } else {
            spec.database.storage_gib = gib;
        }
    }
    if !errors.is_empty() {
        return Err(ScaleError::Bounds(errors));
    }
    let state = tenant.state();
    if !matches!(state, TenantState::Active | TenantState::Suspended) {
        return Err(ScaleError::NotActive(state));
    }
    if let Some(op) = cell.op() {
        return Err(ScaleError::Busy(op));
    }
    catalog::set_spec(&mut tx, &cell.cell_id, &spec).await?;
    if state == TenantState::Suspended {
        tx.commit().await?;
        tracing::info!(tenant = %slug, replicas = ?spec.replicas, database = ?spec.database, "scale recorded for the resume");
        return Ok(Scaled::Recorded);
    }
    catalog::start_op(&mut tx, &cell.cell_id, Op::Scale).await?;
    tx.commit().await?;
    ctx.wake.notify_one();
    tracing::info!(tenant = %slug, replicas = ?spec.replicas, database = ?spec.database, "scale requested");
    Ok(Scaled::Started)
}

/// Why a state change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no tenant `{0}`")]
    NotFound(String),
    #[error("tenant `{0}` is being deleted")]
    BeingDeleted(String),
    /// A delete must not take over a migration: it would leave one of the two cells behind.
    #[error("tenant `{0}` is moving to another placement: wait for it, or abort it first")]
    Migrating(String, Op),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Suspend, resume or delete: records the desired state in `tx` and starts the matching
/// operation, unless the one in progress gets there or `catalog::finish_op` queues it when that
/// one ends. Idempotent. Returns the state the tenant was in. The tenant's and its cell's rows
/// stay locked until `tx` ends, so the caller can read the tenant as the change left it (a fast
/// delete may be over the moment it commits); then [`changed`] wakes the reconciler.
pub async fn change_state(
    ctx: &Ctx,
    tx: &mut sqlx::PgConnection,
    slug: &str,
    to: TenantState,
) -> Result<TenantState, ChangeError> {
    let not_found = || ChangeError::NotFound(slug.to_owned());
    let tenant = catalog::tenant_for_update(&mut *tx, slug)
        .await?
        .ok_or_else(not_found)?;
    let cell = catalog::cell_of_tenant_for_update(&mut *tx, slug)
        .await?
        .ok_or_else(not_found)?;
    let from = tenant.state();
    if from == TenantState::Deleting && to != TenantState::Deleting {
        return Err(ChangeError::BeingDeleted(slug.to_owned()));
    }
    if let Some(op @ (Op::Migrate | Op::Abort)) = cell.op()
        && to == TenantState::Deleting
    {
        return Err(ChangeError::Migrating(slug.to_owned(), op));
    }
    if from != to {
        let backup = match to {
            TenantState::Deleting => ctx.driver.backup_destination(slug, &cell.cell_id),
            _ => None,
        };
        let backup = backup.map(|p| p.display().to_string());
        catalog::set_tenant_state(&mut *tx, slug, to, backup.as_deref()).await?;
        let op = match to {
            TenantState::Deleting => Some(Op::Delete),
            TenantState::Suspended => {
                matches!(cell.op(), None | Some(Op::Resume)).then_some(Op::Suspend)
            }
            TenantState::Active => {
                matches!(cell.op(), None | Some(Op::Suspend)).then_some(Op::Resume)
            }
        };
        if let Some(op) = op {
            catalog::start_op(&mut *tx, &cell.cell_id, op).await?;
        }
        if to == TenantState::Deleting {
            let mut status = cell.status.0.clone();
            status.phase = Phase::Deleting;
            catalog::set_status(&mut *tx, &cell.cell_id, &status).await?;
        }
    }
    Ok(from)
}

/// After [`change_state`]'s transaction commits: the reconciler starts on it now.
pub fn changed(ctx: &Ctx, slug: &str, from: TenantState, to: TenantState) {
    ctx.wake.notify_one();
    tracing::info!(tenant = %slug, from = from.as_str(), to = to.as_str(), "tenant state change");
}
