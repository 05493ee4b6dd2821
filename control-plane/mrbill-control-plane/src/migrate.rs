//! Moving a cell to another placement: the request, and the operation's steps. The driver
//! does the data path; this module orders it and runs the steps every driver shares (the
//! route's freeze and switch, the catalog's bookkeeping).
//!
//! ```text
//! migrate: target → copy → catch-up → freeze → fence → sync → verify → start → switch → retire
//!          └──── source serves ────┘ └──────── route frozen (the freeze) ─────────┘ └ target serves
//! abort (before switch): unfence → unfreeze → discard → release
//! ```
//!
//! **Invariant:** never two cells accepting writes for one tenant: the source's services stop
//! (fence) before the target's start, and the route only moves after verify. Before the switch
//! an abort leaves the source serving, untouched; after it the migration only goes forward.

use std::time::Duration;

use cell_model::route_feed::RouteState;
use time::OffsetDateTime;
use wire_types::admin::{Migration, MigrationPlan, TenantState};

use crate::Ctx;
use crate::catalog::{self, CellRow, MigrateError, MigrationRow, Op};
use crate::driver::{CellDriver, Move, Step, Work};

/// The migrate operation's steps, in order.
pub const MIGRATE: &[Step] = &[
    Step::Target,
    Step::Copy,
    Step::CatchUp,
    Step::Freeze,
    Step::Fence,
    Step::Sync,
    Step::Verify,
    Step::Start,
    Step::Switch,
    Step::Retire,
];

/// The abort operation's steps, in order.
pub const ABORT: &[Step] = &[Step::Unfence, Step::Unfreeze, Step::Discard, Step::Release];

/// The steps of `op`: a migration's, an abort's and a restore's are the same for every driver.
pub fn op_steps(driver: &dyn CellDriver, op: Op) -> &'static [Step] {
    match op {
        Op::Migrate => MIGRATE,
        Op::Abort => ABORT,
        Op::Restore => crate::backups::RESTORE,
        Op::Unrestore => crate::backups::UNRESTORE,
        _ => driver.steps(op),
    }
}

/// Starts migrating `slug`'s cell to `target` (or, with `dry_run`, only checks that it can).
/// Nothing is started when it is refused.
pub async fn request(
    ctx: &Ctx,
    slug: &str,
    target: &str,
    dry_run: bool,
) -> Result<MigrationPlan, RequestError> {
    if !ctx.driver.migrates() {
        return Err(RequestError::Unsupported);
    }
    let mut tx = ctx.pool.begin().await?;
    let (tenant, cell) = catalog::lock_tenant_and_cell(&mut tx, slug)
        .await?
        .ok_or(RequestError::NotFound)?;
    if tenant.state() != TenantState::Active {
        return Err(MigrateError::NotActive(tenant.state()).into());
    }
    let units = catalog::check_migration(&mut tx, &cell, target).await?;
    let plan = MigrationPlan {
        tenant: slug.to_owned(),
        cell_id: cell.cell_id.clone(),
        from: cell.placement.clone(),
        to: target.to_owned(),
        units: units.max(0) as u32,
        steps: MIGRATE.iter().map(|s| s.as_str().to_owned()).collect(),
        dry_run,
        id: None,
    };
    if dry_run {
        return Ok(plan);
    }
    let id = catalog::begin_migration(&mut tx, &cell, target).await?;
    tx.commit().await?;
    ctx.wake.notify_one();
    tracing::info!(tenant = %slug, cell = %cell.cell_id, from = %cell.placement, to = %target, "migration requested");
    Ok(MigrationPlan {
        id: Some(id.to_string()),
        ..plan
    })
}

/// Stops `slug`'s running migration before its switch.
pub async fn abort(ctx: &Ctx, slug: &str) -> Result<(), RequestError> {
    let mut tx = ctx.pool.begin().await?;
    let cell = catalog::cell_of_tenant_for_update(&mut tx, slug)
        .await?
        .ok_or(RequestError::NotFound)?;
    catalog::begin_abort(&mut tx, &cell).await?;
    tx.commit().await?;
    ctx.wake.notify_one();
    tracing::info!(tenant = %slug, cell = %cell.cell_id, "migration abort requested");
    Ok(())
}

