//! An in-cluster cell's Postgres backups (`render/backups.rs`): archiving is rendered once the
//! backups' bucket claim is bound, and `BackupsReady` reports CNPG's continuous archiving.
//! It is not part of `Ready`: a cell whose archive lags still serves, and says so.

use cell_model::{Cell, CellStatus, DatabaseEngine};
use serde_json::Value;

use crate::apply;
use crate::error::Error;
use crate::render;

use super::Context;
use super::observe::set;

/// `desired` with archiving and the ScheduledBackup once the backups' claim is bound.
pub(super) async fn with_backups(
    ctx: &Context,
    cell: &Cell,
    desired: Vec<Value>,
) -> Result<Vec<Value>, Error> {
    if cell.spec.database.engine != DatabaseEngine::InCluster {
        return Ok(desired);
    }
    let config = apply::get(&ctx.client, cell, "ConfigMap", render::BACKUP_BUCKET).await?;
    Ok(match config {
        Some(config) => render::with_backups(cell, desired, &config, &ctx.images.object_store),
        None => desired,
    })
}

/// Sets `BackupsReady` from the claim and the Cluster's `ContinuousArchiving` condition.
pub(super) async fn observe(
    client: &kube::Client,
    cell: &Cell,
    status: &mut CellStatus,
) -> Result<(), Error> {
    if cell.spec.database.engine != DatabaseEngine::InCluster {
        return Ok(());
    }
    let claim = apply::get(client, cell, "ObjectBucketClaim", render::BACKUP_BUCKET).await?;
    let phase = claim
        .as_ref()
        .and_then(|c| c["status"]["phase"].as_str())
        .unwrap_or("no status yet");
    if phase != "Bound" {
        let message = format!("ObjectBucketClaim {}: {phase}", render::BACKUP_BUCKET);
        set(status, "BackupsReady", false, "BucketPending", &message);
        return Ok(());
    }
    let cluster = apply::get(client, cell, "Cluster", render::POSTGRES_CLUSTER).await?;
    let cluster_status = cluster.as_ref().map(|c| &c["status"]);
    let archiving = cluster_status
        .and_then(|s| s["conditions"].as_array())
        .and_then(|c| c.iter().find(|c| c["type"] == "ContinuousArchiving"));
    let last = cluster_status
        .and_then(|s| s["lastSuccessfulBackup"].as_str())
        .map_or_else(
            || "no base backup yet".to_owned(),
            |t| format!("last base backup {t}"),
        );
    match archiving {
        Some(c) if c["status"] == "True" => {
            set(status, "BackupsReady", true, "Archiving", &last);
        }
        Some(c) => {
            let why = c["message"].as_str().unwrap_or_default();
            set(status, "BackupsReady", false, "ArchivingFailed", why);
        }
        None => set(
            status,
            "BackupsReady",
            false,
            "ArchivingPending",
            "CloudNativePG reports no WAL archived yet",
        ),
    }
    Ok(())
}
