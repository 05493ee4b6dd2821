//! A cell's children: created, kept as they are, scaled, suspended, switched.

use super::*;

#[tokio::test]
async fn create_applies_every_child_owned_by_the_cell_then_reports_ready() {
    let s = Scenario::new(SearchEngine::Meilisearch);
    let action = s.reconcile().await.expect("first reconcile");
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(10)),
        "not ready yet: look again soon"
    );

    let cell = s.cell().expect("cell");
    assert!(
        cell.metadata
            .finalizers
            .as_ref()
            .expect("finalizers")
            .contains(&FINALIZER.to_owned())
    );
    let uid = cell.metadata.uid.clone().expect("uid");

    // Every rendered object exists, controlled by the Cell, written by server-side apply under
    // the operator's field manager.
    let log = s.api.log();
    for object in desired(&cell, &fixtures::images()) {
        let path = path_of(&object);
        let stored = s
            .api
            .snapshot()
            .get(&path)
            .cloned()
            .unwrap_or_else(|| panic!("{path} applied"));
        let owner = &stored["metadata"]["ownerReferences"][0];
        assert_eq!(
            (
                owner["kind"].as_str(),
                owner["uid"].as_str(),
                owner["controller"].as_bool()
            ),
            (Some("Cell"), Some(uid.as_str()), Some(true)),
            "{path}"
        );
        let write = log
            .iter()
            .find(|l| l.method == Method::PATCH && l.path == format!("/{path}"))
            .unwrap_or_else(|| panic!("{path} patched"));
        assert!(
            write.content_type.starts_with("application/apply-patch"),
            "{path}: {}",
            write.content_type
        );
        assert!(
            write.query.contains("fieldManager=cell-operator")
                && write.query.contains("force=true"),
            "{}",
            write.query
        );
    }
    // The namespace is applied before anything that lives in it.
    let first_patch = log
        .iter()
        .find(|l| l.method == Method::PATCH && !l.path.contains("/cells/"))
        .expect("a patch");
    assert_eq!(first_patch.path, format!("/api/v1/namespaces/{NS}"));

    // Secrets are created (POST), never applied, owned by the Cell too.
    let secrets = s.api.objects(&format!("api/v1/namespaces/{NS}/secrets"));
    let names: Vec<&str> = secrets
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names.len(),
        cell_operator::secrets::names(&cell).len(),
        "{names:?}"
    );
    assert!(
        log.iter()
            .all(|l| !(l.method == Method::PATCH && l.path.contains("/secrets/")))
    );
    assert!(
        secrets
            .iter()
            .all(|o| o["metadata"]["ownerReferences"][0]["uid"] == uid.as_str())
    );

    // Status: provisioning, with the reasons.
    assert_eq!(s.phase(), Phase::Provisioning);
    assert_eq!(
        s.condition("DatabaseReady"),
        (ConditionStatus::False, "PostgresStarting".into())
    );
    assert_eq!(
        s.condition("SearchReady"),
        (ConditionStatus::False, "MeilisearchStarting".into())
    );
    assert_eq!(
        s.condition("ServicesReady"),
        (ConditionStatus::False, "Starting".into())
    );
    assert_eq!(
        s.condition("Ready"),
        (ConditionStatus::False, "Provisioning".into())
    );
    let status_write = log
        .iter()
        .find(|l| l.path.ends_with("/status"))
        .expect("status written");
    assert!(
        status_write
            .content_type
            .starts_with("application/apply-patch")
    );
    assert!(s.events().contains(&"SecretsGenerated".to_owned()));

    // CNPG's primary is up, its Databases not yet made: still not ready, and why.
    s.postgres_instance_ready();
    s.reconcile().await.expect("reconcile");
    assert_eq!(
        s.condition("DatabaseReady"),
        (ConditionStatus::False, "DatabasesPending".into())
    );
    s.become_ready();
    let action = s.reconcile().await.expect("second reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    assert_eq!(s.phase(), Phase::Ready);
    for c in ["DatabaseReady", "SearchReady", "ServicesReady", "Ready"] {
        assert_eq!(s.condition(c).0, ConditionStatus::True, "{c}");
    }
    let status = s.cell().and_then(|c| c.status).expect("status");
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        status.endpoints.services["poc"],
        "http://poc-service.cell-acme.svc:8080"
    );
    assert!(
        status.endpoints.replicas.is_empty(),
        "one dojo pod: the Service is enough"
    );
    assert!(s.events().contains(&"CellReady".to_owned()));

    // Two of three dojo pods ready, the middle one crashed: the route names each ready one
    // (routers pin a dojo's sockets to one), not the crashed one.
    let sets = format!("apis/apps/v1/namespaces/{NS}/statefulsets");
    s.api.update(&sets, "dojo-service", |o| {
        o["status"] = json!({ "readyReplicas": 2, "replicas": 3 })
    });
    let pods = format!("api/v1/namespaces/{NS}/pods");
    let pod = |name: &str, service: &str, cell: &str, ready: bool| {
        json!({ "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "namespace": NS,
                "labels": { "mrbill.dev/service": service, "mrbill.dev/cell": cell } },
            "status": { "conditions": [
                { "type": "Ready", "status": if ready { "True" } else { "False" } } ] } })
    };
    for (name, service, cell, ready) in [
        ("dojo-service-0", "dojo", "c-acme-1234", true),
        ("dojo-service-1", "dojo", "c-acme-1234", false),
        ("dojo-service-2", "dojo", "c-acme-1234", true),
        ("poc-service-7", "poc", "c-acme-1234", true),
        ("dojo-service-3", "dojo", "c-other-1", true),
    ] {
        s.api.insert(&pods, pod(name, service, cell, ready));
    }
    s.reconcile().await.expect("reconcile");
    let status = s.cell().and_then(|c| c.status).expect("status");
    assert_eq!(
        status.endpoints.replicas["dojo"],
        [
            "http://dojo-service-0.dojo-service-pods.cell-acme.svc:8080",
            "http://dojo-service-2.dojo-service-pods.cell-acme.svc:8080",
        ],
        "the ready pods"
    );
}

