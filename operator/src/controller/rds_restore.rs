//! An `rds` cell's backups and restores, made with RDS's automated backups (a daily snapshot
//! and the transaction logs after it, kept the tier's days) rather than CloudNativePG.
//!
//! ```text
//! backup    annotation mrbill.dev/restore-point = t (the control plane)
//!           → once the instance's latest restorable time ≥ t: status.restorePoint = t
//! restore   spec.restore.id ≠ the instance's mrbill:restore tag:
//!    the cell is not suspended, or a service still runs           Restored False  Fencing
//!    mrbill-<cell> renamed mrbill-<cell>-replaced-<restore>        Restored False  Replacing
//!    its latest restorable time has not reached the target yet     Restored False  Archiving
//!    RestoreDBInstanceToPointInTime → mrbill-<cell>, tagged         Restored False  Replacing
//! the instance is the restore's: available, roles there            Restored True   Recovered
//!    → once the services run again (not suspended) the replaced instance is deleted after
//!      a final snapshot (…-final)
//!  … or RDS could not make it (incompatible-restore, failed, …)      Restored False  Failed
//!    → the replaced instance is kept as it was; nothing is retried
//! spec.restore.deleted (a deleted cell's return): from its final snapshot (`rds_return.rs`)
//! spec.restore.abort: the restore's instance (if any) deleted after a final snapshot
//!    (…-undone), the replaced one renamed back                     Restored False  Undoing
//!    the cell's instance is the one before the restore              Restored False  Aborted
//!    the replaced instance is gone (after the restore finished)     Restored False  CannotUndo
//! ```
//!
//! The target is `spec.restore.targetTime`, else the restore point its backup names. The
//! restored instance keeps the identifier, so its address, master user and the services'
//! Secrets stay as they were.
//!
//! **Invariant:** the instance is renamed away only while the control plane holds the cell
//! suspended and no service pod runs, so nothing writes into it after the moment restored.

use std::collections::BTreeMap;

use cell_model::{Cell, CellStatus, ConditionStatus, DatabaseEngine, RESTORED};
use kube::ResourceExt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::observe::set;
use super::restore::running_services;
use super::{Context, publish};
use crate::aws::{AwsClients, InstanceState, Rds};
use crate::error::Error;

/// What the restore point annotation asks for now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Point {
    /// Nothing asked, or confirmed already.
    Settled,
    /// Asked for, not yet restorable.
    Pending,
    /// Restorable now: goes into `status.restorePoint`.
    Restorable(String),
}

/// Whether RDS can restore the instance to the moment the control plane asked for.
pub(super) async fn restore_point(aws: &AwsClients, cell: &Cell) -> Result<Point, Error> {
    let Some(asked) = cell.annotations().get(cell_model::RESTORE_POINT_ANNOTATION) else {
        return Ok(Point::Settled);
    };
    let confirmed = cell.status.as_ref().and_then(|s| s.restore_point.as_ref());
    if confirmed == Some(asked) {
        return Ok(Point::Settled);
    }
    // Written by the control plane; anything else asks for nothing (and never stops the
    // cell's reconcile).
    let Ok(moment) = parse(asked, cell_model::RESTORE_POINT_ANNOTATION) else {
        tracing::warn!(cell = %cell.spec.cell_id, %asked, "a restore point that is not an RFC 3339 time; ignored");
        return Ok(Point::Settled);
    };
    let instance = aws.rds.instance(&Rds::identifier(cell)).await?;
    let until = instance.and_then(|i| i.restorable_until);
    Ok(match until {
        Some(until) if until >= moment => Point::Restorable(asked.clone()),
        _ => Point::Pending,
    })
}

