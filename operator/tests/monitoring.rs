//! The platform's Prometheus rules (`charts/mrbill/files/prometheus-rules.yml`): checked and
//! unit-tested with the real `promtool` (Debian `prometheus`, which `./x` installs) — every
//! alert fires on a series that breaks its budget and not on one that keeps it
//! (`charts/mrbill/tests/prometheus-rules.test.yml`) — and shipped by the platform chart as a
//! PrometheusRule holding that same file, with a ServiceMonitor for the control plane and a
//! PodMonitor for the routers' metrics port, all validated against the Prometheus Operator v0.93.0's CRD schemas (kept under
//! `tests/fixtures/prometheus-operator/`, Apache-2.0; no cluster runs here).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

mod crds;
mod fixtures;
mod helm;
use helm::{find, template};

fn chart_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/mrbill")
        .join(path)
}

fn promtool(args: &[&str]) -> (bool, String) {
    let promtool = std::env::var("MRBILL_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let out = Command::new(&promtool)
        .args(args)
        .current_dir(chart_file("tests"))
        .output()
        .unwrap_or_else(|e| panic!("{promtool}: {e} (./x test installs Debian prometheus)"));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), report)
}

#[test]
fn the_rules_are_valid_and_every_alert_passes_its_unit_tests() {
    let rules = chart_file("files/prometheus-rules.yml");
    let (ok, report) = promtool(&["check", "rules", rules.to_str().expect("utf-8")]);
    assert!(ok, "{report}");
    let (ok, report) = promtool(&["test", "rules", "prometheus-rules.test.yml"]);
    assert!(ok, "{report}");

    // Every alert has a test that fires it.
    let text = std::fs::read_to_string(&rules).expect("rules");
    let tests =
        std::fs::read_to_string(chart_file("tests/prometheus-rules.test.yml")).expect("tests");
    for line in text.lines() {
        if let Some(alert) = line.trim().strip_prefix("- alert: ") {
            let fired = format!("alertname: {alert}\n        exp_alerts:\n          - ");
            assert!(tests.contains(&fired), "no test fires {alert}");
        }
    }
}