#[tokio::test]
async fn reconciling_again_changes_nothing_and_never_rotates_a_secret() {
    let s = Scenario::new(SearchEngine::Meilisearch);
    s.reconcile().await.expect("create");
    s.become_ready();
    s.reconcile().await.expect("ready");
    let before = s.children();
    let cell_before = s.api.get(CELLS, NAME).expect("cell");
    s.api.clear_log();
    s.reconcile().await.expect("again");
    let after = s.children();
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (path, object) in &before {
        let mut a = after[path].clone();
        let mut b = object.clone();
        a["metadata"]["resourceVersion"] = json!(null);
        b["metadata"]["resourceVersion"] = json!(null);
        assert_eq!(a, b, "{path} changed on a no-op reconcile");
    }
    let log = s.api.log();
    assert!(
        log.iter()
            .all(|l| l.method != Method::POST || l.path.contains("/events")),
        "nothing created twice"
    );
    assert!(
        !log.iter().any(|l| l.path.ends_with("/status")),
        "an unchanged status is not rewritten"
    );
    assert_eq!(
        s.api.get(CELLS, NAME).expect("cell")["status"],
        cell_before["status"]
    );

    // A Secret deleted by hand comes back with fresh values; the others stay untouched.
    let secrets = format!("api/v1/namespaces/{NS}/secrets");
    let jwt = s.api.get(&secrets, "cell-jwt").expect("jwt");
    let token_before = s.api.get(&secrets, "cell-service-token").expect("token");
    s.api.delete(&secrets, "cell-service-token");
    s.reconcile().await.expect("repair");
    assert_eq!(
        s.api.get(&secrets, "cell-jwt").expect("jwt"),
        jwt,
        "the key pair is never regenerated"
    );
    let token_after = s
        .api
        .get(&secrets, "cell-service-token")
        .expect("recreated");
    assert_ne!(
        token_after["stringData"]["token"],
        token_before["stringData"]["token"]
    );
}

