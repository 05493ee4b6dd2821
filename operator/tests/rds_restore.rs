//! An `rds` cell's backups and restores through its operator (`controller/rds_restore.rs`):
//! the restore point a backup asks for, confirmed once RDS can restore to it; a restore that
//! waits for the fence, renames the instance away, has RDS restore it to the moment under its
//! own name (tagged with the restore), and deletes the one it replaced after a final snapshot.
//!
//! Fakes, because none of these can run here: moto plays AWS (stacks, instances, renames,
//! point-in-time restores, snapshots), the cluster's API is a `kube_fake::FakeApi`. moto's
//! instances run no Postgres and restore no data (and report every instance restorable until
//! now), so a real Postgres stands in for the instance the operator makes the services' roles
//! in (`rds/`); what RDS restores is RDS's: this shows what the operator asks of it and when.

use std::time::Duration;

use cell_model::{CellRestore, ConditionStatus};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

mod fixtures;
mod rds;
mod rds_setup;
use rds_setup::{CELLS, INSTANCE, NAME, Setup};

fn moment(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .expect("whole seconds")
        .format(&Rfc3339)
        .expect("RFC 3339")
}

/// A restore point is confirmed in the status once the instance is restorable to it, and not
/// before: one in the future stays unconfirmed (the status keeps the last confirmed one).
#[tokio::test]
async fn a_restore_point_is_confirmed_once_rds_can_restore_to_it() {
    let s = Setup::new().await;
    s.until("DatabaseReady").await;
    let past = moment(OffsetDateTime::now_utc() - Duration::from_secs(2));
    s.api.update(CELLS, NAME, |cell| {
        cell["metadata"]["annotations"] = json!({ cell_model::RESTORE_POINT_ANNOTATION: past });
    });
    s.reconcile().await;
    let status = s.cell().status.unwrap_or_default();
    assert_eq!(status.restore_point.as_deref(), Some(past.as_str()));

    // Not a time: ignored, and the cell still reconciles.
    s.api.update(CELLS, NAME, |cell| {
        cell["metadata"]["annotations"] =
            json!({ cell_model::RESTORE_POINT_ANNOTATION: "yesterday" });
    });
    s.reconcile().await;
    let status = s.cell().status.unwrap_or_default();
    assert_eq!(status.restore_point.as_deref(), Some(past.as_str()));

    let future = moment(OffsetDateTime::now_utc() + Duration::from_secs(3600));
    s.api.update(CELLS, NAME, |cell| {
        cell["metadata"]["annotations"] = json!({ cell_model::RESTORE_POINT_ANNOTATION: future });
    });
    s.reconcile().await;
    let status = s.cell().status.unwrap_or_default();
    assert_eq!(
        status.restore_point.as_deref(),
        Some(past.as_str()),
        "a moment RDS cannot restore to yet is not confirmed"
    );
}

/// The restore waits for the fence, then the instance is renamed away and RDS restores it to
/// the backup's moment under the cell's name; the replaced instance goes after a final
/// snapshot; the cell's database is ready again with the same address.
#[tokio::test]
async fn a_restore_replaces_the_instance_with_one_rds_restored_to_the_moment() {
    let s = Setup::new().await;
    s.until("DatabaseReady").await;
    let address = s.condition("DatabaseReady").expect("ready").1;
    let id = uuid::Uuid::now_v7().to_string();
    let point = moment(OffsetDateTime::now_utc() - Duration::from_secs(2));
    let restore = CellRestore {
        id: id.clone(),
        backup: cell_model::restore_point_location(&point),
        target_time: None,
        deleted: false,
        abort: false,
    };
    s.edit(|cell| cell["spec"]["restore"] = serde_json::to_value(&restore).expect("json"));
    s.reconcile().await;
    let (ok, why) = s.condition("Restored").expect("Restored");
    assert_eq!(ok, ConditionStatus::False);
    assert!(why.starts_with("Fencing"), "{why}");
    assert_eq!(
        s.instance(INSTANCE).await,
        Some(None),
        "not renamed unfenced"
    );

    s.edit(|cell| cell["spec"]["suspended"] = json!(true));
    s.reconcile().await;
    let (_, why) = s.condition("Restored").expect("Restored");
    assert!(why.starts_with("Replacing"), "{why}");
    s.forget_automated_snapshots().await;
    let short = &id.replace('-', "")[20..];
    let replaced = format!("{INSTANCE}-replaced-{short}");
    assert_eq!(s.instance(&replaced).await, Some(None), "renamed away");
    assert_eq!(s.instance(INSTANCE).await, None);

    s.until("Restored").await;
    assert_eq!(
        s.instance(INSTANCE).await,
        Some(Some(id.clone())),
        "the restore's instance under the cell's name"
    );
    let (_, why) = s.condition("Restored").expect("Restored");
    assert!(
        why.contains(&point),
        "restored to the backup's moment: {why}"
    );
    assert_eq!(s.condition("DatabaseReady").expect("ready").1, address);
    // The replaced instance stays while the cell is suspended (the restore can be undone),
    // and goes once the services run again, after its final snapshot.
    s.reconcile().await;
    assert_eq!(
        s.instance(&replaced).await,
        Some(None),
        "kept while suspended"
    );
    s.edit(|cell| cell["spec"]["suspended"] = json!(false));
    s.reconcile().await;
    assert_eq!(
        s.instance(&replaced).await,
        None,
        "the replaced instance deleted"
    );
    let snapshots = s
        .rds
        .describe_db_snapshots()
        .db_snapshot_identifier(format!("{replaced}-final"))
        .send()
        .await
        .expect("the final snapshot");
    assert_eq!(snapshots.db_snapshots().len(), 1);

    // Another reconcile changes nothing: the restore is done.
    s.reconcile().await;
    assert_eq!(s.instance(INSTANCE).await, Some(Some(id)));
    assert_eq!(
        s.condition("Restored").expect("Restored").0,
        ConditionStatus::True
    );
}

