//! The platform chart's pods started for real: `helm template` of `charts/mrbill`, then the
//! local kubelet (`kubelet/`) starts the control plane's and the router's containers from the
//! rendered Deployments — their images' binaries, rendered env, the tokens Secret the chart
//! generates, the catalog Secret an installer provides (a real Postgres here), the pods' user
//! and fsGroup. The API server their service account reaches is `kube_fake` (no cluster
//! here). Both must pass their readiness probes, the router must follow the control plane's
//! route feed, and a tenant created through the admin API must become a `Cell` resource and
//! resolve through the router.

mod helm;
mod kubelet;

use std::time::{Duration, Instant};

use kubelet::Kubelet;
use serde_json::{Value, json};

fn helm_template(sets: &[&str]) -> Vec<Value> {
    helm::template("mrbill", sets).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_charts_control_plane_and_router_start_and_work_together() {
    let api = kube_fake::FakeApi::new();
    let served = api.serve().await;
    let catalog = test_support::empty_database()
        .await
        .expect("catalog database");
    let mut objects = helm_template(&["publicUrl=https://mrbill.example", "domain=mrbill.example"]);
    // What an installer provides before installing: the catalog's URL.
    objects.push(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "mrbill-catalog", "namespace": "mrbill" },
        "stringData": { "url": catalog },
    }));
    let tokens = objects
        .iter()
        .find(|o| o["kind"] == "Secret" && o["metadata"]["name"] == "rel-mrbill-tokens")
        .cloned()
        .expect("the chart generates the tokens Secret");
    let operator_token = {
        use base64::Engine;
        let raw = tokens["data"]["operator-token"]
            .as_str()
            .expect("operator token");
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(raw)
                .expect("base64"),
        )
        .expect("utf-8")
    };
    let kubeconfig = served.kubeconfig();
    let kubelet = tokio::task::spawn_blocking(move || {
        let mut kubelet = Kubelet::new("mrbill", objects).with_api_server(&kubeconfig);
        kubelet.start("Deployment", "rel-mrbill-control-plane");
        kubelet.start("Deployment", "rel-mrbill-router");
        kubelet
    })
    .await
    .expect("pods start");
    let control_plane = kubelet.localize("http://rel-mrbill-control-plane:8080", None);
    let router = kubelet.localize("http://rel-mrbill-router:80", None);

    let admin = test_support::ApiClient::new(control_plane).with_token(&operator_token);
    let created = admin
        .post(
            "/v1/tenants",
            &json!({ "slug": "acme", "display_name": "Acme Inc.", "admin_email": "boss@acme.example",
                     "email_domains": ["acme.example"], "tier": "small" }),
        )
        .await;
    created.assert_status(202);
    // The control plane wrote the Cell through the API server its service account reaches…
    let deadline = Instant::now() + Duration::from_secs(20);
    while api.objects("apis/mrbill.dev/v1alpha1/cells").is_empty() {
        assert!(Instant::now() < deadline, "no Cell written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // …and the router, following the control plane's feed, resolves the new tenant.
    let resolve = test_support::ApiClient::new(router);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let res = resolve.get("/v1/resolve?tenant=acme").await;
        if res.status == 200 {
            assert_eq!(res.body["endpoint"], "https://mrbill.example/t/acme");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "router never resolved acme: {:?}",
            res.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::task::spawn_blocking(move || drop(kubelet))
        .await
        .expect("stopped");
}