/// Why the cell's instance is not yet the restore's (`reason`, `message`), after doing what
/// can be done now; `None` when the cell restores nothing or its instance is the restore's
/// (then the instance it replaced goes, after a final snapshot).
pub(super) async fn replacing(
    ctx: &Context,
    cell: &Cell,
    aws: &AwsClients,
    outputs: &BTreeMap<String, String>,
) -> Result<Option<(&'static str, String)>, Error> {
    let Some(restore) = restoring(cell) else {
        return Ok(None);
    };
    let id = Rds::identifier(cell);
    let replaced = Rds::replaced(cell, &restore.id);
    if restore.abort {
        return undo(aws, restore, &id, &replaced).await.map(Some);
    }
    match aws.rds.instance(&id).await? {
        Some(instance) if instance.restore.as_deref() == Some(restore.id.as_str()) => {
            if let Some(failed) = failed_restore(&instance.state, &id, &replaced) {
                return Ok(Some(failed));
            }
            let available = matches!(instance.state, InstanceState::Available { .. });
            if restore.deleted
                && available
                && cell.spec.suspended
                && let Some(waiting) =
                    super::rds_return::settle(cell, aws, restore, instance.master_reset).await?
            {
                return Ok(Some(waiting));
            }
            // The replaced instance stays while the cell is suspended: until the control plane
            // starts the services again the restore can still be undone with it.
            if matches!(instance.state, InstanceState::Available { .. })
                && !cell.spec.suspended
                && aws.rds.instance(&replaced).await?.is_some()
            {
                let snapshot = format!("{replaced}-final");
                if aws
                    .rds
                    .delete_instance(&replaced, &snapshot)
                    .await?
                    .is_some()
                {
                    tracing::info!(cell = %cell.spec.cell_id, instance = %replaced, %snapshot,
                        "the instance the restore replaced is deleted");
                }
            }
            Ok(None)
        }
        Some(instance) => {
            if !cell.spec.suspended {
                let message = "the restore replaces the database only while the cell is suspended";
                return Ok(Some(("Fencing", message.to_owned())));
            }
            let running = running_services(&ctx.client, cell).await?;
            if !running.is_empty() {
                let message = format!("waiting for {} to stop", running.join(", "));
                return Ok(Some(("Fencing", message)));
            }
            if !matches!(instance.state, InstanceState::Available { .. }) {
                let message = format!("waiting for {id} to be available: {:?}", instance.state);
                return Ok(Some(("Fencing", message)));
            }
            aws.rds.rename(&id, &replaced).await?;
            let note = format!("{id} renamed {replaced}: the restore's instance takes its name");
            tracing::info!(cell = %cell.spec.cell_id, restore = %restore.id, "{note}");
            publish(
                ctx,
                cell,
                kube::runtime::events::EventType::Normal,
                "Replacing",
                &note,
            )
            .await;
            Ok(Some(("Replacing", note)))
        }
        None if restore.deleted => super::rds_return::returning(ctx, cell, aws, outputs, restore)
            .await
            .map(Some),
        None => {
            let Some(source) = aws.rds.instance(&replaced).await? else {
                return Err(Error::Render(format!(
                    "neither {id} nor {replaced} exists: nothing to restore {} from",
                    restore.id
                )));
            };
            if !matches!(source.state, InstanceState::Available { .. }) {
                let message = format!("waiting for {replaced}: {:?}", source.state);
                return Ok(Some(("Replacing", message)));
            }
            let target = target(restore)?;
            let until = source.restorable_until;
            if until.is_none_or(|until| until < target) {
                let until = until.map_or_else(|| "nothing yet".to_owned(), show);
                let message = format!(
                    "waiting for RDS to archive {replaced} up to {} (restorable until {until})",
                    show(target)
                );
                return Ok(Some(("Archiving", message)));
            }
            aws.rds
                .restore_to_time(cell, outputs, &replaced, target, &restore.id)
                .await?;
            let note = format!(
                "{id} restored from {replaced} as it was at {}",
                show(target)
            );
            tracing::info!(cell = %cell.spec.cell_id, restore = %restore.id, "{note}");
            Ok(Some(("Replacing", note)))
        }
    }
}

/// Undoing an rds restore (`spec.restore.abort`): nothing more is restored for it, and the
/// instance it renamed away comes back under the cell's name — the restore's instance, if it
/// made one, goes first (after a final snapshot `…-undone`: it is a copy, kept like any).
/// `Aborted` once the cell's instance is the one before the restore.
async fn undo(
    aws: &AwsClients,
    restore: &cell_model::CellRestore,
    id: &str,
    replaced: &str,
) -> Result<(&'static str, String), Error> {
    let current = aws.rds.instance(id).await?;
    let ours = current
        .as_ref()
        .is_some_and(|i| i.restore.as_deref() == Some(restore.id.as_str()));
    let away = aws.rds.instance(replaced).await?;
    Ok(match (current, away) {
        (_, Some(away)) if going(&away.state) => {
            let message = format!(
                "{replaced}, the instance the restore replaced, is being deleted or failed: nothing holds the database as it was"
            );
            ("CannotUndo", message)
        }
        (Some(_), Some(away)) if ours => {
            if matches!(away.state, InstanceState::Available { .. }) {
                let snapshot = format!("{replaced}-undone");
                aws.rds.delete_instance(id, &snapshot).await?;
            }
            let message =
                format!("deleting {id}, the restore's instance, to rename {replaced} back");
            ("Undoing", message)
        }
        (None, Some(away)) => {
            if matches!(away.state, InstanceState::Available { .. }) {
                aws.rds.rename(replaced, id).await?;
                tracing::info!(instance = %replaced, to = %id, "renamed back: the restore is undone");
            }
            ("Undoing", format!("renaming {replaced} back to {id}"))
        }
        (Some(_), None) if !ours => {
            let message = "the cell's instance is the one before the restore: nothing was changed";
            ("Aborted", message.to_owned())
        }
        (Some(_), None) => {
            let message = format!(
                "{id} is the restore's and {replaced}, the instance it replaced, is gone: nothing holds the database as it was"
            );
            ("CannotUndo", message)
        }
        // Renamed, neither name answers yet, or the name is held by another instance.
        _ => (
            "Undoing",
            format!("waiting for {id} and {replaced} to settle"),
        ),
    })
}