#[tokio::test]
async fn scaling_a_service_changes_only_its_autoscaler() {
    let s = Scenario::new(SearchEngine::Meilisearch);
    s.reconcile().await.expect("create");
    s.become_ready();
    s.reconcile().await.expect("ready");
    let before = s.children();
    s.edit(|cell| cell["spec"]["replicas"]["poc"] = json!(4));
    s.reconcile().await.expect("scale");
    let after = s.children();
    let changed: Vec<&String> = after
        .iter()
        .filter(|(path, object)| {
            let mut a = (*object).clone();
            let mut b = before.get(*path).cloned().unwrap_or_default();
            a["metadata"]["resourceVersion"] = json!(null);
            b["metadata"]["resourceVersion"] = json!(null);
            a != b
        })
        .map(|(path, _)| path)
        .collect();
    let hpa = format!("apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/poc-service");
    assert_eq!(changed, [&hpa]);
    assert_eq!(after[&hpa]["spec"]["minReplicas"], 4);
    let deployment = &after[&format!("apis/apps/v1/namespaces/{NS}/deployments/poc-service")];
    assert!(
        deployment["spec"]["replicas"].is_null(),
        "the autoscaler owns replicas"
    );
    assert_eq!(
        s.cell()
            .and_then(|c| c.status)
            .and_then(|s| s.observed_generation),
        Some(2)
    );
}

#[tokio::test]
async fn suspending_scales_to_zero_and_resuming_brings_the_autoscalers_back() {
    let s = Scenario::new(SearchEngine::Embedded);
    s.reconcile().await.expect("create");
    s.become_ready();
    s.reconcile().await.expect("ready");
    let hpas = format!("apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers");
    assert_eq!(s.api.objects(&hpas).len(), 3);

    s.edit(|cell| cell["spec"]["suspended"] = json!(true));
    s.reconcile().await.expect("suspend");
    assert!(s.api.objects(&hpas).is_empty(), "autoscalers pruned");
    for d in s
        .api
        .objects(&format!("apis/apps/v1/namespaces/{NS}/deployments"))
    {
        assert_eq!(d["spec"]["replicas"], 0);
    }
    let dojo = s
        .api
        .get(
            &format!("apis/apps/v1/namespaces/{NS}/statefulsets"),
            "dojo-service",
        )
        .expect("dojo's StatefulSet");
    assert_eq!(dojo["spec"]["replicas"], 0);
    assert_eq!(s.phase(), Phase::Suspended);
    assert_eq!(
        s.condition("Ready"),
        (ConditionStatus::False, "Suspended".into())
    );
    assert!(s.events().contains(&"CellSuspended".to_owned()));
    // Data stays.
    assert!(s.api.get(&cnpg("clusters"), "postgres").is_some());

    s.edit(|cell| cell["spec"]["suspended"] = json!(false));
    s.reconcile().await.expect("resume");
    assert_eq!(s.api.objects(&hpas).len(), 3);
    assert_eq!(
        s.phase(),
        Phase::Ready,
        "pods still report ready in the fake"
    );
}

/// A cell still on the Postgres StatefulSet from before CloudNativePG is left alone (pruning
/// it and starting an empty Cluster would lose the service of its data), and says why.
#[tokio::test]
async fn a_cell_on_the_old_postgres_statefulset_is_left_untouched() {
    let s = Scenario::new(SearchEngine::Embedded);
    let sts = format!("apis/apps/v1/namespaces/{NS}/statefulsets");
    s.api.insert(
        &sts,
        json!({ "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": { "name": "postgres", "namespace": NS,
                "labels": { "mrbill.dev/cell": NAME, "app.kubernetes.io/managed-by": "cell-operator" } },
            "spec": { "replicas": 1 } }),
    );
    s.reconcile().await.expect("reconcile");
    assert_eq!(
        s.condition("Reconciled"),
        (ConditionStatus::False, "LegacyPostgres".into())
    );
    assert!(s.api.get(&sts, "postgres").is_some(), "not pruned");
    assert!(
        s.api.get(&cnpg("clusters"), "postgres").is_none(),
        "no empty Cluster"
    );
    assert!(s.events().contains(&"LegacyPostgres".to_owned()));
}

