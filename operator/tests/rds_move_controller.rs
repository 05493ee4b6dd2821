//! An `rds` cell moving between two regions' placements through both sides' operators.
//! Each cluster's API is a `kube_fake::FakeApi` (no cluster runs here); one moto server plays
//! AWS in both regions (stacks, instances, the master credentials); two real Postgres stand in
//! for the two RDS instances (`rds/`: TLS only; their masters are superusers, since plain
//! Postgres lets only those subscribe where RDS lets its master). moto's instances run no
//! Postgres, so the operators' SQL and the move's checks reach the stand-ins instead of the
//! addresses moto gives. What the control plane does between steps (copying Secrets, editing
//! `spec.migration`) and the kubelet's schema Jobs (pg_dump | psql as `rds_moves.rs` runs them)
//! are played by the test; everything else is the operators' own code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cell_model::{
    Cell, CellMigration, CellSpec, ConditionStatus, DatabaseEngine, DatabaseSpec, MigrationPhase,
    MigrationRole, SearchEngine, ServiceReplicas, Tier,
};
use cell_operator::aws::AwsClients;
use cell_operator::controller::{Context, reconcile};
use cell_operator::moves::{Checked, MoveChecks, PgMoves, Side};
use kube_fake::FakeApi;
use serde_json::{Value, json};
use sqlx::PgPool;
use test_support::moto::Moto;

mod fixtures;
mod rds;
use rds::RdsInstance;

const CELLS: &str = "apis/mrbill.dev/v1alpha1/cells";
const NAME: &str = "c-acme-1234";
const SECRETS: &str = "api/v1/namespaces/cell-acme/secrets";
const JOBS: &str = "apis/batch/v1/namespaces/cell-acme/jobs";
const SERVICES: [&str; 3] = ["poc", "dojo", "media"];

fn spec(placement: &str) -> CellSpec {
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
        placement: placement.into(),
        suspended: false,
        email_domains: Vec::new(),
        bootstrap: None,
        migration: None,
        restore: None,
    }
}

/// The real checks, pointed at the stand-ins: the target's URLs at `target`, the source's
/// (the migrator's) at `source`.
struct Local {
    source: u16,
    target: u16,
}

fn at(url: &str, port: u16) -> String {
    let (head, rest) = url.split_once('@').expect("credentials");
    let path = &rest[rest.find('/').expect("a database")..];
    format!("{head}@127.0.0.1:{port}{path}")
}

impl Local {
    fn map(&self, source: &Side, target: &Side) -> (Side, Side) {
        let moved = |side: &Side, port| Side {
            url: at(&side.url, port),
            ca: side.ca.clone(),
        };
        (moved(source, self.source), moved(target, self.target))
    }
}

impl MoveChecks for Local {
    fn copying<'a>(&'a self, target: &'a Side, subscription: &'a str) -> Checked<'a, i64> {
        let target = Side {
            url: at(&target.url, self.target),
            ca: target.ca.clone(),
        };
        Box::pin(async move { PgMoves.copying(&target, subscription).await })
    }
    fn sync<'a>(&'a self, source: &'a Side, target: &'a Side) -> Checked<'a, usize> {
        let (source, target) = self.map(source, target);
        Box::pin(async move { PgMoves.sync(&source, &target).await })
    }
    fn verify<'a>(&'a self, source: &'a Side, target: &'a Side) -> Checked<'a, usize> {
        let (source, target) = self.map(source, target);
        Box::pin(async move { PgMoves.verify(&source, &target).await })
    }
    fn mark<'a>(&'a self, _: &'a Side) -> Checked<'a, ()> {
        unreachable!("a move never marks a restore's fence")
    }
}

/// One placement: its cluster's API, its operator, its region's AWS, its instance.
struct Placement {
    api: FakeApi,
    ctx: Arc<Context>,
    instance: RdsInstance,
}

impl Placement {
    async fn new(
        moto: &Moto,
        region: &str,
        instance: RdsInstance,
        source: Option<&RdsInstance>,
    ) -> Self {
        let sdk = rds::sdk(moto, region);
        instance.store_master(&sdk, NAME).await;
        let admin = match source {
            Some(source) => instance.admin_replicating_from(source),
            None => instance.admin(),
        };
        let aws = AwsClients::new(&sdk, rds::network(&sdk).await).with_admin(admin);
        let api = FakeApi::new();
        let checks = Arc::new(Local {
            source: source.map_or(0, RdsInstance::port),
            target: instance.port(),
        });
        let ctx = Context::with_moves(api.client(), fixtures::images(), Some(aws), None, checks);
        let mut object =
            serde_json::to_value(Cell::new(NAME, spec(&format!("eks-{region}")))).expect("json");
        object["apiVersion"] = json!("mrbill.dev/v1alpha1");
        object["kind"] = json!("Cell");
        api.insert(CELLS, object);
        Self { api, ctx, instance }
    }

