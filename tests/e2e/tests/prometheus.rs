//! The local Prometheus a newcomer gets from `mrbill up --with-prometheus` (what `./x dev`
//! runs): the real Debian `prometheus`, scraping every cell's services from the file-based
//! discovery the control plane writes — a tenant's cell is scraped once it is ready, with its
//! tenant, cell and service as labels, and dropped when it is deleted — the control plane and
//! the router (its loopback metrics listener), and evaluating the platform's rules (the
//! chart's file).

use std::time::Duration;

use e2e_tests::platform::{Platform, wait_until};
use serde_json::Value;

/// The result of the instant query `query` at `prometheus`.
async fn query(prometheus: &str, query: &str) -> Vec<Value> {
    let answer: Value = reqwest::Client::new()
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .expect("Prometheus answers")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["status"], "success", "{answer}");
    answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `what` of `prometheus`'s API (`targets`, `rules`).
async fn api(prometheus: &str, what: &str) -> Value {
    reqwest::get(format!("{prometheus}/api/v1/{what}"))
        .await
        .expect("Prometheus answers")
        .json()
        .await
        .expect("json")
}

async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_each_cell_once_ready_with_its_tenant_and_drops_it_when_deleted() {
    let platform = Platform::up();
    let up = platform.mrbill_env(
        &[
            "up",
            "--with-prometheus",
            "--router-addr",
            "127.0.0.1:0",
            "-o",
            "json",
        ],
        &[("MRBILL_PROMETHEUS_ADDR", "127.0.0.1:0")],
    );
    assert_eq!(up.code, 0, "{}", up.stderr);
    let prometheus = up.json()["prometheus"]
        .as_str()
        .expect("Prometheus's URL")
        .to_owned();
    let status = platform.mrbill(&["status"]);
    assert!(status.stdout.contains(&prometheus), "{}", status.stdout);

    // The platform's rules are loaded and healthy.
    let rules = api(&prometheus, "rules").await;
    let groups: Vec<&str> = rules["data"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(groups, ["mrbill.alerts", "mrbill.recording"], "{rules}");

    platform.create_tenant("acme");
    eventually("acme's three services to be scraped", || async {
        let up = query(&prometheus, r#"up{job="cells", tenant="acme"} == 1"#).await;
        let mut services: Vec<&str> = up
            .iter()
            .filter_map(|s| s["metric"]["service"].as_str())
            .collect();
        services.sort();
        services == ["dojo", "media", "poc"]
    })
    .await;
    eventually("the control plane and the router to be scraped", || async {
        query(&prometheus, r#"up{job=~"control-plane|router"} == 1"#)
            .await
            .len()
            == 2
    })
    .await;

    // The control plane's gauges and the provisioning's steps.
    eventually("the control plane's catalog gauges and reconcile steps", || async {
        let capacity = query(&prometheus, r#"mrbill_placement_capacity_units{placement="local"}"#).await;
        let ready = query(&prometheus, r#"mrbill_cells{phase="Ready"} == 1"#).await;
        let steps = query(
            &prometheus,
            r#"mrbill_reconcile_step_duration_seconds_count{op="provision", step="route", outcome="done"}"#,
        )
        .await;
        capacity.len() == 1 && ready.len() == 1 && steps.len() == 1
    })
    .await;

    // A request through the router shows up as acme's series, by route template.
    let answer = reqwest::get(format!("{}/t/acme/v1/pocs", platform.router_url()))
        .await
        .expect("the router answers");
    assert_eq!(answer.status(), 401);
    eventually("acme's request series", || async {
        let series = query(
            &prometheus,
            r#"mrbill_http_requests_total{tenant="acme", service="poc", route="/v1/pocs", status="401"}"#,
        )
        .await;
        let routed = query(
            &prometheus,
            r#"mrbill_router_requests_total{job="router", tenant="acme", code="4xx"}"#,
        )
        .await;
        series.len() == 1 && routed.len() == 1
    })
    .await;

    // Every dashboard panel's query runs on this Prometheus (the tenant's with acme picked).
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../charts/mrbill/files/dashboards"
    );
    for entry in std::fs::read_dir(dir).expect("dashboards") {
        let path = entry.expect("entry").path();
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr");
                let expr = expr
                    .replace("$__rate_interval", "1m")
                    .replace("$tenant", "acme");
                // `query` asserts Prometheus answered with success.
                let result = query(&prometheus, &expr).await;
                if panel["title"] == "Targets up" {
                    assert_eq!(result.len(), 3, "{}: {result:?}", path.display());
                }
            }
        }
    }

    // Deleted: its targets go.
    let deleted = platform.mrbill(&["tenant", "delete", "acme", "--yes", "-o", "json"]);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    wait_until(Duration::from_secs(60), "acme to be deleted", || {
        platform.mrbill(&["tenant", "show", "acme"]).code != 0
    });
    eventually("acme's targets to be dropped", || async {
        let targets = api(&prometheus, "targets").await;
        !targets["data"]["activeTargets"]
            .as_array()
            .expect("targets")
            .iter()
            .any(|t| t["labels"]["tenant"] == "acme")
    })
    .await;
}
