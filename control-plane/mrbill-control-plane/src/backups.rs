//! Backups of cells and restores from them.
//!
//! ```text
//! schedule (every cell serving, by its tier's backup_every_hours) ─┐
//! POST /v1/tenants/{slug}/backups ─────────────────────────────────┴► backups row (pending)
//!    worker (one backup at a time, beside the reconciler) ─► driver.back_up(cell, id) ─► done | failed
//!    (local: a directory of dumps; Kubernetes: a CloudNativePG Backup of the cell's archive,
//!     or a restore point in an rds instance's automated backups)
//!    retention: done backups older than the tier's backup_retention_days go, except the newest KEEP
//! POST /v1/tenants/{slug}/restore {from | to_time} ─► cells.op = restore (+ restores row) ─► reconciler:
//!    freeze → fence → target → copy → verify → start → switch
//!    (route held)  (old cell stops) (fresh cell, the backup's identity and data) (route → new cell, active)
//! ```
//!
//! A restore is a migration whose source is a backup: the same freeze and switch, the driver's
//! target/copy/verify/start, and the cell keeps its id and identity, so tokens and signed
//! links issued before stay valid. The restore is recorded in the cell's spec (`restore`):
//! where the driver replays an archive ([`crate::driver::CellDriver::point_in_time`]) it
//! carries `to_time` exactly; elsewhere `to_time` picks the newest backup at or before it.
//!
//! **Invariant:** nothing writes to the tenant between the restore's freeze and its switch:
//! the route holds requests from freeze, and the old cell stops (fence) before the new one's
//! services start, which only happens once every table matches the backup's checksums.

use std::sync::Arc;
use std::time::Duration;

use cell_model::route_feed::RouteState;
use time::OffsetDateTime;
use uuid::Uuid;
use wire_types::admin::{Backup, RestorePlan, RestoreTenant, TenantState};

use crate::Ctx;
use crate::catalog::{self, BackupKind, BackupRow, CellRow, Op, UnrestoreError};
use crate::driver::{Restoring, Step, Work};

/// The restore operation's steps, in order.
pub const RESTORE: &[Step] = &[
    Step::Freeze,
    Step::Fence,
    Step::Target,
    Step::Copy,
    Step::Verify,
    Step::Start,
    Step::Switch,
];

/// Undoing a restore before its switch, in order: the cell as it was runs again (the restored
/// one stops), the route points at it and is active, the restored one's files go, the catalog
/// forgets the restore.
pub const UNRESTORE: &[Step] = &[Step::Unfence, Step::Unfreeze, Step::Discard, Step::Release];

const NO_BACKUPS: &str = "this control plane's driver takes no backups";
const DELETED_ELSEWHERE: &str = "this deleted tenant does not come back from that backup: only what outlived its cell is restored (a deleted rds cell comes back from its final snapshot, the newest backup; RDS's logs behind earlier ones went with its instance)";
const NOT_UNDONE: &str = "this control plane's driver cannot undo a restore";

/// Completed backups kept per tenant whatever their age.
const KEEP: i64 = 3;

