//! The controller and an in-cluster cell's backups against `kube_fake::FakeApi` (no
//! Kubernetes cluster can run here; CloudNativePG's and the kubelet's reports are played by
//! the test): archiving once the backups' claim is bound, the deletion's last base backup, and
//! a restore replacing the cell's Cluster with one recovered from a `Backup`. The rendered
//! recovery is started for real in `backups.rs`.

mod fixtures;

use std::time::Duration;

use cell_model::{CellRestore, ConditionStatus, SearchEngine};
use fixtures::scenario::*;
use http::Method;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

const RESTORE: &str = "0193a5f0-7c1e-7d2a-9b3c-4d5e6f708192";

/// What the provisioner does once the backups' bucket exists.
fn bind_backups(s: &Scenario) {
    let claims = format!("apis/objectbucket.io/v1alpha1/namespaces/{NS}/objectbucketclaims");
    s.api.update(&claims, "postgres-backups", |o| {
        o["status"] = json!({ "phase": "Bound" })
    });
    s.api.insert(
        &format!("api/v1/namespaces/{NS}/configmaps"),
        json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "postgres-backups", "namespace": NS },
            "data": { "BUCKET_NAME": "mrbill-c-acme-1234-pg-77", "BUCKET_HOST": "rgw.rook-ceph.svc",
                      "BUCKET_PORT": "8080" } }),
    );
}

/// A restore to a point in time: nothing happens to the database until the control plane
/// has suspended the cell and no service pod is left; then a last base backup puts everything
/// written until then into the archive, the Cluster goes, its volumes go,
/// and the Cluster recovered from the `Backup` to the time comes up under the same name,
/// archiving into a folder of its own; `Restored` once it serves. Nothing is replaced again
/// once done.
#[tokio::test]
async fn a_restore_replaces_the_cluster_with_one_recovered_from_the_backup_once_fenced() {
    let s = Scenario::new(SearchEngine::Meilisearch);
    s.reconcile().await.expect("create");
    bind_backups(&s);
    s.become_ready();
    s.reconcile().await.expect("ready");
    let volumes = format!("api/v1/namespaces/{NS}/persistentvolumeclaims");
    s.api.insert(
        &volumes,
        json!({ "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": { "name": "postgres-1", "namespace": NS,
                "labels": { "cnpg.io/cluster": "postgres" } } }),
    );
    let restore = CellRestore {
        id: RESTORE.into(),
        backup: "backup-4d5e6f708192".into(),
        target_time: Some("2026-12-06T09:30:00Z".into()),
        deleted: false,
        abort: false,
    };
    s.edit(|cell| cell["spec"]["restore"] = serde_json::to_value(&restore).expect("json"));
    s.reconcile().await.expect("not suspended");
    assert_eq!(
        s.condition("Restored"),
        (ConditionStatus::False, "Fencing".into())
    );
    let old = s
        .api
        .get(&cnpg("clusters"), "postgres")
        .expect("the old Cluster stays");
    assert!(old["spec"]["bootstrap"]["initdb"].is_object());

    s.edit(|cell| cell["spec"]["suspended"] = json!(true));
    s.reconcile().await.expect("pods still running");
    assert_eq!(
        s.condition("Restored"),
        (ConditionStatus::False, "Fencing".into())
    );
    let held = s.api.get(&cnpg("clusters"), "postgres").expect("held");
    assert_eq!(
        held["spec"], old["spec"],
        "the old Cluster is neither replaced nor changed"
    );
    let deployments = format!("apis/apps/v1/namespaces/{NS}/deployments");
    let poc = s.api.get(&deployments, "poc-service").expect("poc");
    assert_eq!(poc["spec"]["replicas"], 0, "the services are told to stop");

    assert!(s.marks.taken().is_empty(), "no fence mark while pods run");
    s.service_pods(0);
    s.reconcile().await.expect("fenced");
    assert_eq!(
        s.condition("Restored"),
        (ConditionStatus::False, "Archiving".into())
    );
    assert_eq!(
        s.marks.taken(),
        ["postgres-rw.cell-acme.svc:5432/poc"],
        "a commit after any moment restored to, before the last base backup is asked for"
    );
    let last = s
        .api
        .get(&cnpg("backups"), "fence-4d5e6f708192")
        .expect("a last base backup once no service runs");
    assert_eq!(last["spec"]["cluster"]["name"], "postgres");
    s.reconcile().await.expect("still archiving");
    assert_eq!(s.marks.taken().len(), 1, "marked once");
    assert!(
        s.api.get(&cnpg("clusters"), "postgres").is_some(),
        "the Cluster waits for the archive"
    );
    s.api.update(&cnpg("backups"), "fence-4d5e6f708192", |o| {
        o["status"] = json!({ "phase": "completed" })
    });
    s.reconcile().await.expect("archived");
    assert!(
        s.api.get(&cnpg("clusters"), "postgres").is_none(),
        "the Cluster is deleted once everything until the fence is archived"
    );
    s.reconcile().await.expect("volumes still there");
    assert_eq!(
        s.condition("Restored"),
        (ConditionStatus::False, "Replacing".into())
    );
    assert!(s.api.get(&cnpg("clusters"), "postgres").is_none());

    s.api.delete(&volumes, "postgres-1");
    s.reconcile().await.expect("recovering");
    let cluster = s
        .api
        .get(&cnpg("clusters"), "postgres")
        .expect("the recovered Cluster");
    assert_eq!(
        cluster["metadata"]["annotations"]["mrbill.dev/restore"],
        RESTORE
    );
    assert_eq!(
        cluster["spec"]["bootstrap"],
        json!({ "recovery": {
            "backup": { "name": "backup-4d5e6f708192" },
            "recoveryTarget": { "targetTime": "2026-12-06T09:30:00Z" },
        }})
    );
    assert_eq!(
        cluster["spec"]["backup"]["barmanObjectStore"]["serverName"], "postgres-4d5e6f708192",
        "the recovered cluster archives apart from the one it replaced"
    );
    let poc = s
        .api
        .get(
            &format!("apis/apps/v1/namespaces/{NS}/deployments"),
            "poc-service",
        )
        .expect("poc");
    assert_eq!(poc["spec"]["replicas"], 0, "suspended: no service yet");
    assert!(
        poc.to_string().contains("pocs-4d5e6f708192"),
        "a fresh search index, rebuilt from the restored database"
    );
    assert_eq!(
        s.condition("Restored"),
        (ConditionStatus::False, "Recovering".into())
    );

    s.postgres_instance_ready();
    s.databases_applied();
    s.reconcile().await.expect("recovered");
    assert_eq!(
        s.condition("Restored"),
        (ConditionStatus::True, "Recovered".into())
    );
    s.edit(|cell| cell["spec"]["suspended"] = json!(false));
    s.reconcile().await.expect("resumed");
    let again = s.api.get(&cnpg("clusters"), "postgres").expect("kept");
    assert_eq!(
        again["metadata"]["uid"], cluster["metadata"]["uid"],
        "not replaced again"
    );
}

