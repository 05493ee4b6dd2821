//! A move between placements, as the operator of each side plays it against
//! `kube_fake::FakeApi` (no cluster can run here), with CNPG's and the kubelet's parts
//! played by the test (statuses of Publications, Jobs, Subscriptions) and the SQL checks
//! scripted (the real ones, `cell_operator::moves::PgMoves`, run the queries the local
//! driver's migrations prove against real Postgres). Buckets are real S3 requests to moto
//! (for the platform's object store), the claims' ConfigMap and Secret played by the test as
//! the provisioner leaves them.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use cell_model::{
    Cell, CellMigration, CellSpec, ConditionStatus, DatabaseEngine, MigrationRole, Phase,
    SearchEngine, Tier,
};
use cell_operator::controller::{Context, reconcile};
use cell_operator::moves::{Checked, MoveChecks, Side};
use kube_fake::FakeApi;
use serde_json::{Value, json};

const CELLS: &str = "apis/mrbill.dev/v1alpha1/cells";
const NAME: &str = "c-acme-1234";
const NS: &str = "cell-acme";
mod fixtures;
use fixtures::images;

fn spec(migration: CellMigration) -> CellSpec {
    let mut spec = fixtures::cell(
        Tier::Small,
        DatabaseEngine::InCluster,
        SearchEngine::Embedded,
    )
    .spec;
    spec.placement = "eks-b".into();
    spec.migration = Some(migration);
    spec
}

/// Tables still copying (counts down), then in sync.
#[derive(Default)]
struct Scripted {
    copying: AtomicI64,
    synced: AtomicI64,
}

impl MoveChecks for Scripted {
    fn copying<'a>(&'a self, target: &'a Side, _: &'a str) -> Checked<'a, i64> {
        assert!(
            target.url.contains("@postgres-rw.cell-acme.svc:5432/"),
            "{target:?}"
        );
        Box::pin(async move { Ok(self.copying.load(Ordering::SeqCst)) })
    }
    fn sync<'a>(&'a self, source: &'a Side, _: &'a Side) -> Checked<'a, usize> {
        assert!(source.url.contains("@pg.a.example:5432/"), "{source:?}");
        assert_eq!(source.ca.as_deref(), Some("the source's CA"));
        self.synced.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(7) })
    }
    fn verify<'a>(&'a self, _: &'a Side, _: &'a Side) -> Checked<'a, usize> {
        Box::pin(async { Err("poc.public.pocs differs".to_owned()) })
    }
    fn mark<'a>(&'a self, _: &'a Side) -> Checked<'a, ()> {
        unreachable!("a move never marks a restore's fence")
    }
}

struct Operator {
    api: FakeApi,
    ctx: Arc<Context>,
    checks: Arc<Scripted>,
}

impl Operator {
    fn new(migration: CellMigration) -> Self {
        let api = FakeApi::new();
        let mut object = serde_json::to_value(Cell::new(NAME, spec(migration))).expect("json");
        object["apiVersion"] = json!("mrbill.dev/v1alpha1");
        object["kind"] = json!("Cell");
        api.insert(CELLS, object);
        let checks = Arc::new(Scripted::default());
        let mut images = images();
        // Other clusters reach this one's object store here.
        images.object_store.external_endpoint = Some("https://objects.a.example".into());
        let ctx = Context::with_moves(api.client(), images, None, None, checks.clone());
        Self { api, ctx, checks }
    }

    async fn reconcile(&self) {
        let cell: Cell =
            serde_json::from_value(self.api.get(CELLS, NAME).expect("cell")).expect("a Cell");
        reconcile(Arc::new(cell), self.ctx.clone())
            .await
            .expect("reconcile");
    }

    fn edit(&self, change: impl FnOnce(&mut Value)) {
        self.api.update(CELLS, NAME, |cell| {
            change(&mut cell["spec"]["migration"]);
            let generation = cell["metadata"]["generation"].as_i64().unwrap_or(1);
            cell["metadata"]["generation"] = json!(generation + 1);
        });
    }

    fn status(&self) -> cell_model::CellStatus {
        let cell: Cell =
            serde_json::from_value(self.api.get(CELLS, NAME).expect("cell")).expect("a Cell");
        cell.status.unwrap_or_default()
    }

