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
use cell_operator::aws::{AwsClients, MASTER_RESET_TAG, RESTORE_TAG};
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
    sdk: aws_config::SdkConfig,
    instance: RdsInstance,
    moto: Moto,
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
            sdk,
            ctx,
            instance,
            moto,
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

const RECORDS: &str = "api/v1/namespaces/mrbill-system/secrets";
const SECRETS: &str = "api/v1/namespaces/cell-acme/secrets";
const FINAL: &str = "final-1796000000";

/// The signing key's private PEM, as the FakeApi holds the Secret (`stringData` or `data`).
fn pem(secret: &serde_json::Value) -> String {
    use base64::Engine as _;
    if let Some(text) = secret["stringData"]["private.pem"].as_str() {
        return text.to_owned();
    }
    let data = secret["data"]["private.pem"].as_str().unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("base64");
    String::from_utf8(bytes).expect("utf-8")
}

impl Setup {
    /// The cell's foundation's output `key`, while its stack is there.
    async fn output(&self, key: &str) -> Option<String> {
        let cfn = aws_sdk_cloudformation::Client::new(&self.sdk);
        let stacks = cfn
            .describe_stacks()
            .stack_name(INSTANCE)
            .send()
            .await
            .ok()?;
        let stack = stacks.stacks().first()?;
        if stack.stack_status() == Some(&aws_sdk_cloudformation::types::StackStatus::DeleteComplete)
        {
            return None;
        }
        stack
            .outputs()
            .iter()
            .find(|o| o.output_key() == Some(key))
            .and_then(|o| o.output_value().map(str::to_owned))
    }

    /// The master credentials' secret as the foundation holds it (`None`: deleted).
    async fn master_password(&self) -> Option<String> {
        let value = aws_sdk_secretsmanager::Client::new(&self.sdk)
            .get_secret_value()
            .secret_id(format!("mrbill/{NAME}/database"))
            .send()
            .await
            .ok()?;
        let parsed: serde_json::Value =
            serde_json::from_str(value.secret_string().unwrap_or_default()).expect("json");
        parsed["password"].as_str().map(str::to_owned)
    }

    async fn has_tag(&self, id: &str, key: &str) -> bool {
        let out = self
            .rds
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
            .expect("the instance");
        out.db_instances()[0]
            .tag_list()
            .iter()
            .any(|t| t.key() == Some(key))
    }

    async fn snapshot_exists(&self, id: &str) -> bool {
        self.rds
            .describe_db_snapshots()
            .db_snapshot_identifier(id)
            .send()
            .await
            .is_ok_and(|out| !out.db_snapshots().is_empty())
    }
}

