//! A restore of an in-cluster cell's database (`spec.restore`; the recovered Cluster is
//! rendered in `render/postgres.rs`): the Cluster recovered from a CNPG `Backup` replaces the
//! one before it, in place of the cell's database, under the same name.
//!
//! ```text
//! spec.restore.id ≠ the live Cluster's mrbill.dev/restore annotation:
//!    the cell is not suspended, or a service still runs   Restored False  Fencing
//!    a fence mark (one commit in poc's database), then a
//!    last base backup fence-<restore> (the WAL until the
//!    fence switched and archived), the artifacts kept
//!    with the backups copied back                         Restored False  Archiving
//!    the Cluster is deleted; its volumes go with it       Restored False  Replacing
//!    a deleted cell's return (no Cluster, spec.restore.deleted): its identity Secrets from
//!    its record, its kept buckets copied into the new ones    Restored False  Retrieving
//!    … no record, or it names no such backup                  Restored False  Failed
//!    (converge renders the Cluster with bootstrap.recovery — from the Backup, or a returning
//!    cell's copied archive — and CloudNativePG recovers it)
//! the Cluster's annotation = spec.restore.id, ready, databases applied   Restored True
//! spec.restore.abort (the control plane undoes it): nothing more is replaced
//!    the Cluster is still the one before the restore       Restored False  Aborted
//!    it was replaced, fence-<restore> completed            Restored False  Replaced
//!    it was replaced without that backup                   Restored False  CannotUndo
//! ```
//!
//! **Invariant:** the Cluster is deleted only while the control plane holds the cell suspended
//! (the restore's fence) and no service pod runs, so nothing writes into the database being
//! replaced (but the fence mark, a commit that changes no row), nor into the recovered one before the control plane starts the services again.

use cell_model::contract::Service;
use cell_model::{Cell, CellStatus, DatabaseEngine, RESTORED};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};

use crate::apply;
use crate::error::Error;
use crate::render::{self, CNPG_CLUSTER_LABEL, POSTGRES_CLUSTER, RESTORE_ANNOTATION};

use super::Context;
use super::observe::set;

/// Why the cell's database is not yet the restore's (`reason`, `message`), after doing what
/// can be done now — while `Some`, converge neither applies nor prunes the Cluster; `None`
/// once the live Cluster is the restore's, or gone with its volumes (converge then creates the
/// recovered one).
pub(super) async fn replacing(
    ctx: &Context,
    cell: &Cell,
) -> Result<Option<(&'static str, String)>, Error> {
    let Some(restore) = restoring(cell) else {
        return Ok(None);
    };
    let client = &ctx.client;
    if restore.abort {
        return undoing(ctx, cell, restore).await.map(Some);
    }
    let Some(cluster) = apply::get(client, cell, "Cluster", POSTGRES_CLUSTER).await? else {
        // Its volumes first: a new Cluster's first instance takes the old one's volume name.
        let left = volumes(client, cell).await?;
        if !left.is_empty() {
            let message = format!(
                "waiting for the replaced database's volumes {}",
                left.join(", ")
            );
            return Ok(Some(("Replacing", message)));
        }
        return if restore.deleted {
            retrieving(ctx, cell, &restore.backup).await
        } else {
            Ok(None)
        };
    };
    if cluster["metadata"]["annotations"][RESTORE_ANNOTATION] == restore.id.as_str() {
        return Ok(None);
    }
    if !cell.spec.suspended {
        let message = "the restore replaces the database only while the cell is suspended";
        return Ok(Some(("Fencing", message.to_owned())));
    }
    let running = running_services(client, cell).await?;
    if !running.is_empty() {
        let message = format!("waiting for {} to stop", running.join(", "));
        return Ok(Some(("Fencing", message)));
    }
    // Everything written until the fence reaches the archive first, so a restore to any moment
    // before it can be replayed; and the archive ends with a commit after that moment (the
    // fence mark, before the last backup is asked for), so the replay finds where to stop.
    let last = fence_backup(restore);
    if super::backups::would_ask(ctx, cell, &last).await?
        && let Err(why) = fence_mark(ctx, cell).await?
    {
        let message = format!("marking the fence in the WAL: {why}");
        return Ok(Some(("Archiving", message)));
    }
    if !super::backups::last_backup(ctx, cell, &last, "the restore").await? {
        let message = format!(
            "waiting for the last base backup {last}: the archive gets everything written until the fence"
        );
        return Ok(Some(("Archiving", message)));
    }
    // What the restored rows name exists again (artifacts deleted after the backup).
    if let Err(why) = super::backups::objects_back(ctx, cell).await? {
        return Ok(Some(("Archiving", why)));
    }
    if cluster["metadata"]["deletionTimestamp"].is_null() {
        apply::remove(client, cell, "Cluster", POSTGRES_CLUSTER).await?;
        tracing::info!(cell = %cell.spec.cell_id, restore = %restore.id, backup = %restore.backup,
            "the database is replaced by one recovered from the backup");
    }
    Ok(Some((
        "Replacing",
        format!(
            "deleting the Cluster the backup {} replaces",
            restore.backup
        ),
    )))
}

