//! The control plane's kubernetes driver end to end: the real `mrbill` CLI, control plane
//! (`MRBILL_DRIVER=kubernetes`) and router. No Kubernetes cluster can run on the test
//! machines, so the control plane's kubeconfig points at `kube_fake`'s in-memory API server
//! served over HTTP, and the test plays the operator's part: it reports each `Cell` ready with
//! service endpoints pointing at a real `poc-service`.

use std::time::Duration;

use cell_model::Cell;
use e2e_tests::PocProcess;
use e2e_tests::platform::Platform;
use kube_fake::FakeApi;
use serde_json::{Value, json};

const CELLS: &str = "apis/mrbill.dev/v1alpha1/cells";

/// Stands in for the operator: status for every new generation, finalizer-free deletion.
fn operator_stand_in(api: FakeApi, poc_url: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for cell in api.objects(CELLS) {
                let name = cell["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let generation = cell["metadata"]["generation"].as_i64().unwrap_or(1);
                if cell["status"]["observedGeneration"].as_i64() == Some(generation) {
                    continue;
                }
                let suspended = cell["spec"]["suspended"].as_bool().unwrap_or(false);
                let (phase, ready, reason) = if suspended {
                    ("Suspended", "False", "Suspended")
                } else {
                    ("Ready", "True", "Serving")
                };
                api.update(CELLS, &name, |c| {
                    c["status"] = json!({
                        "phase": phase,
                        "observedGeneration": generation,
                        "conditions": [
                            { "type": "DatabaseReady", "status": "True", "reason": "PostgresRunning" },
                            { "type": "Ready", "status": ready, "reason": reason },
                        ],
                        "endpoints": { "services": { "poc": poc_url } },
                    });
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn mrbill(platform: &std::sync::Arc<Platform>, args: &[&str]) -> Value {
    let platform = platform.clone();
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        platform.mrbill(&args).json()
    })
    .await
    .expect("mrbill ran")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_lives_as_a_cell_resource_with_the_kubernetes_driver() {
    let poc = PocProcess::start(&[]).await;
    let api = FakeApi::new();
    let served = api.serve().await;
    let kubeconfig = tempfile::NamedTempFile::new().expect("kubeconfig file");
    std::fs::write(kubeconfig.path(), served.kubeconfig()).expect("write kubeconfig");
    let kubeconfig_path = kubeconfig.path().display().to_string();
    let platform = std::sync::Arc::new(
        tokio::task::spawn_blocking(move || {
            Platform::up_with(&[
                ("MRBILL_DRIVER", "kubernetes"),
                ("KUBECONFIG", &kubeconfig_path),
                ("MRBILL_CELL_VERSION", "1.4.2"),
            ])
        })
        .await
        .expect("platform up"),
    );
    let operator = operator_stand_in(api.clone(), poc.api.base.clone());

    // Onboarding: the control plane applies a Cell and waits for the operator's Ready.
    let tenant = mrbill(
        &platform,
        &[
            "tenant",
            "create",
            "acme",
            "--name",
            "Acme Inc.",
            "--admin-email",
            "admin@acme.example",
            "--email-domain",
            "acme.example",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(tenant["cell"]["status"]["phase"], "Ready", "{tenant:#}");
    let cell_id = tenant["cell"]["cell_id"]
        .as_str()
        .expect("cell id")
        .to_owned();
    let cell: Cell =
        serde_json::from_value(api.get(CELLS, &cell_id).expect("a Cell resource")).expect("a Cell");
    assert_eq!(cell.spec.tenant, "acme");
    assert_eq!(cell.spec.version, "1.4.2");
    assert_eq!(
        cell.spec.database.engine,
        cell_model::DatabaseEngine::InCluster
    );
    assert_eq!(cell.spec.search, cell_model::SearchEngine::Meilisearch);
    assert_eq!(
        cell.metadata.labels.as_ref().expect("labels")["mrbill.dev/tenant"],
        "acme"
    );
    let apply = api
        .log()
        .into_iter()
        .find(|l| l.method == http::Method::PATCH && l.path.ends_with(&cell_id))
        .expect("the Cell was applied");
    assert!(apply.content_type.starts_with("application/apply-patch"));
    assert!(
        apply.query.contains("fieldManager=mrbill-control-plane"),
        "{}",
        apply.query
    );
    // The first admin: the control plane shows the invite; the Cell carries only its hash
    // (poc-service creates the invite from it at start — tested in poc-service).
    let invite = &tenant["admin_invite"];
    assert_eq!(invite["email"], "admin@acme.example", "{tenant:#}");
    let token = invite["invite_token"].as_str().expect("an invite token");
    let bootstrap = cell.spec.bootstrap.clone().expect("spec.bootstrap");
    assert_eq!(bootstrap.admin_email, "admin@acme.example");
    assert_eq!(
        bootstrap.invite_token_sha256,
        service_kit::secrets::token_hash(token)
    );
    assert_eq!(
        bootstrap.expires_at,
        invite["expires_at"].as_str().expect("expiry")
    );
    let raw = api.get(CELLS, &cell_id).expect("cell").to_string();
    assert!(
        !raw.contains(token),
        "the token itself never reaches the cluster"
    );
    let shown = mrbill(&platform, &["tenant", "show", "acme", "-o", "json"]).await;
    assert_eq!(
        shown["admin_invite"]["invite_token"], token,
        "kept in the catalog"
    );
    // The operator's conditions reach the catalog.
    let conditions = tenant["cell"]["status"]["conditions"]
        .as_array()
        .expect("conditions");
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "DatabaseReady" && c["reason"] == "PostgresRunning")
    );

    // The router sends the tenant's traffic to the endpoint the operator reported: the answer
    // comes from that poc-service itself (which, started for another cell id, refuses it as
    // misrouted, naming its own cell), not from the router.
    let through = platform.api("acme").get("/v1/pocs").await;
    through.assert_error(421, "wrong_cell");
    assert_eq!(through.body["details"]["cell"], "c-e2e-acme");

    // Suspend: the route closes and the Cell is told to scale to zero.
    let suspended = mrbill(&platform, &["tenant", "suspend", "acme", "-o", "json"]).await;
    assert_eq!(
        suspended["cell"]["status"]["phase"], "Suspended",
        "{suspended:#}"
    );
    assert_eq!(
        api.get(CELLS, &cell_id).expect("cell")["spec"]["suspended"],
        true
    );
    platform
        .api("acme")
        .get("/v1/pocs")
        .await
        .assert_error(403, "tenant_suspended");

    let resumed = mrbill(&platform, &["tenant", "resume", "acme", "-o", "json"]).await;
    assert_eq!(resumed["cell"]["status"]["phase"], "Ready", "{resumed:#}");
    assert_eq!(
        api.get(CELLS, &cell_id).expect("cell")["spec"]["suspended"],
        false
    );
    platform
        .api("acme")
        .get("/v1/pocs")
        .await
        .assert_error(421, "wrong_cell");

    // Delete: the Cell resource goes, then the tenant leaves the catalog.
    mrbill(
        &platform,
        &["tenant", "delete", "acme", "--yes", "-o", "json"],
    )
    .await;
    let gone = {
        let platform = platform.clone();
        let api = api.clone();
        let cell_id = cell_id.clone();
        tokio::task::spawn_blocking(move || {
            e2e_tests::platform::wait_until(
                Duration::from_secs(60),
                "the tenant to be forgotten",
                || {
                    api.get(CELLS, &cell_id).is_none()
                        && platform
                            .mrbill(&["tenant", "show", "acme", "-o", "json"])
                            .code
                            != 0
                },
            );
        })
    };
    gone.await.expect("deleted");
    assert!(
        api.log()
            .iter()
            .any(|l| l.method == http::Method::DELETE && l.path.ends_with(&cell_id))
    );

    operator.abort();
    drop(platform);
    drop(served);
}
