//! The kubernetes driver's backups and restores of an in-cluster cell against
//! `kube_fake::FakeApi` (no cluster can run here), with CloudNativePG and the cell-operator
//! played by the test the way they report (the operator's own side, and a recovery started
//! for real from the rendered Cluster, are tested in `operator/tests/backups*.rs`): which
//! `Backup` it asks for and what it reads back, what each restore step applies and waits for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cell_model::{
    CellRestore, CellSpec, DatabaseEngine, DatabaseSpec, SearchEngine, ServiceReplicas, Tier,
};
use kube_fake::FakeApi;
use mrbill_control_plane::driver::kubernetes::{KubeDriver, backup_name};
use mrbill_control_plane::driver::{CellDriver, Restoring, Step, Work};
use serde_json::{Value, json};

const CELLS: &str = "apis/mrbill.dev/v1alpha1/cells";
const BACKUPS: &str = "apis/postgresql.cnpg.io/v1/namespaces/cell-acme/backups";
const ID: &str = "c-acme-1234";

fn spec() -> CellSpec {
    CellSpec {
        cell_id: ID.into(),
        tenant: "acme".into(),
        tier: Tier::Small,
        version: "1.4.2".into(),
        replicas: ServiceReplicas::default(),
        database: DatabaseSpec {
            engine: DatabaseEngine::InCluster,
            class: None,
            storage_gib: 20,
            multi_az: false,
        },
        search: SearchEngine::Embedded,
        placement: "eks-1".into(),
        suspended: false,
        email_domains: Vec::new(),
        bootstrap: None,
        migration: None,
        restore: None,
    }
}

fn at_0930() -> time::OffsetDateTime {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse("2026-12-06T09:30:00Z", &Rfc3339).expect("time")
}

fn condition(type_: &str, ok: bool, reason: &str) -> Value {
    json!({ "type": type_, "status": if ok { "True" } else { "False" }, "reason": reason, "message": "" })
}

/// CloudNativePG completing every Backup asked for, and the operator keeping the artifacts
/// with the newest (unless `keeping` is off) and reporting a restore: the old database
/// replaced while suspended, then recovered; Ready once the services run.
fn operate(api: &FakeApi, keeping: bool) {
    for backup in api.objects(BACKUPS) {
        if backup["status"].is_null() {
            let name = backup["metadata"]["name"].as_str().unwrap_or_default();
            api.update(BACKUPS, name, |b| {
                b["status"] = json!({ "phase": "completed", "backupId": "20261206T093000",
                    "startedAt": "2026-12-06T09:29:58Z", "stoppedAt": "2026-12-06T09:30:00Z" })
            });
        }
    }
    let Some(cell) = api.get(CELLS, ID) else {
        return;
    };
    // A restore being undone: the test reports the operator's answer itself.
    if cell["spec"]["restore"]["abort"] == true {
        return;
    }
    let restoring = !cell["spec"]["restore"].is_null();
    let suspended = cell["spec"]["suspended"] == true;
    let mut conditions = vec![condition("DatabaseReady", true, "PostgresRunning")];
    if restoring {
        conditions.push(condition("Restored", true, "Recovered"));
    }
    conditions.push(condition("Ready", !suspended, "AllReady"));
    let mut status = json!({ "phase": if suspended { "Suspended" } else { "Ready" },
        "conditions": conditions, "observedGeneration": cell["metadata"]["generation"] });
    let newest = api
        .objects(BACKUPS)
        .into_iter()
        .filter(|b| b["status"]["phase"] == "completed")
        .filter_map(|b| b["metadata"]["name"].as_str().map(str::to_owned))
        .max();
    if let Some(newest) = newest.filter(|_| keeping) {
        status["objectsBackedUp"] = json!(newest);
    } else if !cell["status"]["objectsBackedUp"].is_null() {
        status["objectsBackedUp"] = cell["status"]["objectsBackedUp"].clone();
    }
    // An rds cell's restore point, confirmed as soon as it is asked for.
    let point = &cell["metadata"]["annotations"]["mrbill.dev/restore-point"];
    if !point.is_null() {
        status["restorePoint"] = point.clone();
    }
    if cell["status"] != status {
        api.update(CELLS, ID, |c| c["status"] = status);
    }
}

struct Cluster {
    api: FakeApi,
    driver: KubeDriver,
    paused: Arc<AtomicBool>,
    /// Whether the operator keeps the artifacts with a completed backup.
    keeping: Arc<AtomicBool>,
    _operator: tokio::task::JoinHandle<()>,
}