/// A deleted rds cell leaves a record (its identity, the final snapshot by the deletion's
/// backup name, its retained bucket) and its master secret goes at once; its tenant's return
/// makes a new foundation, gets the identity back (never generated), copies the retained
/// bucket's artifacts into the new one and the snapshot under the new key, has RDS restore the
/// instance from it under the cell's name, resets its master password to the new
/// foundation's, and is recovered.
#[tokio::test]
async fn a_deleted_rds_cell_comes_back_from_its_final_snapshot_with_its_identity_and_artifacts() {
    let s = Setup::new().await;
    s.until("DatabaseReady").await;
    let jwt = s.api.get(SECRETS, "cell-jwt").expect("the signing key");
    let old_bucket = s.output("BucketName").await.expect("the bucket");
    let s3 = rds::s3(&s.moto, "us-east-1");
    let report = "tenants/acme/reports/r1.pdf";
    s3.put_object()
        .bucket(&old_bucket)
        .key(report)
        .body(b"%PDF".to_vec().into())
        .send()
        .await
        .expect("an artifact");

    // The control plane names the last backup, then deletes the Cell.
    s.api.update(CELLS, NAME, |cell| {
        cell["metadata"]["annotations"] = json!({ "mrbill.dev/final-backup": FINAL })
    });
    s.api.delete(CELLS, NAME);
    for _ in 0..20 {
        if s.api.get(CELLS, NAME).is_none() {
            break;
        }
        s.reconcile().await;
    }
    assert!(s.api.get(CELLS, NAME).is_none(), "deleted");
    let snapshot = format!("{INSTANCE}-{FINAL}");
    assert!(s.snapshot_exists(&snapshot).await, "the final snapshot");
    assert_eq!(s.instance(INSTANCE).await, None, "the instance went");
    assert_eq!(
        s.master_password().await,
        None,
        "no recovery window holds the name"
    );
    let record = s
        .api
        .get(RECORDS, &format!("kept-{NAME}"))
        .expect("the record");
    let text = |key: &str| -> serde_json::Value {
        let text = record["stringData"][key].as_str().expect(key);
        serde_json::from_str(text).expect("json")
    };
    assert_eq!(
        text("backups.json"),
        json!({ FINAL: { "snapshot": snapshot } })
    );
    assert_eq!(text("bucket.json")["name"], old_bucket.as_str());
    let private = pem(&jwt);
    assert_eq!(
        text("identity.json")["cell-jwt"]["data"]["private.pem"],
        private.as_str(),
        "the signing key kept"
    );
    for (key, _) in s.api.snapshot() {
        if key.contains("/namespaces/cell-acme/") {
            let (collection, name) = key.rsplit_once('/').expect("collection/name");
            s.api.delete(collection, name);
        }
    }

    // The tenant restored: a Cell again, suspended, returning from the deletion's backup.
    let id = uuid::Uuid::now_v7().to_string();
    let mut cell = serde_json::to_value(Cell::new(NAME, spec())).expect("json");
    cell["apiVersion"] = json!("mrbill.dev/v1alpha1");
    cell["kind"] = json!("Cell");
    cell["metadata"]["generation"] = json!(1);
    cell["spec"]["suspended"] = json!(true);
    let restore = CellRestore {
        id: id.clone(),
        backup: FINAL.into(),
        target_time: None,
        deleted: true,
        abort: false,
    };
    cell["spec"]["restore"] = serde_json::to_value(&restore).expect("json");
    s.api.insert(CELLS, cell);
    // The new foundation's master credentials, generated (moto's CloudFormation makes no
    // Secrets Manager secret: the test plays that part of the stack).
    let generated = uuid::Uuid::new_v4().simple().to_string();
    aws_sdk_secretsmanager::Client::new(&s.sdk)
        .create_secret()
        .name(format!("mrbill/{NAME}/database"))
        .secret_string(json!({ "username": rds::MASTER, "password": generated }).to_string())
        .send()
        .await
        .expect("the name is free again");
    let mut reasons: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        s.reconcile().await;
        let (ok, why) = s
            .condition("Restored")
            .unwrap_or((ConditionStatus::False, String::new()));
        if ok == ConditionStatus::True {
            break;
        }
        let reason = why.split(':').next().unwrap_or_default().to_owned();
        if !reason.is_empty() && reasons.last() != Some(&reason) {
            reasons.push(reason);
        }
        // What RDS does with the new master password (moto keeps it; the stand-in is real).
        if why.contains("resetting the master password") {
            let password = s
                .master_password()
                .await
                .expect("the new foundation's secret");
            s.instance.set_master_password(&password).await;
        }
        assert!(Instant::now() < deadline, "never recovered: {reasons:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        reasons.first().map(String::as_str),
        Some("Retrieving"),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r == "Replacing"), "{reasons:?}");
    assert_eq!(
        pem(&s.api.get(SECRETS, "cell-jwt").expect("the signing key")),
        private,
        "the old key: old tokens verify"
    );
    assert_eq!(s.instance(INSTANCE).await, Some(Some(id.clone())));
    assert!(
        !s.has_tag(INSTANCE, MASTER_RESET_TAG).await,
        "the password reset"
    );
    let copy = format!("{INSTANCE}-return-{}", &id.replace('-', "")[20..]);
    assert!(!s.snapshot_exists(&copy).await, "the copy deleted");
    assert!(
        s.snapshot_exists(&snapshot).await,
        "the final snapshot kept"
    );
    let new_bucket = s.output("BucketName").await.expect("a new bucket");
    assert_ne!(new_bucket, old_bucket);
    s3.head_object()
        .bucket(&new_bucket)
        .key(report)
        .send()
        .await
        .expect("the artifact copied into the new bucket");
    let (_, why) = s.condition("Restored").expect("Restored");
    assert!(why.contains("final snapshot"), "{why}");
    assert_eq!(
        s.condition("DatabaseReady").map(|c| c.0),
        Some(ConditionStatus::True)
    );
}
