//! A Cell's finalizer, and its deletion: the database volumes retained, a last base backup
//! (in-cluster) and the record of what the cell leaves (`kept.rs`), the namespace, an rds
//! cell's instance after a final snapshot and its AWS foundation, then the
//! finalizer, so a Cell that is gone means a cell that is gone.

use std::time::Duration;

use cell_model::{Cell, DatabaseEngine, Phase};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::{Value, json};

use crate::apply;
use crate::error::Error;
use crate::render::namespace;

use super::observe::set;
use super::{Context, FINALIZER, backups, publish, write_status};

/// Deletion: the namespace goes first (with everything in it, data included), then the
/// finalizer, so a Cell that is gone means a cell that is gone.
pub(super) async fn cleanup(cell: &Cell, ctx: &Context) -> Result<Action, Error> {
    if !cell.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let previous = cell.status.clone().unwrap_or_default();
    // Data first, on every pass until the namespace is gone: the database volumes outlive it.
    let kept = apply::retain_database_volumes(&ctx.client, cell).await?;
    if previous.phase != Phase::Deleting {
        let note = if kept.is_empty() {
            format!("deleting namespace {}", namespace(cell))
        } else {
            format!(
                "deleting namespace {}; database volumes retained: {}",
                namespace(cell),
                kept.join(", ")
            )
        };
        publish(ctx, cell, EventType::Normal, "Deleting", &note).await;
        let mut status = previous.clone();
        status.phase = Phase::Deleting;
        set(
            &mut status,
            "Ready",
            false,
            "Deleting",
            "the cell is being deleted",
        );
        write_status(cell, ctx, &status).await?;
    }
    if !backups::final_backup(ctx, cell).await? {
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    // What the tenant's return needs, before the namespace takes it along.
    if !super::kept::keep(ctx, cell).await? {
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    if !apply::delete_namespace(&ctx.client, cell).await? {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    // Outside the namespace: the AWS foundation (its key and bucket are retained by the
    // template, so no data goes with it).
    if cell.spec.database.engine == DatabaseEngine::Rds
        && let Some(aws) = &ctx.aws
    {
        // The instance goes only after a final snapshot (named after the deletion's last
        // backup, so a retried deletion takes the same one and its record names it); then the
        // stack.
        let snapshot = final_snapshot(cell);
        match aws.rds.delete(cell, &snapshot).await? {
            None => return Ok(Action::requeue(Duration::from_secs(10))),
            Some(snapshot) => {
                tracing::info!(cell = %cell.name_any(), %snapshot, "database deleted after its final snapshot");
                publish(ctx, cell, EventType::Normal, "FinalSnapshot", &snapshot).await;
            }
        }
        // An instance a restore renamed away (a restore interrupted by the delete, or its
        // replaced instance not yet gone) goes the same way.
        if let Some(restore) = &cell.spec.restore {
            let replaced = crate::aws::Rds::replaced(cell, &restore.id);
            if aws
                .rds
                .delete_instance(&replaced, &format!("{replaced}-final"))
                .await?
                .is_none()
            {
                return Ok(Action::requeue(Duration::from_secs(10)));
            }
        }
        // A return deleted before it finished leaves its snapshot's copy: housekeeping only.
        if let Some(restore) = cell.spec.restore.as_ref().filter(|r| r.deleted) {
            let copy = super::rds_return::copy_name(cell, restore);
            if let Err(e) = aws.rds.delete_snapshot(&copy).await {
                tracing::warn!(cell = %cell.name_any(), snapshot = %copy, error = %e, "deleting a return's snapshot copy");
            }
        }
        // Its master password goes with it (the final snapshot comes back with a new one).
        aws.forget_master(cell).await?;
        if !aws.foundation.delete(cell).await? {
            return Ok(Action::requeue(Duration::from_secs(10)));
        }
    }
    let kept: Vec<&String> = cell
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    patch_metadata(
        cell,
        ctx,
        json!({ "finalizers": kept }),
        "removing the finalizer",
    )
    .await?;
    tracing::info!(cell = %cell.name_any(), "cell deleted");
    Ok(Action::await_change())
}

/// An `rds` cell's final snapshot: `mrbill-<cell>-<the deletion's last backup>`.
pub(super) fn final_snapshot(cell: &Cell) -> String {
    format!(
        "mrbill-{}-{}",
        cell.spec.cell_id,
        backups::final_backup_name(cell)
    )
}

pub(super) async fn ensure_finalizer(cell: &Cell, ctx: &Context) -> Result<(), Error> {
    if cell.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let mut finalizers = cell.finalizers().to_vec();
    finalizers.push(FINALIZER.into());
    let patched = patch_metadata(
        cell,
        ctx,
        json!({ "finalizers": finalizers }),
        "adding the finalizer",
    )
    .await;
    match patched {
        // This reconcile read the Cell before the previous one's write reached the cache
        // (several watches queue it): the Cell as it is now decides.
        Err(Error::Kube {
            source: kube::Error::Api(status),
            ..
        }) if status.is_conflict() => {
            let now = Api::<Cell>::all(ctx.client.clone())
                .get(&cell.name_any())
                .await
                .map_err(|source| {
                    Error::kube(format!("reading Cell {}", cell.name_any()), source)
                })?;
            match now.finalizers().iter().any(|f| f == FINALIZER) {
                true => Ok(()),
                false => Box::pin(ensure_finalizer(&now, ctx)).await,
            }
        }
        other => other,
    }
}

/// A merge patch of the Cell's metadata, conditional on the version this reconcile read.
async fn patch_metadata(
    cell: &Cell,
    ctx: &Context,
    mut metadata: Value,
    action: &str,
) -> Result<(), Error> {
    metadata["resourceVersion"] = json!(cell.resource_version());
    Api::<Cell>::all(ctx.client.clone())
        .patch(
            &cell.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": metadata })),
        )
        .await
        .map_err(|source| Error::kube(format!("{action} of Cell {}", cell.name_any()), source))?;
    Ok(())
}
