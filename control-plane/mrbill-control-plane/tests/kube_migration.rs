//! The kubernetes driver moving a cell between two clusters (placements `a` and `b`, each an
//! in-memory `kube_fake::FakeApi`: no cluster can run here), with each cluster's operator
//! played by the test: it reports the conditions of `cell_model::move_conditions` the way
//! the cell-operator does (its own side is tested in `operator/tests/moves.rs`), so this
//! checks the control plane's half of the protocol — what it applies where, which Secrets it
//! copies, what it waits for, and the abort.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cell_model::{CellSpec, DatabaseEngine, DatabaseSpec, SearchEngine, ServiceReplicas, Tier};
use kube_fake::FakeApi;
use mrbill_control_plane::driver::kubernetes::KubeDriver;
use mrbill_control_plane::driver::{CellDriver, Move, Step, Work};
use serde_json::{Value, json};

const CELLS: &str = "apis/mrbill.dev/v1alpha1/cells";
const ID: &str = "c-acme-1234";
const SECRETS: &str = "api/v1/namespaces/cell-acme/secrets";
/// An rds source's instance address, and as a Secret holds it.
const INSTANCE: &str = "mrbill-c-acme-1234.abcdef.us-east-1.rds.amazonaws.com";
const INSTANCE_B64: &str =
    "bXJiaWxsLWMtYWNtZS0xMjM0LmFiY2RlZi51cy1lYXN0LTEucmRzLmFtYXpvbmF3cy5jb20=";

fn spec() -> CellSpec {
    spec_of(DatabaseEngine::InCluster)
}

fn spec_of(engine: DatabaseEngine) -> CellSpec {
    CellSpec {
        cell_id: ID.into(),
        tenant: "acme".into(),
        tier: Tier::Small,
        version: "1.4.2".into(),
        replicas: ServiceReplicas::default(),
        database: DatabaseSpec {
            engine,
            class: None,
            storage_gib: 20,
            multi_az: false,
        },
        search: SearchEngine::Embedded,
        placement: "a".into(),
        suspended: false,
        email_domains: Vec::new(),
        bootstrap: None,
        migration: None,
        restore: None,
    }
}

fn condition(type_: &str, ok: bool) -> Value {
    json!({ "type": type_, "status": if ok { "True" } else { "False" }, "reason": type_, "message": "" })
}

fn secret(name: &str, value: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": { "name": name, "namespace": "cell-acme",
            "labels": { "mrbill.dev/cell": ID, "mrbill.dev/tenant": "acme" } },
        "data": { "value": value } })
}

/// What the cell-operator of one cluster reports for the Cell there.
fn operate(api: &FakeApi) {
    let Some(cell) = api.get(CELLS, ID) else {
        return;
    };
    let m = &cell["spec"]["migration"];
    let rds = cell["spec"]["database"]["engine"] == "rds";
    let has = |name: &str| api.get(SECRETS, name).is_some();
    let mut conditions = Vec::new();
    match m["role"].as_str() {
        None => conditions.extend([condition("DatabaseReady", true), condition("Ready", true)]),
        Some("source") => {
            if !has("migrator-role") {
                let mut migrator = secret("migrator-role", "cmVwbGljYXRpb24=");
                if rds {
                    // The source instance's address (base64, as the API server keeps it).
                    migrator["data"]["host"] = json!(INSTANCE_B64);
                }
                api.insert(SECRETS, migrator);
            }
            let fenced = m["fenced"] == true;
            conditions.extend([
                condition("Published", true),
                condition("Fenced", fenced),
                condition("Ready", !fenced),
            ]);
        }
        Some(_) => {
            let phase = m["phase"].as_str().unwrap_or("provision");
            let at = |p: &str| {
                let order = ["provision", "copy", "sync", "verify", "start"];
                order.iter().position(|x| *x == phase) >= order.iter().position(|x| *x == p)
            };
            // An rds cell's database credentials are its own instance's, not the identity.
            let identity = has("cell-jwt") && (rds || has("poc-role"));
            let source = has("migration-source");
            conditions.extend([
                condition("DatabaseReady", identity),
                condition("Replicating", at("copy") && source),
                condition("CaughtUp", at("copy") && source),
                condition("InSync", phase == "sync"),
                condition("Verified", phase == "verify"),
                condition("Ready", false),
            ]);
        }
    }
    let services: BTreeMap<&str, String> = ["poc", "dojo", "media"]
        .into_iter()
        .map(|s| (s, format!("http://{s}-service.cell-acme.svc:8080")))
        .collect();
    let status = json!({ "phase": "Ready", "conditions": conditions,
        "endpoints": { "services": services },
        "observedGeneration": cell["metadata"]["generation"] });
    if cell["status"] != status {
        api.update(CELLS, ID, |c| c["status"] = status);
    }
}