/// Why a backup or restore request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("no such tenant")]
    NotFound,
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("the tenant is {0:?}; only an active tenant is restored")]
    NotActive(TenantState),
    #[error("the tenant's cell is busy with {0}")]
    Busy(String),
    #[error("{0}")]
    NoBackup(String),
    /// A deleted tenant cannot be admitted again as it was (its slug, domains or placement).
    #[error(transparent)]
    Readmit(#[from] catalog::AdmitError),
    #[error(transparent)]
    Unrestore(UnrestoreError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<UnrestoreError> for RequestError {
    fn from(e: UnrestoreError) -> Self {
        match e {
            UnrestoreError::Db(e) => RequestError::Db(e),
            other => RequestError::Unrestore(other),
        }
    }
}

/// Queues a backup of `slug`'s cell.
pub async fn request_backup(ctx: &Ctx, slug: &str) -> Result<Backup, RequestError> {
    if !ctx.driver.backs_up() {
        return Err(RequestError::Unsupported(NO_BACKUPS));
    }
    let mut conn = ctx.pool.acquire().await?;
    let tenant = catalog::tenant(&mut conn, slug)
        .await?
        .ok_or(RequestError::NotFound)?;
    if tenant.state() == TenantState::Deleting {
        return Err(RequestError::NotActive(tenant.state()));
    }
    let cell = catalog::cell_of_tenant(&mut conn, slug)
        .await?
        .ok_or(RequestError::NotFound)?;
    let row = catalog::request_backup(&mut conn, &cell, BackupKind::Manual).await?;
    ctx.backup_wake.notify_one();
    tracing::info!(tenant = %slug, backup = %row.id, "backup requested");
    Ok(row.to_wire())
}

/// Starts restoring `slug`'s cell from the backup `req` names (by id, by time, or the newest).
pub async fn request_restore(
    ctx: &Ctx,
    slug: &str,
    from: Option<Uuid>,
    to_time: Option<OffsetDateTime>,
) -> Result<RestorePlan, RequestError> {
    if !ctx.driver.backs_up() {
        return Err(RequestError::Unsupported(NO_BACKUPS));
    }
    // Held from before the transaction to the publish, as an admission holds it: a deleted
    // tenant's route comes back in this transaction.
    let writer = ctx.hub.writer().await;
    let mut tx = ctx.pool.begin().await?;
    let (cell, readmitted) = match catalog::lock_tenant_and_cell(&mut tx, slug).await? {
        Some((tenant, cell)) => {
            if tenant.state() != TenantState::Active {
                return Err(RequestError::NotActive(tenant.state()));
            }
            if let Some(op) = &cell.op {
                return Err(RequestError::Busy(op.clone()));
            }
            (cell, None)
        }
        None => {
            let deleted = catalog::deleted_tenant(&mut tx, slug)
                .await?
                .ok_or(RequestError::NotFound)?;
            let spec = deleted.tenant.spec.clone();
            let (cell, event) = crate::tenants::readmit(&mut tx, &writer, &deleted).await?;
            (cell, Some((event, spec)))
        }
    };
    let backup = match from {
        Some(id) => catalog::backup(&mut tx, id)
            .await?
            .filter(|b| b.tenant == slug)
            .ok_or_else(|| RequestError::NoBackup(format!("`{slug}` has no backup {id}")))?,
        None => catalog::newest_done(&mut tx, slug, &cell.cell_id, to_time)
            .await?
            .ok_or_else(|| {
                RequestError::NoBackup(match to_time {
                    Some(t) => format!("`{slug}` has no completed backup taken at or before {t}"),
                    None => format!("`{slug}` has no completed backup"),
                })
            })?,
    };
    if backup.state != "done" || backup.path.is_none() {
        return Err(RequestError::NoBackup(format!(
            "backup {} is {}, not done",
            backup.id, backup.state
        )));
    }
    // Checked before anything is committed: the readmission rolls back with the refusal.
    if let Some((_, spec)) = &readmitted
        && !ctx
            .driver
            .restores_deleted(spec, backup.path.as_deref().unwrap_or_default())
    {
        return Err(RequestError::Unsupported(DELETED_ELSEWHERE));
    }
    if backup.cell_id != cell.cell_id {
        return Err(RequestError::NoBackup(format!(
            "backup {} is of cell {}, which the tenant no longer has",
            backup.id, backup.cell_id
        )));
    }
    let replay_to = to_time.filter(|_| ctx.driver.point_in_time());
    catalog::begin_restore(&mut tx, &cell, &backup, replay_to, readmitted.is_some()).await?;
    tx.commit().await?;
    let deleted = readmitted.is_some();
    writer.publish(readmitted.map(|(event, _)| event));
    ctx.wake.notify_one();
    tracing::info!(tenant = %slug, cell = %cell.cell_id, backup = %backup.id, deleted, "restore requested");
    Ok(RestorePlan {
        tenant: slug.to_owned(),
        cell_id: cell.cell_id.clone(),
        backup: backup.to_wire(),
        steps: RESTORE.iter().map(|s| s.as_str().to_owned()).collect(),
    })
}

/// Parses a restore request's fields (422 details: each field's problem).
pub fn parse_restore(
    req: &RestoreTenant,
) -> Result<(Option<Uuid>, Option<OffsetDateTime>), Vec<wire_types::FieldError>> {
    use time::format_description::well_known::Rfc3339;
    let mut errors = Vec::new();
    let from = req.from.as_deref().and_then(|s| match Uuid::parse_str(s) {
        Ok(id) => Some(id),
        Err(_) => {
            errors.push(wire_types::FieldError::new(
                "from",
                "invalid_format",
                "a backup's id (a UUID, from `mrbill tenant backups`)",
            ));
            None
        }
    });
    let to_time = req
        .to_time
        .as_deref()
        .and_then(|s| match OffsetDateTime::parse(s, &Rfc3339) {
            Ok(t) => Some(t),
            Err(_) => {
                errors.push(wire_types::FieldError::new(
                    "to_time",
                    "invalid_format",
                    "an RFC 3339 time such as 2026-12-06T09:30:00Z",
                ));
                None
            }
        });
    if to_time.is_some_and(|t| t > OffsetDateTime::now_utc()) {
        errors.push(wire_types::FieldError::new(
            "to_time",
            "out_of_range",
            "a time in the past: nothing after now has been written yet",
        ));
    }
    if from.is_some() && to_time.is_some() {
        errors.push(wire_types::FieldError::new(
            "to_time",
            "conflict",
            "name a backup (`from`) or a time (`to_time`), not both",
        ));
    }
    if errors.is_empty() {
        Ok((from, to_time))
    } else {
        Err(errors)
    }
}

/// Runs one step of a restore or of its undoing: the route's freeze, switch and unfreeze here,
/// the rest in the driver.
pub async fn run_step(ctx: &Ctx, cell: &CellRow, op: Op, step: Step) -> anyhow::Result<()> {
    let open = {
        let mut conn = ctx.pool.acquire().await?;
        catalog::open_restore(&mut conn, &cell.cell_id).await?
    };
    let Some(catalog::OpenRestore {
        id,
        backup,
        previous,
        ..
    }) = open
    else {
        // Undone or finished already (a repeated last step): nothing left to do.
        anyhow::ensure!(op == Op::Unrestore, "the cell has no restore in progress");
        return Ok(());
    };
    let location = backup
        .path
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("backup {} has no location", backup.id))?;
    let spec = &cell.spec.0;
    let restoring = |to_time| Restoring {
        spec,
        placement: &cell.placement,
        backup: location,
        to_time,
        id,
        previous: previous.as_ref(),
    };
    match (op, step) {
        (Op::Unrestore, Step::Release) => {
            let after = ctx.driver.undone_restore(restoring(None)).await?;
            catalog::mark_unrestored(&ctx.pool, &cell.cell_id, id, after.as_ref()).await?;
        }
        (_, Step::Freeze) => {
            ctx.hub
                .update(&ctx.pool, &cell.tenant, |r| r.state = RouteState::Frozen)
                .await?;
        }
        // The route to the cell's services, active: the restored cell's, or the one as it was.
        (Op::Unrestore, Step::Unfreeze) | (_, Step::Switch) => {
            let urls = ctx
                .driver
                .service_urls(Work::new(spec, &cell.placement))
                .await?;
            ctx.hub
                .update(&ctx.pool, &cell.tenant, |r| {
                    urls.apply_to(r);
                    r.state = RouteState::Active;
                })
                .await?;
            if step == Step::Switch {
                catalog::finish_restore(&ctx.pool, id).await?;
            }
        }
        _ => {
            let to_time = spec.restore.as_ref().and_then(|r| {
                use time::format_description::well_known::Rfc3339;
                OffsetDateTime::parse(r.target_time.as_deref()?, &Rfc3339).ok()
            });
            let restoring = restoring(to_time);
            match op {
                Op::Unrestore => ctx.driver.unrestore(restoring, step).await?,
                _ => ctx.driver.restore(restoring, step).await?,
            }
        }
    }
    Ok(())
}

/// Takes backups: the scheduled ones when due, asked-for ones at once, one at a time; prunes
/// what the retention no longer keeps. Runs until the control plane stops.
pub async fn run(ctx: Arc<Ctx>) {
    if !ctx.driver.backs_up() {
        return;
    }
    match catalog::requeue_running(&ctx.pool).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            backups = n,
            "backups a stopped control plane left running start again"
        ),
        Err(e) => tracing::warn!(error = %e, "requeueing running backups failed"),
    }
    loop {
        if let Err(e) = pass(&ctx).await {
            tracing::warn!(error = %format!("{e:#}"), "backup pass failed");
        }
        tokio::select! {
            () = ctx.backup_wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn pass(ctx: &Ctx) -> anyhow::Result<()> {
    schedule(ctx).await?;
    while let Some(backup) = catalog::claim_backup(&ctx.pool).await? {
        take(ctx, &backup).await?;
    }
    for old in catalog::expired(&ctx.pool, KEEP).await? {
        if let Some(location) = &old.path {
            ctx.driver
                .forget_backup(&old.tenant, &old.placement, location)
                .await?;
        }
        catalog::forget_backup(&ctx.pool, old.id).await?;
        tracing::info!(tenant = %old.tenant, backup = %old.id, "backup past its retention removed");
    }
    Ok(())
}

/// Queues a scheduled backup of every serving cell whose last one (or, before its first, its
/// creation) is older than its interval.
async fn schedule(ctx: &Ctx) -> anyhow::Result<()> {
    if ctx.config.backup_every == Some(Duration::ZERO) {
        return Ok(());
    }
    let last: std::collections::HashMap<String, OffsetDateTime> =
        catalog::schedule_baselines(&ctx.pool)
            .await?
            .into_iter()
            .collect();
    let now = OffsetDateTime::now_utc();
    for cell in catalog::cells(&ctx.pool).await? {
        let serving = matches!(
            cell.status.0.phase,
            cell_model::Phase::Ready | cell_model::Phase::Degraded
        );
        if !serving || cell.op.is_some() {
            continue;
        }
        let every = ctx.config.backup_every.unwrap_or_else(|| {
            let hours = cell.spec.0.tier.template().backup_every_hours;
            Duration::from_secs(u64::from(hours) * 3600)
        });
        // A cell without a baseline was created after the baselines were read: not due (its
        // creation is its baseline).
        let due = last.get(&cell.tenant).is_some_and(|at| now - *at >= every);
        if due {
            let mut conn = ctx.pool.acquire().await?;
            catalog::request_backup(&mut conn, &cell, BackupKind::Scheduled).await?;
        }
    }
    Ok(())
}

/// Takes one claimed backup where its cell runs now; records the outcome.
async fn take(ctx: &Ctx, backup: &BackupRow) -> anyhow::Result<()> {
    let cell = {
        let mut conn = ctx.pool.acquire().await?;
        catalog::cell(&mut conn, &backup.cell_id).await?
    };
    let Some(cell) = cell else {
        catalog::fail_backup(&ctx.pool, backup.id, "the cell is gone").await?;
        return Ok(());
    };
    let work = Work::new(&cell.spec.0, &cell.placement);
    match ctx.driver.back_up(work, backup.id).await {
        Ok(taken) => {
            catalog::finish_backup(&ctx.pool, backup.id, &taken).await?;
            tracing::info!(tenant = %cell.tenant, backup = %backup.id, bytes = ?taken.bytes, at = %taken.location, "backup taken");
        }
        Err(e) => {
            let message = format!("{e:#}");
            tracing::warn!(tenant = %cell.tenant, backup = %backup.id, error = %message, "backup failed");
            catalog::fail_backup(&ctx.pool, backup.id, &message).await?;
        }
    }
    Ok(())
}

/// Starts undoing `slug`'s restore (before its switch): the cell as it was serves again.
pub async fn request_unrestore(ctx: &Ctx, slug: &str) -> Result<(), RequestError> {
    if !ctx.driver.unrestores() {
        return Err(RequestError::Unsupported(NOT_UNDONE));
    }
    let mut tx = ctx.pool.begin().await?;
    let (_, cell) = catalog::lock_tenant_and_cell(&mut tx, slug)
        .await?
        .ok_or(RequestError::NotFound)?;
    let open = catalog::begin_unrestore(&mut tx, &cell).await?;
    tx.commit().await?;
    ctx.wake.notify_one();
    tracing::info!(tenant = %slug, cell = %cell.cell_id, restore = %open.id, "restore abort requested");
    Ok(())
}
