//! The real `cell-operator` binary against `kube_fake`'s API server served over HTTP (no
//! Kubernetes cluster can run on the test machines; the fake's watches stay silent, so the
//! binary acts on its initial list): it picks up an existing Cell, renders the cell, reports
//! status, serves `/healthz` and `/metrics`, and stops cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cell_model::{
    Cell, CellSpec, DatabaseEngine, DatabaseSpec, SearchEngine, ServiceReplicas, Tier,
};
use kube_fake::FakeApi;
use serde_json::json;

const CELLS: &str = "apis/mrbill.dev/v1alpha1/cells";

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
            bootstrap: None,
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