    fn condition(&self, type_: &str) -> (ConditionStatus, String) {
        let status = self.status();
        let c = status
            .condition(type_)
            .unwrap_or_else(|| panic!("no {type_}: {status:?}"));
        (c.status, c.reason.clone())
    }

    fn names(&self, collection: &str) -> Vec<String> {
        self.api
            .objects(collection)
            .iter()
            .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// What CNPG and the kubelet report once they did their part.
    fn mark(&self, collection: &str, status: Value) {
        for name in self.names(collection) {
            self.api
                .update(collection, &name, |o| o["status"] = status.clone());
        }
    }
}

fn secret(name: &str, kind: &str, data: Value) -> Value {
    json!({ "apiVersion": "v1", "kind": "Secret", "type": kind,
        "metadata": { "name": name, "namespace": NS,
            "labels": { "mrbill.dev/cell": NAME, "mrbill.dev/tenant": "acme" } },
        "stringData": data })
}

/// A bucket in moto, with `objects` (key → body).
async fn bucket(s3: &test_support::moto::Moto, name: &str, objects: &[(&str, Vec<u8>)]) {
    let http = reqwest::Client::new();
    let put = |url: String, body: Vec<u8>| {
        let http = http.clone();
        async move {
            let res = http.put(url).body(body).send().await.expect("S3 PUT");
            assert!(res.status().is_success(), "{}", res.status());
        }
    };
    put(format!("{}/{name}", s3.url), Vec::new()).await;
    for (key, body) in objects {
        put(format!("{}/{name}/{key}", s3.url), body.clone()).await;
    }
}

/// The keys and sizes a bucket holds.
async fn listing(s3: &test_support::moto::Moto, name: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let xml = reqwest::get(format!("{}/{name}?list-type=2", s3.url))
        .await
        .expect("list")
        .text()
        .await
        .expect("listing");
    for item in xml.split("<Contents>").skip(1) {
        let field = |tag: &str| {
            let start = item.find(&format!("<{tag}>")).expect(tag) + tag.len() + 2;
            let end = item.find(&format!("</{tag}>")).expect(tag);
            item[start..end].to_owned()
        };
        out.push((field("Key"), field("Size").parse().expect("size")));
    }
    out
}

/// What an OBC provisioner leaves for the cell's bound claim: coordinates and a key.
fn claimed_bucket(api: &FakeApi, s3: &test_support::moto::Moto, name: &str) {
    let port = s3.url.rsplit(':').next().expect("port");
    api.insert(
        &format!("api/v1/namespaces/{NS}/configmaps"),
        json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "media-bucket", "namespace": NS },
            "data": { "BUCKET_HOST": "127.0.0.1", "BUCKET_PORT": port, "BUCKET_NAME": name,
                "BUCKET_REGION": "us-east-1", "BUCKET_SUBREGION": "" } }),
    );
    api.insert(
        &format!("api/v1/namespaces/{NS}/secrets"),
        json!({ "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": "media-bucket", "namespace": NS },
            "stringData": { "AWS_ACCESS_KEY_ID": format!("key-of-{name}"),
                "AWS_SECRET_ACCESS_KEY": "testing" } }),
    );
}

fn cnpg(plural: &str) -> String {
    format!("apis/postgresql.cnpg.io/v1/namespaces/{NS}/{plural}")
}