/// Why a migration request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("no such tenant")]
    NotFound,
    #[error("this control plane's driver does not move cells between placements")]
    Unsupported,
    #[error(transparent)]
    Refused(#[from] MigrateError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The tenant's migrations, newest first, with the steps of the running one.
pub async fn history(ctx: &Ctx, slug: &str) -> sqlx::Result<Vec<Migration>> {
    let mut conn = ctx.pool.acquire().await?;
    let rows = catalog::migrations_of_tenant(&mut conn, slug).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let done = catalog::steps(&mut conn, &row.cell_id, row.id).await?;
        let steps = MIGRATE
            .iter()
            .map(|s| {
                let ms = done
                    .iter()
                    .find(|(n, _)| n == s.as_str())
                    .map(|(_, ms)| *ms);
                wire_types::admin::Step {
                    name: s.as_str().to_owned(),
                    done: ms.is_some(),
                    duration_ms: ms.map(|ms| ms.max(0) as u64),
                }
            })
            .collect();
        out.push(Migration {
            id: row.id.to_string(),
            cell_id: row.cell_id,
            from: row.source,
            to: row.target,
            state: row.state,
            steps,
            freeze_ms: row.freeze_ms.map(|ms| ms.max(0) as u64),
            started_at: row.started_at,
            finished_at: row.finished_at,
        });
    }
    Ok(out)
}

/// Runs one step of a migrate or abort operation.
pub async fn run_step(ctx: &Ctx, cell: &CellRow, op: Op, step: Step) -> anyhow::Result<()> {
    let migration = {
        let mut conn = ctx.pool.acquire().await?;
        catalog::migration_of_cell(&mut conn, &cell.cell_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the cell has no migration"))?
    };
    let spec = &cell.spec.0;
    let mv = Move {
        spec,
        source: &migration.source,
        target: &migration.target,
    };
    let tenant = cell.tenant.as_str();
    match (op, step) {
        (Op::Migrate, Step::Freeze) => {
            catalog::mark_frozen(&ctx.pool, migration.id).await?;
            ctx.hub
                .update(&ctx.pool, tenant, |r| r.state = RouteState::Frozen)
                .await?;
        }
        (Op::Migrate, Step::Switch) => {
            let urls = ctx
                .driver
                .service_urls(Work::new(spec, &migration.target))
                .await?;
            ctx.hub
                .update(&ctx.pool, tenant, |r| {
                    urls.apply_to(r);
                    r.state = RouteState::Active;
                })
                .await?;
            catalog::mark_switched(&ctx.pool, migration.id).await?;
        }
        (Op::Migrate, Step::Target) => {
            // A copy this cell left on the target when it moved away from it before goes
            // first (backed up): the target starts empty.
            if let Some(stale) =
                catalog::retired_cell(&ctx.pool, &cell.cell_id, &migration.target).await?
            {
                retire_one(ctx, &stale).await?;
            }
            ctx.driver.migrate(mv, step).await?;
        }
        (Op::Migrate, Step::Retire) => retire(ctx, cell, &migration).await?,
        (Op::Abort, Step::Unfreeze) => {
            let urls = ctx
                .driver
                .service_urls(Work::new(spec, &migration.source))
                .await?;
            ctx.hub
                .update(&ctx.pool, tenant, |r| {
                    urls.apply_to(r);
                    r.state = RouteState::Active;
                })
                .await?;
        }
        (Op::Abort, Step::Release) => catalog::mark_aborted(&ctx.pool, &migration).await?,
        _ => ctx.driver.migrate(mv, step).await?,
    }
    Ok(())
}

/// Records the source for removal once the grace period ends (see [`retire_due`]).
async fn retire(ctx: &Ctx, cell: &CellRow, migration: &MigrationRow) -> anyhow::Result<()> {
    let grace = time::Duration::try_from(ctx.config.migrate_grace)?;
    let backup = ctx
        .driver
        .backup_destination(&cell.tenant, &cell.cell_id)
        .map(|p| p.display().to_string());
    catalog::retire_source(
        &ctx.pool,
        migration,
        &cell.spec.0,
        OffsetDateTime::now_utc() + grace,
        backup.as_deref(),
    )
    .await?;
    Ok(())
}

/// Removes the migration sources whose grace period has ended: backed up (where the driver
/// keeps backups), stopped, deleted, with the driver's own delete steps.
pub async fn retire_due(ctx: &Ctx) -> anyhow::Result<()> {
    for retired in catalog::due_retirements(&ctx.pool).await? {
        retire_one(ctx, &retired).await?;
    }
    Ok(())
}

async fn retire_one(ctx: &Ctx, retired: &catalog::RetiredCell) -> anyhow::Result<()> {
    let backup = retired.backup_path.as_deref().map(std::path::Path::new);
    let work = Work {
        spec: &retired.spec.0,
        placement: &retired.placement,
        backup,
    };
    for &step in ctx.driver.steps(Op::Delete) {
        if matches!(step, Step::Route | Step::Catalog) || (step == Step::Backup && backup.is_none())
        {
            continue;
        }
        ctx.driver.run(work, Op::Delete, step).await?;
    }
    catalog::forget_retired(&ctx.pool, &retired.cell_id, &retired.placement).await?;
    tracing::info!(cell = %retired.cell_id, placement = %retired.placement, backup = ?retired.backup_path, "migration source retired");
    Ok(())
}

/// How long a migration's source is kept (stopped) after the switch, by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(600);