/// What CNPG makes for the cell's Cluster carries the Cluster's inherited labels; the
/// operator's pruning must never take those for stale objects of its own.
#[tokio::test]
async fn cnpgs_own_objects_survive_pruning() {
    let s = Scenario::new(SearchEngine::Embedded);
    s.reconcile().await.expect("create");
    let cluster = s.api.get(&cnpg("clusters"), "postgres").expect("a Cluster");
    let inherited = cluster["spec"]["inheritedMetadata"]["labels"].clone();
    assert!(
        inherited.get("app.kubernetes.io/managed-by").is_none(),
        "{inherited}"
    );
    let services = format!("api/v1/namespaces/{NS}/services");
    for name in ["postgres-rw", "postgres-ro", "postgres-r"] {
        s.api.insert(
            &services,
            json!({ "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": name, "namespace": NS, "labels": inherited },
                "spec": { "ports": [{ "port": 5432 }] } }),
        );
    }
    s.become_ready();
    s.reconcile().await.expect("again");
    for name in ["postgres-rw", "postgres-ro", "postgres-r"] {
        assert!(s.api.get(&services, name).is_some(), "{name} was pruned");
    }
}

#[tokio::test]
async fn switching_to_the_embedded_engine_prunes_meilisearch_but_keeps_everything_else() {
    let s = Scenario::new(SearchEngine::Meilisearch);
    s.reconcile().await.expect("create");
    let sts = format!("apis/apps/v1/namespaces/{NS}/statefulsets");
    assert!(s.api.get(&sts, "meilisearch").is_some());
    let before: Vec<String> = s.children().into_keys().collect();
    s.edit(|cell| cell["spec"]["search"] = json!("embedded"));
    s.reconcile().await.expect("switch");
    let after: Vec<String> = s.children().into_keys().collect();
    let gone: Vec<&String> = before.iter().filter(|p| !after.contains(p)).collect();
    assert_eq!(
        gone,
        [
            &format!("api/v1/namespaces/{NS}/services/meilisearch"),
            &format!("apis/apps/v1/namespaces/{NS}/statefulsets/meilisearch"),
            &format!(
                "apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/meilisearch-from-poc"
            ),
            &format!(
                "apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/poc-to-meilisearch"
            ),
        ]
    );
    // The master key Secret is not deleted (Secrets are never pruned).
    assert!(
        s.api
            .get(&format!("api/v1/namespaces/{NS}/secrets"), "meilisearch")
            .is_some()
    );
}

/// The cell's Postgres certificate carries its expiry, which every reconcile reports as a gauge
/// (the `CellCertificateExpiring` alert's series): ten years out for a fresh cell.
#[tokio::test]
async fn a_cells_certificate_expiry_is_reported() {
    let metrics = service_kit::telemetry::metrics_handle();
    let s = Scenario::new(SearchEngine::Embedded);
    s.reconcile().await.expect("first reconcile");
    s.reconcile().await.expect("second reconcile");
    let cell = s.cell().expect("cell");
    let rendered = metrics.render();
    let prefix = format!(
        "mrbill_cell_certificate_expiry_timestamp_seconds{{tenant=\"{}\",cell=\"{}\",secret=\"postgres-tls\"}} ",
        cell.spec.tenant, cell.spec.cell_id
    );
    let expiry: f64 = rendered
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{rendered}"));
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    let years = (expiry - now) / (365.0 * 86400.0);
    assert!((9.9..10.1).contains(&years), "{years} years");
}