#[tokio::test]
async fn a_target_waits_for_its_identity_then_copies_subscribes_and_syncs() {
    let target = Operator::new(CellMigration {
        role: MigrationRole::Target,
        id: "m-1".into(),
        fenced: false,
        source_host: Some("pg.a.example".into()),
        phase: None,
    });
    target.reconcile().await;
    // No identity of its own: it waits for the source's.
    assert_eq!(
        target.condition("Ready"),
        (ConditionStatus::False, "IdentityPending".into())
    );
    assert_eq!(target.status().phase, Phase::Migrating);
    let secrets = format!("api/v1/namespaces/{NS}/secrets");
    assert!(
        target.names(&secrets).is_empty(),
        "{:?}",
        target.names(&secrets)
    );
    assert!(target.api.get(&cnpg("clusters"), "postgres").is_none());

    // The control plane copies the source's identity (and the migrator's credentials).
    let source_cell = Cell::new(
        NAME,
        spec(CellMigration {
            role: MigrationRole::Source,
            id: "m-1".into(),
            fenced: false,
            source_host: None,
            phase: None,
        }),
    );
    for s in cell_operator::secrets::generate(&source_cell).expect("secrets") {
        let name = s["metadata"]["name"].as_str().expect("name");
        if cell_operator::secrets::identity_names(&source_cell)
            .iter()
            .any(|n| n == name)
        {
            target.api.insert(&secrets, s.clone());
        }
    }
    // The source's bucket (a report, and a video larger than one part), named by the
    // migrator's Secret with its key; the target's own is claimed and bound.
    let s3 = test_support::moto::Moto::start();
    let video: Vec<u8> = (0..9 << 20).map(|i: u32| (i % 251) as u8).collect();
    let report = b"name,language\nPods,rust\n".to_vec();
    bucket(
        &s3,
        "source-objects",
        &[
            ("tenants/acme/reports/r1/report.csv", report.clone()),
            ("tenants/acme/videos/v1/video.mp4", video.clone()),
        ],
    )
    .await;
    bucket(
        &s3,
        "target-objects",
        &[("tenants/acme/stale", b"x".to_vec())],
    )
    .await;
    claimed_bucket(&target.api, &s3, "target-objects");
    target.api.insert(
        &secrets,
        secret(
            "migration-source",
            "kubernetes.io/basic-auth",
            json!({ "username": "migrator", "password": "x", "ca.crt": "the source's CA",
                "bucket": "source-objects", "region": "us-east-1", "bucket-endpoint": s3.url,
                "bucket-access-key-id": "key-of-source-objects",
                "bucket-secret-access-key": "testing" }),
        ),
    );
    let jwt_before = target.api.get(&secrets, "cell-jwt").expect("copied");
    target.reconcile().await;
    assert_eq!(
        target.api.get(&secrets, "cell-jwt"),
        Some(jwt_before),
        "never regenerated"
    );
    assert!(
        target.api.get(&secrets, "postgres-tls").is_some(),
        "its own TLS"
    );
    assert!(target.api.get(&cnpg("clusters"), "postgres").is_some());
    assert!(
        target
            .names("apis/autoscaling/v2/namespaces/cell-acme/horizontalpodautoscalers")
            .is_empty()
    );

    // copy: schema Jobs first, subscriptions once they succeeded.
    target.edit(|m| m["phase"] = json!("copy"));
    target.reconcile().await;
    let jobs = format!("apis/batch/v1/namespaces/{NS}/jobs");
    assert_eq!(target.names(&jobs).len(), 3);
    assert_eq!(target.condition("SchemaCopied").0, ConditionStatus::False);
    assert!(target.names(&cnpg("subscriptions")).is_empty());
    target.mark(&jobs, json!({ "succeeded": 1 }));
    target.reconcile().await;
    assert_eq!(target.condition("SchemaCopied").0, ConditionStatus::True);
    target.reconcile().await;
    assert_eq!(target.names(&cnpg("subscriptions")).len(), 3);
    assert_eq!(
        target.condition("Replicating"),
        (ConditionStatus::False, "Subscribing".into())
    );
    target.mark(&cnpg("subscriptions"), json!({ "applied": true }));
    target.checks.copying.store(2, Ordering::SeqCst);
    target.reconcile().await;
    assert_eq!(target.condition("Replicating").0, ConditionStatus::True);
    assert_eq!(
        target.condition("CaughtUp"),
        (ConditionStatus::False, "Copying".into())
    );
    target.checks.copying.store(0, Ordering::SeqCst);
    target.reconcile().await;
    assert_eq!(target.condition("CaughtUp").0, ConditionStatus::True);
    // The artifacts came along (the video in parts); what the target held stays until sync.
    let copied = listing(&s3, "target-objects").await;
    for (key, size) in [
        ("tenants/acme/reports/r1/report.csv", report.len()),
        ("tenants/acme/videos/v1/video.mp4", video.len()),
        ("tenants/acme/stale", 1),
    ] {
        assert!(
            copied.contains(&(key.to_owned(), size)),
            "{key}: {copied:?}"
        );
    }
    let got = reqwest::get(format!(
        "{}/target-objects/tenants/acme/videos/v1/video.mp4",
        s3.url
    ))
    .await
    .expect("get")
    .bytes()
    .await
    .expect("video");
    assert!(got[..] == video[..], "the video's bytes");
    // Written on the source before the fence: copied by the exact sync.
    bucket(
        &s3,
        "source-objects",
        &[("tenants/acme/reports/r2/report.pdf", b"%PDF".to_vec())],
    )
    .await;

    // sync: rows equal, sequences copied; verify reports what differs.
    target.edit(|m| m["phase"] = json!("sync"));
    target.reconcile().await;
    let synced = target.status();
    let in_sync = synced.condition("InSync").expect("InSync");
    assert_eq!(
        (in_sync.status, in_sync.message.as_str()),
        (ConditionStatus::True, "21 tables")
    );
    assert_eq!(target.checks.synced.load(Ordering::SeqCst), 3);
    assert_eq!(
        listing(&s3, "target-objects").await,
        listing(&s3, "source-objects").await,
        "exactly the source's objects"
    );
    target.edit(|m| m["phase"] = json!("verify"));
    target.reconcile().await;
    let verified = target.status();
    let v = verified.condition("Verified").expect("Verified");
    assert_eq!(v.status, ConditionStatus::False);
    assert!(
        v.message.contains("poc.public.pocs differs"),
        "{}",
        v.message
    );

    // start: replication gone, services run.
    target.edit(|m| m["phase"] = json!("start"));
    target.reconcile().await;
    assert!(target.names(&cnpg("subscriptions")).is_empty());
    assert!(target.names(&jobs).is_empty());
    assert_eq!(
        target
            .names("apis/autoscaling/v2/namespaces/cell-acme/horizontalpodautoscalers")
            .len(),
        3
    );
}

