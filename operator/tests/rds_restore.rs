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

use std::sync::Arc;
use std::time::{Duration, Instant};

use cell_model::{
    Cell, CellRestore, CellSpec, ConditionStatus, DatabaseEngine, DatabaseSpec, SearchEngine,
    ServiceReplicas, Tier,
};
use cell_operator::aws::{AwsClients, RESTORE_TAG};
use cell_operator::controller::{Context, reconcile};
use kube_fake::FakeApi;
use serde_json::json;
use test_support::moto::Moto;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

mod fixtures;
mod rds;
use rds::RdsInstance;

const CELLS: &str = "apis/mrbill.dev/v1alpha1/cells";
const NAME: &str = "c-acme-1234";
const INSTANCE: &str = "mrbill-c-acme-1234";

fn spec() -> CellSpec {
    CellSpec {
        cell_id: NAME.into(),
        tenant: "acme".into(),
        tier: Tier::Small,
        version: "1.4.2".into(),
        replicas: ServiceReplicas::default(),
        database: DatabaseSpec {
            engine: DatabaseEngine::Rds,
            class: None,
            storage_gib: 20,
            multi_az: false,
        },
        search: SearchEngine::Embedded,
        placement: "eks-us-east-1".into(),
        suspended: false,
        email_domains: Vec::new(),
        bootstrap: None,
        migration: None,
        restore: None,
    }
}

struct Setup {
    api: FakeApi,
    ctx: Arc<Context>,
    rds: aws_sdk_rds::Client,
    _instance: RdsInstance,
    _moto: Moto,
}

impl Setup {
    async fn new() -> Self {
        let moto = Moto::start();
        let instance = RdsInstance::start().await;
        let sdk = rds::sdk(&moto, "us-east-1");
        instance.store_master(&sdk, NAME).await;
        let aws = AwsClients::new(&sdk, rds::network(&sdk).await).with_admin(instance.admin());
        let api = FakeApi::new();
        let ctx = Context::new(api.client(), fixtures::images(), Some(aws), None);
        let mut object = serde_json::to_value(Cell::new(NAME, spec())).expect("json");
        object["apiVersion"] = json!("mrbill.dev/v1alpha1");
        object["kind"] = json!("Cell");
        object["metadata"]["generation"] = json!(1);
        api.insert(CELLS, object);
        Self {
            api,
            rds: aws_sdk_rds::Client::new(&sdk),
            ctx,
            _instance: instance,
            _moto: moto,
        }
    }

    fn cell(&self) -> Cell {
        serde_json::from_value(self.api.get(CELLS, NAME).expect("cell")).expect("a Cell")
    }

    async fn reconcile(&self) {
        reconcile(Arc::new(self.cell()), self.ctx.clone())
            .await
            .expect("reconcile");
    }

    fn edit(&self, change: impl FnOnce(&mut serde_json::Value)) {
        self.api.update(CELLS, NAME, |cell| {
            change(cell);
            let generation = cell["metadata"]["generation"].as_i64().unwrap_or(1);
            cell["metadata"]["generation"] = json!(generation + 1);
        });
    }

    fn condition(&self, type_: &str) -> Option<(ConditionStatus, String)> {
        let status = self.cell().status.unwrap_or_default();
        status
            .condition(type_)
            .map(|c| (c.status, format!("{}: {}", c.reason, c.message)))
    }

    /// Reconciles until `type_` is true.
    async fn until(&self, type_: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.reconcile().await;
            match self.condition(type_) {
                Some((ConditionStatus::True, _)) => return,
                other if Instant::now() > deadline => panic!("{type_} never true: {other:?}"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// moto names an instance's automated snapshot `rds:<id>-<minute>` when it makes the
    /// instance, so the restored instance's would collide with the replaced one's made in the
    /// same minute (`DBSnapshotAlreadyExists`); RDS names its own. Deleted here (moto allows it).
    async fn forget_automated_snapshots(&self) {
        let automated = self
            .rds
            .describe_db_snapshots()
            .snapshot_type("automated")
            .send()
            .await
            .expect("snapshots");
        for snapshot in automated.db_snapshots() {
            let id = snapshot.db_snapshot_identifier().expect("an id");
            self.rds
                .delete_db_snapshot()
                .db_snapshot_identifier(id)
                .send()
                .await
                .expect("moto deletes it");
        }
    }

    /// Instance `id`'s restore tag, or `None` when there is no such instance.
    async fn instance(&self, id: &str) -> Option<Option<String>> {
        let out = self
            .rds
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
            .ok()?;
        let db = out.db_instances().first()?;
        Some(
            db.tag_list()
                .iter()
                .find(|t| t.key() == Some(RESTORE_TAG))
                .and_then(|t| t.value().map(str::to_owned)),
        )
    }
}

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