/// Once the backups' claim is bound the Cluster archives into that bucket (base backups are
/// the control plane's `Backup`s); `BackupsReady` follows CNPG's archiving. A deleted cell gets
/// a last base backup before its namespace goes.
#[tokio::test]
async fn a_bound_backups_claim_turns_archiving_on_and_a_deletion_waits_for_a_last_backup() {
    let s = Scenario::new(SearchEngine::Embedded);
    s.reconcile().await.expect("create");
    assert!(
        s.api.get(&cnpg("clusters"), "postgres").expect("cluster")["spec"]["backup"].is_null(),
        "no archiving before the claim is bound"
    );
    assert_eq!(
        s.condition("BackupsReady"),
        (ConditionStatus::False, "BucketPending".into())
    );
    bind_backups(&s);
    s.become_ready();
    s.reconcile().await.expect("bound");
    let cluster = s.api.get(&cnpg("clusters"), "postgres").expect("cluster");
    assert_eq!(
        cluster["spec"]["backup"]["barmanObjectStore"]["destinationPath"],
        "s3://mrbill-c-acme-1234-pg-77/"
    );
    assert_eq!(
        cluster["spec"]["backup"]["barmanObjectStore"]["serverName"],
        "postgres"
    );
    assert!(
        s.api.objects(&cnpg("scheduledbackups")).is_empty(),
        "base backups are asked for by the control plane"
    );
    assert_eq!(
        s.condition("BackupsReady"),
        (ConditionStatus::False, "ArchivingPending".into())
    );
    s.api.update(&cnpg("clusters"), "postgres", |o| {
        o["status"]["conditions"] = json!([{ "type": "ContinuousArchiving", "status": "True",
            "reason": "ContinuousArchivingSuccess", "message": "" }]);
    });
    s.reconcile().await.expect("archiving");
    assert_eq!(
        s.condition("BackupsReady"),
        (ConditionStatus::True, "Archiving".into())
    );

    s.api.delete(CELLS, NAME);
    let action = s.reconcile().await.expect("cleanup");
    assert_eq!(action, Action::requeue(Duration::from_secs(10)));
    let prefix = format!("{}/", cnpg("backups"));
    let backups: Vec<Value> = s
        .api
        .snapshot()
        .into_iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let name = backups[0]["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_owned();
    assert!(name.starts_with("final-"), "{name}");
    assert_eq!(backups[0]["spec"]["method"], "barmanObjectStore");
    let namespace_deleted = |s: &Scenario| {
        s.api
            .log()
            .iter()
            .any(|l| l.method == Method::DELETE && l.path == format!("/api/v1/namespaces/{NS}"))
    };
    assert!(
        !namespace_deleted(&s),
        "the namespace waits for the last backup"
    );
    s.reconcile().await.expect("still backing up");
    assert!(!namespace_deleted(&s));
    s.api.update(&cnpg("backups"), &name, |o| {
        o["status"] = json!({ "phase": "completed" })
    });
    s.reconcile().await.expect("cleanup");
    assert!(
        namespace_deleted(&s),
        "the namespace goes after the last backup"
    );
}

/// A restore being undone (`abort`) replaces nothing more: before the Cluster went the cell's
/// database is untouched (`Aborted`); once it went, the recovered one is not created and the
/// undo is the fence's last backup (`Replaced`), or impossible without it (`CannotUndo`).
#[tokio::test]
async fn an_undone_restore_replaces_nothing_more_and_says_what_undoing_takes() {
    let s = Scenario::new(SearchEngine::Embedded);
    s.reconcile().await.expect("create");
    bind_backups(&s);
    s.become_ready();
    s.reconcile().await.expect("ready");
    let mut restore = CellRestore {
        id: RESTORE.into(),
        backup: "backup-4d5e6f708192".into(),
        target_time: None,
        deleted: false,
        abort: false,
    };
    s.restoring(&restore);
    s.reconcile().await.expect("fencing: pods still run");
    assert_eq!(s.condition("Restored").1, "Fencing");
    let before = s
        .api
        .get(&cnpg("clusters"), "postgres")
        .expect("the Cluster");

    restore.abort = true;
    s.restoring(&restore);
    s.service_pods(0);
    s.reconcile().await.expect("undone");
    assert_eq!(
        s.condition("Restored"),
        (ConditionStatus::False, "Aborted".into())
    );
    assert!(s.marks.taken().is_empty(), "no fence mark");
    assert!(
        s.api.get(&cnpg("backups"), "fence-4d5e6f708192").is_none(),
        "no last backup: nothing is replaced"
    );
    let after = s.api.get(&cnpg("clusters"), "postgres").expect("kept");
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    assert_eq!(after["spec"], before["spec"], "untouched");

    // Undone once the Cluster went: nothing is recovered in its place.
    restore.abort = false;
    s.restoring(&restore);
    s.reconcile().await.expect("the last backup asked for");
    s.api.update(&cnpg("backups"), "fence-4d5e6f708192", |o| {
        o["status"] = json!({ "phase": "completed" })
    });
    s.reconcile().await.expect("the Cluster goes");
    assert!(s.api.get(&cnpg("clusters"), "postgres").is_none());
    restore.abort = true;
    s.restoring(&restore);
    s.reconcile().await.expect("undone after the replacement");
    assert_eq!(
        s.condition("Restored"),
        (ConditionStatus::False, "Replaced".into())
    );
    assert!(
        s.api.get(&cnpg("clusters"), "postgres").is_none(),
        "no recovered Cluster for an undone restore"
    );
    s.api.update(&cnpg("backups"), "fence-4d5e6f708192", |o| {
        o["status"] = json!({ "phase": "failed", "error": "no space" })
    });
    s.reconcile().await.expect("without the backup");
    assert_eq!(
        s.condition("Restored"),
        (ConditionStatus::False, "CannotUndo".into())
    );
}
