//! The operator with AWS in moto and a real Postgres standing in for a cell's RDS instance
//! (`rds/`), against a `kube_fake::FakeApi`: what `rds_restore.rs` and `rds_return.rs` drive.

// Shared by several test crates, each using part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cell_model::{
    Cell, CellSpec, ConditionStatus, DatabaseEngine, DatabaseSpec, SearchEngine, ServiceReplicas,
    Tier,
};
use cell_operator::aws::{AwsClients, RESTORE_TAG};
use cell_operator::controller::{Context, reconcile};
use kube_fake::FakeApi;
use serde_json::json;
use test_support::moto::Moto;

use crate::fixtures;
use crate::rds::{self, RdsInstance};

pub const CELLS: &str = "apis/mrbill.dev/v1alpha1/cells";
pub const NAME: &str = "c-acme-1234";
pub const INSTANCE: &str = "mrbill-c-acme-1234";

pub fn spec() -> CellSpec {
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

pub struct Setup {
    pub api: FakeApi,
    pub ctx: Arc<Context>,
    pub rds: aws_sdk_rds::Client,
    pub sdk: aws_config::SdkConfig,
    pub instance: RdsInstance,
    pub moto: Moto,
}

impl Setup {
    pub async fn new() -> Self {
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

    pub fn cell(&self) -> Cell {
        serde_json::from_value(self.api.get(CELLS, NAME).expect("cell")).expect("a Cell")
    }

    pub async fn reconcile(&self) {
        reconcile(Arc::new(self.cell()), self.ctx.clone())
            .await
            .expect("reconcile");
    }

    pub fn edit(&self, change: impl FnOnce(&mut serde_json::Value)) {
        self.api.update(CELLS, NAME, |cell| {
            change(cell);
            let generation = cell["metadata"]["generation"].as_i64().unwrap_or(1);
            cell["metadata"]["generation"] = json!(generation + 1);
        });
    }

    pub fn condition(&self, type_: &str) -> Option<(ConditionStatus, String)> {
        let status = self.cell().status.unwrap_or_default();
        status
            .condition(type_)
            .map(|c| (c.status, format!("{}: {}", c.reason, c.message)))
    }

    /// Reconciles until `type_` is true.
    pub async fn until(&self, type_: &str) {
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
    pub async fn forget_automated_snapshots(&self) {
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
    pub async fn instance(&self, id: &str) -> Option<Option<String>> {
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

impl Setup {
    /// The cell's foundation's output `key`, while its stack is there.
    pub async fn output(&self, key: &str) -> Option<String> {
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
    pub async fn master_password(&self) -> Option<String> {
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

    pub async fn has_tag(&self, id: &str, key: &str) -> bool {
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

    pub async fn snapshot_exists(&self, id: &str) -> bool {
        self.rds
            .describe_db_snapshots()
            .db_snapshot_identifier(id)
            .send()
            .await
            .is_ok_and(|out| !out.db_snapshots().is_empty())
    }
}