/// promtool's tests fail when an alert does not behave: a copy with one threshold broken.
#[test]
fn a_broken_rule_fails_its_unit_test() {
    let dir = std::env::temp_dir().join(format!("mrbill-rules-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("files")).expect("dir");
    std::fs::create_dir_all(dir.join("tests")).expect("dir");
    let rules = std::fs::read_to_string(chart_file("files/prometheus-rules.yml")).expect("rules");
    let broken = rules.replace(
        "mrbill:poc_search_indexer_lag_seconds:p99_5m > 1",
        "mrbill:poc_search_indexer_lag_seconds:p99_5m > 10",
    );
    assert_ne!(broken, rules, "the threshold is where the test expects it");
    std::fs::write(dir.join("files/prometheus-rules.yml"), broken).expect("write");
    std::fs::copy(
        chart_file("tests/prometheus-rules.test.yml"),
        dir.join("tests/prometheus-rules.test.yml"),
    )
    .expect("copy");
    let promtool = std::env::var("MRBILL_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let out = Command::new(&promtool)
        .args(["test", "rules", "prometheus-rules.test.yml"])
        .current_dir(dir.join("tests"))
        .output()
        .expect("promtool");
    let _ = std::fs::remove_dir_all(&dir);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("IndexerLagOverBudget"), "{report}");
}

#[test]
fn the_chart_ships_the_same_rules_and_scrapes_valid_for_the_prometheus_operator() {
    let (_, off) = template("mrbill", &[]);
    assert!(find(&off, "PrometheusRule").is_empty(), "off by default");
    assert!(find(&off, "ServiceMonitor").is_empty(), "off by default");
    // The routers' metrics port (it lists every tenant) is reached by nobody unless a
    // Prometheus is named, and then by its pods only; the public port stays open.
    let ports_of = |objects: &[Value]| -> Vec<(u64, Value)> {
        let policy = find(objects, "NetworkPolicy")
            .into_iter()
            .find(|p| p["metadata"]["name"] == "rel-mrbill-router")
            .expect("the routers' policy")
            .clone();
        policy["spec"]["ingress"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|r| {
                (
                    r["ports"][0]["port"].as_u64().expect("port"),
                    r["from"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(ports_of(&off), [(8080, Value::Null)]);
    let (_, named) = template("mrbill", &["monitoring.prometheusNamespace=monitoring"]);
    let rules = ports_of(&named);
    assert_eq!(rules[1].0, 9100);
    assert_eq!(
        rules[1].1,
        json!([{ "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "monitoring" } },
                 "podSelector": { "matchLabels": { "app.kubernetes.io/name": "prometheus" } } }])
    );

    let (_, objects) = template(
        "mrbill",
        &[
            "monitoring.prometheusRule.enabled=true",
            "monitoring.serviceMonitor.enabled=true",
            "monitoring.labels.release=kube-prometheus-stack",
        ],
    );
    let rule = find(&objects, "PrometheusRule")[0].clone();
    let monitor = find(&objects, "ServiceMonitor")[0].clone();
    let routers = find(&objects, "PodMonitor")[0].clone();
    assert_eq!(routers["spec"]["podMetricsEndpoints"][0]["port"], "metrics");
    let router = find(&objects, "Deployment")
        .into_iter()
        .find(|d| d["metadata"]["name"] == "rel-mrbill-router")
        .expect("the router");
    let ports = &router["spec"]["template"]["spec"]["containers"][0]["ports"];
    assert!(
        ports
            .as_array()
            .expect("ports")
            .iter()
            .any(|p| p["name"] == "metrics" && p["containerPort"] == 9100),
        "{ports}"
    );
    let service = find(&objects, "Service")
        .into_iter()
        .find(|s| s["metadata"]["name"] == "rel-mrbill-router")
        .expect("the router's Service");
    assert_eq!(
        service["spec"]["ports"].as_array().map(Vec::len),
        Some(1),
        "the public Service never exposes the metrics port"
    );
    let file: Value = serde_norway::from_str(
        &std::fs::read_to_string(chart_file("files/prometheus-rules.yml")).expect("rules"),
    )
    .expect("yaml");
    assert_eq!(
        rule["spec"]["groups"], file["groups"],
        "the same rules as locally"
    );
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "mrbill-control-plane"
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prometheus-operator");
    let dir_files = ["prometheusrules", "servicemonitors", "podmonitors"];
    assert!(
        dir_files
            .iter()
            .all(|f| dir.join(format!("monitoring.coreos.com_{f}.yaml")).exists())
    );
    let (valid, report) = crds::validate(&dir, &[rule.clone(), monitor, routers]);
    assert!(valid, "{report}");

    // The check catches what the API server would refuse.
    let mut broken = rule;
    broken["spec"]["groups"][0]["rules"][0]["expr"] = json!(7);
    broken["spec"]["groups"][0]["interval"] = json!("soon");
    let (valid, report) = crds::validate(&dir, &[broken]);
    assert!(!valid, "a broken PrometheusRule passed: {report}");
}

/// With the Prometheus's namespace set, every cell has a PodMonitor of its three services
/// (public port, `/metrics`, the labels the rules group by) valid for the Prometheus Operator,
/// and a NetworkPolicy letting that namespace in to that port; without it, neither.
#[test]
fn a_cell_is_scraped_through_a_pod_monitor_only_when_asked() {
    use cell_model::{DatabaseEngine, SearchEngine, Tier};
    let cell = fixtures::cell(
        Tier::Small,
        DatabaseEngine::InCluster,
        SearchEngine::Embedded,
    );
    let off = cell_operator::render::desired(&cell, &fixtures::images());
    assert!(find(&off, "PodMonitor").is_empty());
    let images = cell_operator::render::Images {
        monitoring: Some(cell_operator::render::Monitoring {
            namespace: "monitoring".into(),
            pod_labels: [("app.kubernetes.io/name".into(), "prometheus".into())].into(),
            labels: [("release".into(), "kube-prometheus-stack".into())].into(),
            interval: "15s".into(),
        }),
        ..fixtures::images()
    };
    let objects = cell_operator::render::desired(&cell, &images);
    let monitor = find(&objects, "PodMonitor")[0].clone();
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(
        (&endpoint["port"], &endpoint["path"]),
        (&json!("public"), &json!("/metrics"))
    );
    let relabelings = endpoint["relabelings"].as_array().expect("relabelings");
    let targets: Vec<&str> = relabelings
        .iter()
        .filter_map(|r| r["targetLabel"].as_str())
        .collect();
    assert_eq!(targets, ["job", "tenant", "cell", "service", "placement"]);
    // The pods' own labels, as the Prometheus Operator names them (`.`, `/`, `-` → `_`).
    assert_eq!(
        relabelings[1]["sourceLabels"],
        json!(["__meta_kubernetes_pod_label_mrbill_dev_tenant"])
    );
    assert_eq!(endpoint["interval"], "15s");
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let selected = &monitor["spec"]["selector"]["matchExpressions"][0]["values"];
    assert_eq!(selected, &json!(["poc", "dojo", "media"]));
    let allow = find(&objects, "NetworkPolicy")
        .into_iter()
        .find(|p| p["metadata"]["name"] == "allow-metrics-from-prometheus")
        .expect("the metrics policy");
    assert_eq!(
        allow["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    assert_eq!(
        allow["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"],
        json!({ "app.kubernetes.io/name": "prometheus" }),
        "only Prometheus's pods, not its whole namespace"
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prometheus-operator");
    let (valid, report) = crds::validate(&dir, &[monitor]);
    assert!(valid, "{report}");

    // The operator's chart passes the namespace on and may manage PodMonitors.
    let (_, chart) = template(
        "cell-operator",
        &[
            "metrics.cells.prometheusNamespace=monitoring",
            "metrics.cells.podMonitorLabels.release=kps",
        ],
    );
    let operator = find(&chart, "Deployment")[0];
    let env = operator["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env");
    let var = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
    };
    assert_eq!(
        var("MRBILL_OPERATOR_MONITORING_NAMESPACE"),
        Some("monitoring")
    );
    assert_eq!(
        var("MRBILL_OPERATOR_MONITORING_POD_LABELS"),
        Some("app.kubernetes.io/name=prometheus")
    );
    assert_eq!(
        var("MRBILL_OPERATOR_MONITORING_LABELS"),
        Some("release=kps")
    );
    assert_eq!(var("MRBILL_OPERATOR_MONITORING_INTERVAL"), Some("30s"));
}

/// The operator's own metrics (the cells' certificate expiry among them) are scraped through a
/// ServiceMonitor of its chart, valid for the Prometheus Operator, selecting its metrics Service.
#[test]
fn the_operator_is_scraped_through_a_service_monitor_when_asked() {
    let (_, off) = template("cell-operator", &[]);
    assert!(find(&off, "ServiceMonitor").is_empty(), "off by default");
    let (_, on) = template(
        "cell-operator",
        &[
            "metrics.serviceMonitor.enabled=true",
            "metrics.serviceMonitor.labels.release=kps",
        ],
    );
    let monitor = find(&on, "ServiceMonitor")[0].clone();
    assert_eq!(monitor["metadata"]["labels"]["release"], "kps");
    let service = find(&on, "Service")
        .into_iter()
        .find(|s| {
            s["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-metrics"))
        })
        .expect("the metrics Service");
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("selector")
    {
        assert_eq!(&service["metadata"]["labels"][key], value, "{key}");
    }
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prometheus-operator");
    let (valid, report) = crds::validate(&dir, &[monitor]);
    assert!(valid, "{report}");
}

/// The dashboards' files: each panel's queries, with the dashboards' variables filled in.
fn dashboards() -> Vec<(String, Value)> {
    let dir = chart_file("files/dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("dashboards")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read");
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (
                name,
                serde_json::from_str(&text).expect("a dashboard is JSON"),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A panel query as Prometheus would get it from Grafana.
fn filled(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$tenant", "acme")
}

/// Every dashboard is well formed for Grafana (a unique uid, the data source as a variable,
/// every panel placed and querying through it) and every panel's query parses as PromQL
/// (checked by promtool as a recording rule); the chart ships each as a sidecar ConfigMap.
#[test]
fn the_dashboards_are_well_formed_and_every_query_parses() {
    let dashboards = dashboards();
    let names: Vec<&str> = dashboards.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "control-plane.json",
            "fleet.json",
            "router.json",
            "tenant.json"
        ]
    );
    let mut uids = std::collections::BTreeSet::new();
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    for (name, d) in &dashboards {
        assert!(
            uids.insert(d["uid"].as_str().expect("uid").to_owned()),
            "{name}: uid"
        );
        assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()), "{name}");
        let variables = d["templating"]["list"].as_array().expect("templating");
        assert_eq!(variables[0]["type"], "datasource", "{name}");
        let panels = d["panels"].as_array().expect("panels");
        assert!(!panels.is_empty(), "{name}");
        let place = |p: &Value| {
            let g = &p["gridPos"];
            let n = |k: &str| g[k].as_u64().expect("gridPos");
            (n("x"), n("y"), n("w"), n("h"))
        };
        for (i, a) in panels.iter().enumerate() {
            for b in &panels[i + 1..] {
                let ((ax, ay, aw, ah), (bx, by, bw, bh)) = (place(a), place(b));
                let apart = ax + aw <= bx || bx + bw <= ax || ay + ah <= by || by + bh <= ay;
                assert!(apart, "{name}: {} overlaps {}", a["title"], b["title"]);
            }
        }
        for panel in panels {
            let title = panel["title"].as_str().expect("title");
            assert!(
                panel["gridPos"]["w"].as_u64().is_some_and(|w| w <= 24),
                "{name}/{title}"
            );
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{name}/{title}"
            );
            let targets = panel["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{name}/{title}");
            for (i, target) in targets.iter().enumerate() {
                let expr = target["expr"].as_str().expect("expr");
                rules.push_str(&format!(
                    "      - record: dashboard:{}:{i}\n        expr: {}\n",
                    panel["id"],
                    serde_json::to_string(&filled(expr)).expect("json string")
                ));
            }
        }
    }
    let file = std::env::temp_dir().join(format!("mrbill-dashboards-{}.yml", std::process::id()));
    std::fs::write(&file, &rules).expect("write");
    let (ok, report) = promtool(&["check", "rules", file.to_str().expect("utf-8")]);
    let _ = std::fs::remove_file(&file);
    assert!(ok, "{report}\n{rules}");

    let (_, objects) = template("mrbill", &["monitoring.dashboards.enabled=true"]);
    let maps: Vec<&Value> = find(&objects, "ConfigMap")
        .into_iter()
        .filter(|m| m["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    assert_eq!(maps.len(), dashboards.len());
    for (name, d) in &dashboards {
        let shipped = maps
            .iter()
            .find_map(|m| m["data"][name.as_str()].as_str())
            .unwrap_or_else(|| panic!("{name} shipped"));
        let shipped: Value = serde_json::from_str(shipped).expect("json");
        assert_eq!(&shipped, d, "{name}");
    }
}

/// A cell's PodMonitor goes when monitoring is turned off (the operator prunes it), and a
/// cluster without the Prometheus Operator never sees one.
#[tokio::test]
async fn a_cells_pod_monitor_goes_when_monitoring_is_turned_off() {
    use fixtures::scenario::{NS, Scenario};
    let images = cell_operator::render::Images {
        monitoring: Some(cell_operator::render::Monitoring {
            namespace: "monitoring".into(),
            pod_labels: [("app.kubernetes.io/name".into(), "prometheus".into())].into(),
            labels: Default::default(),
            interval: "30s".into(),
        }),
        ..fixtures::images()
    };
    let s = Scenario::with_images(cell_model::SearchEngine::Embedded, images);
    s.reconcile().await.expect("create");
    let monitors = format!("apis/monitoring.coreos.com/v1/namespaces/{NS}/podmonitors");
    assert!(s.api.get(&monitors, "cell-services").is_some(), "rendered");
    let off =
        cell_operator::controller::Context::new(s.api.client(), fixtures::images(), None, None);
    let cell = s.cell().expect("the Cell");
    cell_operator::controller::reconcile(std::sync::Arc::new(cell), off)
        .await
        .expect("reconcile");
    assert!(s.api.get(&monitors, "cell-services").is_none(), "pruned");
}