    async fn reconcile(&self) {
        let cell: Cell =
            serde_json::from_value(self.api.get(CELLS, NAME).expect("cell")).expect("a Cell");
        reconcile(Arc::new(cell), self.ctx.clone())
            .await
            .expect("reconcile");
    }

    fn migrate(&self, migration: Option<CellMigration>) {
        self.api.update(CELLS, NAME, |cell| {
            cell["spec"]["migration"] = serde_json::to_value(&migration).expect("json");
            let generation = cell["metadata"]["generation"].as_i64().unwrap_or(1);
            cell["metadata"]["generation"] = json!(generation + 1);
        });
    }

    fn condition(&self, type_: &str) -> Option<(ConditionStatus, String)> {
        let cell: Cell =
            serde_json::from_value(self.api.get(CELLS, NAME).expect("cell")).expect("a Cell");
        let status = cell.status.unwrap_or_default();
        status
            .condition(type_)
            .map(|c| (c.status, format!("{}: {}", c.reason, c.message)))
    }

    /// Reconciles until `type_` is true (the SQL side catches up in its own time).
    async fn until(&self, type_: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.reconcile().await;
            match self.condition(type_) {
                Some((ConditionStatus::True, _)) => return,
                other if Instant::now() > deadline => panic!("{type_} never true: {other:?}"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    fn secret(&self, name: &str, key: &str) -> String {
        let secret = self
            .api
            .get(SECRETS, name)
            .unwrap_or_else(|| panic!("{name}"));
        secret["stringData"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{name}.{key}"))
            .to_owned()
    }

    /// A service's database here, as the service.
    async fn service(&self, service: &str) -> PgPool {
        let url = self.secret(&format!("{service}-database"), "url");
        PgPool::connect(&self.instance.local(&url))
            .await
            .expect("as the service")
    }
}

async fn exec(db: &PgPool, sql: &str) {
    sqlx::raw_sql(sql).execute(db).await.expect(sql);
}

async fn count(db: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.expect(sql)
}

/// The cell's artifacts bucket in `placement`'s region (its foundation's, as the pods see it).
fn bucket(placement: &Placement) -> String {
    let config = placement
        .api
        .get("api/v1/namespaces/cell-acme/configmaps", "aws-foundation")
        .expect("aws-foundation");
    config["data"]["bucket"]
        .as_str()
        .expect("bucket")
        .to_owned()
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &str) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body.as_bytes().to_vec().into())
        .send()
        .await
        .expect("put");
}

/// Key → content of every object in `bucket`.
async fn contents(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> std::collections::BTreeMap<String, String> {
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .expect("list");
    let mut out = std::collections::BTreeMap::new();
    for object in listed.contents() {
        let key = object.key().expect("key").to_owned();
        let body = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .expect("get");
        let bytes = body.body.collect().await.expect("body").into_bytes();
        out.insert(key, String::from_utf8_lossy(&bytes).into_owned());
    }
    out
}

/// Copies Secret `name` of one cluster to `to` in another, as the control plane does.
fn copy(from: &Placement, name: &str, to: &Placement, as_name: &str) {
    let mut secret: Value = from
        .api
        .get(SECRETS, name)
        .unwrap_or_else(|| panic!("{name}"));
    secret["metadata"]["name"] = json!(as_name);
    to.api.insert(SECRETS, secret);
}

#[tokio::test]
async fn an_rds_cell_moves_to_another_region_through_both_operators() {
    let moto = Moto::start();
    let (source_db, target_db) = tokio::join!(
        RdsInstance::start_for_moves(),
        RdsInstance::start_for_moves()
    );
    let a = Placement::new(&moto, "us-east-1", source_db, None).await;
    let b = Placement::new(&moto, "sa-east-1", target_db, Some(&a.instance)).await;

    // The source serves: its services made their tables long before the move, and media
    // stored artifacts in its bucket.
    a.until("DatabaseReady").await;
    let (s3_a, s3_b) = (rds::s3(&moto, "us-east-1"), rds::s3(&moto, "sa-east-1"));
    let bucket_a = bucket(&a);
    for (key, body) in [
        ("tenants/acme/reports/r1.csv", "id,name\n1,one\n"),
        ("tenants/acme/videos/2026 v1.mp4", "not really an mp4"),
        ("tenants/acme/reports/old.csv", "gone before the fence"),
    ] {
        put(&s3_a, &bucket_a, key, body).await;
    }
    let mut sources = Vec::new();
    for service in SERVICES {
        let db = a.service(service).await;
        exec(
            &db,
            "CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL);
             INSERT INTO items (name) SELECT 'item ' || n FROM generate_series(1, 300) n;",
        )
        .await;
        sources.push(db);
    }
    let id = format!("{NAME}:eks-us-east-1->eks-sa-east-1");
    let source = |fenced| CellMigration {
        role: MigrationRole::Source,
        id: id.clone(),
        fenced,
        source_host: None,
        phase: None,
    };
    a.migrate(Some(source(false)));
    a.until("Published").await;
    // The migrator's Secret names the instance the target subscribes to.
    let address = a.secret("migrator-role", "host");
    assert!(address.contains("rds"), "{address}");

    // The target: its own instance and roles, the source's identity (copied).
    let target = |phase, host: Option<&str>| CellMigration {
        role: MigrationRole::Target,
        id: id.clone(),
        fenced: false,
        source_host: host.map(str::to_owned),
        phase: Some(phase),
    };
    b.migrate(Some(target(MigrationPhase::Provision, None)));
    for name in cell_model::identity::names(DatabaseEngine::Rds) {
        copy(&a, &name, &b, &name);
    }
    b.until("DatabaseReady").await;
    assert_ne!(
        b.secret("poc-database", "url"),
        a.secret("poc-database", "url"),
        "each instance has its own credentials"
    );

    copy(&a, "migrator-role", &b, "migration-source");
    b.migrate(Some(target(MigrationPhase::Copy, Some(&address))));
    b.reconcile().await;
    let jobs = b.api.objects(JOBS);
    assert_eq!(jobs.len(), 3, "a schema Job per service");
    let env = &jobs[0]["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.to_string().contains(&format!("@{address}:5432/"))
            && env.to_string().contains("sslmode=require"),
        "{env}"
    );
    // The kubelet's part: the Jobs run (the source's schema, restored as each service).
    let migrator = a.secret("migrator-role", "password");
    for service in SERVICES {
        let from = at(
            &format!("postgres://migrator:{migrator}@{address}:5432/{service}?sslmode=require"),
            a.instance.port(),
        );
        let to = b
            .instance
            .local(&b.secret(&format!("{service}-database"), "url"));
        rds::copy_schema(&from, &to);
        b.api.update(JOBS, &format!("schema-{service}"), |job| {
            job["status"] = json!({ "succeeded": 1 });
        });
    }
    b.until("CaughtUp").await;
    assert_eq!(
        b.condition("Replicating").map(|c| c.0),
        Some(ConditionStatus::True)
    );
    let bucket_b = bucket(&b);
    assert_ne!(bucket_a, bucket_b, "each cell has its region's bucket");
    assert_eq!(
        contents(&s3_b, &bucket_b).await,
        contents(&s3_a, &bucket_a).await,
        "the artifacts are copied before the fence"
    );
    // Written and removed by the source meanwhile.
    put(&s3_a, &bucket_a, "tenants/acme/reports/late.csv", "late").await;
    s3_a.delete_object()
        .bucket(&bucket_a)
        .key("tenants/acme/reports/old.csv")
        .send()
        .await
        .expect("delete");

    // Writes during the copy arrive; then the source is fenced and the target syncs.
    for db in &sources {
        exec(
            db,
            "INSERT INTO items (name) VALUES ('late'); DELETE FROM items WHERE id = 7;",
        )
        .await;
    }
    a.migrate(Some(source(true)));
    a.until("Fenced").await;
    b.migrate(Some(target(MigrationPhase::Sync, Some(&address))));
    b.until("InSync").await;
    let copied = contents(&s3_b, &bucket_b).await;
    assert_eq!(
        copied,
        contents(&s3_a, &bucket_a).await,
        "exactly the source's after the fence"
    );
    assert!(copied.contains_key("tenants/acme/reports/late.csv") && copied.len() == 3);
    b.migrate(Some(target(MigrationPhase::Verify, Some(&address))));
    b.until("Verified").await;

    // Started: the target's subscriptions go, and with them its move conditions.
    b.migrate(None);
    b.reconcile().await;
    assert_eq!(
        b.condition("Replicating"),
        None,
        "the move's conditions are gone"
    );
    let poc = b.service("poc").await;
    assert_eq!(count(&poc, "SELECT count(*) FROM pg_subscription").await, 0);
    assert_eq!(count(&poc, "SELECT count(*) FROM items").await, 300);
    let next = count(&poc, "SELECT nextval('items_id_seq')").await;
    assert!(next > 301, "the target continues the source's ids: {next}");

    // The source, once no longer in a move (here: as an abort unfences it), removes its part:
    // no publication, slot or replication role is left on its instance.
    a.migrate(None);
    a.reconcile().await;
    assert_eq!(a.condition("Published"), None);
    let master = PgPool::connect(&a.instance.master_url())
        .await
        .expect("master");
    assert_eq!(
        count(&master, "SELECT count(*) FROM pg_replication_slots").await,
        0
    );
    assert_eq!(
        count(
            &master,
            "SELECT count(*) FROM pg_roles WHERE rolname = 'migrator'"
        )
        .await,
        0
    );
    assert_eq!(
        count(&sources[0], "SELECT count(*) FROM pg_publication").await,
        0
    );
}