/// The last base backup a restore's fence takes: the database as it was before the restore.
pub fn fence_backup(restore: &cell_model::CellRestore) -> String {
    cell_model::fence_backup(&restore.id)
}

/// A restore being undone (`spec.restore.abort`): nothing more is replaced for it. `Aborted`
/// while the database is still the one before it (the control plane then puts the restore
/// before back); once replaced, `Replaced` when the fence's last backup completed (undoing is
/// restoring that backup), else `CannotUndo`.
async fn undoing(
    ctx: &Context,
    cell: &Cell,
    restore: &cell_model::CellRestore,
) -> Result<(&'static str, String), Error> {
    let client = &ctx.client;
    let cluster = apply::get(client, cell, "Cluster", POSTGRES_CLUSTER).await?;
    let replaced = cluster.as_ref().is_none_or(|c| {
        c["metadata"]["annotations"][RESTORE_ANNOTATION] == restore.id.as_str()
            || !c["metadata"]["deletionTimestamp"].is_null()
    });
    if !replaced {
        let message = "undone before it replaced the database: nothing was changed";
        return Ok(("Aborted", message.to_owned()));
    }
    let fence = fence_backup(restore);
    let completed = apply::get(client, cell, "Backup", &fence)
        .await?
        .is_some_and(|b| b["status"]["phase"] == "completed");
    Ok(if completed {
        let message = format!(
            "the database was replaced; undoing restores {fence}, the database as it was before"
        );
        ("Replaced", message)
    } else {
        let message = format!(
            "the database was replaced without a completed last backup {fence}: nothing holds it as it was"
        );
        ("CannotUndo", message)
    })
}

/// Sets `Restored` when the cell has a restore: its Cluster is the recovered one and serves.
pub(super) async fn observe(
    client: &kube::Client,
    cell: &Cell,
    status: &mut CellStatus,
) -> Result<(), Error> {
    let Some(restore) = restoring(cell) else {
        return Ok(());
    };
    let cluster = apply::get(client, cell, "Cluster", POSTGRES_CLUSTER).await?;
    let recovered = cluster
        .as_ref()
        .is_some_and(|c| c["metadata"]["annotations"][RESTORE_ANNOTATION] == restore.id.as_str());
    let database = status
        .condition("DatabaseReady")
        .is_some_and(|c| c.status == cell_model::ConditionStatus::True);
    let to = restore
        .target_time
        .as_deref()
        .map_or_else(|| "its end".to_owned(), str::to_owned);
    if recovered && database {
        let message = format!("recovered from Backup {} to {to}", restore.backup);
        set(status, RESTORED, true, "Recovered", &message);
    } else if recovered {
        let phase = cluster
            .as_ref()
            .and_then(|c| c["status"]["phase"].as_str())
            .unwrap_or("no status yet");
        let message = format!("recovering from Backup {} to {to}: {phase}", restore.backup);
        set(status, RESTORED, false, "Recovering", &message);
    }
    Ok(())
}