struct Clusters {
    spec: CellSpec,
    a: FakeApi,
    b: FakeApi,
    driver: KubeDriver,
    paused: Arc<AtomicBool>,
    _operators: tokio::task::JoinHandle<()>,
}

impl Clusters {
    async fn new() -> Self {
        Self::with(spec()).await
    }

    async fn with(spec: CellSpec) -> Self {
        let (a, b) = (FakeApi::new(), FakeApi::new());
        let placements =
            BTreeMap::from([("a".to_owned(), a.client()), ("b".to_owned(), b.client())]);
        let driver = KubeDriver::with_placements(FakeApi::new().client(), placements)
            .source_host("pg.{placement}.example.com");
        let paused = Arc::new(AtomicBool::new(false));
        let (oa, ob, p) = (a.clone(), b.clone(), paused.clone());
        let operators = tokio::spawn(async move {
            loop {
                if !p.load(Ordering::SeqCst) {
                    operate(&oa);
                    operate(&ob);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        driver
            .apply("a", &spec, false, None)
            .await
            .expect("the cell in a");
        for name in [
            "cell-jwt",
            "cell-service-token",
            "media-url-key",
            "poc-database",
            "poc-role",
        ] {
            a.insert(SECRETS, secret(name, &format!("{name}-of-a")));
        }
        a.insert(SECRETS, secret("postgres-tls", "a's own TLS"));
        Self {
            spec,
            a,
            b,
            driver,
            paused,
            _operators: operators,
        }
    }

    /// Runs `step` until the operators have done their part (as the reconciler retries).
    async fn step(&self, step: Step) {
        let mv = Move {
            spec: &self.spec,
            source: "a",
            target: "b",
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.driver.migrate(mv, step).await {
                Ok(()) => return,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{}: {e:#}", step.as_str()),
            }
        }
    }

    fn migration(api: &FakeApi) -> Value {
        api.get(CELLS, ID)
            .map(|c| c["spec"]["migration"].clone())
            .unwrap_or(Value::Null)
    }
}

#[tokio::test]
async fn a_cell_moves_to_another_cluster_with_its_identity() {
    let c = Clusters::new().await;
    c.step(Step::Target).await;
    let target = Clusters::migration(&c.b);
    assert_eq!(
        (target["role"].as_str(), target["phase"].as_str()),
        (Some("target"), Some("provision"))
    );
    assert_eq!(
        c.b.get(CELLS, ID).expect("b's Cell")["spec"]["placement"],
        "b"
    );
    for name in [
        "cell-jwt",
        "cell-service-token",
        "media-url-key",
        "poc-database",
        "poc-role",
    ] {
        assert_eq!(
            c.b.get(SECRETS, name).expect(name)["data"],
            c.a.get(SECRETS, name).expect(name)["data"],
            "{name}: the same identity"
        );
    }
    assert!(
        c.b.get(SECRETS, "postgres-tls").is_none(),
        "b's TLS is its own"
    );
    assert!(
        c.b.get(SECRETS, "dojo-role").is_none(),
        "a Secret a lacks is not invented"
    );

    // A step waits for its operator's condition, then goes on.
    c.paused.store(true, Ordering::SeqCst);
    let spec = spec();
    let mv = Move {
        spec: &spec,
        source: "a",
        target: "b",
    };
    let waiting = c
        .driver
        .migrate(mv, Step::Copy)
        .await
        .expect_err("not published yet");
    assert!(format!("{waiting:#}").contains("Published"), "{waiting:#}");
    c.paused.store(false, Ordering::SeqCst);
    c.step(Step::Copy).await;
    assert_eq!(Clusters::migration(&c.a)["role"], "source");
    let copied =
        c.b.get(SECRETS, "migration-source")
            .expect("the migrator's credentials");
    assert_eq!(
        copied["data"],
        c.a.get(SECRETS, "migrator-role").expect("migrator")["data"]
    );
    let target = Clusters::migration(&c.b);
    assert_eq!(target["phase"], "copy");
    assert_eq!(target["sourceHost"], "pg.a.example.com");

    c.step(Step::CatchUp).await;
    c.step(Step::Fence).await;
    assert_eq!(Clusters::migration(&c.a)["fenced"], true);
    c.step(Step::Sync).await;
    assert_eq!(Clusters::migration(&c.b)["phase"], "sync");
    c.step(Step::Verify).await;
    c.step(Step::Start).await;
    assert_eq!(
        Clusters::migration(&c.b),
        Value::Null,
        "b runs as a cell of its own"
    );
    assert_eq!(
        Clusters::migration(&c.a)["fenced"],
        true,
        "a stays fenced until retired"
    );
    let urls = c
        .driver
        .service_urls(Work::new(&spec, "b"))
        .await
        .expect("b serves");
    assert!(
        format!("{urls:?}").contains("poc-service.cell-acme.svc"),
        "{urls:?}"
    );
}

#[tokio::test]
async fn an_abort_leaves_the_source_serving_and_removes_the_target() {
    let c = Clusters::new().await;
    for step in [Step::Target, Step::Copy, Step::CatchUp, Step::Fence] {
        c.step(step).await;
    }
    c.step(Step::Unfence).await;
    assert_eq!(
        Clusters::migration(&c.a),
        Value::Null,
        "publications and fence gone"
    );
    c.step(Step::Discard).await;
    assert!(c.b.get(CELLS, ID).is_none(), "the target is gone");
    assert!(c.a.get(CELLS, ID).is_some());
}

/// An rds cell's target replicates from its source's instance, named by the address its
/// operator put in the migrator Secret (not the placement's cross-cluster Postgres name), and
/// gets no database Secrets from it (its instance has its own).
#[tokio::test]
async fn an_rds_cell_moves_and_its_target_replicates_from_the_source_instance() {
    let c = Clusters::with(spec_of(DatabaseEngine::Rds)).await;
    c.step(Step::Target).await;
    assert_eq!(Clusters::migration(&c.b)["sourceHost"], Value::Null);
    assert!(
        c.b.get(SECRETS, "cell-jwt").is_some(),
        "the identity is copied"
    );
    assert!(
        c.b.get(SECRETS, "poc-database").is_none(),
        "the instance's credentials are not"
    );
    c.step(Step::Copy).await;
    assert_eq!(Clusters::migration(&c.b)["sourceHost"], INSTANCE);
    c.step(Step::CatchUp).await;
    c.step(Step::Fence).await;
    c.step(Step::Sync).await;
    let target = Clusters::migration(&c.b);
    assert_eq!(
        (target["phase"].as_str(), target["sourceHost"].as_str()),
        (Some("sync"), Some(INSTANCE))
    );
    c.step(Step::Verify).await;
    c.step(Step::Start).await;
    assert_eq!(Clusters::migration(&c.b), Value::Null);
}
