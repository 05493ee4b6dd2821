//! The kubernetes driver's backups and restores of its cells (what the operator does is in
//! `operator/src/controller/restore.rs` for CloudNativePG, `rds_restore.rs` for RDS).
//!
//! ```text
//! back_up   in-cluster: Backup backup-<id's last 12> in cell-<tenant> (the cell's Cluster, its
//!           object store) → CNPG: phase completed, and the operator kept the artifacts with
//!           it (status.objectsBackedUp) · taken_at = stoppedAt (the backup's consistent end)
//!           rds: annotation mrbill.dev/restore-point = now → the operator confirms it in
//!           status.restorePoint once RDS can restore the instance to it · taken_at = now,
//!           location rds-point-in-time:<now> (RDS's automated backups hold it)
//! forget    the Backup deleted (the archive's retention is CNPG's: the tier's days); a restore
//!           point is RDS's to expire (the instance's retention: the same days)
//! restore   fence   Cell {suspended, restore} → the operator has fenced
//!                   (Restored: Fencing → Archiving+ → Replacing; an rds cell's instance is
//!                   renamed away, then restored by RDS under its name: rds_restore.rs)
//!           target  the old Cluster gone, the recovered one created  (Restored: Recovering+)
//!           copy    CNPG replayed the backup (to_time or its end)     (Restored: True)
//!           verify  the recovered cluster's databases are applied     (DatabaseReady: True)
//!           start   Cell {restore} without suspended                  (Ready)
//! unrestore unfence Cell {suspended, restore + abort} → the operator's answer: Aborted → the
//!                   restore before put back; Replaced → fence-<restore> restored under
//!                   <restore>-undo; CannotUndo → the step fails (`unrestore_step`)
//! ```
//!
//! The cell's spec carries `restore` from the catalog (recorded when the restore began), so
//! every apply of the Cell keeps it, during the restore and after.

use std::time::Duration;

use cell_model::{CellSpec, CellStatus, RESTORED};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::KubeDriver;
use crate::driver::{Restoring, Step, Taken, Work, waiting};

/// How often a backup's progress is read, and for how long at most.
const POLL: Duration = Duration::from_secs(2);
const PATIENCE: Duration = Duration::from_secs(6 * 3600);
/// How long RDS may take to make a restore point restorable (its logs ship every 5 minutes):
/// the backup worker takes one backup at a time, so a cell whose operator never confirms
/// (no AWS settings, an instance that is not available) must not hold the others for hours.
const POINT_PATIENCE: Duration = Duration::from_secs(30 * 60);

/// The `Backup` of backup `id` (the catalog's).
pub fn backup_name(id: uuid::Uuid) -> String {
    let id = id.simple().to_string();
    format!("backup-{}", &id[id.len() - 12..])
}