/// A deleted cell's return, before its Cluster is recovered: its kept buckets copied into the
/// new ones (the archive the Cluster recovers from, the artifacts), and its backup named by
/// the record. `None` once both hold.
async fn retrieving(
    ctx: &Context,
    cell: &Cell,
    backup: &str,
) -> Result<Option<(&'static str, String)>, Error> {
    if super::kept::archived(ctx, cell, backup).await?.is_none() {
        let message = format!("the deleted cell's record names no backup {backup}");
        return Ok(Some(("Failed", message)));
    }
    let retrieved = match super::kept::retrieve(ctx, cell).await? {
        // The artifacts kept with the backups, once the archive holding them is back.
        Ok(copied) => super::backups::objects_back(ctx, cell)
            .await?
            .map(|kept| copied + kept),
        Err(why) => Err(why),
    };
    Ok(match retrieved {
        Ok(copied) => {
            tracing::info!(cell = %cell.spec.cell_id, copied, "the deleted cell's buckets are copied back");
            // The recovered Cluster's backup section must name the copied archive.
            match apply::get(&ctx.client, cell, "ConfigMap", render::BACKUP_BUCKET).await? {
                Some(_) => None,
                None => Some(("Retrieving", "waiting for the backups' bucket".to_owned())),
            }
        }
        Err(why) => Some(("Retrieving", why)),
    })
}

/// Whether the cell is a deleted one returning, of either engine (its restore's identity, and
/// its archive or final snapshot, come from the record of its deletion).
pub(super) fn returning(cell: &Cell) -> bool {
    cell.spec.restore.as_ref().is_some_and(|r| r.deleted)
}

/// The cell's restore, when its database is CloudNativePG's (an `rds` cell restores through
/// RDS, not here).
fn restoring(cell: &Cell) -> Option<&cell_model::CellRestore> {
    (cell.spec.database.engine == DatabaseEngine::InCluster)
        .then_some(cell.spec.restore.as_ref())
        .flatten()
}

/// Commits one transaction in poc's database as poc's role (`MoveChecks::mark`): `Err` says
/// why not (yet).
async fn fence_mark(ctx: &Context, cell: &Cell) -> Result<Result<(), String>, Error> {
    let service = Service::Poc.name();
    let client = &ctx.client;
    let url = apply::secret_value(client, cell, &render::database_secret(service), "url").await?;
    let ca = apply::secret_value(client, cell, render::POSTGRES_TLS_SECRET, "ca.crt").await?;
    let (Some(url), Some(ca)) = (url, ca) else {
        return Ok(Err(format!(
            "{service}'s database URL or the Postgres CA is missing"
        )));
    };
    let side = crate::moves::Side { url, ca: Some(ca) };
    Ok(ctx.moves.mark(&side).await)
}

/// The services whose workload still has pods.
pub(super) async fn running_services(
    client: &kube::Client,
    cell: &Cell,
) -> Result<Vec<String>, Error> {
    let mut running = Vec::new();
    for service in Service::ALL.map(Service::name) {
        let name = format!("{service}-service");
        let workload = apply::get(client, cell, render::workload_kind(service), &name).await?;
        if workload.is_some_and(|w| w["status"]["replicas"].as_i64().unwrap_or(0) != 0) {
            running.push(name);
        }
    }
    Ok(running)
}

/// The Cluster's volume claims still in the namespace.
async fn volumes(client: &kube::Client, cell: &Cell) -> Result<Vec<String>, Error> {
    let ns = render::namespace(cell);
    let gvk = GroupVersionKind::gvk("", "v1", "PersistentVolumeClaim");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "persistentvolumeclaims");
    let selector = format!("{CNPG_CLUSTER_LABEL}={POSTGRES_CLUSTER}");
    let claims = Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &ar)
        .list_metadata(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::kube(format!("listing the database's volumes in {ns}"), source))?;
    Ok(claims
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect())
}