impl Cluster {
    async fn new() -> Self {
        let api = FakeApi::new();
        let driver = KubeDriver::new(api.client());
        let paused = Arc::new(AtomicBool::new(false));
        let keeping = Arc::new(AtomicBool::new(true));
        let (o, p, k) = (api.clone(), paused.clone(), keeping.clone());
        let operator = tokio::spawn(async move {
            loop {
                if !p.load(Ordering::SeqCst) {
                    operate(&o, k.load(Ordering::SeqCst));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        driver
            .apply("eks-1", &spec(), false, None)
            .await
            .expect("the cell");
        Self {
            api,
            driver,
            paused,
            keeping,
            _operator: operator,
        }
    }

    /// Runs restore `step` until the operator has done its part (as the reconciler retries).
    async fn step(&self, r: Restoring<'_>, step: Step) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.driver.restore(r, step).await {
                Ok(()) => return,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{}: {e:#}", step.as_str()),
            }
        }
    }

    fn cell(&self) -> Value {
        self.api.get(CELLS, ID).expect("the Cell")
    }
}

/// A backup is a CNPG `Backup` of the cell's Cluster, complete when CNPG says so and the
/// operator kept the artifacts with it, taken as of its end; retention deletes it.
#[tokio::test]
async fn a_backup_is_a_cnpg_backup_read_back_once_complete() {
    let c = Cluster::new().await;
    let spec = spec();
    let id = uuid::Uuid::now_v7();
    c.keeping.store(false, Ordering::SeqCst);
    let driver = c.driver.clone();
    let s = spec.clone();
    let taking = tokio::spawn(async move { driver.back_up(Work::new(&s, "eks-1"), id).await });
    let completed = |c: &Cluster| {
        c.api
            .get(BACKUPS, &backup_name(id))
            .is_some_and(|b| b["status"]["phase"] == "completed")
    };
    while !completed(&c) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Longer than the driver's poll (2 s): it has read the completed Backup by then.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !taking.is_finished(),
        "not done before the artifacts are kept with it"
    );
    c.keeping.store(true, Ordering::SeqCst);
    let taken = taking.await.expect("joined").expect("taken");
    assert_eq!(taken.location, backup_name(id));
    assert_eq!(taken.bytes, None, "CNPG reports no size");
    assert_eq!(taken.taken_at, at_0930());
    let backup = c.api.get(BACKUPS, &taken.location).expect("the Backup");
    assert_eq!(backup["spec"]["cluster"]["name"], "postgres");
    assert_eq!(backup["spec"]["method"], "barmanObjectStore");

    c.driver
        .forget_backup("acme", "eks-1", &taken.location)
        .await
        .expect("forgotten");
    assert!(c.api.get(BACKUPS, &taken.location).is_none());
    c.driver
        .forget_backup("acme", "eks-1", &taken.location)
        .await
        .expect("gone already is fine");

    // A failed one says why.
    c.paused.store(true, Ordering::SeqCst);
    let failing = uuid::Uuid::now_v7();
    let driver = c.driver.clone();
    let spec2 = spec.clone();
    let taking =
        tokio::spawn(async move { driver.back_up(Work::new(&spec2, "eks-1"), failing).await });
    let name = backup_name(failing);
    while c.api.get(BACKUPS, &name).is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.api.update(BACKUPS, &name, |b| {
        b["status"] = json!({ "phase": "failed", "error": "can't upload: AccessDenied" })
    });
    let error = taking.await.expect("joined").expect_err("failed");
    assert!(format!("{error:#}").contains("AccessDenied"), "{error:#}");
    c.paused.store(false, Ordering::SeqCst);

    // The API refuses (409) what this driver cannot do: a deleted rds tenant comes back from
    // its final snapshot, not from a restore point (RDS's logs went with its instance); a
    // deleted in-cluster one from any backup its kept archive holds.
    let mut rds = spec.clone();
    rds.database.engine = DatabaseEngine::Rds;
    let point = cell_model::restore_point_location("2026-12-01T10:00:00Z");
    assert!(!c.driver.restores_deleted(&rds, &point), "a restore point");
    assert!(
        c.driver.restores_deleted(&rds, "final-1796000000"),
        "its final snapshot"
    );
    assert!(
        c.driver.restores_deleted(&spec, &backup_name(failing)),
        "in-cluster"
    );
}

/// A delete names the last base backup the operator takes (the catalog records it as the
/// tenant's final backup); the deleted tenant's restore then applies the Cell again,
/// suspended, restoring that backup as a deleted one — fenced while the operator retrieves
/// what the deletion kept (a new namespace runs nothing), recovered, started.
#[tokio::test]
async fn a_deleted_tenant_comes_back_from_the_backup_its_delete_named() {
    let c = Cluster::new().await;
    c.paused.store(true, Ordering::SeqCst);
    let spec = spec();
    let destination = c
        .driver
        .backup_destination("acme", ID)
        .expect("a kubernetes delete keeps a backup");
    let name = destination.to_str().expect("a name").to_owned();
    assert!(name.starts_with("final-"), "{name}");
    // The operator's finalizer holds the Cell while it works.
    c.api.update(CELLS, ID, |cell| {
        cell["metadata"]["finalizers"] = json!(["mrbill.dev/cell"])
    });
    let work = Work {
        spec: &spec,
        placement: "eks-1",
        backup: Some(&destination),
    };
    c.driver
        .run(work, mrbill_control_plane::catalog::Op::Delete, Step::Cell)
        .await
        .expect("deleted");
    let deleting = c.cell();
    assert_eq!(
        deleting["metadata"]["annotations"]["mrbill.dev/final-backup"], name,
        "the operator's last backup is the one the catalog records"
    );
    assert!(!deleting["metadata"]["deletionTimestamp"].is_null());
    c.api
        .update(CELLS, ID, |cell| cell["metadata"]["finalizers"] = json!([]));
    c.api.delete(CELLS, ID);
    assert!(c.api.get(CELLS, ID).is_none(), "gone");

    let id = uuid::Uuid::now_v7();
    let mut returning = spec.clone();
    returning.restore = Some(CellRestore {
        id: id.to_string(),
        backup: name.clone(),
        target_time: None,
        deleted: true,
        abort: false,
    });
    let r = Restoring {
        spec: &returning,
        placement: "eks-1",
        backup: &name,
        to_time: None,
        id,
        previous: None,
    };
    c.driver
        .restore(r, Step::Fence)
        .await
        .expect_err("not observed yet");
    let cell = c.cell();
    assert_eq!(cell["spec"]["suspended"], true, "applied again, suspended");
    assert_eq!(cell["spec"]["restore"]["deleted"], true);
    assert_eq!(cell["spec"]["restore"]["backup"], name.as_str());
    let generation = cell["metadata"]["generation"].clone();
    c.api.update(CELLS, ID, |c| {
        c["status"] = json!({ "phase": "Suspended", "observedGeneration": generation,
            "conditions": [condition("Restored", false, "Retrieving")] })
    });
    c.driver
        .restore(r, Step::Fence)
        .await
        .expect("fenced: nothing runs in the new namespace");
    let waiting = c
        .driver
        .restore(r, Step::Target)
        .await
        .expect_err("still retrieving");
    assert!(format!("{waiting:#}").contains("Retrieving"), "{waiting:#}");
    c.paused.store(false, Ordering::SeqCst);
    for step in [Step::Target, Step::Copy, Step::Verify, Step::Start] {
        c.step(r, step).await;
    }
    assert_eq!(c.cell()["spec"]["suspended"], false, "serving again");
}

/// An rds cell's backup is a restore point: the moment asked for on the Cell, taken once the
/// operator confirms RDS can restore the instance to it; RDS's retention expires it.
#[tokio::test]
async fn an_rds_backup_is_a_restore_point_the_operator_confirms() {
    let c = Cluster::new().await;
    let mut spec = spec();
    spec.database.engine = DatabaseEngine::Rds;
    c.driver
        .apply("eks-1", &spec, false, None)
        .await
        .expect("an rds cell");
    // Unconfirmed, the backup waits.
    c.paused.store(true, Ordering::SeqCst);
    let driver = c.driver.clone();
    let s = spec.clone();
    let before = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("whole seconds");
    let taking = tokio::spawn(async move {
        driver
            .back_up(Work::new(&s, "eks-1"), uuid::Uuid::now_v7())
            .await
    });
    let asked = loop {
        let point = c.cell()["metadata"]["annotations"]["mrbill.dev/restore-point"].clone();
        if let Some(point) = point.as_str() {
            break point.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Longer than the driver's poll (2 s): it has read the completed Backup by then.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !taking.is_finished(),
        "taken before the operator confirmed it"
    );
    c.paused.store(false, Ordering::SeqCst);
    let taken = taking.await.expect("joined").expect("taken");
    assert_eq!(taken.location, format!("rds-point-in-time:{asked}"));
    assert_eq!(
        cell_model::restore_point_of(&taken.location),
        Some(asked.as_str())
    );
    assert!(taken.taken_at >= before && taken.taken_at <= time::OffsetDateTime::now_utc());
    assert_eq!(taken.bytes, None);
    assert!(
        c.api.objects(BACKUPS).is_empty(),
        "no CNPG Backup for an rds cell"
    );
    c.driver
        .forget_backup("acme", "eks-1", &taken.location)
        .await
        .expect("RDS's retention expires it");
}

/// A restore suspends the cell with `spec.restore` (the operator replaces its database only
/// then), waits for the operator to report the recovered database, and starts the services
/// again with the restore kept in the spec; a step never runs ahead of what is reported.
#[tokio::test]
async fn a_restore_suspends_the_cell_waits_for_the_recovery_and_starts_it() {
    let c = Cluster::new().await;
    let id = uuid::Uuid::now_v7();
    let mut spec = spec();
    spec.restore = Some(CellRestore {
        id: id.to_string(),
        backup: "backup-4d5e6f708192".into(),
        target_time: Some("2026-12-06T09:30:00Z".into()),
        deleted: false,
        abort: false,
    });
    let r = Restoring {
        spec: &spec,
        placement: "eks-1",
        backup: "backup-4d5e6f708192",
        to_time: Some(at_0930()),
        id,
        previous: None,
    };
    // Nothing reported yet: the fence waits.
    c.paused.store(true, Ordering::SeqCst);
    let waiting = c
        .driver
        .restore(r, Step::Fence)
        .await
        .expect_err("not observed");
    assert!(format!("{waiting:#}").contains("observe"), "{waiting:#}");
    let cell = c.cell();
    assert_eq!(cell["spec"]["suspended"], true);
    assert_eq!(cell["spec"]["restore"]["backup"], "backup-4d5e6f708192");
    assert_eq!(
        cell["spec"]["restore"]["targetTime"],
        "2026-12-06T09:30:00Z"
    );
    // Fenced once the operator archives (no service runs then); the target waits on.
    let generation = cell["metadata"]["generation"].clone();
    c.api.update(CELLS, ID, |c| {
        c["status"] = json!({ "phase": "Suspended", "observedGeneration": generation,
            "conditions": [condition("Restored", false, "Archiving")] })
    });
    c.driver.restore(r, Step::Fence).await.expect("fenced");
    let waiting = c
        .driver
        .restore(r, Step::Target)
        .await
        .expect_err("still archiving");
    assert!(format!("{waiting:#}").contains("Archiving"), "{waiting:#}");
    c.paused.store(false, Ordering::SeqCst);
    for step in [Step::Fence, Step::Target, Step::Copy, Step::Verify] {
        c.step(r, step).await;
        assert_eq!(c.cell()["spec"]["suspended"], true, "{}", step.as_str());
    }
    c.step(r, Step::Start).await;
    let cell = c.cell();
    assert_eq!(cell["spec"]["suspended"], false);
    assert_eq!(
        cell["spec"]["restore"]["id"],
        id.to_string(),
        "kept once done"
    );

    // Another restore's steps refuse a spec that does not carry it.
    let other = Restoring {
        id: uuid::Uuid::now_v7(),
        ..r
    };
    let refused = c
        .driver
        .restore(other, Step::Fence)
        .await
        .expect_err("not ours");
    assert!(
        format!("{refused:#}").contains("does not carry"),
        "{refused:#}"
    );
}

/// Restore `id` of the backup the tests name.
fn restore(id: uuid::Uuid) -> CellRestore {
    CellRestore {
        id: id.to_string(),
        backup: "backup-4d5e6f708192".into(),
        target_time: None,
        deleted: false,
        abort: false,
    }
}

/// A restore of `spec`'s cell under way (applied, suspended), the operator paused: its id.
async fn restoring(c: &Cluster, spec: &mut CellSpec) -> uuid::Uuid {
    let id = uuid::Uuid::now_v7();
    spec.restore = Some(restore(id));
    c.paused.store(true, Ordering::SeqCst);
    c.driver
        .apply("eks-1", spec, true, None)
        .await
        .expect("restoring");
    id
}

/// Undoing a restore goes by the operator's word on whether it replaced the database: not yet
/// (`Aborted`) → the restore before it is put back and the cell serves as it was; replaced
/// (`Replaced`) → the fence's last backup is restored under a restore of its own, then the
/// cell serves; impossible (`CannotUndo`) → the step fails with the operator's reason. Each
/// ends with the catalog told what the cell's spec names now.
#[tokio::test]
async fn an_undo_follows_the_operators_word_on_whether_the_database_was_replaced() {
    let c = Cluster::new().await;
    assert!(c.driver.unrestores());
    let undo_until_done = |c: &Cluster, r: Restoring<'_>| {
        let driver = c.driver.clone();
        let (spec, previous) = (r.spec.clone(), r.previous.cloned());
        let (id, placement) = (r.id, r.placement.to_owned());
        async move {
            let r = Restoring {
                spec: &spec,
                placement: &placement,
                backup: "backup-4d5e6f708192",
                to_time: None,
                id,
                previous: previous.as_ref(),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match driver.unrestore(r, Step::Unfence).await {
                    Ok(()) => return,
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => panic!("unfence: {e:#}"),
                }
            }
        }
    };
    let report = |c: &Cluster, reason: &str| {
        let generation = c.cell()["metadata"]["generation"].clone();
        c.api.update(CELLS, ID, |cell| {
            cell["status"] = json!({ "phase": "Suspended", "observedGeneration": generation,
                "conditions": [condition("Restored", false, reason)] })
        });
    };
    // Not replaced yet: the restore before it comes back.
    let before = restore(uuid::Uuid::now_v7());
    let mut spec = spec();
    let id = restoring(&c, &mut spec).await;
    let r = Restoring {
        spec: &spec,
        placement: "eks-1",
        backup: "backup-4d5e6f708192",
        to_time: None,
        id,
        previous: Some(&before),
    };
    c.driver
        .unrestore(r, Step::Unfence)
        .await
        .expect_err("the operator has not answered");
    let cell = c.cell();
    assert_eq!(cell["spec"]["restore"]["abort"], true, "stop, in the cell");
    assert_eq!(cell["spec"]["suspended"], true);
    report(&c, "Aborted");
    c.paused.store(false, Ordering::SeqCst);
    undo_until_done(&c, r).await;
    let cell = c.cell();
    assert_eq!(
        cell["spec"]["restore"]["id"],
        before.id.as_str(),
        "the one before"
    );
    assert_eq!(cell["spec"]["suspended"], false, "serving as it was");
    let after = c.driver.undone_restore(r).await.expect("read");
    assert_eq!(after.as_ref(), Some(&before), "what the catalog records");

    // Replaced: the database as it was comes back from the fence's last backup.
    let id = restoring(&c, &mut spec).await;
    let r = Restoring {
        spec: &spec,
        placement: "eks-1",
        backup: "backup-4d5e6f708192",
        to_time: None,
        id,
        previous: None,
    };
    c.driver
        .unrestore(r, Step::Unfence)
        .await
        .expect_err("asked to stop");
    report(&c, "Replaced");
    c.driver
        .unrestore(r, Step::Unfence)
        .await
        .expect_err("the undo's restore asked for");
    let cell = c.cell();
    let undo = &cell["spec"]["restore"];
    assert_eq!(undo["id"], format!("{id}-undo"));
    assert_eq!(undo["backup"], cell_model::fence_backup(&id.to_string()));
    assert!(
        undo["abort"].is_null() && undo["targetTime"].is_null(),
        "{undo}"
    );
    assert_eq!(cell["spec"]["suspended"], true, "until it is recovered");
    c.paused.store(false, Ordering::SeqCst);
    undo_until_done(&c, r).await;
    assert_eq!(c.cell()["spec"]["suspended"], false);
    let after = c
        .driver
        .undone_restore(r)
        .await
        .expect("read")
        .expect("a restore");
    assert_eq!(after.id, format!("{id}-undo"));

    // Replaced without the fence's backup: nothing holds the database as it was.
    let id = restoring(&c, &mut spec).await;
    let r = Restoring {
        spec: &spec,
        placement: "eks-1",
        backup: "backup-4d5e6f708192",
        to_time: None,
        id,
        previous: None,
    };
    c.driver
        .unrestore(r, Step::Unfence)
        .await
        .expect_err("asked to stop");
    report(&c, "CannotUndo");
    let refused = c
        .driver
        .unrestore(r, Step::Unfence)
        .await
        .expect_err("cannot");
    assert!(format!("{refused:#}").contains("CannotUndo"), "{refused:#}");
    c.paused.store(false, Ordering::SeqCst);
}