#[tokio::test]
async fn a_source_publishes_then_fences() {
    let source = Operator::new(CellMigration {
        role: MigrationRole::Source,
        id: "m-1".into(),
        fenced: false,
        source_host: None,
        phase: None,
    });
    let s3 = test_support::moto::Moto::start();
    claimed_bucket(&source.api, &s3, "source-objects");
    source.reconcile().await;
    let secrets = format!("api/v1/namespaces/{NS}/secrets");
    let migrator = source
        .api
        .get(&secrets, "migrator-role")
        .expect("the migrator's Secret");
    let tls = source.api.get(&secrets, "postgres-tls").expect("TLS");
    assert_eq!(
        migrator["stringData"]["ca.crt"],
        tls["stringData"]["ca.crt"]
    );
    assert_eq!(migrator["stringData"]["username"], "migrator");
    // Its bucket, where other clusters reach the store, with the bucket's own key.
    let bucket = &migrator["stringData"];
    assert_eq!(bucket["bucket"], "source-objects");
    assert_eq!(bucket["bucket-endpoint"], "https://objects.a.example");
    assert_eq!(bucket["bucket-access-key-id"], "key-of-source-objects");
    assert_eq!(bucket["bucket-secret-access-key"], "testing");
    assert_eq!(source.condition("Published").0, ConditionStatus::False);
    source.mark(&cnpg("publications"), json!({ "applied": true }));
    source.reconcile().await;
    assert_eq!(source.condition("Published").0, ConditionStatus::True);

    source.edit(|m| m["fenced"] = json!(true));
    let deployments = format!("apis/apps/v1/namespaces/{NS}/deployments");
    let stateful = format!("apis/apps/v1/namespaces/{NS}/statefulsets");
    source.mark(&deployments, json!({ "replicas": 1, "readyReplicas": 1 }));
    source.mark(&stateful, json!({ "replicas": 1, "readyReplicas": 1 }));
    source.reconcile().await;
    assert_eq!(
        source.condition("Fenced"),
        (ConditionStatus::False, "Stopping".into())
    );
    assert_eq!(
        source.condition("Ready"),
        (ConditionStatus::False, "Migrating".into())
    );
    for d in source.api.objects(&deployments) {
        assert_eq!(d["spec"]["replicas"], 0);
    }
    source.mark(&deployments, json!({ "replicas": 0 }));
    source.reconcile().await;
    assert_eq!(
        source.condition("Fenced"),
        (ConditionStatus::False, "Stopping".into()),
        "dojo's pods still run"
    );
    source.mark(&stateful, json!({ "replicas": 0 }));
    source.reconcile().await;
    assert_eq!(source.condition("Fenced").0, ConditionStatus::True);
    assert_eq!(source.status().phase, Phase::Migrating);
}