impl KubeDriver {
    fn backups(&self, placement: &str, tenant: &str) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("postgresql.cnpg.io", "v1", "Backup");
        let ar = ApiResource::from_gvk_with_plural(&gvk, "backups");
        let namespace = format!("cell-{tenant}");
        Api::namespaced_with(self.cluster(placement).client.clone(), &namespace, &ar)
    }

    /// Asks CloudNativePG for a base backup of the cell and waits until it completed.
    pub(super) async fn take_backup(
        &self,
        work: Work<'_>,
        id: uuid::Uuid,
    ) -> anyhow::Result<Taken> {
        let (tenant, placement) = (&work.spec.tenant, work.placement);
        if work.spec.database.engine == cell_model::DatabaseEngine::Rds {
            return self.take_restore_point(work).await;
        }
        let name = backup_name(id);
        let api = self.backups(placement, tenant);
        let object: DynamicObject =
            serde_json::from_value(cell_model::base_backup(tenant, &work.spec.cell_id, &name))?;
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_already_exists() => {}
            Err(e) => anyhow::bail!("asking for Backup {name} in {placement}: {e}"),
        }
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let backup = api
                .get_opt(&name)
                .await
                .map_err(|e| anyhow::anyhow!("reading Backup {name} in {placement}: {e}"))?
                .ok_or_else(|| anyhow::anyhow!("Backup {name} vanished from {placement}"))?;
            let status = &backup.data["status"];
            match status["phase"].as_str() {
                // Done once the operator kept the artifacts with it too.
                Some("completed") if !self.objects_kept(work, &name).await? => {
                    if tokio::time::Instant::now() > deadline {
                        anyhow::bail!(
                            "the operator in {placement} did not keep the artifacts with Backup {name} within 6 h"
                        )
                    }
                    tokio::time::sleep(POLL).await;
                }
                Some("completed") => {
                    let stopped = status["stoppedAt"].as_str().unwrap_or_default();
                    let taken_at = OffsetDateTime::parse(stopped, &Rfc3339).map_err(|e| {
                        anyhow::anyhow!("Backup {name}: stoppedAt `{stopped}`: {e}")
                    })?;
                    return Ok(Taken {
                        taken_at,
                        bytes: None,
                        location: name,
                    });
                }
                Some("failed") => anyhow::bail!(
                    "CloudNativePG could not take Backup {name}: {}",
                    status["error"].as_str().unwrap_or("no reason given")
                ),
                _ if tokio::time::Instant::now() > deadline => {
                    anyhow::bail!("Backup {name} did not complete within 6 h")
                }
                _ => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Whether the operator kept the cell's artifacts with Backup `name` (or a later one: the
    /// copy never deletes, so a later keeping covers it).
    async fn objects_kept(&self, work: Work<'_>, name: &str) -> anyhow::Result<bool> {
        let (placement, id) = (work.placement, work.spec.cell_id.as_str());
        let cell = self
            .get(placement, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("Cell {id} vanished from {placement}"))?;
        let Some(kept) = cell.status.and_then(|s| s.objects_backed_up) else {
            return Ok(false);
        };
        if kept == name {
            return Ok(true);
        }
        let api = self.backups(placement, &work.spec.tenant);
        let mut ends = Vec::new();
        for backup in [name, kept.as_str()] {
            let read = api
                .get_opt(backup)
                .await
                .map_err(|e| anyhow::anyhow!("reading Backup {backup} in {placement}: {e}"))?;
            ends.push(read.and_then(|b| b.data["status"]["stoppedAt"].as_str().map(str::to_owned)));
        }
        Ok(matches!((&ends[0], &ends[1]), (Some(ours), Some(later)) if later >= ours))
    }

    /// An `rds` cell's backup: the moment now, once the operator says RDS can restore the
    /// cell's instance to it.
    async fn take_restore_point(&self, work: Work<'_>) -> anyhow::Result<Taken> {
        let (placement, id) = (work.placement, work.spec.cell_id.as_str());
        let now = OffsetDateTime::now_utc().replace_nanosecond(0)?;
        let moment = now.format(&Rfc3339)?;
        let patch = serde_json::json!({
            "metadata": { "annotations": { cell_model::RESTORE_POINT_ANNOTATION: moment } }
        });
        self.cluster(placement)
            .cells
            .patch(id, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| anyhow::anyhow!("asking Cell {id} in {placement} for {moment}: {e}"))?;
        let deadline = tokio::time::Instant::now() + POINT_PATIENCE;
        loop {
            let cell = self
                .get(placement, id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("Cell {id} vanished from {placement}"))?;
            let confirmed = cell.status.and_then(|s| s.restore_point);
            if confirmed.as_deref() == Some(moment.as_str()) {
                return Ok(Taken {
                    taken_at: now,
                    bytes: None,
                    location: cell_model::restore_point_location(&moment),
                });
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the operator in {placement} did not confirm RDS can restore Cell {id}'s instance to {moment} within 30 min"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    pub(super) async fn delete_backup(
        &self,
        tenant: &str,
        placement: &str,
        name: &str,
    ) -> anyhow::Result<()> {
        if cell_model::restore_point_of(name).is_some() {
            return Ok(());
        }
        match self
            .backups(placement, tenant)
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
            Err(e) => anyhow::bail!("deleting Backup {name} in {placement}: {e}"),
        }
    }

    pub(super) async fn restore_step(&self, r: Restoring<'_>, step: Step) -> anyhow::Result<()> {
        let (at, id) = (r.placement, r.spec.cell_id.as_str());
        let ours = r
            .spec
            .restore
            .as_ref()
            .is_some_and(|restore| restore.id == r.id.to_string());
        anyhow::ensure!(ours, "the cell's spec does not carry restore {}", r.id);
        let restored = |reasons: &'static [&'static str]| async move {
            let status = self.status(at, id).await?;
            match status.condition(RESTORED) {
                Some(c) if reasons.contains(&c.reason.as_str()) => Ok(()),
                // What the operator cannot get past fails; anything else is under way.
                Some(c) if matches!(c.reason.as_str(), "Failed" | "CannotUndo") => {
                    anyhow::bail!("restoring Cell {id} in {at}: {} ({})", c.reason, c.message)
                }
                Some(c) => Err(waiting(format!(
                    "restoring Cell {id} in {at}: {} ({})",
                    c.reason, c.message
                ))),
                None => Err(waiting(format!(
                    "waiting for the operator in {at} to restore Cell {id}"
                ))),
            }
        };
        match step {
            // Fenced once no service runs: the operator archives (in-cluster: the last base
            // backup; rds: RDS's logs, after the rename) or replaces the database already, or
            // (a deleted tenant's return: a new namespace, nothing ran) retrieves what its
            // deletion kept.
            Step::Fence => {
                self.apply(at, r.spec, true, None).await?;
                restored(&[
                    "Retrieving",
                    "Archiving",
                    "Replacing",
                    "Recovering",
                    "Recovered",
                ])
                .await
            }
            Step::Target => restored(&["Recovering", "Recovered"]).await,
            Step::Copy => restored(&["Recovered"]).await,
            Step::Verify => {
                restored(&["Recovered"]).await?;
                self.condition(at, id, "DatabaseReady").await.map(drop)
            }
            Step::Start => {
                self.apply(at, r.spec, false, None).await?;
                self.ready(at, id).await.map(drop)
            }
            _ => anyhow::bail!(
                "the kubernetes driver has no restore step {}",
                step.as_str()
            ),
        }
    }

    /// Undoing restore `r` before its switch (`unfence`; `discard` has nothing left to do):
    ///
    /// ```text
    /// Cell {suspended, restore + abort} → the operator replaces nothing more and says:
    ///   Aborted     the database is the one before it → Cell {restore: the one before} → Ready
    ///   Replaced    it went → Cell {suspended, restore: <id>-undo from fence-<restore>, the
    ///               last backup of the database before it} → Recovered → Cell unsuspended → Ready
    ///   CannotUndo  it went without that backup: the step fails with the operator's reason
    /// ```
    ///
    /// The live Cell's spec says how far it got, so a repeated step goes on from there.
    pub(super) async fn unrestore_step(&self, r: Restoring<'_>, step: Step) -> anyhow::Result<()> {
        if step != Step::Unfence {
            return Ok(());
        }
        let (at, id) = (r.placement, r.spec.cell_id.as_str());
        let ours = r.spec.restore.as_ref().filter(|x| x.id == r.id.to_string());
        let ours =
            ours.ok_or_else(|| anyhow::anyhow!("the cell's spec does not carry restore {}", r.id))?;
        let undo = cell_model::CellRestore {
            id: format!("{}-undo", ours.id),
            backup: cell_model::fence_backup(&ours.id),
            target_time: None,
            deleted: false,
            abort: false,
        };
        let with = |restore: Option<&cell_model::CellRestore>| CellSpec {
            restore: restore.cloned(),
            ..r.spec.clone()
        };
        let live = self
            .get(at, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("Cell {id} does not exist in {at}"))?;
        let now = live.spec.restore.as_ref();
        // The restore before it is back (or the undo's restore recovered): serving again.
        if !live.spec.suspended && (now == r.previous || now == Some(&undo)) {
            return self.ready(at, id).await.map(drop);
        }
        if now == Some(&undo) {
            let status = self.status(at, id).await?;
            return match status.condition(RESTORED) {
                Some(c) if c.reason == "Recovered" => {
                    self.apply(at, &with(Some(&undo)), false, None).await?;
                    self.ready(at, id).await.map(drop)
                }
                Some(c) => anyhow::bail!("undoing restore {}: {} ({})", r.id, c.reason, c.message),
                None => anyhow::bail!(
                    "waiting for the operator in {at} to restore {}",
                    undo.backup
                ),
            };
        }
        let aborting = cell_model::CellRestore {
            abort: true,
            ..ours.clone()
        };
        if now != Some(&aborting) {
            self.apply(at, &with(Some(&aborting)), true, None).await?;
            return Err(waiting(format!(
                "waiting for the operator in {at} to stop restore {}",
                r.id
            )));
        }
        let status = self.status(at, id).await?;
        match status.condition(RESTORED) {
            Some(c) if c.reason == "Aborted" => {
                self.apply(at, &with(r.previous), false, None).await?;
                self.ready(at, id).await.map(drop)
            }
            Some(c) if c.reason == "Replaced" => {
                self.apply(at, &with(Some(&undo)), true, None).await?;
                Err(waiting(format!(
                    "waiting for the operator in {at} to restore {}",
                    undo.backup
                )))
            }
            Some(c) => anyhow::bail!("undoing restore {}: {} ({})", r.id, c.reason, c.message),
            None => Err(waiting(format!(
                "waiting for the operator in {at} to stop restore {}",
                r.id
            ))),
        }
    }

    /// The Cell's status once the operator has observed its current generation.
    async fn status(&self, placement: &str, cell_id: &str) -> anyhow::Result<CellStatus> {
        let cell = self
            .get(placement, cell_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("Cell {cell_id} does not exist in {placement}"))?;
        let status = cell.status.clone().unwrap_or_default();
        if status.observed_generation < cell.metadata.generation {
            return Err(waiting(format!(
                "waiting for the operator in {placement} to observe Cell {cell_id}"
            )));
        }
        Ok(status)
    }
}