/// Whether an instance is going or unusable (deleting, failed): an undo never deletes the
/// restore's instance for one such (once the services started, the replaced instance is
/// deleted after its final snapshot).
fn going(state: &InstanceState) -> bool {
    matches!(state, InstanceState::Failed(_))
        || matches!(state, InstanceState::InProgress(s) if s == "deleting")
}

/// A restored instance RDS could not make (`incompatible-restore`, `failed`, …): `Failed`, with
/// the instance it replaced kept as it was (renamed) for someone to look at — retrying the
/// same restore would fail the same way, and waiting in `Recovering` would hide it.
fn failed_restore(
    state: &InstanceState,
    id: &str,
    replaced: &str,
) -> Option<(&'static str, String)> {
    let InstanceState::Failed(status) = state else {
        return None;
    };
    Some((
        "Failed",
        format!(
            "RDS could not restore {id} ({status}); {replaced}, the instance it replaces, is kept as it was"
        ),
    ))
}

/// Sets `Restored` for an `rds` cell whose instance is the restore's (`replacing` said
/// nothing is left to do): recovered once its database is ready.
pub(super) fn observe(cell: &Cell, status: &mut CellStatus) {
    let Some(restore) = restoring(cell) else {
        return;
    };
    let to = match restore.deleted {
        true => "the deleted cell's final snapshot".to_owned(),
        false => target(restore).map_or_else(|e| e.to_string(), show),
    };
    let database = status.condition("DatabaseReady").cloned();
    match database {
        Some(c) if c.status == ConditionStatus::True => {
            let message = format!("restored by RDS to {to}");
            set(status, RESTORED, true, "Recovered", &message);
        }
        c => {
            let now = c.map_or_else(|| "no status yet".to_owned(), |c| c.message);
            let message = format!("RDS restoring the instance to {to}: {now}");
            set(status, RESTORED, false, "Recovering", &message);
        }
    }
}

/// The cell's restore, when its database is an RDS instance.
fn restoring(cell: &Cell) -> Option<&cell_model::CellRestore> {
    (cell.spec.database.engine == DatabaseEngine::Rds)
        .then_some(cell.spec.restore.as_ref())
        .flatten()
}

/// The moment the restore brings back: its target time, else its backup's restore point.
fn target(restore: &cell_model::CellRestore) -> Result<OffsetDateTime, Error> {
    match &restore.target_time {
        Some(t) => parse(t, "spec.restore.targetTime"),
        None => {
            let point = cell_model::restore_point_of(&restore.backup).ok_or_else(|| {
                Error::Render(format!(
                    "spec.restore.backup `{}` is not an rds restore point",
                    restore.backup
                ))
            })?;
            parse(point, "spec.restore.backup")
        }
    }
}

fn show(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn parse(value: &str, what: &str) -> Result<OffsetDateTime, Error> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map_err(|e| Error::Render(format!("{what}: `{value}` is not an RFC 3339 time: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undo_renames_back_only_an_instance_that_stays() {
        assert!(going(&InstanceState::InProgress("deleting".into())));
        assert!(going(&InstanceState::Failed("incompatible-restore".into())));
        assert!(!going(&InstanceState::InProgress("renaming".into())));
        assert!(!going(&InstanceState::Available {
            address: "db".into(),
            port: 5432,
            class: "db.t4g.micro".into(),
            storage_gib: 20,
        }));
    }

    #[test]
    fn a_restore_rds_could_not_make_is_a_failure_that_keeps_the_replaced_instance() {
        let (id, replaced) = ("mrbill-c-1", "mrbill-c-1-replaced-abc");
        let failed = InstanceState::Failed("incompatible-restore".into());
        let (reason, message) = failed_restore(&failed, id, replaced).expect("a failure");
        assert_eq!(reason, "Failed");
        assert!(message.contains("incompatible-restore"), "{message}");
        assert!(message.contains(replaced), "{message}");
        for going in [
            InstanceState::InProgress("creating".into()),
            InstanceState::Available {
                address: "db".into(),
                port: 5432,
                class: "db.t4g.micro".into(),
                storage_gib: 20,
            },
        ] {
            assert_eq!(failed_restore(&going, id, replaced), None, "{going:?}");
        }
    }
}