/// Undoing an rds restore once it replaced the instance: the restore's instance goes after a
/// final snapshot (`…-undone`), the replaced one is renamed back, and the operator says
/// `Aborted`: the cell's instance is the one before, at the same address.
#[tokio::test]
async fn an_rds_restore_is_undone_by_renaming_the_instance_back() {
    let s = Setup::new().await;
    s.until("DatabaseReady").await;
    let address = s.condition("DatabaseReady").expect("ready").1;
    let id = uuid::Uuid::now_v7().to_string();
    let point = moment(OffsetDateTime::now_utc() - Duration::from_secs(2));
    let mut restore = CellRestore {
        id: id.clone(),
        backup: cell_model::restore_point_location(&point),
        target_time: None,
        deleted: false,
        abort: false,
    };
    s.edit(|cell| {
        cell["spec"]["suspended"] = json!(true);
        cell["spec"]["restore"] = serde_json::to_value(&restore).expect("json");
    });
    s.reconcile().await;
    s.forget_automated_snapshots().await;
    s.until("Restored").await;
    let short = &id.replace('-', "")[20..];
    let replaced = format!("{INSTANCE}-replaced-{short}");
    assert_eq!(s.instance(INSTANCE).await, Some(Some(id.clone())));
    assert_eq!(s.instance(&replaced).await, Some(None));

    restore.abort = true;
    s.edit(|cell| cell["spec"]["restore"] = serde_json::to_value(&restore).expect("json"));
    let mut reasons = Vec::new();
    for _ in 0..20 {
        s.reconcile().await;
        let (_, why) = s.condition("Restored").expect("Restored");
        let reason = why.split([' ', ':']).next().unwrap_or_default().to_owned();
        if reasons.last() != Some(&reason) {
            reasons.push(reason.clone());
        }
        if reason == "Aborted" {
            break;
        }
    }
    assert_eq!(
        reasons.last().map(String::as_str),
        Some("Aborted"),
        "{reasons:?}"
    );
    assert!(reasons.contains(&"Undoing".to_owned()), "{reasons:?}");
    assert_eq!(
        s.instance(INSTANCE).await,
        Some(None),
        "the instance before the restore, under the cell's name"
    );
    assert_eq!(s.instance(&replaced).await, None, "renamed back");
    let snapshots = s
        .rds
        .describe_db_snapshots()
        .db_snapshot_identifier(format!("{replaced}-undone"))
        .send()
        .await
        .expect("the restore's instance's final snapshot");
    assert_eq!(snapshots.db_snapshots().len(), 1);
    // The control plane puts the restore before back (none here): the cell serves from the
    // instance before, at the same address.
    s.edit(|cell| {
        cell["spec"]["restore"] = serde_json::Value::Null;
        cell["spec"]["suspended"] = json!(false);
    });
    s.until("DatabaseReady").await;
    assert_eq!(s.condition("DatabaseReady").expect("ready").1, address);
}
