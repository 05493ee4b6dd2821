//! A deleted `rds` cell's return (`spec.restore.deleted`): its instance went after a final
//! snapshot, its foundation with it (but for its key and bucket, which the template retains),
//! and its record (`kept.rs`) names both. The return's new foundation gets them back:
//!
//! ```text
//! the retained buckets' objects copied into the new foundation's bucket  Restored  Retrieving
//! the final snapshot copied under the new foundation's key (…-return-…)   Restored  Retrieving
//! RestoreDBInstanceFromDBSnapshot → mrbill-<cell>, tagged with the
//!   restore and mrbill:master-reset                                       Restored  Replacing
//! once available: its master password set to the new foundation's secret
//!   (the snapshot keeps the deleted one's), the tag dropped, the copy
//!   deleted                                                               Restored  Replacing
//! no snapshot recorded, or the recorded one gone                          Restored  Failed
//! then as any rds restore: the services' roles, DatabaseReady             Restored  Recovered
//! ```
//!
//! The identity Secrets come from the record (`controller/mod.rs`), so tokens and signed links
//! issued before the deletion verify again. A snapshot is the database at the deletion: a
//! deleted rds tenant comes back as it was then (RDS's point-in-time logs went with the
//! instance; the control plane asks for nothing earlier).

use std::collections::BTreeMap;

use cell_model::{Cell, CellRestore};

use super::Context;
use crate::aws::{AwsClients, Bucket, Rds};
use crate::error::Error;

/// Where the return is (`reason`, `message`) after doing what can be done now; the cell has
/// no instance yet. `Failed`: what it needs is not there (retrying cannot help; deleting the
/// tenant again undoes the return).
pub(super) async fn returning(
    ctx: &Context,
    cell: &Cell,
    aws: &AwsClients,
    outputs: &BTreeMap<String, String>,
    restore: &CellRestore,
) -> Result<(&'static str, String), Error> {
    let Some(snapshot) = super::kept::snapshot(ctx, cell, &restore.backup).await? else {
        let message = format!(
            "no record of deleted cell {} names a snapshot for backup {}",
            cell.spec.cell_id, restore.backup
        );
        return Ok(("Failed", message));
    };
    let copy = copy_name(cell, restore);
    match aws.rds.snapshot(&copy).await? {
        None => {
            // The artifacts first (the rows coming back name them), once: before the copy.
            if let Err(why) = artifacts(ctx, cell, aws, outputs).await? {
                return Ok(("Retrieving", why));
            }
            if aws.rds.snapshot(&snapshot).await?.is_none() {
                let message = format!(
                    "snapshot {snapshot}, which the deleted cell's record names, does not exist"
                );
                return Ok(("Failed", message));
            }
            let key = outputs
                .get("KeyArn")
                .ok_or_else(|| Error::Render("the foundation stack has no output KeyArn".into()))?;
            aws.rds.copy_snapshot(&snapshot, &copy, key).await?;
            let message = format!("copying {snapshot} under the new foundation's key as {copy}");
            Ok(("Retrieving", message))
        }
        Some(status) if status == "available" => {
            aws.rds
                .restore_snapshot(cell, outputs, &copy, &restore.id)
                .await?;
            let note = format!("{} restored from {snapshot}", Rds::identifier(cell));
            tracing::info!(cell = %cell.spec.cell_id, restore = %restore.id, "{note}");
            Ok(("Replacing", note))
        }
        Some(status) if status == "failed" => {
            aws.rds.delete_snapshot(&copy).await?;
            let message = format!("copying {snapshot} as {copy} failed; copying it again");
            tracing::warn!(cell = %cell.spec.cell_id, "{message}");
            Ok(("Retrieving", message))
        }
        Some(status) => {
            let message = format!("copying {snapshot} as {copy}: {status}");
            Ok(("Retrieving", message))
        }
    }
}

/// The returned instance, once available with [`crate::aws::MASTER_RESET_TAG`]: its master
/// password made the new foundation's, and the snapshot's copy (no longer needed) deleted.
/// `Some` while that is under way.
pub(super) async fn settle(
    cell: &Cell,
    aws: &AwsClients,
    restore: &CellRestore,
    master_reset: bool,
) -> Result<Option<(&'static str, String)>, Error> {
    if !master_reset {
        return Ok(None);
    }
    let id = Rds::identifier(cell);
    let master = aws.master_credentials(cell).await?;
    aws.rds.reset_master(&id, &master).await?;
    tracing::info!(cell = %cell.spec.cell_id, instance = %id, "master password reset to the new foundation's");
    // Housekeeping: a copy left behind costs storage, never the return.
    let copy = copy_name(cell, restore);
    if let Err(e) = aws.rds.delete_snapshot(&copy).await {
        tracing::warn!(cell = %cell.spec.cell_id, snapshot = %copy, error = %e, "deleting the return's snapshot copy");
    }
    let message = format!("resetting the master password of {id} to the new foundation's");
    Ok(Some(("Replacing", message)))
}

/// The copy of the final snapshot the return restores from.
pub(super) fn copy_name(cell: &Cell, restore: &CellRestore) -> String {
    format!(
        "{}-return-{}",
        Rds::identifier(cell),
        crate::render::short_id(&restore.id)
    )
}

/// Copies what the retained buckets hold into the new foundation's (what is missing; the
/// oldest first, so a later life's objects win).
async fn artifacts(
    ctx: &Context,
    cell: &Cell,
    aws: &AwsClients,
    outputs: &BTreeMap<String, String>,
) -> Result<Result<(), String>, Error> {
    let Some(name) = outputs.get("BucketName") else {
        return Ok(Err("the new foundation has no bucket yet".to_owned()));
    };
    let to = Bucket {
        name: name.clone(),
        region: aws.region.clone(),
        store: None,
    };
    let buckets = super::kept::rds_buckets(ctx, cell).await?;
    if buckets.is_empty() {
        // A foundation that never got made left no bucket.
        tracing::warn!(cell = %cell.spec.cell_id, "the deleted cell's record names no bucket: no artifacts come back");
    }
    for from in buckets.iter().filter(|b| **b != to) {
        match aws.objects.sync(from, &to, false).await {
            Ok(copied) => {
                tracing::info!(cell = %cell.spec.cell_id, copied, from = %from.name, to = %to.name, "the deleted cell's artifacts are copied back");
            }
            Err(e) => return Ok(Err(format!("copying {} into {}: {e}", from.name, to.name))),
        }
    }
    Ok(Ok(()))
}
