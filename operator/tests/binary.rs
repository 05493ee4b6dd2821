//! The real `cell-operator` binary against `kube_fake`'s API server served over HTTP (no
//! Kubernetes cluster can run on the test machines): it picks up an existing Cell, renders the
//! cell, reports status, follows a spec change and pods becoming ready through its watches,
//! serves `/healthz` and `/metrics`, and stops cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cell_model::{
    Cell, CellSpec, DatabaseEngine, DatabaseSpec, SearchEngine, ServiceReplicas, Tier,
};
use kube_fake::FakeApi;
use serde_json::json;

const CELLS: &str = "apis/mrbill.dev/v1alpha1/cells";

async fn wait_for(dir: &std::path::Path, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "waited 30 s for {what}: {}",
            std::fs::read_to_string(dir.join("operator.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_binary_reconciles_the_cells_it_lists_and_serves_metrics() {
    let api = FakeApi::new();
    let cell = Cell::new(
        "c-acme-1234",
        CellSpec {
            cell_id: "c-acme-1234".into(),
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
            placement: "eks".into(),
            suspended: false,
            email_domains: Vec::new(),
            bootstrap: None,
            migration: None,
            restore: None,
        },
    );
    let mut object = serde_json::to_value(&cell).expect("json");
    object["apiVersion"] = json!("mrbill.dev/v1alpha1");
    object["kind"] = json!("Cell");
    api.insert(CELLS, object);
    let served = api.serve().await;
    let dir = std::env::temp_dir().join(format!("mrbill-operator-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, served.kubeconfig()).expect("kubeconfig");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_cell-operator"))
        .env("KUBECONFIG", &kubeconfig)
        .env("MRBILL_OPERATOR_REGISTRY", "registry.example.com/mrbill")
        .env("MRBILL_OPERATOR_TRUSTED_PROXIES", "10.0.0.0/8")
        .env("MRBILL_OPERATOR_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("MRBILL_LOG_FORMAT", "compact")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("operator.log")).expect("log"))
        .spawn()
        .expect("start cell-operator");

    let deadline = Instant::now() + Duration::from_secs(30);
    let reconciled = loop {
        let status = api
            .get(CELLS, "c-acme-1234")
            .map(|c| c["status"].clone())
            .unwrap_or_default();
        if !status.is_null() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "no status within 30 s: {}",
            std::fs::read_to_string(dir.join("operator.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(reconciled["phase"], "Provisioning", "{reconciled}");
    assert!(
        api.get("api/v1/namespaces", "cell-acme").is_some(),
        "the namespace was applied"
    );
    assert!(
        api.get(
            "apis/apps/v1/namespaces/cell-acme/deployments",
            "poc-service"
        )
        .is_some()
    );

    // Watch-driven: a spec change reaches the binary through its Cell watch…
    api.update(CELLS, "c-acme-1234", |c| {
        c["spec"]["replicas"]["poc"] = json!(2);
        c["metadata"]["generation"] = json!(2);
    });
    let hpas = "apis/autoscaling/v2/namespaces/cell-acme/horizontalpodautoscalers";
    wait_for(&dir, "the autoscaler to follow the spec", || {
        api.get(hpas, "poc-service")
            .is_some_and(|h| h["spec"]["minReplicas"] == 2)
    })
    .await;
    // …and pods becoming ready reach it through its Deployment and CNPG Cluster watches
    // (mapped to the owning Cell); CNPG reports the Databases made.
    for service in ["poc", "dojo", "media"] {
        api.update(
            "apis/postgresql.cnpg.io/v1/namespaces/cell-acme/databases",
            &format!("postgres-{service}"),
            |o| o["status"] = json!({ "applied": true }),
        );
    }
    api.update(
        "apis/postgresql.cnpg.io/v1/namespaces/cell-acme/clusters",
        "postgres",
        |o| o["status"] = json!({ "readyInstances": 1 }),
    );
    // …and the provisioner says the cell's bucket is there.
    api.update(
        "apis/objectbucket.io/v1alpha1/namespaces/cell-acme/objectbucketclaims",
        "media-bucket",
        |o| o["status"] = json!({ "phase": "Bound" }),
    );
    for (collection, name) in [
        (
            "apis/apps/v1/namespaces/cell-acme/deployments",
            "poc-service",
        ),
        (
            "apis/apps/v1/namespaces/cell-acme/statefulsets",
            "dojo-service",
        ),
        (
            "apis/apps/v1/namespaces/cell-acme/deployments",
            "media-service",
        ),
    ] {
        api.update(collection, name, |o| {
            o["status"] = json!({ "readyReplicas": 1 })
        });
    }
    wait_for(&dir, "the Cell to be reported Ready", || {
        api.get(CELLS, "c-acme-1234")
            .is_some_and(|c| c["status"]["phase"] == "Ready")
    })
    .await;

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let health = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert!(health.status().is_success());
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains("cell_operator_reconciles_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cell_operator_reconcile_duration_seconds"),
        "{metrics}"
    );

    let pid = child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "cell-operator did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "{exit:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
